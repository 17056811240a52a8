#!/usr/bin/env bash
# Installs the npm packages of the SDK client test (tests/relay-sdk/package-lock.json) into
# tests/relay-sdk/node_modules, once: a later call with the packages in place does nothing.
# Called by tests/integration/test_relay.c; needs node and npm (scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null && command -v npm >/dev/null ||
  { echo "relay-sdk: node and npm are needed (bash scripts/deps.sh)" >&2; exit 2; }
if [ -f node_modules/botframework-connector/package.json ] &&
   [ -f node_modules/.package-lock.json ] &&
   ! [ package-lock.json -nt node_modules/.package-lock.json ]; then
  exit 0
fi
# a lock so that two test runs do not install into the same directory at once
exec 9>.install.lock
flock 9
npm ci --no-audit --no-fund --loglevel=error
