# shellcheck shell=bash disable=SC2034,SC2153
# (SC2034, SC2153: the variables set here are read, and those read here are set, by the
# scripts that source this file.)
# Shell helpers shared by the benchmarks (tests/bench/run.sh, tests/bench/delivery.sh):
# sourced, not run. The caller sets, before sourcing, BENCH_NAME (the prefix of log and
# failure lines: bench, bench-delivery) and, before using the helpers that need them,
# TMP (bench_tmp sets it), KEEP, PORT_BASE, FSYNC and REDIS_SOCK.

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$BENCH_NAME" -1 "$*" >&2; }
FAIL_MSG=""
die() {
  FAIL_MSG="$BENCH_NAME: FAIL: $*"
  printf '%s\n' "$FAIL_MSG" >&2
  exit 1
}

# --- arguments -----------------------------------------------------------------------
int_in() { # name value min max
  if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < $3 || $2 > $4)); then die "$1=$2: want an integer in [$3, $4]"; fi
}
need_tools() { # tool...: each must be on PATH
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool not found: run 'bash scripts/deps.sh bench' (as root) first"
  done
}

# --- processes: every one started here is stopped on exit, whatever the exit ----------
PIDS=()
FAILED=1
STOP_RC=0

stop_pid() { # pid [seconds]: TERM, then KILL after the grace period; forgets the pid; STOP_RC = its status
  local pid=$1 grace=${2:-10} i
  STOP_RC=0
  # Only a child not yet reaped is signalled (a reaped one's pid may belong to another
  # process by now), and the pid leaves PIDS either way.
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && { log "pid $pid ignored SIGTERM for ${grace}s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
  fi
  wait "$pid" 2>/dev/null || STOP_RC=$?
  local keep=() p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid" 5; done
  if ((FAILED)) && [[ -d $TMP ]]; then
    local f
    for f in "$TMP"/*.log; do
      [[ -s $f ]] || continue
      printf '\n--- last lines of %s ---\n' "${f##*/}" >&2
      tail -n 15 "$f" >&2
    done
    if [[ -n $FAIL_MSG ]]; then printf '\n%s\n' "$FAIL_MSG" >&2; fi
  fi
  if [[ $KEEP == 1 ]]; then
    log "kept $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}

bench_tmp() { # prefix: TMP = a new /tmp/prefix.XXXXXX; cleanup on exit, whatever the exit
  TMP=$(mktemp -d "/tmp/$1.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

start_bg() { # name command...: starts command in the background, its output in TMP/name.log
  local name=$1
  shift
  "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=("$!")
  LAST_PID=$!
}

port_in_use() {
  if command -v ss >/dev/null; then
    [[ -n $(ss -Htan "( sport = :$1 )" 2>/dev/null) ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
pick_port() { # sets PORT to the next free port from NEXT_PORT (first PORT_BASE) on
  local i
  : "${NEXT_PORT:=$PORT_BASE}"
  for ((i = 0; i < 500; i++)); do
    PORT=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
    port_in_use "$PORT" || return 0
  done
  die "no free port in $PORT_BASE..$NEXT_PORT"
}

wait_http() { # pid url seconds: until url answers 200, while pid lives
  local pid=$1 url=$2 secs=$3 i code
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "$url" 2>/dev/null || true)
    [[ $code == 200 ]] && return 0
    sleep 0.1
  done
  return 1
}

wait_ready_file() { # pid file seconds name log: until the process writes file (non-empty), while it lives
  local pid=$1 file=$2 secs=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    [[ -s $file ]] && break
    kill -0 "$pid" 2>/dev/null || die "$4 exited at start (see $5)"
    sleep 0.1
  done
  [[ -s $file ]] || die "$4 did not write $file within $secs s"
}

# --- CPU and memory -------------------------------------------------------------------
cpu_ticks() { # pid: utime + stime of all its threads, in clock ticks
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  s=${s##*) }
  awk '{print $12 + $13}' <<<"$s"
}
machine_jiffies() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit}' /proc/stat; } # busy total
busy_pct() { # "busy total" before, after: the machine's CPU use between them, 100 = every core
  awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; printf "%.0f", (t > 0 ? 100 * (y[1] - x[1]) / t : 0)}'
}
vm_hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
CLK_TCK=$(getconf CLK_TCK)

measure_busy_before() { # sets LOAD_START and BUSY_BEFORE (the machine's CPU % over one second), warns above 15
  local m0
  LOAD_START=$(loadavg)
  # How busy the machine is without us: others' work shows in every figure.
  m0=$(machine_jiffies)
  sleep 1
  BUSY_BEFORE=$(busy_pct "$m0" "$(machine_jiffies)")
  ((BUSY_BEFORE < 15)) || log "warning: the machine was ${BUSY_BEFORE}% busy before the benchmark started: expect noise"
}

# --- redis ----------------------------------------------------------------------------
rcli() { redis-cli -s "$REDIS_SOCK" "$@"; }
start_redis() { # redis-server on REDIS_SOCK, its data in TMP/redis, appendfsync FSYNC: sets REDIS_PID
  local i
  # No automatic AOF rewrite, so that no fork lands inside one measurement: the callers
  # flush the data set and rewrite the AOF (redis_reset) when nothing is measured.
  start_bg redis redis-server --port 0 --unixsocket "$REDIS_SOCK" --unixsocketperm 700 \
    --dir "$TMP/redis" --appendonly yes --appendfsync "$FSYNC" --save "" \
    --auto-aof-rewrite-percentage 0 --daemonize no --logfile ""
  REDIS_PID=$LAST_PID
  for ((i = 0; i < 100; i++)); do
    [[ $(rcli ping 2>/dev/null) == PONG ]] && break
    kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited at start"
    sleep 0.1
  done
  [[ $(rcli ping 2>/dev/null) == PONG ]] || die "redis-server did not answer PING within 10 s"
}
redis_reset() { # empty data set, small AOF, no rewrite in flight
  local i
  rcli flushall >/dev/null
  rcli bgrewriteaof >/dev/null
  for ((i = 0; i < 600; i++)); do
    rcli info persistence | grep -Eq '^aof_rewrite_(in_progress|scheduled):1' || return 0
    sleep 0.1
  done
  die "redis AOF rewrite still running after 60 s"
}

# --- report ---------------------------------------------------------------------------
machine_facts() { # sets DATE, CPU_MODEL, MEM, FS (TMP's file system), V_REDIS, V_WRK
  DATE=$(date '+%Y-%m-%d %H:%M:%S %Z')
  CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  MEM=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  FS=$(df -PT "$TMP" | awk 'NR == 2 {print $2}')
  V_REDIS=$(redis-server --version)
  V_WRK=$(wrk -v 2>&1 | head -n 1 || true)
}
publish_report() { # prefix: report's output to BENCH_DIR/results/<prefix><date>.md (OUT), then printed
  mkdir -p "$BENCH_DIR/results"
  OUT=$BENCH_DIR/results/$1$(date +%Y-%m-%dT%H%M%S).md
  report >"$OUT"
  echo
  cat "$OUT"
  echo
  echo "written to ${OUT#"$ROOT"/}"
}
