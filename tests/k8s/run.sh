#!/usr/bin/env bash
# `make docker-check` (and so `make test`): installs the checker's pinned npm packages
# (package-lock.json) when missing or stale, then runs tests/k8s/check.js over docker/.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$HERE/../../scripts/deps.sh" manifests
cd "$HERE"
stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
node check.js "$HERE/../.."
