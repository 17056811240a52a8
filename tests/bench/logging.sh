#!/usr/bin/env bash
# The cost of observability on the ack path (issue 5): `make bench-logging`.
#
# One redis-server on a unix socket and, for each of BENCH_ROUNDS rounds, two botgates run
# one after the other on the same ports, each driven by wrk over TLS (HTTP/1.1 keep-alive,
# the ~1 KB Teams activity of activity.lua, authentication off):
#   quiet: log.access off, admin.listen "" (the counters still count: they cannot be off)
#   observed: log.access to a file on disk, the admin listener on and scraped once a second
#     during the run (GET /metrics, which also asks Redis for the queue's state)
# Reports the medians and observed/quiet (issue 5's target: at least 0.90), and writes the
# report to tests/bench/results/logging-<date>.md. Fails (exit 1) on a status >= 400, a
# socket error, an access log with fewer lines than wrk saw answered (the lines would then
# not have been paid for), or scrapes that did not answer 200.
#
# Redis's appendfsync is BENCH_FSYNC (default everysec: with always, Redis's fsync sets the
# pace and would hide botgate's own cost). Knobs: BENCH_SECONDS (10), BENCH_WARMUP (2),
# BENCH_ROUNDS (3), BENCH_FSYNC (everysec), BENCH_CONNECTIONS (32), BOTGATE_BIN
# (build/botgate), BENCH_PORT_BASE (28600), BENCH_KEEP (0).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=$ROOT/tests/bench
LUA=$BENCH_DIR/activity.lua
SECS=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP:-2}
ROUNDS=${BENCH_ROUNDS:-3}
FSYNC=${BENCH_FSYNC:-everysec}
CONNS=${BENCH_CONNECTIONS:-32}
BIN=${BOTGATE_BIN:-$ROOT/build/botgate}
PORT_BASE=${BENCH_PORT_BASE:-28600}
KEEP=${BENCH_KEEP:-0}
COMMAND="BENCH_SECONDS=$SECS BENCH_ROUNDS=$ROUNDS BENCH_FSYNC=$FSYNC bash tests/bench/logging.sh"

BENCH_NAME=bench-logging
# shellcheck source=tests/bench/lib.sh
source "$BENCH_DIR/lib.sh"

int_in BENCH_SECONDS "$SECS" 1 600
int_in BENCH_WARMUP "$WARMUP" 0 120
int_in BENCH_ROUNDS "$ROUNDS" 1 25
int_in BENCH_CONNECTIONS "$CONNS" 1 1000
int_in BENCH_PORT_BASE "$PORT_BASE" 1024 64000
case $FSYNC in always | everysec | no) ;; *) die "BENCH_FSYNC=$FSYNC: want always, everysec or no" ;; esac
need_tools wrk redis-server redis-cli openssl curl
[[ -x $BIN ]] || die "$BIN not found: 'make build' first, or set BOTGATE_BIN"

bench_tmp botgate-bench-logging
REDIS_SOCK=$TMP/redis.sock
mkdir -p "$TMP/redis" "$TMP/state"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 2 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 || die "openssl req failed"
pick_port
TLS_PORT=$PORT
pick_port
ADMIN_PORT=$PORT
pick_port
BOT_PORT=$PORT # nothing listens: the ingress role delivers nothing

write_conf() { # mode: quiet|observed
  local access=off admin='""'
  if [[ $1 == observed ]]; then
    access="\"$TMP/access.log\""
    admin="\"127.0.0.1:$ADMIN_PORT\""
  fi
  cat >"$TMP/$1.yaml" <<EOF
listen:
  - {address: 127.0.0.1, port: $TLS_PORT, tls: true}
tls: {cert_file: "$TMP/cert.pem", key_file: "$TMP/key.pem"}
redis: {url: "unix://$REDIS_SOCK"}
bot: {url: "http://127.0.0.1:$BOT_PORT/api/messages"}
state_dir: "$TMP/state"
admin: {listen: $admin}
relay: {listen: ""}
log: {access: $access, level: info}
EOF
}
write_conf quiet
write_conf observed

start_redis
measure_busy_before
machine_facts

RUNS=$TMP/runs.tsv # round mode rps p50_us p99_us lines scrapes_ok scrapes cpu_us_per_req
: >"$RUNS"
W_requests=0 W_p50_us=0 W_p99_us=0 W_p999_us=0 W_max_us=0
W_connect=0 W_read=0 W_write=0 W_timeout=0 W_duration_us=0
run_wrk() { # seconds outfile
  timeout $(($1 + 60)) wrk -t1 -c"$CONNS" -d"${1}s" --latency -s "$LUA" \
    "https://127.0.0.1:$TLS_PORT/api/messages" -- "l$RANDOM" >"$2" 2>&1 ||
    { cat "$2" >&2; die "wrk failed"; }
  local line kv
  line=$(grep '^BENCH ' "$2") || die "no BENCH line in wrk's output"
  for kv in ${line#BENCH }; do printf -v "W_${kv%%=*}" '%s' "${kv#*=}"; done
  W_rps=$(awk '/^Requests\/sec:/ {print $2}' "$2")
  local non2xx
  non2xx=$(awk -F': *' '/Non-2xx or 3xx responses/ {print $2}' "$2")
  [[ -z $non2xx || $non2xx == 0 ]] || die "wrk saw $non2xx answers that were not 2xx (see $2)"
  ((W_connect + W_read + W_write + W_timeout == 0)) || die "wrk saw socket errors (see $2)"
}

run_one() { # round mode
  local round=$1 mode=$2 scraper=0 ok=0 n=0
  redis_reset
  rm -f "$TMP/access.log"
  start_bg "botgate-$mode" "$BIN" serve -c "$TMP/$mode.yaml"
  local pid=$LAST_PID
  wait_http "$pid" "https://127.0.0.1:$TLS_PORT/readyz" 30 || die "botgate ($mode) did not become ready"
  ((WARMUP == 0)) || run_wrk "$WARMUP" "$TMP/warm.out"
  : >"$TMP/scrapes-$round"
  local t0 t1
  t0=$(cpu_ticks "$pid")
  if [[ $mode == observed ]]; then
    (
      while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$ADMIN_PORT/metrics" || true)
        echo "$code" >>"$TMP/scrapes-$round"
        sleep 1
      done
    ) &
    scraper=$!
  fi
  run_wrk "$SECS" "$TMP/wrk-$round-$mode.out"
  t1=$(cpu_ticks "$pid")
  if ((scraper)); then
    kill "$scraper" 2>/dev/null || true
    wait "$scraper" 2>/dev/null || true
    n=$(grep -c . "$TMP/scrapes-$round" || true)
    ok=$(grep -c '^200$' "$TMP/scrapes-$round" || true)
    ((n > 0 && ok == n)) || die "round $round: $ok of $n scrapes answered 200"
  fi
  stop_pid "$pid" 30
  ((STOP_RC == 0)) || die "botgate ($mode) exited with status $STOP_RC"
  local lines=0
  [[ -f $TMP/access.log ]] && lines=$(grep -c . "$TMP/access.log" || true)
  if [[ $mode == observed ]] && ((lines < W_requests)); then
    die "round $round: $lines access-log lines for $W_requests requests answered"
  fi
  # botgate's own CPU per request answered (the writer thread's included): steadier than
  # req/s on a shared machine
  local cpu_us
  cpu_us=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v n="$W_requests" 'BEGIN {printf "%.1f", (n > 0 ? (b - a) / hz * 1e6 / n : 0)}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$W_rps" "$W_p50_us" "$W_p99_us" \
    "$lines" "$ok" "$n" "$cpu_us" >>"$RUNS"
  log "round $round $mode: $W_rps req/s, p50 $W_p50_us µs, p99 $W_p99_us µs, $cpu_us µs CPU/req, $lines log lines, $ok/$n scrapes"
}

for ((r = 1; r <= ROUNDS; r++)); do
  # alternate which goes first, so that a drift in the machine's load favours neither
  if ((r % 2)); then
    run_one "$r" quiet
    run_one "$r" observed
  else
    run_one "$r" observed
    run_one "$r" quiet
  fi
done

median_col() { awk -F'\t' -v m="$1" -v c="$2" '$2 == m {print $c}' "$RUNS" | sort -g |
  awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
Q_RPS=$(median_col quiet 3)
O_RPS=$(median_col observed 3)
RATIO=$(awk -v a="$O_RPS" -v b="$Q_RPS" 'BEGIN {printf "%.3f", a / b}')
VERDICT=$(awk -v r="$RATIO" 'BEGIN {print (r >= 0.90 ? "PASS" : "MISS")}')
Q_CPU=$(median_col quiet 9)
O_CPU=$(median_col observed 9)
CPU_RATIO=$(awk -v a="$O_CPU" -v b="$Q_CPU" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}')

report() {
  echo "# botgate: the ack path with the access log and metrics on, against them off"
  echo
  echo "- date: $DATE; machine: $CPU_MODEL, $(nproc) cores, $MEM; load at start: $LOAD_START (${BUSY_BEFORE}% busy)"
  echo "- command: \`$COMMAND\`"
  echo "- wrk -t1 -c$CONNS -d${SECS}s over TLS (HTTP/1.1 keep-alive), auth off, Redis appendfsync $FSYNC; $V_REDIS"
  echo
  echo "| round | mode | req/s | p50 µs | p99 µs | botgate CPU µs/req | access-log lines | scrapes 200 |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' '{printf "| %s | %s | %.0f | %s | %s | %s | %s | %s/%s |\n", $1, $2, $3, $4, $5, $9, $6, $7, $8}' "$RUNS"
  echo
  echo "- median req/s: quiet $Q_RPS, observed $O_RPS"
  echo "- observed / quiet: **$RATIO** (target >= 0.90: $VERDICT)"
  echo "- median botgate CPU per request: quiet $Q_CPU µs, observed $O_CPU µs (observed / quiet $CPU_RATIO)"
}
FAILED=0
publish_report logging-
