-- wrk script for tests/bench/run.sh: POST /api/messages with a ~1 KB Microsoft Teams
-- message activity, as the Bot Framework Connector sends it.
--
--   wrk -t1 -c32 -d15s --latency -s tests/bench/activity.lua URL -- TAG
--
-- TAG (optional) makes the activity ids of this wrk run differ from every other run's:
-- botgate de-duplicates activity ids (the Connector re-sends), so a benchmark that sent
-- one id over and over would measure the duplicate path, not the store. Every request
-- gets its own id, TAG followed by a fixed-width counter, so that the body length (and
-- so Content-Length) never changes and a request costs one string concatenation.
--
-- The same script drives nginx and botgate, so the client's own cost is the same for
-- both. done() prints one "BENCH key=value ..." line that run.sh parses; all the
-- percentiles come from there (wrk's --latency table has no 99.9%).
--
-- Tokens (botgate with authentication on), from the environment:
--   BENCH_TOKEN=<jwt>          one token on every request (the Connector reuses its token
--                              for about an hour): `Authorization: Bearer <jwt>`;
--   BENCH_TOKENS_FILE=<path>   a distinct token per request: the file holds one token a
--                              line (fake_connector mint --count N); init() reads it, from
--   BENCH_TOKENS_OFFSET=<n>    line n+1 on (default 0: run.sh passes the warm-up's count so
--                              that the measured run never sends a token the warm-up sent,
--                              which botgate would find in its verified-token cache).
--                              Each request takes the next token; when the file runs out it
--                              starts again from the first and counts the repeats
--                              (tokens_repeated in the BENCH line: run.sh marks the run
--                              invalid, since a repeated token is a cache hit, not an RSA
--                              check). One wrk thread only (-t1).
-- Neither: no Authorization header (botgate with authentication off, as the SDK expects).

local function json_escape(s)
  return (s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end))
end

-- Placeholder for the activity id: same width as the value put in its place.
local ID_WIDTH = 10
local ID_MARK = string.rep("#", ID_WIDTH)

local tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
local app_id = "5c5d7cb1-0f0b-4f3c-9a6e-3b8f2c1e9d41"
local conversation =
  "a:1mGrqbPXZ6XvJ3Ns7Q2yT0w8gCkHhKJbH3d2vYw9n5xUq-eKXy8cWm3b0oR2ZpL4sTfGv1NhQ7jDk6lMoPaE"

-- Everything but the text; the text is padded below so that the whole body is 1024 bytes.
local function activity(id, text)
  return table.concat({
    '{"text":"', json_escape(text), '",',
    '"textFormat":"plain",',
    '"type":"message",',
    '"timestamp":"2024-05-14T09:21:37.5151719Z",',
    '"localTimestamp":"2024-05-14T11:21:37.5151719+02:00",',
    '"id":"', id, '",',
    '"channelId":"msteams",',
    '"serviceUrl":"https://smba.trafficmanager.net/emea/",',
    '"from":{"id":"29:1XbHsQc0pW4zNfR2kLmT8vYgJd6aE3uOiPq9rStUvWxYz-AbCdEfGhIjKlMnOpQrStUvWx",',
    '"name":"Ada Lovelace","aadObjectId":"9d1f3c2a-6b7e-4f80-a1b2-c3d4e5f60718"},',
    '"conversation":{"conversationType":"personal","tenantId":"', tenant, '",',
    '"id":"', conversation, '"},',
    '"recipient":{"id":"28:', app_id, '","name":"Helpdesk Bot"},',
    '"entities":[{"locale":"en-GB","country":"GB","platform":"Windows",',
    '"timezone":"Europe/London","type":"clientInfo"}],',
    '"channelData":{"tenant":{"id":"', tenant, '"}},',
    '"locale":"en-GB",',
    '"localTimezone":"Europe/London"}',
  })
end

local BODY_BYTES = 1024
local words = "Hi, since this morning's update my laptop will not connect to the VPN. "
  .. "I restarted twice and re-entered my password, the client still says "
  .. "'authentication failed' after about ten seconds. I have a customer call "
  .. "at 11:30 and need the shared drive before then. Ticket INC0042817 has "
  .. "the screenshots. Could someone from IT have a look, or tell me what to "
  .. "try next? Thanks a lot. "

-- The body with `id` as its id and the text cut so that the whole is BODY_BYTES long.
local function body_for(id)
  local room = BODY_BYTES - #activity(id, "")
  local text = words:rep(math.ceil(room / #words) + 1):sub(1, room)
  text = text:gsub(" $", ".")
  local body = activity(id, text)
  assert(#body == BODY_BYTES, "body is " .. #body .. " bytes")
  return body
end

-- The token: BENCH_TOKEN when the benchmark runs botgate with authentication on (a
-- token minted by tests/tools/fake_connector); none with authentication off, as the SDK
-- expects a request without a token then. BENCH_TOKENS_FILE: one token per request (above).
local token = os.getenv("BENCH_TOKEN") or ""
local tokens_file = os.getenv("BENCH_TOKENS_FILE") or ""
local tokens_offset = tonumber(os.getenv("BENCH_TOKENS_OFFSET") or "0")
assert(tokens_offset and tokens_offset >= 0, "BENCH_TOKENS_OFFSET: want a number >= 0")
assert(token == "" or tokens_file == "", "BENCH_TOKEN and BENCH_TOKENS_FILE: one or the other")
-- Placeholder for the token in the request template (never a base64url character).
local TOKEN_MARK = "<<<TOKEN>>>"

wrk.method = "POST"
wrk.path = "/api/messages"
wrk.headers["Content-Type"] = "application/json; charset=utf-8"
if token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
wrk.headers["User-Agent"] = "Microsoft-SkypeBotApi (Microsoft-BotFramework/3.0)"
wrk.body = body_for(ID_MARK)

local head, mid, tail
local counter = 0
local threads = 0
local thread_list = {} -- main state: done() reads each thread's token counts

-- Per-thread globals (thread:get reads globals): tokens loaded from BENCH_TOKENS_FILE,
-- tokens taken (one per request() call), and how many of those were repeats.
tokens = {}
tokens_loaded = 0
tokens_used = 0
tokens_repeated = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
  thread_list[#thread_list + 1] = thread
end

local function load_tokens(path, skip)
  local f = assert(io.open(path, "r"))
  local n = 0
  for line in f:lines() do
    if line ~= "" then
      n = n + 1
      if n > skip then
        assert(not line:find("[^%w%-_%.]"), "BENCH_TOKENS_FILE: line " .. n .. " is not a compact JWS")
        tokens[#tokens + 1] = line
      end
    end
  end
  f:close()
  tokens_loaded = #tokens
  assert(tokens_loaded > 0, "BENCH_TOKENS_FILE: no token after the first " .. skip .. " (" .. n .. " in the file)")
end

function init(args)
  -- Unique per wrk run (TAG) and per wrk thread (tid, for -t > 1).
  local tag = (args[1] or tostring(os.time())) .. "-" .. tostring(tid or 1) .. "-"
  assert(not tag:find('["\\%c]'), "TAG must be plain")
  if tokens_file ~= "" then
    assert((tid or 1) == 1, "BENCH_TOKENS_FILE works with one wrk thread (-t1)")
    load_tokens(tokens_file, tokens_offset)
    wrk.headers["Authorization"] = "Bearer " .. TOKEN_MARK
  end
  -- wrk.format adds Host and Content-Length; the id (and, with BENCH_TOKENS_FILE, the
  -- token: a header, so Content-Length does not change with it) are the parts that change.
  local req = wrk.format(nil, nil, nil, body_for(tag .. ID_MARK))
  local i, j = req:find(ID_MARK, 1, true)
  head, tail = req:sub(1, i - 1), req:sub(j + 1)
  if tokens_loaded > 0 then
    local a, b = head:find(TOKEN_MARK, 1, true)
    assert(a, "the token placeholder is not in the headers")
    head, mid = head:sub(1, a - 1), head:sub(b + 1)
  end
end

function request()
  counter = counter + 1
  if tokens_loaded == 0 then
    return head .. string.format("%010d", counter) .. tail
  end
  tokens_used = tokens_used + 1
  local k = tokens_used
  if k > tokens_loaded then
    -- Out of tokens: go round again, and say so (run.sh then marks the run invalid).
    tokens_repeated = tokens_repeated + 1
    k = (k - 1) % tokens_loaded + 1
  end
  return head .. tokens[k] .. mid .. string.format("%010d", counter) .. tail
end

function done(summary, latency, requests)
  local e = summary.errors
  -- Token counts from the threads' states. tokens_used counts every request() call,
  -- wrk's own trial call before the run included: the next run's BENCH_TOKENS_OFFSET.
  local loaded, used, repeated = 0, 0, 0
  for _, t in ipairs(thread_list) do
    loaded = loaded + (t:get("tokens_loaded") or 0)
    used = used + (t:get("tokens_used") or 0)
    repeated = repeated + (t:get("tokens_repeated") or 0)
  end
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d body_bytes=%d"
      .. " p50_us=%d p75_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.1f"
      .. " connect=%d read=%d write=%d status=%d timeout=%d"
      .. " tokens_loaded=%d tokens_used=%d tokens_repeated=%d\n",
    summary.requests, summary.duration, summary.bytes, #wrk.body,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout, loaded, used, repeated))
end
