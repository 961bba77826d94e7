-- wrk script for bench/hub_tls.py: one wrk process (one thread, several connections) acts as one device,
-- presenting that device's client certificate (bench/wrk_client_cert.c) or token, on its own path.
--   poll   <metadata prefix> <etag> <keep|close>: the next root (404) + timestamp.json with If-None-Match
--          (304); "close" ends each poll's connection (a cold device: a new connection per poll)
--   upload <folder> <idempotency header> <content type> <token|cert> <device index>: distinct batches from
--          the folder (batches/<i>.parquet with batches/<i>.key) to the device's own upload path
-- manifest.tsv lines: <device upload path>\t<token>, in device order.
local threads = {}
bad, dedup = 0, 0

setup = function(thread)
  table.insert(threads, thread)
end

local mode, metadata, etag, close, token, path
local bodies, keys = {}, {}
local key_header, content_type, auth
local i = 0

local function manifest(file, index)
  local n = 0
  for line in io.lines(file) do
    if n == index then
      local p, t = line:match("^(%S+)\t(%S+)$")
      return p, t
    end
    n = n + 1
  end
end

init = function(args)
  mode = args[1]
  if mode == "poll" then
    metadata, etag, close = args[2], args[3], args[4] == "close"
  else
    local folder = args[2]
    key_header, content_type, auth = args[3], args[4], args[5]
    path, token = manifest(folder .. "/manifest.tsv", tonumber(args[6]))
    local b = 0
    while true do
      local f = io.open(folder .. "/batches/" .. b .. ".parquet", "rb")
      if not f then break end
      bodies[#bodies + 1] = f:read("*a")
      f:close()
      local k = io.open(folder .. "/batches/" .. b .. ".key", "r")
      keys[#keys + 1] = k:read("*l")
      k:close()
      b = b + 1
    end
  end
end

request = function()
  i = i + 1
  if mode == "poll" then
    local headers = {}
    if i % 2 == 1 then return wrk.format("GET", metadata .. "2.root.json", headers) end
    headers["If-None-Match"] = etag
    if close then headers["Connection"] = "close" end
    return wrk.format("GET", metadata .. "timestamp.json", headers)
  end
  local b = ((i - 1) % #bodies) + 1
  local headers = {[key_header] = keys[b], ["Content-Type"] = content_type}
  if auth == "token" then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("POST", path, headers, bodies[b])
end

response = function(status, headers, body)
  if mode == "poll" then
    if status ~= 304 and status ~= 404 then bad = bad + 1 end
  elseif status == 200 then
    dedup = dedup + 1
  elseif status ~= 201 then
    bad = bad + 1
  end
end

done = function(summary, latency, requests)
  local b, d = 0, 0
  for _, t in ipairs(threads) do
    b = b + t:get("bad")
    d = d + t:get("dedup")
  end
  io.write("UNEXPECTED " .. b .. "\n")
  io.write("DEDUPLICATED " .. d .. "\n")
end
