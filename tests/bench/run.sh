#!/usr/bin/env bash
# botgate against nginx, on loopback, on this machine: `make bench` (see README.md here).
#
# One run: one RSA-2048 certificate, one redis-server on a unix socket, and for each of
# BENCH_ROUNDS rounds, interleaved, a fresh nginx and a fresh botgate, each driven by wrk
# over TLS and over plain HTTP/1.1 keep-alive with the same ~1 KB Teams activity:
#   nginx TLS, botgate TLS, nginx plain, botgate plain, nginx TLS, ...
# nginx only answers `return 202`; botgate answers 202 after Redis confirmed the XADD.
# Reports medians over the rounds, the botgate/nginx ratios, and writes the report to
# tests/bench/results/<date>.md. Fails (exit 1) if a probe request is not answered 202, if
# wrk counts a status >= 400 or a socket error, or if the stream grew by fewer entries than
# wrk saw answered: a benchmark of errors, or of 202s for nothing stored, is refused.
#
# Knobs (environment): BENCH_SECONDS (15), BENCH_WARMUP (3), BENCH_ROUNDS (3),
# BENCH_FSYNC (always), BENCH_CONNECTIONS (32), BENCH_TARGETS ("nginx botgate"),
# BOTGATE_BIN (build/botgate), BENCH_PORT_BASE (28400), BENCH_KEEP (0: keep the temp dir).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=$ROOT/tests/bench
LUA=$BENCH_DIR/activity.lua

SECS=${BENCH_SECONDS:-15}
WARMUP=${BENCH_WARMUP:-3}
ROUNDS=${BENCH_ROUNDS:-3}
FSYNC=${BENCH_FSYNC:-always}
CONNS=${BENCH_CONNECTIONS:-32}
TARGETS=${BENCH_TARGETS:-nginx botgate}
BIN=${BOTGATE_BIN:-$ROOT/build/botgate}
PORT_BASE=${BENCH_PORT_BASE:-28400}
KEEP=${BENCH_KEEP:-0}
STREAM=botgate:activities

COMMAND="BENCH_SECONDS=$SECS BENCH_WARMUP=$WARMUP BENCH_ROUNDS=$ROUNDS BENCH_FSYNC=$FSYNC"
COMMAND+=" BENCH_CONNECTIONS=$CONNS BENCH_TARGETS=\"$TARGETS\" bash tests/bench/run.sh"

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
FAIL_MSG=""
die() {
  FAIL_MSG="bench: FAIL: $*"
  printf '%s\n' "$FAIL_MSG" >&2
  exit 1
}

# --- arguments -----------------------------------------------------------------------
int_in() {
  if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < $3 || $2 > $4)); then die "$1=$2: want an integer in [$3, $4]"; fi
}
int_in BENCH_SECONDS "$SECS" 1 600
int_in BENCH_WARMUP "$WARMUP" 0 120
int_in BENCH_ROUNDS "$ROUNDS" 1 25
int_in BENCH_CONNECTIONS "$CONNS" 1 1000
int_in BENCH_PORT_BASE "$PORT_BASE" 1024 64000
case $FSYNC in always | everysec | no) ;; *) die "BENCH_FSYNC=$FSYNC: want always, everysec or no" ;; esac
want_nginx=0 want_botgate=0
for t in $TARGETS; do
  case $t in nginx) want_nginx=1 ;; botgate) want_botgate=1 ;; *) die "BENCH_TARGETS: unknown target '$t' (nginx, botgate)" ;; esac
done
((want_nginx + want_botgate > 0)) || die "BENCH_TARGETS is empty"

for tool in wrk nginx redis-server redis-cli openssl curl; do
  command -v "$tool" >/dev/null || die "$tool not found: run 'bash scripts/deps.sh bench' (as root) first"
done
if ((want_botgate)); then
  [[ -x $BIN ]] || die "$BIN not found or not executable: build it first ('make build', or 'cmake -S . -B build && cmake --build build'), or set BOTGATE_BIN; BENCH_TARGETS=nginx runs the nginx half alone"
fi
[[ -r $LUA ]] || die "$LUA missing"

# --- processes: every one started here is stopped on exit, whatever the exit ----------
TMP=$(mktemp -d /tmp/botgate-bench.XXXXXX)
PIDS=()
FAILED=1

stop_pid() { # pid [seconds]: TERM, then KILL after the grace period
  local pid=$1 grace=${2:-10} i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && { log "pid $pid ignored SIGTERM for ${grace}s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
  wait "$pid" 2>/dev/null || true
  local keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
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
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
NEXT_PORT=$PORT_BASE
pick_port() { # sets PORT to the next free port from NEXT_PORT on
  local i
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

cpu_ticks() { # pid: utime + stime of all its threads, in clock ticks
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  s=${s##*) }
  awk '{print $12 + $13}' <<<"$s"
}
machine_jiffies() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit}' /proc/stat; } # busy total
vm_hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
now_ns() { date +%s%N; }
CLK_TCK=$(getconf CLK_TCK)

# --- the shared pieces: certificate, ports, redis -----------------------------------
log "work dir $TMP"
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj "/CN=127.0.0.1" \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$TMP/openssl.out" 2>&1 || { cat "$TMP/openssl.out" >&2; die "openssl req failed"; }
chmod 600 "$TMP/key.pem"

pick_port; NGINX_TLS=$PORT
pick_port; NGINX_PLAIN=$PORT
pick_port; BOTGATE_TLS=$PORT
pick_port; BOTGATE_PLAIN=$PORT
pick_port; BOT_PORT=$PORT # nothing listens here: botgate's dispatcher finds its bot down

REDIS_SOCK=$TMP/redis.sock
rcli() { redis-cli -s "$REDIS_SOCK" "$@"; }
if ((want_botgate)); then
  mkdir -p "$TMP/redis" "$TMP/state"
  # appendfsync always: botgate's 202 means "stored"; with `always` it also means "on
  # disk", the strictest (and slowest) setting, the one a deployment that promises no
  # loss runs. BENCH_FSYNC=everysec shows the cost of that promise. Automatic AOF
  # rewrites are off so that no fork lands inside one measurement: the data set is
  # flushed and the AOF rewritten between botgate runs instead, when nothing is measured.
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
fi

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
stream_added() { # entries ever added to the stream (trimming does not lower it)
  local out
  # The reply holds the first and last entries, binary: keep only the text lines.
  out=$(rcli xinfo stream "$STREAM" 2>/dev/null | tr -d '\000') || true
  if [[ $out == *entries-added* ]]; then
    awk 'prev == "entries-added" {print; exit} {prev = $0}' <<<"$out"
  else
    rcli xlen "$STREAM"
  fi
}

# --- servers --------------------------------------------------------------------------
# One nginx process (master_process off, worker_processes 1): one event loop on one
# core, as botgate has. It runs as the invoking user, with everything in TMP.
mkdir -p "$TMP/nginx-temp"
cat >"$TMP/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx-temp/body;
  proxy_temp_path $TMP/nginx-temp/proxy;
  fastcgi_temp_path $TMP/nginx-temp/fastcgi;
  uwsgi_temp_path $TMP/nginx-temp/uwsgi;
  scgi_temp_path $TMP/nginx-temp/scgi;
  # keepalive_requests stays at nginx's default, 1000: nginx then closes a keep-alive
  # connection (wrk reconnects, ~50 handshakes/s, ~1% of nginx's CPU), which h2o does not;
  # raised, nginx keeps per-connection memory for the connection's life and its RSS grows
  # with every request (70-120 MB after 15 s), as nginx's documentation warns.
  keepalive_requests 1000;
  keepalive_timeout 75s;
  client_max_body_size 256k;
  # Same TLS as botgate: TLS 1.2 and 1.3, OpenSSL's default ciphers, same certificate.
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ciphers DEFAULT;
  ssl_certificate $TMP/cert.pem;
  ssl_certificate_key $TMP/key.pem;
  server {
    listen 127.0.0.1:$NGINX_TLS ssl;
    listen 127.0.0.1:$NGINX_PLAIN;
    location = /api/messages { return 202; }
    location = /healthz { return 200; }
  }
}
EOF
if ((want_nginx)); then
  nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" -t >"$TMP/nginx-t.log" 2>&1 ||
    { cat "$TMP/nginx-t.log" >&2; die "nginx -t refused the generated nginx.conf"; }
fi

cat >"$TMP/botgate.yaml" <<EOF
listen:
  - {address: 127.0.0.1, port: $BOTGATE_TLS, tls: true}
  - {address: 127.0.0.1, port: $BOTGATE_PLAIN, tls: false}
tls: {cert_file: "$TMP/cert.pem", key_file: "$TMP/key.pem"}
redis: {url: "unix://$REDIS_SOCK"}
bot: {url: "http://127.0.0.1:$BOT_PORT/api/messages"}
state_dir: "$TMP/state"
admin: {listen: ""}
relay: {listen: ""}
log: {access: off}
EOF

start_server() { # nginx|botgate: sets SERVER_PID
  local s=$1
  case $s in
    nginx)
      start_bg nginx nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf"
      SERVER_PID=$LAST_PID
      wait_http "$SERVER_PID" "http://127.0.0.1:$NGINX_PLAIN/healthz" 10 || die "nginx did not come up (see nginx.log)"
      ;;
    botgate)
      redis_reset
      start_bg botgate "$BIN" serve -c "$TMP/botgate.yaml"
      SERVER_PID=$LAST_PID
      wait_http "$SERVER_PID" "http://127.0.0.1:$BOTGATE_PLAIN/healthz" 30 || die "botgate did not answer GET /healthz 200 within 30 s (see botgate.log)"
      wait_http "$SERVER_PID" "https://127.0.0.1:$BOTGATE_TLS/healthz" 10 || die "botgate's TLS listener did not answer GET /healthz 200"
      ;;
  esac
}

url_of() { # server proto
  local port
  case $1-$2 in
    nginx-tls) port=$NGINX_TLS ;; nginx-plain) port=$NGINX_PLAIN ;;
    botgate-tls) port=$BOTGATE_TLS ;; botgate-plain) port=$BOTGATE_PLAIN ;;
  esac
  [[ $2 == tls ]] && echo "https://127.0.0.1:$port/api/messages" || echo "http://127.0.0.1:$port/api/messages"
}

probe() { # server url: one request by curl; must be 202 with an empty body
  local out code size
  out=$(curl -sk -o "$TMP/probe.body" -w '%{http_code} %{size_download}' --max-time 5 -X POST \
    -H 'Content-Type: application/json; charset=utf-8' \
    --data '{"type":"message","id":"probe-'"$RANDOM$RANDOM"'","channelId":"msteams","serviceUrl":"https://smba.trafficmanager.net/emea/","conversation":{"id":"a:probe"},"from":{"id":"29:probe"},"recipient":{"id":"28:probe"},"text":"probe"}' \
    "$2" 2>&1) || die "$1: probe POST to $2 failed: $out"
  read -r code size <<<"$out"
  [[ $code == 202 ]] || die "$1: probe POST to $2 answered $code, not 202: $(head -c 300 "$TMP/probe.body")"
  [[ $size == 0 ]] || log "$1: note: the 202 carried a $size-byte body"
}

TLS_INFO=()
tls_info() { # server port: what a default OpenSSL client negotiates
  local out
  out=$(openssl s_client -connect "127.0.0.1:$2" -brief </dev/null 2>&1 || true)
  TLS_INFO+=("$1: $(awk -F': ' '/^Protocol version|^Ciphersuite|Temp Key|^Signature type/ {printf "%s%s", sep, $2; sep=", "}' <<<"$out")")
}

WRK_LINE="wrk -t1 -c$CONNS -d${SECS}s --latency -s tests/bench/activity.lua URL -- TAG"
RUN_TAG=$(date +%s)
WRK_SEQ=0
# Set by name from wrk's "BENCH key=value ..." line (activity.lua's done()).
W_requests=0 W_p50_us=0 W_p99_us=0 W_p999_us=0 W_max_us=0
W_connect=0 W_read=0 W_write=0 W_timeout=0
run_wrk() { # seconds url outfile: runs wrk, sets W_* from its output
  local secs=$1 url=$2 out=$3
  WRK_SEQ=$((WRK_SEQ + 1))
  # In the background and waited for, so that a signal to this script acts at once.
  timeout $((secs + 60)) wrk -t1 -c"$CONNS" -d"${secs}s" --latency -s "$LUA" "$url" -- "b$RUN_TAG-$WRK_SEQ" >"$out" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  local rc=0
  wait "$pid" || rc=$?
  stop_pid "$pid" 1
  ((rc == 0)) || { cat "$out" >&2; die "wrk failed against $url (status $rc)"; }
  local line
  line=$(grep '^BENCH ' "$out") || { cat "$out" >&2; die "no BENCH line in wrk's output (done() hook)"; }
  local kv k v
  for kv in ${line#BENCH }; do
    k=${kv%%=*} v=${kv#*=}
    printf -v "W_$k" '%s' "$v"
  done
  W_rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  W_non2xx=$(awk -F': *' '/Non-2xx or 3xx responses/ {print $2}' "$out")
  W_non2xx=${W_non2xx:-0}
  W_sockerr=$((W_connect + W_read + W_write + W_timeout))
}

# --- one measurement ------------------------------------------------------------------
RUNS=$TMP/runs.tsv
: >"$RUNS"
run_one() { # round server proto
  local round=$1 s=$2 proto=$3 url stored0=0 stored1=0 warm_reqs=0 warm_bad=0
  url=$(url_of "$s" "$proto")
  log "round $round/$ROUNDS: $s $proto ($url)"
  start_server "$s"
  probe "$s" "$url"
  if ((round == 1)) && [[ $proto == tls ]]; then
    local port=${url#https://127.0.0.1:}
    tls_info "$s" "${port%%/*}"
  fi
  if [[ $s == botgate ]]; then
    stored0=$(stream_added)
    rcli config resetstat >/dev/null
  fi

  if ((WARMUP > 0)); then
    run_wrk "$WARMUP" "$url" "$TMP/wrk-$round-$s-$proto-warmup.txt"
    warm_reqs=$W_requests
    warm_bad=$((W_non2xx + W_sockerr))
  fi

  local c0 r0 t0 c1 r1 t1 rcpu=""
  c0=$(cpu_ticks "$SERVER_PID")
  [[ $s == botgate ]] && r0=$(cpu_ticks "$REDIS_PID")
  local m0 m1
  m0=$(machine_jiffies)
  t0=$(now_ns)
  run_wrk "$SECS" "$url" "$TMP/wrk-$round-$s-$proto.txt"
  t1=$(now_ns)
  m1=$(machine_jiffies)
  c1=$(cpu_ticks "$SERVER_PID")
  # All cores together, 100 = every core busy: near 100, client, server (and Redis) compete.
  local mcpu
  mcpu=$(awk -v a="$m0" -v b="$m1" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; v = t > 0 ? 100 * (y[1] - x[1]) / t : 0; printf "%.0f", v}')
  local cpu
  cpu=$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v ns="$((t1 - t0))" 'BEGIN {printf "%.0f", 100 * c / hz / (ns / 1e9)}')
  if [[ $s == botgate ]]; then
    r1=$(cpu_ticks "$REDIS_PID")
    rcpu=$(awk -v c="$((r1 - r0))" -v hz="$CLK_TCK" -v ns="$((t1 - t0))" 'BEGIN {printf "%.0f", 100 * c / hz / (ns / 1e9)}')
  fi
  # The server's CPU time per answered request: its cost, whoever was the bottleneck.
  local us_req
  us_req=$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v n="$W_requests" 'BEGIN {v = n > 0 ? 1e6 * c / hz / n : 0; printf "%.1f", v}')
  local rss
  rss=$(vm_hwm_kb "$SERVER_PID")
  kill -0 "$SERVER_PID" 2>/dev/null || die "$s exited during the run"

  local bad=$((W_non2xx + W_sockerr)) stored="" rcalls=""
  if [[ $s == botgate ]]; then
    # Answers still in flight when wrk stopped are stored but not counted by wrk: the
    # stream may grow by a little more than wrk's count, never by less.
    stored1=$(stream_added)
    stored=$((stored1 - stored0))
    # Redis commands botgate sent per answered request (warm-up and run), e.g. "xadd 1.00".
    rcalls=$(rcli info commandstats | tr -d '\r' | grep '^cmdstat_' | sort |
      awk -F'[_:=,]' -v n="$((warm_reqs + W_requests))" \
        '$2 !~ /^(info|xinfo|config)/ && $4 / n >= 0.005 {printf "%s%s %.2f", sep, $2, $4 / n; sep = ", "}')
    if ((warm_bad + bad > 0)); then
      die "botgate $proto answered $((warm_bad + bad)) requests with a non-2xx status or a socket error (round $round: warm-up $warm_bad, run: non-2xx $W_non2xx, connect $W_connect, read $W_read, write $W_write, timeout $W_timeout)"
    fi
    if ((stored < warm_reqs + W_requests)); then
      die "botgate $proto: wrk saw $((warm_reqs + W_requests)) answers but the stream $STREAM grew by $stored only"
    fi
  elif ((warm_bad + bad > 0)); then
    die "nginx $proto: $((warm_bad + bad)) non-2xx answers or socket errors: the baseline is broken"
  fi
  stop_pid "$SERVER_PID" 30
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$round" "$s" "$proto" "$W_rps" "$W_p50_us" "$W_p99_us" "$W_p999_us" "$W_max_us" \
    "$rss" "$cpu" "${rcpu:--}" "$W_requests" "$((W_non2xx))" "$W_sockerr" "${stored:--}" "${rcalls:--}" "$mcpu" "$us_req" >>"$RUNS"
  log "  $(printf '%.0f req/s, p50 %s us, p99 %s us, p99.9 %s us, server CPU %s%% (%s us/req), machine CPU %s%%, peak RSS %s kB%s' \
    "$W_rps" "$W_p50_us" "$W_p99_us" "$W_p999_us" "$cpu" "$us_req" "$mcpu" "$rss" "${stored:+, stored $stored}")"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# How busy the machine is without us: others' work shows in every figure.
m0=$(machine_jiffies)
sleep 1
m1=$(machine_jiffies)
BUSY_BEFORE=$(awk -v a="$m0" -v b="$m1" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; v = t > 0 ? 100 * (y[1] - x[1]) / t : 0; printf "%.0f", v}')
((BUSY_BEFORE < 15)) || log "warning: the machine was ${BUSY_BEFORE}% busy before the benchmark started: expect noise"
log "command: $COMMAND"
log "wrk:     $WRK_LINE"
servers=()
((want_nginx)) && servers+=(nginx)
((want_botgate)) && servers+=(botgate)
for ((round = 1; round <= ROUNDS; round++)); do
  for proto in tls plain; do
    for s in "${servers[@]}"; do run_one "$round" "$s" "$proto"; done
  done
done

# --- report ---------------------------------------------------------------------------
median() { # column server proto
  awk -F'\t' -v c="$1" -v s="$2" -v p="$3" '$2 == s && $3 == p && $c != "-" {print $c}' "$RUNS" |
    sort -g | awk '{a[NR] = $1} END {if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
ms() { awk -v u="$1" 'BEGIN {printf "%.2f", u / 1000}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
int() { if [[ -n $1 ]]; then awk -v v="$1" 'BEGIN {printf "%.0f", v}'; else echo -; fi; }

DATE=$(date '+%Y-%m-%d %H:%M:%S %Z')
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
FS=$(df -PT "$TMP" | awk 'NR == 2 {print $2}')
V_NGINX=$(nginx -v 2>&1)
V_REDIS=$(redis-server --version)
V_WRK=$(wrk -v 2>&1 | head -n 1 || true)
V_SSL=$(openssl version)
V_BOTGATE="-"
((want_botgate)) && V_BOTGATE=$(timeout 5 "$BIN" version 2>&1 | head -n 1 || echo "(botgate version failed)")

report() {
  echo "# botgate benchmark, $DATE"
  echo
  echo "- machine: $(nproc) cores, $CPU_MODEL, $MEM, Linux $(uname -r); temp dir on $FS;" \
    "load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end;" \
    "CPU ${BUSY_BEFORE}% busy in the second before the start"
  echo "- versions: $V_NGINX; $V_REDIS; $V_WRK; $V_SSL; botgate: $V_BOTGATE"
  echo "- command: \`$COMMAND\`"
  echo "- each run: \`$WRK_LINE\` after a ${WARMUP}s warm-up run; a fresh server per run;" \
    "${ROUNDS} round(s), interleaved nginx/botgate; figures are medians over the rounds"
  echo "- request: POST /api/messages, 1024-byte Teams message activity, unique activity id per request;" \
    "redis-server on a unix socket, appendfsync $FSYNC; botgate auth off (no app id)"
  echo "- one server process each: nginx master_process off, worker_processes 1 (one event loop, as botgate)"
  for t in "${TLS_INFO[@]+"${TLS_INFO[@]}"}"; do echo "- TLS negotiated with $t"; done
  echo
  echo "| target | req/s | p50 ms | p99 ms | p99.9 ms | peak RSS MiB | server CPU µs/req | server CPU % | redis CPU % | machine CPU % |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  local s p rc
  for p in tls plain; do
    for s in "${servers[@]}"; do
      rc=$(median 11 "$s" "$p")
      printf '| %s %s | %.0f | %s | %s | %s | %s | %.1f | %s | %s | %s |\n' "$s" "$p" "$(median 4 "$s" "$p")" \
        "$(ms "$(median 5 "$s" "$p")")" "$(ms "$(median 6 "$s" "$p")")" "$(ms "$(median 7 "$s" "$p")")" \
        "$(mib "$(median 9 "$s" "$p")")" "$(median 18 "$s" "$p")" "$(int "$(median 10 "$s" "$p")")" "$(int "$rc")" \
        "$(int "$(median 17 "$s" "$p")")"
    done
  done
  if ((want_nginx && want_botgate)); then
    echo
    echo "Ratios botgate / nginx: for req/s the share of nginx's throughput that botgate keeps"
    echo "(higher is better, 1.00 = no cost); for latencies and CPU per request a multiple of nginx's"
    echo "(lower is better)."
    echo
    echo "| botgate / nginx | req/s | p50 | p99 | p99.9 | server CPU per request |"
    echo "|---|---:|---:|---:|---:|---:|"
    for p in tls plain; do
      printf '| %s | %s | %s | %s | %s | %s |\n' "$p" \
        "$(awk -v b="$(median 4 botgate "$p")" -v n="$(median 4 nginx "$p")" 'BEGIN {printf "%.2f", b / n}')" \
        "$(awk -v b="$(median 5 botgate "$p")" -v n="$(median 5 nginx "$p")" 'BEGIN {printf "%.2f", b / n}')" \
        "$(awk -v b="$(median 6 botgate "$p")" -v n="$(median 6 nginx "$p")" 'BEGIN {printf "%.2f", b / n}')" \
        "$(awk -v b="$(median 7 botgate "$p")" -v n="$(median 7 nginx "$p")" 'BEGIN {printf "%.2f", b / n}')" \
        "$(awk -v b="$(median 18 botgate "$p")" -v n="$(median 18 nginx "$p")" 'BEGIN {printf "%.2f", b / n}')"
    done
  fi
  echo
  echo "<details><summary>every run</summary>"
  echo
  echo "| round | target | req/s | p50 µs | p99 µs | p99.9 µs | max µs | peak RSS kB | server CPU µs/req | server CPU % | redis CPU % | machine CPU % | requests | non-2xx | socket errors | stored (warm-up + run) | Redis calls per request (scripts' included) |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  awk -F'\t' '{printf "| %s | %s %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $18, $10, $11, $17, $12, $13, $14, $15, $16}' "$RUNS"
  echo
  echo "</details>"
}

mkdir -p "$BENCH_DIR/results"
OUT=$BENCH_DIR/results/$(date +%Y-%m-%dT%H%M%S).md
report >"$OUT"
echo
cat "$OUT"
echo
echo "written to ${OUT#"$ROOT"/}"
FAILED=0
