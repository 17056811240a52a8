#!/usr/bin/env bash
# The relay benchmark (issue 6), on loopback: what botgate's relay adds to a reply.
#
#   direct  wrk POSTs a small reply straight to the test Connector
#           (tests/tools/fake_connector, HTTPS, keep-alive), with a token it issued;
#   relay   wrk POSTs the same reply to botgate's relay (plain HTTP on loopback), which looks
#           the conversation up in Redis, attaches its cached token and forwards it over
#           HTTPS (libcurl, keep-alive) to the same Connector.
#
# Checks, after the runs: the token endpoint was asked once (at botgate's start) for every
# relayed reply; the Connector recorded as many relayed requests as wrk completed, each with
# botgate's token. The Connector is the same in both rows (it appends one JSON line per
# request to a file), so the difference between the rows is the relay's cost.
#
#   bash tests/bench/relay.sh     knobs: BENCH_SECONDS (10), BENCH_CONNECTIONS (16),
#                                 BOTGATE_BIN (build/botgate), FAKE_CONNECTOR_BIN
#                                 (build/tests/fake_connector), BENCH_PORT_BASE (28800)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_NAME=bench-relay
SECONDS_RUN=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-16}
BIN=${BOTGATE_BIN:-$ROOT/build/botgate}
FC=${FAKE_CONNECTOR_BIN:-$ROOT/build/tests/fake_connector}
PORT_BASE=${BENCH_PORT_BASE:-28800}
KEEP=${BENCH_KEEP:-0}
FSYNC=everysec
APP_ID=bench-relay-app
CONV='a:1bench@thread.skype'
CONV_ENC='a%3A1bench%40thread.skype'
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"

need_tools wrk curl redis-server redis-cli python3
[[ -x $BIN && -x $FC ]] || die "build first: make build ($BIN, $FC)"
bench_tmp botgate-bench-relay
REDIS_SOCK=$TMP/redis.sock
mkdir -p "$TMP/redis" "$TMP/fc" "$TMP/state"

start_redis
pick_port; FC_PORT=$PORT
start_bg connector "$FC" serve --dir "$TMP/fc" --port "$FC_PORT"
FC_PID=$LAST_PID
wait_ready_file "$FC_PID" "$TMP/fc/ready" 30 fake_connector connector.log
SERVICE_URL="https://127.0.0.1:$FC_PORT/teams/"
pick_port; PLAIN_PORT=$PORT
pick_port; RELAY_PORT=$PORT
cat >"$TMP/botgate.yaml" <<YAML
listen:
  - {address: 127.0.0.1, port: $PLAIN_PORT, tls: false}
state_dir: "$TMP/state"
auth:
  app_id: "$APP_ID"
  app_password: "bench-secret"
  openid_metadata_url: "https://127.0.0.1:$FC_PORT/v1/.well-known/openidconfiguration"
  ca_file: "$TMP/fc/ca.pem"
redis:
  url: "unix://$REDIS_SOCK"
admin:
  listen: ""
relay:
  listen: "127.0.0.1:$RELAY_PORT"
  token_url: "https://127.0.0.1:$FC_PORT/botframework.com/oauth2/v2.0/token"
log:
  access: off
  level: warn
YAML
start_bg botgate "$BIN" serve --role ingress -c "$TMP/botgate.yaml"
GATE_PID=$LAST_PID
wait_http "$GATE_PID" "http://127.0.0.1:$PLAIN_PORT/readyz" 30 || die "botgate not ready (see botgate.log)"

# One authenticated activity for the conversation: its serviceUrl goes in the directory.
TOKEN=$("$FC" mint --dir "$TMP/fc" --aud "$APP_ID" --serviceurl "$SERVICE_URL" --exp-in 3600)
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -H "Authorization: Bearer $TOKEN" \
  -d "{\"type\":\"message\",\"id\":\"b1\",\"channelId\":\"msteams\",\"serviceUrl\":\"$SERVICE_URL\",\"conversation\":{\"id\":\"$CONV\"}}" \
  "http://127.0.0.1:$PLAIN_PORT/api/messages")
[[ $code == 202 ]] || die "inbound activity answered $code"
for ((i = 0; i < 100; i++)); do [[ -s $TMP/fc/token_requests.jsonl ]] && break; sleep 0.1; done
AAD=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["access_token"])' "$TMP/fc/token_requests.jsonl")

cat >"$TMP/reply.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"type":"message","text":"a reply of about a hundred bytes, as a bot sends them to a conversation"}'
wrk.headers["Content-Type"] = "application/json; charset=utf-8"
if os.getenv("AAD") then wrk.headers["Authorization"] = "Bearer " .. os.getenv("AAD") end
function done(summary, latency, requests)
  io.write(string.format("BENCH requests=%d errors=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
run() { # name url [AAD]: one wrk run, its BENCH line in TMP/name.out
  log "$1: wrk -t1 -c$CONNS -d${SECONDS_RUN}s"
  AAD=${3:-} wrk -t1 -c"$CONNS" -d"${SECONDS_RUN}s" --latency -s "$TMP/reply.lua" "$2" >"$TMP/$1.out" 2>&1 ||
    die "wrk failed (see $TMP/$1.out)"
  grep '^BENCH' "$TMP/$1.out"
}
[[ -n $AAD ]] || die "no token issued"
direct=$(AAD=$AAD run direct "https://127.0.0.1:$FC_PORT/teams/v3/conversations/$CONV_ENC/activities" "$AAD")
: >"$TMP/fc/v3_requests.jsonl"
relay=$(run relay "http://127.0.0.1:$RELAY_PORT/v3/conversations/$CONV_ENC/activities")
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
relayed=$(field "$relay" requests)
recorded=$(wc -l <"$TMP/fc/v3_requests.jsonl")
tokens=$(wc -l <"$TMP/fc/token_requests.jsonl")
with_token=$(grep -c "\"authorization\":\"Bearer $AAD\"" "$TMP/fc/v3_requests.jsonl" || true)
((tokens == 1)) || die "the token endpoint was asked $tokens times"
((recorded >= relayed && with_token == recorded)) ||
  die "the Connector recorded $recorded relayed requests ($with_token with botgate's token), wrk completed $relayed"
printf '\n| path | req/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|\n'
for row in direct relay; do
  line=${!row}
  printf '| %s | %s | %s | %s | %s |\n' "$row" "$(field "$line" rps)" "$(field "$line" p50_ms)" \
    "$(field "$line" p99_ms)" "$(field "$line" errors)"
done
printf '\n%s relayed replies, %s recorded by the Connector with botgate token, %s token request(s).\n' \
  "$relayed" "$with_token" "$tokens"
FAILED=0
