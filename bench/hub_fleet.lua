-- wrk script for bench/hub_fleet.py: a fleet of devices, each request from the next device (its own token).
--   upload    <folder> <idempotency header> <content type> <offset>: POST a distinct (device, batch) pair per
--             request: device n mod D, batch floor(n / D) mod B, n counting up from <offset>
--   heartbeat <folder>: POST the device's heartbeat (JSON body from <folder>/heartbeat.json)
--   poll      <metadata prefix> <etag>: a no-change poll is TWO requests, the next root (404) and
--             timestamp.json with If-None-Match (304); done() prints the polls (304 + 404 pairs)
-- <folder>/manifest.tsv lines: <device id>\t<token>; batches/<i>.parquet with batches/<i>.key (sha256).
local mode, folder
local devices, bodies, keys = {}, {}, {}
local key_header, content_type, heartbeat, metadata, etag
local n, i = 0, 0
local threads = {}
created, dedup, not_found, not_modified, ok, bad = 0, 0, 0, 0, 0, 0

setup = function(thread) table.insert(threads, thread) end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

init = function(args)
  mode = args[1]
  if mode == "poll" then
    metadata, etag = args[2], args[3]
    return
  end
  folder = args[2]
  for line in io.lines(folder .. "/manifest.tsv") do
    local device, token = line:match("^(%S+)\t(%S+)$")
    devices[#devices + 1] = {device, "Bearer " .. token}
  end
  if mode == "heartbeat" then
    heartbeat = read(folder .. "/heartbeat.json")
    return
  end
  key_header, content_type, n = args[3], args[4], tonumber(args[5])
  local b = 0
  while true do
    local f = io.open(folder .. "/batches/" .. b .. ".parquet", "rb")
    if not f then break end
    bodies[#bodies + 1] = f:read("*a")
    f:close()
    keys[#keys + 1] = read(folder .. "/batches/" .. b .. ".key"):match("^(%x+)")
    b = b + 1
  end
end

request = function()
  if mode == "poll" then
    i = i + 1
    if i % 2 == 1 then return wrk.format("GET", metadata .. "2.root.json") end
    return wrk.format("GET", metadata .. "timestamp.json", {["If-None-Match"] = etag})
  end
  local d = devices[(n % #devices) + 1]
  if mode == "heartbeat" then
    n = n + 1
    return wrk.format("POST", "/v1/devices/" .. d[1] .. "/heartbeat",
                      {["Authorization"] = d[2], ["Content-Type"] = "application/json"}, heartbeat)
  end
  local b = (math.floor(n / #devices) % #bodies) + 1
  n = n + 1
  return wrk.format("POST", "/v1/devices/" .. d[1] .. "/uploads",
                    {["Authorization"] = d[2], [key_header] = keys[b], ["Content-Type"] = content_type}, bodies[b])
end

response = function(status, headers, body)
  if status == 201 then created = created + 1
  elseif status == 200 then if mode == "upload" then dedup = dedup + 1 else ok = ok + 1 end
  elseif status == 404 and mode == "poll" then not_found = not_found + 1
  elseif status == 304 and mode == "poll" then not_modified = not_modified + 1
  else bad = bad + 1 end
end

done = function(summary, latency, requests)
  local totals = {created = 0, dedup = 0, not_found = 0, not_modified = 0, ok = 0, bad = 0}
  for _, t in ipairs(threads) do
    for name, _ in pairs(totals) do totals[name] = totals[name] + t:get(name) end
  end
  io.write(string.format("COUNTS created=%d dedup=%d ok=%d polls=%d unexpected=%d\n", totals.created, totals.dedup,
                         totals.ok, math.min(totals.not_found, totals.not_modified), totals.bad))
end
