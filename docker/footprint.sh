#!/usr/bin/env bash
# The figures behind docker/k8s/deployment.yaml's resources: botgate's resident memory and
# CPU, idle and under load, measured from /proc (`make docker-footprint`; README.md,
# "Running in Kubernetes").
#
# One redis-server (unix socket, appendfsync everysec as in the Sentinel example), the test
# bot tests/tools/slow_bot answering at once, and botgate (role all: ingress and
# dispatcher, authentication off) on a TLS port with an RSA-2048 certificate. wrk drives
# POST /api/messages over HTTP/1.1 keep-alive with tests/bench/activity.lua (~1 KB Teams
# activity, fresh ids) for SECONDS at CONNS connections; every 0.5 s the script samples
# VmRSS from /proc/PID/status, and CPU is utime+stime from /proc/PID/stat over the run.
# Prints idle RSS, peak RSS under load, mean CPU (cores), requests/s; exits 1 if wrk saw
# errors or non-2xx answers.
#
# Knobs: FOOTPRINT_SECONDS (20), FOOTPRINT_CONNS (32), BOTGATE_BIN (build/botgate),
# SLOW_BOT_BIN (build/tests/slow_bot).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECS=${FOOTPRINT_SECONDS:-20}
CONNS=${FOOTPRINT_CONNS:-32}
BIN=${BOTGATE_BIN:-$ROOT/build/botgate}
BOT=${SLOW_BOT_BIN:-$ROOT/build/tests/slow_bot}
for t in "$BIN" "$BOT"; do [ -x "$t" ] || { echo "footprint: $t missing: make build" >&2; exit 2; }; done
command -v wrk >/dev/null || { echo "footprint: wrk missing: bash scripts/deps.sh bench" >&2; exit 2; }

T=$(mktemp -d /tmp/botgate-footprint-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
  echo $((20000 + RANDOM % 20000)); }
PORT=$(free_port); BOT_PORT=$(free_port); ADMIN=$(free_port)

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
redis-server --port 0 --unixsocket "$T/redis.sock" --dir "$T" --appendonly yes \
  --appendfsync everysec --save '' --daemonize no >"$T/redis.log" 2>&1 &
pids+=($!)
"$BOT" --dir "$T/bot" --port "$BOT_PORT" --quiet >"$T/bot.log" 2>&1 &
pids+=($!)
cat >"$T/botgate.yaml" <<YAML
listen:
  - {address: 127.0.0.1, port: $PORT, tls: true}
tls: {cert_file: "$T/cert.pem", key_file: "$T/key.pem"}
redis: {url: "unix://$T/redis.sock"}
bot: {url: "http://127.0.0.1:$BOT_PORT/api/messages"}
admin: {listen: "127.0.0.1:$ADMIN"}
relay: {listen: ""}
log: {access: "off"}
state_dir: "$T"
YAML
for _ in $(seq 100); do [ -S "$T/redis.sock" ] && break; sleep 0.1; done
"$BIN" serve -c "$T/botgate.yaml" >"$T/botgate.log" 2>&1 &
GATE=$!
pids+=($GATE)
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$ADMIN/readyz" && break; sleep 0.1; done
curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN/readyz" || { cat "$T/botgate.log"; exit 1; }

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$GATE/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$GATE/stat"; }
sleep 1
idle=$(rss_kb)
t0=$(cpu_ticks)
wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$ROOT/tests/bench/activity.lua" \
  "https://127.0.0.1:$PORT/api/messages" -- "fp$$-" >"$T/wrk.out" 2>&1 &
WRK=$!
peak=$idle
while kill -0 "$WRK" 2>/dev/null; do
  r=$(rss_kb); [ "$r" -gt "$peak" ] && peak=$r
  sleep 0.5
done
wait "$WRK"
t1=$(cpu_ticks)
after=$(rss_kb)
hz=$(getconf CLK_TCK)
rps=$(awk '/^Requests\/sec/ {print $2}' "$T/wrk.out")
if grep -qE "Non-2xx|Socket errors" "$T/wrk.out"; then cat "$T/wrk.out"; exit 1; fi
cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$SECS" 'BEGIN {printf "%.2f", (b - a) / hz / s}')
echo "footprint: idle RSS $((idle / 1024)) MiB; under load (${CONNS} connections, ${SECS} s, ${rps} req/s over TLS, delivered to the bot): peak RSS $((peak / 1024)) MiB, RSS after $((after / 1024)) MiB, CPU ${cpu} cores"
