-- wrk script: each request uploads a distinct (device, batch) pair to the hub.
-- bench/hub.py writes the batch files and a manifest and passes, from edge/contracts: the folder, the
-- idempotency key's header name and the batches' content type:
--   manifest.tsv lines: <upload path>\t<token>   and  batches/<i>.parquet with batches/<i>.key (sha256)
local devices, bodies, keys = {}, {}, {}
local key_header, content_type = nil, nil
local n, thread_id = 0, 0
local counter = 0
local threads = {}
bad = 0

setup = function(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

response = function(status, headers, body)
  if status ~= 200 and status ~= 201 then bad = bad + 1 end
end

done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write("UNEXPECTED " .. total .. "\n")
end

init = function(args)
  local folder = args[1]
  key_header, content_type = args[2], args[3]
  for line in io.lines(folder .. "/manifest.tsv") do
    local path, token = line:match("^(%S+)\t(%S+)$")
    devices[#devices + 1] = {path, token}
  end
  local i = 0
  while true do
    local f = io.open(folder .. "/batches/" .. i .. ".parquet", "rb")
    if not f then break end
    bodies[#bodies + 1] = f:read("*a")
    f:close()
    local k = io.open(folder .. "/batches/" .. i .. ".key", "r")
    keys[#keys + 1] = k:read("*l")
    k:close()
    i = i + 1
  end
  n = tonumber(thread_id) * 1000003  -- threads start far apart so their pairs never collide
end

request = function()
  local d = devices[(n % #devices) + 1]
  local b = (math.floor(n / #devices) % #bodies) + 1
  n = n + 1
  return wrk.format("POST", d[1], {
    ["Authorization"] = "Bearer " .. d[2],
    [key_header] = keys[b],
    ["Content-Type"] = content_type,
  }, bodies[b])
end
