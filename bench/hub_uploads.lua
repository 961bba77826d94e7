-- wrk script: each request uploads a distinct (device, batch) pair to the hub (or the floor).
-- bench/hub.py writes the batch files and a manifest and passes, from edge/contracts: the folder, the
-- idempotency key's header name and the batches' content type, then the first pair's index:
--   manifest.tsv lines: <upload path>\t<token>   and  batches/<i>.parquet with batches/<i>.key (sha256)
-- Pair k is device k % D with batch floor(k / D) % B; a run starting at index s sends pairs s, s+1, ...
-- done() prints how many were stored (201), deduplicated (200: a pair sent before) and anything else.
local devices, bodies, keys = {}, {}, {}
local key_header, content_type = nil, nil
local n = 0
local threads = {}
stored, deduplicated, bad = 0, 0, 0

setup = function(thread) table.insert(threads, thread) end

response = function(status, headers, body)
  if status == 201 then stored = stored + 1
  elseif status == 200 then deduplicated = deduplicated + 1
  else bad = bad + 1 end
end

done = function(summary, latency, requests)
  local s, d, b = 0, 0, 0
  for _, t in ipairs(threads) do
    s, d, b = s + t:get("stored"), d + t:get("deduplicated"), b + t:get("bad")
  end
  io.write("STORED " .. s .. "\nDEDUPLICATED " .. d .. "\nUNEXPECTED " .. b .. "\n")
end

init = function(args)
  local folder = args[1]
  key_header, content_type = args[2], args[3]
  n = tonumber(args[4])
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
