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
-- expects a request without a token then.
local token = os.getenv("BENCH_TOKEN") or ""

wrk.method = "POST"
wrk.path = "/api/messages"
wrk.headers["Content-Type"] = "application/json; charset=utf-8"
if token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
wrk.headers["User-Agent"] = "Microsoft-SkypeBotApi (Microsoft-BotFramework/3.0)"
wrk.body = body_for(ID_MARK)

local head, tail
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  -- Unique per wrk run (TAG) and per wrk thread (tid, for -t > 1).
  local tag = (args[1] or tostring(os.time())) .. "-" .. tostring(tid or 1) .. "-"
  assert(not tag:find('["\\%c]'), "TAG must be plain")
  -- wrk.format adds Host and Content-Length; the id is the only part that changes.
  local req = wrk.format(nil, nil, nil, body_for(tag .. ID_MARK))
  local i, j = req:find(ID_MARK, 1, true)
  head, tail = req:sub(1, i - 1), req:sub(j + 1)
end

function request()
  counter = counter + 1
  return head .. string.format("%010d", counter) .. tail
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d body_bytes=%d"
      .. " p50_us=%d p75_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.1f"
      .. " connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes, #wrk.body,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
