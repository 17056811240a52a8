#!/usr/bin/env bash
# The delivery benchmark, on loopback, on this machine: `make bench-delivery` (see README.md
# here, "Delivery benchmark"). Issue 4's "Done when":
#
#   fast  queue BENCH_DELIVERY_N (100,000) activities over BENCH_DELIVERY_CONVS (1,000)
#         conversations, then start a dispatcher (bot.concurrency 32) in front of a bot that
#         answers at once: deliveries/s from the dispatcher's start until the stream is empty;
#   slow  queue BENCH_DELIVERY_SLOW_N (2,560 = 64 x 40) activities over 1,000 conversations
#         (2-3 each, so the order within a conversation is exercised), a bot that takes 1 s,
#         bot.concurrency 64: delivered/s over a steady window against the bound
#         concurrency / delay = 64/s, PASS within 10%, MISS otherwise.
#
# Pieces: one redis-server on a unix socket (appendonly yes, appendfsync BENCH_FSYNC), the
# test bot tests/tools/slow_bot (--quiet, a loopback port), and botgate twice per case:
# `serve --role ingress` loaded by wrk until the stream holds exactly the activities wanted
# (the real ingress path: every request its own activity id, authentication off, no
# Authorization header), stopped; then `serve --role dispatcher`, timed until XLEN and
# XPENDING are both 0. Checks the bot's record against the stream: every activity received,
# none twice, no retry, no dead letter, each conversation's activities in stream order and
# never two of one conversation in flight at once; in-flight at most bot.concurrency. Fails
# (exit 1) on any of those; a MISS of the slow case's target is reported, not a failure.
# Writes the report to tests/bench/results/delivery-<date>.md and prints it.
#
# Knobs (environment): BENCH_DELIVERY_N (100000), BENCH_DELIVERY_CONVS (1000),
# BENCH_DELIVERY_CONCURRENCY (32), BENCH_DELIVERY_SLOW_N (2560), BENCH_DELIVERY_SLOW_CONVS
# (1000), BENCH_DELIVERY_SLOW_CONCURRENCY (64), BENCH_DELIVERY_SLOW_DELAY_MS (1000),
# BENCH_DELIVERY_SLOW_SKIP_S (5), BENCH_DELIVERY_CASES ("fast slow"), BENCH_DELIVERY_STALL_S
# (60), BENCH_FSYNC (always), BENCH_LOAD_CONNECTIONS (32), BOTGATE_BIN (build/botgate),
# SLOW_BOT_BIN (build/tests/slow_bot), BENCH_PORT_BASE (28600), BENCH_KEEP (0).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=$ROOT/tests/bench

N=${BENCH_DELIVERY_N:-100000}
CONVS=${BENCH_DELIVERY_CONVS:-1000}
CONC=${BENCH_DELIVERY_CONCURRENCY:-32}
SLOW_N=${BENCH_DELIVERY_SLOW_N:-2560}
SLOW_CONVS=${BENCH_DELIVERY_SLOW_CONVS:-1000}
SLOW_CONC=${BENCH_DELIVERY_SLOW_CONCURRENCY:-64}
SLOW_DELAY=${BENCH_DELIVERY_SLOW_DELAY_MS:-1000}
SLOW_SKIP=${BENCH_DELIVERY_SLOW_SKIP_S:-5}
CASES=${BENCH_DELIVERY_CASES:-fast slow}
STALL=${BENCH_DELIVERY_STALL_S:-60}
FSYNC=${BENCH_FSYNC:-always}
LOAD_CONNS=${BENCH_LOAD_CONNECTIONS:-32}
BIN=${BOTGATE_BIN:-$ROOT/build/botgate}
BOT=${SLOW_BOT_BIN:-$ROOT/build/tests/slow_bot}
PORT_BASE=${BENCH_PORT_BASE:-28600}
KEEP=${BENCH_KEEP:-0}
STREAM=botgate:activities
GROUP=botgate      # the dispatcher's consumer group (include/botgate/dispatcher.h)
BODY_BYTES=1024    # each activity's body, as in activity.lua
SLOW_TAIL=2        # seconds left out at the end of the slow case's window
TARGET_SHARE=0.10  # the slow case: within 10% of concurrency / delay

COMMAND="BENCH_DELIVERY_N=$N BENCH_DELIVERY_CONVS=$CONVS BENCH_DELIVERY_CONCURRENCY=$CONC"
COMMAND+=" BENCH_DELIVERY_SLOW_N=$SLOW_N BENCH_DELIVERY_SLOW_CONVS=$SLOW_CONVS"
COMMAND+=" BENCH_DELIVERY_SLOW_CONCURRENCY=$SLOW_CONC BENCH_DELIVERY_SLOW_DELAY_MS=$SLOW_DELAY"
COMMAND+=" BENCH_DELIVERY_SLOW_SKIP_S=$SLOW_SKIP BENCH_DELIVERY_CASES=\"$CASES\" BENCH_FSYNC=$FSYNC"
COMMAND+=" BENCH_LOAD_CONNECTIONS=$LOAD_CONNS bash tests/bench/delivery.sh"

BENCH_NAME=bench-delivery
# shellcheck source=tests/bench/lib.sh
source "$BENCH_DIR/lib.sh"

# --- arguments -----------------------------------------------------------------------
# redis.maxlen defaults to 1,000,000: more would be refused queue_full.
int_in BENCH_DELIVERY_N "$N" 1 1000000
int_in BENCH_DELIVERY_CONVS "$CONVS" 1 999999
int_in BENCH_DELIVERY_CONCURRENCY "$CONC" 1 4096
int_in BENCH_DELIVERY_SLOW_N "$SLOW_N" 1 1000000
int_in BENCH_DELIVERY_SLOW_CONVS "$SLOW_CONVS" 1 999999
int_in BENCH_DELIVERY_SLOW_CONCURRENCY "$SLOW_CONC" 1 4096
int_in BENCH_DELIVERY_SLOW_DELAY_MS "$SLOW_DELAY" 1 60000
int_in BENCH_DELIVERY_SLOW_SKIP_S "$SLOW_SKIP" 0 3600
int_in BENCH_DELIVERY_STALL_S "$STALL" 5 3600
int_in BENCH_LOAD_CONNECTIONS "$LOAD_CONNS" 1 1000
int_in BENCH_PORT_BASE "$PORT_BASE" 1024 64000
case $FSYNC in always | everysec | no) ;; *) die "BENCH_FSYNC=$FSYNC: want always, everysec or no" ;; esac
want_fast=0 want_slow=0
for c in $CASES; do
  case $c in
    fast) want_fast=1 ;;
    slow) want_slow=1 ;;
    *) die "BENCH_DELIVERY_CASES: unknown case '$c' (fast, slow)" ;;
  esac
done
((want_fast + want_slow > 0)) || die "BENCH_DELIVERY_CASES is empty"

need_tools wrk redis-server redis-cli curl awk
[[ -x $BIN ]] || die "$BIN not found or not executable: build it first ('make build'; 'make bench-delivery' builds), or set BOTGATE_BIN"
[[ -x $BOT ]] || die "$BOT not found or not executable: 'make build' builds it (tests/tools/slow_bot.c), or set SLOW_BOT_BIN"

# --- processes: every one started here is stopped on exit, whatever the exit (lib.sh) --
bench_tmp botgate-bench-delivery
now_us() { echo "${EPOCHREALTIME/./}"; } # CLOCK_REALTIME, as slow_bot's t_us
HAVE_SS=0
command -v ss >/dev/null && HAVE_SS=1
cpu_pct() { # ticks µs: CPU % over that wall time, 100 = one core
  awk -v t="$1" -v us="$2" -v hz="$CLK_TCK" 'BEGIN {printf "%.0f", (us > 0 ? 100 * t / hz / (us / 1e6) : 0)}'
}

# --- redis -----------------------------------------------------------------------------
log "work dir $TMP"
REDIS_SOCK=$TMP/redis.sock
mkdir -p "$TMP/redis" "$TMP/state" "$TMP/bot"
# appendfsync always: the ingress' 202 and the dispatcher's acknowledgement both mean "on
# disk" (BENCH_FSYNC=everysec shows what that costs). No automatic AOF rewrite inside a
# measurement: the data set is flushed and the AOF rewritten between the cases instead.
start_redis

xlen() { rcli xlen "$1" 2>/dev/null || echo -1; }
xpending() { # the group's pending count; -1 while the group does not exist
  local out
  out=$(rcli xpending "$STREAM" "$GROUP" 2>/dev/null | head -n 1) || true
  [[ $out =~ ^[0-9]+$ ]] && echo "$out" || echo -1
}

# --- the bot -------------------------------------------------------------------------------
BOT_DIR=$TMP/bot
bot_file() { # name content: written through a temporary name and renamed (slow_bot reads it per request)
  printf '%s\n' "$2" >"$BOT_DIR/.$1.tmp"
  mv -f "$BOT_DIR/.$1.tmp" "$BOT_DIR/$1"
}
bot_file delay_ms 0
start_bg slow_bot "$BOT" --dir "$BOT_DIR" --port 0 --listen 127.0.0.1 --quiet
BOT_PID=$LAST_PID
wait_ready_file "$BOT_PID" "$BOT_DIR/ready" 10 slow_bot slow_bot.log
BOT_PORT=$(head -n 1 "$BOT_DIR/ready")
[[ $BOT_PORT =~ ^[0-9]+$ ]] || die "slow_bot's ready file says '$BOT_PORT'"
BOT_URL=http://127.0.0.1:$BOT_PORT/api/messages
wait_http "$BOT_PID" "http://127.0.0.1:$BOT_PORT/stats" 10 || die "slow_bot does not answer GET /stats"
bot_stats() { curl -s --max-time 5 "http://127.0.0.1:$BOT_PORT/stats"; }
bot_stat() { # json key: one integer of GET /stats
  local v
  v=$(grep -o "\"$2\":[0-9]*" <<<"$1" | head -n 1 | cut -d: -f2)
  echo "${v:-}"
}
log "slow_bot on $BOT_URL (files in $BOT_DIR)"

# --- botgate ---------------------------------------------------------------------------
pick_port; INGRESS_PORT=$PORT
pick_port; DISPATCHER_PORT=$PORT
write_conf() { # file port concurrency
  cat >"$1" <<EOF
listen:
  - {address: 127.0.0.1, port: $2, tls: false}
redis: {url: "unix://$REDIS_SOCK"}
bot: {url: "$BOT_URL", concurrency: $3}
state_dir: "$TMP/state"
admin: {listen: ""}
relay: {listen: ""}
log: {access: off}
EOF
}

# --- queueing: wrk against botgate --role ingress until the stream holds n -------------
# One request per activity, each its own id (botgate drops repeated ids), conversations
# round-robin: activity k (1..n) is in conversation (k - 1) mod convs. Past n, wrk repeats
# activity n (a duplicate: answered 202, not stored) until the script stops it.
LUA=$TMP/queue.lua
cat >"$LUA" <<'EOF'
-- Written by tests/bench/delivery.sh: POST /api/messages, a ~1 KB Teams message activity,
-- activity id "act-TAG-<k>" and conversation "a:bench-TAG-<k mod CONVS>", k = 1, 2, ... N,
-- then N again (a duplicate, not stored). Fixed-width numbers: every body is BYTES long.
local N = assert(tonumber(os.getenv("BENCH_Q_N")), "BENCH_Q_N")
local CONVS = assert(tonumber(os.getenv("BENCH_Q_CONVS")), "BENCH_Q_CONVS")
local TAG = assert(os.getenv("BENCH_Q_TAG"), "BENCH_Q_TAG")
local BYTES = assert(tonumber(os.getenv("BENCH_Q_BYTES")), "BENCH_Q_BYTES")
assert(TAG:match("^[%w]+$"), "BENCH_Q_TAG: letters and digits")
local ID_MARK, CONV_MARK = "@@@@@@@@", "~~~~~~"
local tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"

local function activity(id, conv, text)
  return table.concat({
    '{"text":"', text, '","textFormat":"plain","type":"message",',
    '"timestamp":"2024-05-14T09:21:37.5151719Z",',
    '"localTimestamp":"2024-05-14T11:21:37.5151719+02:00",',
    '"id":"act-', TAG, '-', id, '","channelId":"msteams",',
    '"serviceUrl":"https://smba.trafficmanager.net/emea/",',
    '"from":{"id":"29:1XbHsQc0pW4zNfR2kLmT8vYgJd6aE3uOiPq9rStUvWxYz-AbCdEfGhIjKlMnOpQrStUvWx",',
    '"name":"Ada Lovelace","aadObjectId":"9d1f3c2a-6b7e-4f80-a1b2-c3d4e5f60718"},',
    '"conversation":{"conversationType":"personal","tenantId":"', tenant, '",',
    '"id":"a:bench-', TAG, '-', conv, '"},',
    '"recipient":{"id":"28:5c5d7cb1-0f0b-4f3c-9a6e-3b8f2c1e9d41","name":"Helpdesk Bot"},',
    '"channelData":{"tenant":{"id":"', tenant, '"}},"locale":"en-GB"}',
  })
end
local words = "Hi, since this morning's update my laptop will not connect to the VPN. "
  .. "I restarted twice and re-entered my password, the client still says "
  .. "authentication failed after about ten seconds. Could someone have a look? "
local room = BYTES - #activity(ID_MARK, CONV_MARK, "")
assert(room > 0, "BENCH_Q_BYTES too small")
local body = activity(ID_MARK, CONV_MARK, words:rep(math.ceil(room / #words) + 1):sub(1, room))
assert(#body == BYTES)

wrk.method = "POST"
wrk.path = "/api/messages"
wrk.headers["Content-Type"] = "application/json; charset=utf-8"
wrk.headers["User-Agent"] = "Microsoft-SkypeBotApi (Microsoft-BotFramework/3.0)"
wrk.body = body

local p1, p2, p3
local counter = 0
local thread_list = {}
answered, not202 = 0, 0 -- per-thread globals, read by done()

function setup(thread)
  thread_list[#thread_list + 1] = thread
end

function init(args)
  local req = wrk.format(nil, nil, nil, body)
  local a, b = req:find(ID_MARK, 1, true)
  local c, d = req:find(CONV_MARK, 1, true)
  assert(a and c and b < c, "placeholders not found")
  p1, p2, p3 = req:sub(1, a - 1), req:sub(b + 1, c - 1), req:sub(d + 1)
end

local function make(k)
  return p1 .. string.format("%08d", k) .. p2 .. string.format("%06d", (k - 1) % CONVS) .. p3
end

-- wrk calls request() once before the run to check the script, and sends nothing of it:
-- that call must not use up activity 1.
local checked = false
function request()
  if not checked then
    checked = true
    return make(1)
  end
  counter = counter + 1
  return make(counter <= N and counter or N)
end

function response(status)
  answered = answered + 1
  if status ~= 202 then not202 = not202 + 1 end
  -- a bound of its own: the script stops wrk once the stream holds N
  if answered >= 4 * N + 10000 then wrk.thread:stop() end
end

function done(summary)
  local a, bad = 0, 0
  for _, t in ipairs(thread_list) do
    a = a + (t:get("answered") or 0)
    bad = bad + (t:get("not202") or 0)
  end
  local e = summary.errors
  io.write(string.format("QUEUE answered=%d not202=%d requests=%d connect=%d read=%d write=%d timeout=%d\n",
    a, bad, summary.requests, e.connect, e.read, e.write, e.timeout))
end
EOF

# The activity ids in stream order, read by a script inside Redis (the entry's body bytes
# are in the msgpack verbatim), 5,000 entries a call.
ORDER_SCRIPT="local r = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local out = {''}
for i, e in ipairs(r) do
  out[1] = e[1]
  local v = e[2][2]
  out[#out + 1] = v and string.match(v, '\"id\":\"(act%-[^\"]+)\"') or ('?' .. e[1])
end
return out"
stream_order() { # file: the activity ids of the stream, one a line, in stream order
  local file=$1 cursor=- i out last
  : >"$file"
  for ((i = 0; i < 1000000 / 5000 + 2; i++)); do
    out=$(rcli eval "$ORDER_SCRIPT" 1 "$STREAM" "$cursor" 5000) || die "reading the stream's order failed: $out"
    last=$(head -n 1 <<<"$out")
    [[ -n $last ]] || return 0
    tail -n +2 <<<"$out" >>"$file"
    cursor="($last"
  done
  die "the stream's order: more pages than the stream can hold"
}

Q_RATE="" Q_SECS=""
queue() { # case n convs: through a fresh ingress botgate; the stream must hold exactly n after
  local case=$1 n=$2 convs=$3 conf=$TMP/ingress.yaml pid wpid t0 t1 len prev since i out line
  log "$case: queueing $n activities over $convs conversations through botgate --role ingress (wrk -t1 -c$LOAD_CONNS, http://127.0.0.1:$INGRESS_PORT)"
  redis_reset
  write_conf "$conf" "$INGRESS_PORT" 32
  start_bg "ingress-$case" "$BIN" serve -c "$conf" --role ingress
  pid=$LAST_PID
  wait_http "$pid" "http://127.0.0.1:$INGRESS_PORT/readyz" 30 || die "botgate --role ingress did not answer GET /readyz 200 within 30 s (see ingress-$case.log)"
  out=$TMP/wrk-$case.out
  # wrk's own bound: far beyond the time the load needs at 100/s; the loop below stops it
  # (SIGINT: wrk prints its summary and runs done()).
  BENCH_Q_N=$n BENCH_Q_CONVS=$convs BENCH_Q_TAG="$case$(date +%s)" BENCH_Q_BYTES=$BODY_BYTES \
    wrk -t1 -c"$LOAD_CONNS" -d"$((n / 100 + 120))s" -s "$LUA" "http://127.0.0.1:$INGRESS_PORT/api/messages" >"$out" 2>&1 &
  wpid=$!
  PIDS+=("$wpid")
  t0=$(now_us)
  prev=-1 since=$t0
  for ((i = 0; i < (n / 100 + 120) * 20; i++)); do
    len=$(xlen "$STREAM")
    ((len >= n)) && break
    kill -0 "$wpid" 2>/dev/null || { cat "$out" >&2; die "$case: wrk ended with $len of $n activities stored"; }
    if ((len != prev)); then
      prev=$len since=$(now_us)
    elif (($(now_us) - since > STALL * 1000000)); then
      kill -INT "$wpid" 2>/dev/null || true
      sleep 1
      cat "$out" >&2
      die "$case: the stream stayed at $len of $n activities for ${STALL}s while wrk was loading (see ingress-$case.log)"
    fi
    sleep 0.05
  done
  t1=$(now_us)
  # SIGINT: wrk stops, prints its summary and runs done(); TERM only if it does not.
  kill -INT "$wpid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$wpid" 2>/dev/null || break
    sleep 0.1
  done
  stop_pid "$wpid" 5
  stop_pid "$pid" 30
  ((STOP_RC == 0)) || log "$case: note: botgate --role ingress exited with status $STOP_RC on SIGTERM"
  len=$(xlen "$STREAM")
  ((len == n)) || die "$case: the stream holds $len activities after the load, $n wanted"
  line=$(grep '^QUEUE ' "$out") || { cat "$out" >&2; die "$case: no QUEUE line in wrk's output (done() hook)"; }
  local kv k v
  local answered=0 not202=0 connect=0 write=0 timeout=0
  for kv in ${line#QUEUE }; do
    k=${kv%%=*} v=${kv#*=}
    case $k in answered | not202 | connect | write | timeout) printf -v "$k" '%s' "$v" ;; esac
  done
  # A refused request (503, ...) is an error: the activity would not be stored.
  ((not202 == 0)) || { cat "$out" >&2; die "$case: $not202 of $answered answers while queueing were not 202"; }
  # read errors: wrk's connections cut by the SIGINT, or by the stopped botgate
  ((connect + write + timeout == 0)) || log "$case: note: wrk socket errors while queueing: connect $connect, write $write, timeout $timeout"
  Q_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1e6}')
  Q_RATE=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", (b > a ? n / ((b - a) / 1e6) : 0)}')
  stream_order "$TMP/order-$case.txt"
  local ids
  ids=$(wc -l <"$TMP/order-$case.txt")
  ((ids == n)) || die "$case: $ids activity ids read back from the stream, $n expected"
  grep -q '^?' "$TMP/order-$case.txt" && die "$case: a stream entry without a readable activity id"
  log "  $n activities stored in ${Q_SECS}s (~$Q_RATE/s through ingress; $answered answers, duplicates of the last included); XLEN $len"
}

# --- one case: the dispatcher against the bot -------------------------------------------
# The bot's record (received.jsonl) against the stream's order, one awk pass. Arrival
# lines: activity, conversation, t_us, attempt, body_len; end lines: outcome.
analyze() { # order-file jsonl skip_s tail_s: prints key=value ...
  awk -v skip="$3" -v tail_s="$4" -v bytes="$BODY_BYTES" '
    function num(line, key) {
      if (match(line, "\"" key "\":-?[0-9]+")) return substr(line, RSTART + length(key) + 3, RLENGTH - length(key) - 3) + 0
      return -1
    }
    function str(line, key) {
      if (match(line, "\"" key "\":\"[^\"]*\"")) return substr(line, RSTART + length(key) + 4, RLENGTH - length(key) - 5)
      return ""
    }
    FNR == NR { rank[$1] = FNR; total = FNR; next }
    /"done":true/ {
      ends++
      id = str($0, "activity_id"); o = str($0, "outcome"); st = num($0, "status")
      if (o != "answered") not_answered++
      else if (st < 200 || st > 299) not_2xx++
      c = conv_of[id]
      if (c in busy && busy[c] > 0) busy[c]--
      next
    }
    {
      n++
      id = str($0, "activity_id"); c = str($0, "conversation_id")
      t[n] = num($0, "t_us")
      if (num($0, "attempt") != 1) retries++
      if (num($0, "body_len") != bytes) bad_len++
      if ($0 ~ /"authorization":true/) with_auth++
      if (!(id in rank)) unknown++
      if (id in seen) dup++
      else {
        seen[id] = 1
        # first arrival: its rank in the stream must follow the previous one of its conversation
        if ((c in last) && rank[id] < last[c]) order_bad++
        last[c] = rank[id]
      }
      if ((c in busy) && busy[c] > 0) overlap++
      busy[c]++
      conv_of[id] = c
    }
    END {
      missing = 0
      for (id in rank) if (!(id in seen)) missing++
      first = n > 0 ? t[1] : 0; lastt = n > 0 ? t[n] : 0
      rate = (n > 1 && lastt > first) ? (n - 1) / ((lastt - first) / 1e6) : 0
      # steady window: from the first arrival at or after first + skip to the first at or after
      # last - tail_s; arrivals counted from the one to the other (the second excluded)
      k1 = 0; k2 = 0
      for (i = 1; i <= n; i++) {
        if (!k1 && t[i] >= first + skip * 1e6) k1 = i
        if (!k2 && t[i] >= lastt - tail_s * 1e6) k2 = i
      }
      srate = 0; secs = 0
      if (k1 && k2 > k1 && t[k2] > t[k1]) { secs = (t[k2] - t[k1]) / 1e6; srate = (k2 - k1) / secs }
      printf "arrivals=%d ends=%d distinct=%d dup=%d missing=%d unknown=%d retries=%d not_answered=%d not_2xx=%d order_bad=%d overlap=%d bad_len=%d with_auth=%d first_us=%s last_us=%s bot_rate=%.2f steady_rate=%.3f steady_s=%.1f steady_n=%d\n",
        n, ends, n - dup, dup + 0, missing, unknown + 0, retries + 0, not_answered + 0, not_2xx + 0, order_bad + 0,
        overlap + 0, bad_len + 0, with_auth + 0, sprintf("%.0f", first), sprintf("%.0f", lastt), rate, srate, secs, k2 - k1
    }' "$1" "$2"
}

RESULTS=() # one line per case: key=value ...
run_case() { # case n convs concurrency delay_ms
  local case=$1 n=$2 convs=$3 conc=$4 delay=$5 conf pid
  conf=$TMP/dispatcher-$case.yaml
  local t0 t1 len pend prev since i deadline r0 r1 b0 b1 m0 m1 g1 rss load0 load1 st rc
  queue "$case" "$n" "$convs"
  bot_file delay_ms "$delay"
  : >"$BOT_DIR/received.jsonl" # slow_bot keeps it open with O_APPEND: truncated, not removed
  curl -s -o /dev/null --max-time 5 -X POST "http://127.0.0.1:$BOT_PORT/stats/reset" || die "slow_bot: POST /stats/reset failed"
  write_conf "$conf" "$DISPATCHER_PORT" "$conc"
  # Bounded: twice the time the concurrency bound allows (delay > 0), or 100/s at least,
  # plus a minute; and no progress for STALL seconds fails at once.
  deadline=$(awk -v n="$n" -v c="$conc" -v d="$delay" 'BEGIN {a = n / 100; b = 2 * n * d / 1000 / c; printf "%d", (a > b ? a : b) + 60}')
  log "$case: botgate --role dispatcher, bot.concurrency $conc, bot delay ${delay} ms, $n activities queued (timeout ${deadline}s)"
  rcli config resetstat >/dev/null
  load0=$(loadavg)
  m0=$(machine_jiffies)
  r0=$(cpu_ticks "$REDIS_PID")
  b0=$(cpu_ticks "$BOT_PID")
  t0=$(now_us)
  start_bg "dispatcher-$case" "$BIN" serve -c "$conf" --role dispatcher
  pid=$LAST_PID
  prev=-1 since=$t0
  local done=0 next_log=$((t0 + 10000000)) conns max_conns=0 max_pend=0
  for ((i = 0; i < deadline * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || die "$case: botgate --role dispatcher exited (see dispatcher-$case.log)"
    len=$(xlen "$STREAM")
    pend=$(xpending)
    ((pend > max_pend)) && max_pend=$pend
    if ((len == 0 && pend == 0)); then
      done=1
      break
    fi
    t1=$(now_us)
    if ((len != prev)); then
      prev=$len since=$t1
    elif ((t1 - since > STALL * 1000000)); then
      log "$case: no progress for ${STALL}s: XLEN $len, XPENDING $pend, retry hash $(rcli hlen "$STREAM:retry"), dead letters $(xlen "$STREAM:dlq"), bot $(bot_stats)"
      die "$case: the dispatcher stopped delivering with $len activities left (see dispatcher-$case.log)"
    fi
    # botgate's connections to the bot, sampled every half second: with a bot that answers
    # at once slow_bot never holds two requests, so this is where the concurrency shows
    if ((HAVE_SS && i % 5 == 2)); then
      conns=$(ss -Htn state established "( sport = :$BOT_PORT )" 2>/dev/null | wc -l)
      ((conns > max_conns)) && max_conns=$conns
    fi
    if ((t1 >= next_log)); then
      log "  $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", (b - a) / 1e6}')s: $((n - len)) delivered, XLEN $len, XPENDING $pend"
      next_log=$((next_log + 10000000))
    fi
    sleep 0.1
  done
  t1=$(now_us)
  ((done)) || die "$case: the stream still holds $len activities (XPENDING $pend) after ${deadline}s"
  g1=$(cpu_ticks "$pid")
  rss=$(vm_hwm_kb "$pid")
  r1=$(cpu_ticks "$REDIS_PID")
  b1=$(cpu_ticks "$BOT_PID")
  m1=$(machine_jiffies)
  load1=$(loadavg)
  st=$(bot_stats)
  stop_pid "$pid" 30
  rc=$STOP_RC
  ((rc == 0)) || log "$case: botgate --role dispatcher exited with status $rc on SIGTERM (0 expected)"
  # Redis commands per delivery (a script's own calls listed beside the EVAL that ran them),
  # this script's polling left out
  local calls
  calls=$(rcli info commandstats | tr -d '\r' | awk -F'[:=,]' -v n="$n" '
    /^cmdstat_/ {c = substr($1, 9); if (c ~ /^(xlen|xpending|hlen|info|config\|resetstat|ping)$/) next; printf "%s%s %.3f", sep, c, $3 / n; sep = ", "}')
  local elapsed_us=$((t1 - t0)) dlq retry_left warns
  # botgate's warnings and errors during the run (authentication off is expected: not counted)
  warns=$(grep -E '^[0-9T:.-]+Z (warn|error) ' "$TMP/dispatcher-$case.log" | grep -vc 'authentication is OFF' || true)
  if ((warns > 0)); then
    log "$case: botgate logged $warns warnings or errors; the first ones:"
    grep -E '^[0-9T:.-]+Z (warn|error) ' "$TMP/dispatcher-$case.log" | grep -v 'authentication is OFF' | head -n 5 >&2
  fi
  dlq=$(xlen "$STREAM:dlq")
  retry_left=$(rcli hlen "$STREAM:retry")
  local a
  a=$(analyze "$TMP/order-$case.txt" "$BOT_DIR/received.jsonl" "$([[ $case == slow ]] && echo "$SLOW_SKIP" || echo 0)" "$([[ $case == slow ]] && echo "$SLOW_TAIL" || echo 0)")
  local kv k v
  local arrivals=0 ends=0 distinct=0 dup=0 missing=0 unknown=0 retries=0 not_answered=0 not_2xx=0
  local order_bad=0 overlap=0 bad_len=0 with_auth=0 first_us=0 bot_rate=0 steady_rate=0
  local steady_s=0 steady_n=0
  for kv in $a; do
    k=${kv%%=*} v=${kv#*=}
    printf -v "$k" '%s' "$v"
  done
  local received max_in_flight gone closed
  received=$(bot_stat "$st" received)
  max_in_flight=$(bot_stat "$st" max_in_flight)
  gone=$(bot_stat "$st" gone)
  closed=$(bot_stat "$st" closed)
  local rate first_ms
  rate=$(awk -v n="$n" -v us="$elapsed_us" 'BEGIN {printf "%.1f", n / (us / 1e6)}')
  first_ms=$(awk -v a="$t0" -v b="$first_us" 'BEGIN {printf "%.0f", (b - a) / 1000}')
  local line elapsed_s
  elapsed_s=$(awk -v u="$elapsed_us" 'BEGIN {printf "%.2f", u / 1e6}')
  line="case=$case n=$n convs=$convs conc=$conc delay=$delay elapsed_s=$elapsed_s"
  line+=" rate=$rate bot_rate=$bot_rate steady_rate=$steady_rate steady_s=$steady_s steady_n=$steady_n"
  line+=" first_ms=$first_ms"
  ((HAVE_SS)) || max_conns=-
  line+=" max_conns=$max_conns received=${received:--} max_in_flight=${max_in_flight:--} gone=${gone:--} closed=${closed:--}"
  line+=" arrivals=$arrivals distinct=$distinct dup=$dup missing=$missing unknown=$unknown retries=$retries"
  line+=" not_answered=$not_answered not_2xx=$not_2xx order_bad=$order_bad overlap=$overlap bad_len=$bad_len with_auth=$with_auth"
  line+=" dlq=$dlq retry_left=$retry_left exit=$rc warns=$warns max_pend=$max_pend read_ahead=$((conc * 16 < 256 ? 256 : conc * 16))"
  line+=" us_per=$(awk -v t="$g1" -v hz="$CLK_TCK" -v n="$n" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')"
  line+=" calls=${calls// /_}"
  line+=" cpu=$(cpu_pct "$g1" "$elapsed_us") rss_kb=$rss redis_cpu=$(cpu_pct $((r1 - r0)) "$elapsed_us")"
  line+=" bot_cpu=$(cpu_pct $((b1 - b0)) "$elapsed_us") machine_cpu=$(busy_pct "$m0" "$m1")"
  line+=" load0=${load0// /,} load1=${load1// /,} q_rate=$Q_RATE q_secs=$Q_SECS"
  RESULTS+=("$line")
  log "  $n delivered in ${elapsed_s}s: $rate/s (bot side $bot_rate/s$([[ $case == slow ]] && echo ", steady $steady_rate/s over ${steady_s}s")); max in flight ${max_in_flight:--}; botgate CPU $(cpu_pct "$g1" "$elapsed_us")%, peak RSS $rss kB"

  # Refused: a benchmark of losses, duplicates or disorder.
  local bad=()
  [[ $received == "$n" ]] || bad+=("slow_bot received ${received:-?} requests, $n activities were queued")
  ((missing == 0)) || bad+=("$missing activities never reached the bot")
  ((dup == 0)) || bad+=("$dup duplicate deliveries (nothing failed)")
  ((unknown == 0)) || bad+=("$unknown requests for activities that were not in the stream")
  ((retries == 0)) || bad+=("$retries requests with X-Botgate-Attempt other than 1")
  ((ends == arrivals)) || bad+=("slow_bot recorded $arrivals arrivals but $ends ends")
  ((with_auth == 0)) || bad+=("$with_auth requests carried an Authorization header (none was sent)")
  ((not_answered + not_2xx == 0)) || bad+=("$not_answered requests not answered, $not_2xx answered non-2xx")
  ((order_bad == 0)) || bad+=("$order_bad activities reached the bot before an earlier one of their conversation")
  ((overlap == 0)) || bad+=("$overlap times two activities of one conversation were in flight at once")
  ((bad_len == 0)) || bad+=("$bad_len bodies not $BODY_BYTES bytes")
  ((dlq == 0)) || bad+=("$dlq dead letters")
  ((retry_left == 0)) || bad+=("$retry_left entries left in the retry hash")
  [[ -n $max_in_flight ]] && ((max_in_flight <= conc)) || bad+=("slow_bot saw ${max_in_flight:-?} requests in flight, bot.concurrency is $conc")
  ((${gone:-0} + ${closed:-0} == 0)) || bad+=("slow_bot: ${gone:-?} clients gone, ${closed:-?} closed")
  if ((${#bad[@]} > 0)); then
    local b
    for b in "${bad[@]}"; do log "$case: $b"; done
    die "$case: ${bad[0]}$( ((${#bad[@]} > 1)) && echo " (and $((${#bad[@]} - 1)) more, above)")"
  fi
}

# --- run ---------------------------------------------------------------------------------
measure_busy_before
log "command: $COMMAND"
if ((want_fast)); then run_case fast "$N" "$CONVS" "$CONC" 0; fi
if ((want_slow)); then run_case slow "$SLOW_N" "$SLOW_CONVS" "$SLOW_CONC" "$SLOW_DELAY"; fi

# --- report -------------------------------------------------------------------------------
field() { # line key
  local kv
  for kv in $1; do [[ ${kv%%=*} == "$2" ]] && { echo "${kv#*=}"; return; }; done
  echo -
}
SLOW_BOUND=$(awk -v c="$SLOW_CONC" -v d="$SLOW_DELAY" 'BEGIN {printf "%.1f", c * 1000 / d}')
SLOW_RATIO="" SLOW_VERDICT=""
for r in "${RESULTS[@]}"; do
  [[ $(field "$r" case) == slow ]] || continue
  SLOW_RATIO=$(awk -v s="$(field "$r" steady_rate)" -v b="$SLOW_BOUND" 'BEGIN {printf "%.3f", (b > 0 ? s / b : 0)}')
  SLOW_VERDICT=$(awk -v x="$SLOW_RATIO" -v m="$TARGET_SHARE" 'BEGIN {print ((x >= 1 - m && x <= 1 + m) ? "PASS" : "MISS")}')
done

machine_facts
V_BOTGATE=$(timeout 5 "$BIN" version 2>&1 | head -n 1 || echo "(botgate version failed)")

report() {
  local r
  echo "# botgate delivery benchmark, $DATE"
  echo
  echo "- machine: $(nproc) cores, $CPU_MODEL, $MEM, Linux $(uname -r); temp dir on $FS;" \
    "load average $LOAD_START at the start, $(loadavg) at the end; CPU ${BUSY_BEFORE}% busy in the second before the start"
  echo "- versions: $V_REDIS; $V_WRK; botgate: $V_BOTGATE"
  echo "- command: \`$COMMAND\`"
  echo "- redis-server on a unix socket, appendonly yes, appendfsync $FSYNC; the bot: tests/tools/slow_bot --quiet on 127.0.0.1"
  echo "- each case: the activities ($BODY_BYTES-byte Teams messages, conversations round-robin) queued first through" \
    "\`botgate serve --role ingress\` (plain HTTP, authentication off, \`wrk -t1 -c$LOAD_CONNS\`), that botgate stopped;" \
    "then \`botgate serve --role dispatcher\` timed from its start until XLEN and XPENDING are 0 (polled every 100 ms)"
  echo
  echo "| case | activities | conversations | bot.concurrency | bot delay ms | delivered/s (start → empty) | bot-side arrivals/s | steady window | target | verdict |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|---|---|"
  for r in "${RESULTS[@]}"; do
    if [[ $(field "$r" case) == fast ]]; then
      printf '| fast | %s | %s | %s | %s | **%s** | %s | — | — | |\n' \
        "$(field "$r" n)" "$(field "$r" convs)" "$(field "$r" conc)" "$(field "$r" delay)" "$(field "$r" rate)" "$(field "$r" bot_rate)"
    else
      printf '| slow | %s | %s | %s | %s | %s | %s | **%s/s** over %s s (%s arrivals) | %s/s ± 10%% (ratio %s) | %s |\n' \
        "$(field "$r" n)" "$(field "$r" convs)" "$(field "$r" conc)" "$(field "$r" delay)" "$(field "$r" rate)" "$(field "$r" bot_rate)" \
        "$(field "$r" steady_rate)" "$(field "$r" steady_s)" "$(field "$r" steady_n)" \
        "$SLOW_BOUND" "$SLOW_RATIO" "$SLOW_VERDICT"
    fi
  done
  echo
  echo "| case | elapsed s | first delivery ms | max in flight at the bot | connections to the bot | botgate CPU µs/delivery | botgate CPU % | botgate peak RSS MiB | Redis CPU % | slow_bot CPU % | machine CPU % | load average before → after | queued through ingress |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
  for r in "${RESULTS[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s → %s | %s/s (%s s) |\n' \
      "$(field "$r" case)" "$(field "$r" elapsed_s)" "$(field "$r" first_ms)" "$(field "$r" max_in_flight)" "$(field "$r" max_conns)" "$(field "$r" us_per)" \
      "$(field "$r" cpu)" "$(awk -v k="$(field "$r" rss_kb)" 'BEGIN {printf "%.1f", k / 1024}')" "$(field "$r" redis_cpu)" \
      "$(field "$r" bot_cpu)" "$(field "$r" machine_cpu)" "$(field "$r" load0 | tr , ' ')" "$(field "$r" load1 | tr , ' ')" \
      "$(field "$r" q_rate)" "$(field "$r" q_secs)"
  done
  echo
  echo "Checked in every case (the run fails otherwise): the bot received every queued activity exactly once" \
    "(received, duplicates, missing), every request was attempt 1 and answered 2xx, no dead letter, no retry state left," \
    "each conversation's activities arrived in stream order and never two at once, every body $BODY_BYTES bytes," \
    "in flight at the bot at most bot.concurrency."
  echo
  echo "| case | received | duplicates | missing | retries | order violations | overlaps | dead letters | botgate warnings | botgate exit on SIGTERM | peak XPENDING (read-ahead) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for r in "${RESULTS[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s (%s) |\n' "$(field "$r" case)" "$(field "$r" received)" "$(field "$r" dup)" \
      "$(field "$r" missing)" "$(field "$r" retries)" "$(field "$r" order_bad)" "$(field "$r" overlap)" "$(field "$r" dlq)" \
      "$(field "$r" warns)" "$(field "$r" exit)" "$(field "$r" max_pend)" "$(field "$r" read_ahead)"
  done
  echo
  echo "- delivered/s (start → empty): activities ÷ the time from the dispatcher's start until the stream was empty" \
    "(its start-up, the first read and the last acknowledgement included; ±100 ms polling)."
  echo "- bot-side arrivals/s: (arrivals − 1) ÷ (last arrival − first) in slow_bot's record (in the slow case" \
    "raised by the first wave: bot.concurrency activities arrive at once)."
  if ((want_slow)); then
    echo "- steady window (slow case): from the first arrival ${SLOW_SKIP} s after the first one to the first arrival" \
      "${SLOW_TAIL} s before the last one, arrivals counted from the one to the other; the bound is bot.concurrency ÷ delay" \
      "= $SLOW_CONC ÷ ${SLOW_DELAY} ms = ${SLOW_BOUND}/s; PASS within ±10%."
  fi
  echo "- max in flight at the bot: slow_bot's max_in_flight. A bot that answers at once answers inside its request" \
    "handler, so it never holds two requests and says 1 whatever botgate's concurrency; connections to the bot" \
    "(established TCP connections to slow_bot's port, sampled every half second, \`ss\`) show how many botgate used."
  for r in "${RESULTS[@]}"; do
    echo "- Redis commands per delivery, $(field "$r" case): $(field "$r" calls | tr _ ' ')"
  done
  echo "- botgate CPU µs/delivery: its CPU time (all threads) during the run ÷ the activities delivered: the steadiest figure on a busy machine."
  echo "- peak XPENDING: the most entries read by the dispatcher and not yet acknowledged, polled every 100 ms;" \
    "the dispatcher reads ahead at most 16 × bot.concurrency (at least 256), plus the acknowledgements on their way to Redis."
  echo "- CPU %: CPU time during the dispatcher's run ÷ its wall time, 100 = one core; machine CPU: all cores, 100 = every core busy."
}

publish_report delivery-
echo "command: $COMMAND"
if [[ -n $SLOW_VERDICT ]]; then
  log "slow case: $(field "${RESULTS[-1]}" steady_rate)/s against the bound ${SLOW_BOUND}/s: ratio $SLOW_RATIO (target 0.90-1.10): $SLOW_VERDICT"
fi
FAILED=0
