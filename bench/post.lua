-- wrk script: binary-mode CloudEvents with a 1 KiB JSON body (override the size with BODY_BYTES).
local size = tonumber(os.getenv("BODY_BYTES") or "1024")
local filler = string.rep("x", size - 12)
wrk.method = "POST"
wrk.body = '{"data":"' .. filler .. '"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Ce-Specversion"] = "1.0"
wrk.headers["Ce-Type"] = "bench.event"
wrk.headers["Ce-Source"] = "bench"
local counter = 0
request = function()
  counter = counter + 1
  wrk.headers["Ce-Id"] = tostring(counter)
  return wrk.format()
end
