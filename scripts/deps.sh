#!/usr/bin/env bash
# The one list of what botgate needs from Debian 12, for building, running and testing.
# `make run`, `make test` and .ci/run all call this. It installs only what is missing,
# so a second call costs one dpkg query. Needs root (or sudo) when something is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates
  libh2o-evloop-dev libssl-dev libcurl4-openssl-dev libmsgpack-dev libhiredis-dev
  libyaml-dev libjansson-dev
  libcmocka-dev redis-server openssl curl clang-format
  nodejs # the relay's SDK client test (tests/relay-sdk/); npm below
)
# npm: Debian's package, unless a nodejs that bundles its own (NodeSource's) provides it.
command -v npm >/dev/null || packages+=(npm)
# Extra sets: `deps.sh bench` adds the benchmark's peers, `deps.sh fuzz` clang's fuzzers,
# `deps.sh manifests` node and npm for tests/k8s/ (npm only when no npm is on PATH: a
# nodejs from elsewhere brings its own, which Debian's npm package would conflict with),
# `deps.sh docker` debootstrap for `make docker-rootfs`,
# `deps.sh valgrind` valgrind (make test-valgrind).
for set in "$@"; do
  case "$set" in
    # npm: its own package in Debian, part of the nodejs package in NodeSource's builds.
    bench)
      packages+=(nginx-light wrk nodejs linux-perf)
      command -v npm >/dev/null || packages+=(npm)
      ;;
    fuzz) packages+=(clang-14 libclang-rt-14-dev) ;;
    manifests) packages+=(nodejs); command -v npm >/dev/null || packages+=(npm) ;;
    docker) packages+=(debootstrap) ;;
    valgrind) packages+=(valgrind) ;;
    *) echo "deps.sh: unknown set '$set' (known: bench, fuzz, manifests, docker, valgrind)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
