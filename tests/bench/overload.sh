#!/usr/bin/env bash
# Overload benchmark (issue 9): botgate (--role ingress, plain HTTP, Redis appendfsync
# FSYNC) at its connection cap, then at twice it. Not part of `make test`: it needs the
# machine. `make bench-overload`, or:
#
#   BENCH_SECONDS=10 BENCH_CAP=32 bash tests/bench/overload.sh
#
# wrk -t1 with BENCH_CAP connections (every one admitted: botgate's capacity at that
# concurrency), then with 2 x BENCH_CAP (half of them over policy.max_connections: closed at
# accept, and wrk reconnects them at once, a storm of connections). Reported per run:
# requests/s, the latency percentiles of the answers (202s and sheds alike: wrk does not
# split them), the socket errors (the closed connections), the non-2xx answers, the 202s
# (the stream's growth: each one stored) and botgate's peak RSS. Knobs: BENCH_SECONDS
# (default 10), BENCH_CAP (32), BENCH_FSYNC (always), BENCH_PORT_BASE (19400),
# BENCH_KEEP=1 (keep the temporary directory), BOTGATE_BIN (build/botgate).
set -euo pipefail
BENCH_NAME=bench-overload
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH_DIR=$ROOT/tests/bench
# shellcheck source=tests/bench/lib.sh
source "$BENCH_DIR/lib.sh"

SECS=${BENCH_SECONDS:-10}
CAP=${BENCH_CAP:-32}
FSYNC=${BENCH_FSYNC:-always}
PORT_BASE=${BENCH_PORT_BASE:-19400}
KEEP=${BENCH_KEEP:-0}
BIN=${BOTGATE_BIN:-$ROOT/build/botgate}
int_in BENCH_SECONDS "$SECS" 1 3600
int_in BENCH_CAP "$CAP" 1 10000
need_tools wrk redis-server redis-cli curl
[[ -x $BIN ]] || die "$BIN not found: make build first"

bench_tmp botgate-bench-overload
REDIS_SOCK=$TMP/redis.sock
mkdir -p "$TMP/redis" "$TMP/state"
start_redis
pick_port
cat >"$TMP/botgate.yaml" <<EOF
listen: [{address: 127.0.0.1, port: $PORT, tls: false}]
state_dir: "$TMP/state"
redis: {url: "unix://$REDIS_SOCK", stream: "bench:overload"}
admin: {listen: ""}
relay: {listen: ""}
log: {access: "off", level: warn}
policy: {max_connections: $CAP}
EOF
start_bg botgate "$BIN" serve -c "$TMP/botgate.yaml" --role ingress
GATE_PID=$LAST_PID
URL=http://127.0.0.1:$PORT
wait_http "$GATE_PID" "$URL/healthz" 20 || die "botgate did not answer /healthz"

declare -A R
run() { # label connections: one wrk run, its BENCH line's keys into R[label.key]
  local label=$1 conns=$2 before after line kv
  before=$(rcli xlen bench:overload)
  line=$(wrk -t1 -c"$conns" -d"${SECS}s" -s "$BENCH_DIR/activity.lua" "$URL/api/messages" \
    -- "ov$label$RANDOM" | grep '^BENCH ') || die "wrk failed"
  after=$(rcli xlen bench:overload)
  for kv in ${line#BENCH }; do R[$label.${kv%%=*}]=${kv#*=}; done
  R[$label.stored]=$((after - before))
  R[$label.rss]=$(vm_hwm_kb "$GATE_PID")
  log "$label: $line stored=${R[$label.stored]}"
}
LOAD_START=$(loadavg)
run cap "$CAP"
run double $((CAP * 2))
kill -0 "$GATE_PID" 2>/dev/null || die "botgate died under overload"

row() { # label connections
  local l=$1
  awk -v n="${R[$l.requests]}" -v d="${R[$l.duration_us]}" -v p50="${R[$l.p50_us]}" \
    -v p99="${R[$l.p99_us]}" -v max="${R[$l.max_us]}" -v c="$2" -v rd="${R[$l.read]}" \
    -v cn="${R[$l.connect]}" -v st="${R[$l.status]}" -v s="${R[$l.stored]}" -v rss="${R[$l.rss]}" \
    'BEGIN { printf "| %d | %.0f | %.2f | %.2f | %.2f | %d | %d | %d | %.1f |\n",
             c, n / (d / 1e6), p50 / 1000, p99 / 1000, max / 1000, cn + rd, st, s, rss / 1024 }'
}
echo
echo "policy.max_connections $CAP, ${SECS} s per run, appendfsync $FSYNC, load at start $LOAD_START"
echo
echo "| connections | answers/s | p50 ms | p99 ms | max ms | socket errors | non-2xx | stored (202) | peak RSS MiB |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
row cap "$CAP"
row double $((CAP * 2))
stop_pid "$GATE_PID" 30
((STOP_RC == 0)) || die "botgate exited $STOP_RC after SIGTERM"
FAILED=0
