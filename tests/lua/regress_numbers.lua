-- Issue 11, defect 7: numbers out of range were cast to C int:
-- ProcessEvents(3e9) said "at least 1 expected", burst = 1e10 said
-- "-2147483648 is negative", burst = 2.7 was truncated silently, and a
-- rate so large that the default burst overflowed counted every event as
-- rate-limited.
local T = require "testlib"
local R = require "regresslib"
local rt = realtime

local ok, err = pcall(rt.ProcessEvents, 3e9)
T.ok(ok, "ProcessEvents(3e9): " .. tostring(err))
ok, err = pcall(rt.ProcessEvents, 2 ^ 31)
T.ok(ok, "ProcessEvents(2^31): " .. tostring(err))

local function f() end
ok, err = pcall(rt.On, "n:1", "big", f, { burst = 1e10 })
T.ok(not ok, "burst = 1e10 is refused")
T.ok(not tostring(err):find("negative", 1, true), "burst = 1e10 is not called negative: " .. tostring(err))
ok, err = pcall(rt.On, "n:2", "frac", f, { burst = 2.7 })
T.ok(not ok, "burst = 2.7 is refused, not truncated")
ok = pcall(rt.On, "n:3", "inf", f, { burst = 1 / 0 })
T.ok(not ok, "burst = inf is refused")
ok = pcall(rt.On, "n:4", "nan", f, { burst = 0 / 0 })
T.ok(not ok, "burst = NaN is refused")

-- A huge rate delivers every event (or is refused), never rate-limits all.
local got = 0
ok = pcall(rt.On, "fast", "fast", function() got = got + 1 end, { rate = "1e30/s" })
if ok then
	for i = 1, 5 do rt.Publish("fast", tostring(i)) end
	R.pump(function() return got == 5 or rt.GetStats().routes["fast (fast)"].rate_limited > 0 end, "the 5 events")
	T.eq(got, 5, "events delivered by a route with rate 1e30/s (rate_limited: " .. rt.GetStats().routes["fast (fast)"].rate_limited .. ")")
end
print("regress: ok")
HOST.Exit(0)
