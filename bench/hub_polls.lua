-- wrk script: no-change release polls, as python-tuf does them when nothing changed. A poll is TWO
-- requests: GET the next root version (answered 404) and GET timestamp.json with If-None-Match
-- (answered 304). Requests alternate between the two, so the requests wrk counts are twice the polls;
-- done() prints the polls themselves (completed 304 + 404 pairs) so bench/hub.py never has to guess.
-- args: the metadata URL path (ending in /) and timestamp.json's current ETag.
local metadata, etag = nil, nil
local i = 0
local threads = {}
not_found, not_modified, bad = 0, 0, 0

setup = function(thread) table.insert(threads, thread) end

init = function(args) metadata, etag = args[1], args[2] end

request = function()
  i = i + 1
  if i % 2 == 1 then return wrk.format("GET", metadata .. "2.root.json") end
  return wrk.format("GET", metadata .. "timestamp.json", {["If-None-Match"] = etag})
end

response = function(status, headers, body)
  if status == 404 then not_found = not_found + 1
  elseif status == 304 then not_modified = not_modified + 1
  else bad = bad + 1 end
end

done = function(summary, latency, requests)
  local roots, timestamps, unexpected = 0, 0, 0
  for _, t in ipairs(threads) do
    roots = roots + t:get("not_found")
    timestamps = timestamps + t:get("not_modified")
    unexpected = unexpected + t:get("bad")
  end
  io.write("POLLS " .. math.min(roots, timestamps) .. "\n")
  io.write("UNEXPECTED " .. unexpected .. "\n")
end
