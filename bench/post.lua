-- wrk script: binary-mode CloudEvents with a 1 KiB JSON body (override the size with BODY_BYTES).
local size = tonumber(os.getenv("BODY_BYTES") or "1024")
local filler = string.rep("x", size - 12)
wrk.method = "POST"
wrk.body = '{"data":"' .. filler .. '"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Ce-Specversion"] = "1.0"
wrk.headers["Ce-Type"] = "bench.event"
wrk.headers["Ce-Source"] = "bench"
-- Ids are a counter after ID_PREFIX, so runs given prefixes of their own never repeat an id.
local prefix = os.getenv("ID_PREFIX") or ""
local counter = 0
request = function()
  counter = counter + 1
  wrk.headers["Ce-Id"] = prefix .. tostring(counter)
  return wrk.format()
end
