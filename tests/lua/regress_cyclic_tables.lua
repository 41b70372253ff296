-- Issue 11, defect 1: shared or cyclic tables froze the main thread in
-- the table walk (only a 64-level depth cap, and it went on after an
-- unencodable value), through Publish, Config, RoundEnd and the other
-- game events. Each call here must return (the watchdog ends the run if
-- one does not), and a cycle must be reported as an error.
local T = require "testlib"
local R = require "regresslib"
local rt = realtime

local function cyclic()
	local t = {}
	t.a, t.b = t, t
	return t
end

-- A cycle is an error naming it.
local ok, res, err = R.expect("Publish(cyclic)", rt.Publish, "c", cyclic())
local msg = tostring(ok and err or res)
T.ok(not ok or res == false, "Publish of a cyclic table is refused")
T.ok(msg:find("cycl", 1, true), "the error says it is a cycle: " .. msg)

-- A cycle below the top.
local t = { x = { y = {} } }
t.x.y.z = t.x
ok, res, err = R.expect("Publish(cycle below the top)", rt.Publish, "c", t)
T.ok(not ok or res == false, "Publish of a table with a cycle below the top is refused")

-- A table shared on many paths, no cycle: 2^30 paths, 31 tables.
local c = { leaf = 1 }
for _ = 1, 30 do c = { l = c, r = c } end
R.expect("Publish(shared 30 levels)", rt.Publish, "c", c)

-- The same walk behind Config, RoundEnd and the other game events.
R.expect("Config{password = cyclic}", rt.Config, { password = cyclic() })
R.expect("Config(cyclic)", rt.Config, cyclic())
R.expect("RoundEnd(1, cyclic)", rt.RoundEnd, 1, cyclic())
R.expect("RoundEnd(cyclic)", rt.RoundEnd, cyclic())
R.expect("RoundEnd(1, shared)", rt.RoundEnd, 1, c)
R.expect("PlayerSpawn(name, 1, cyclic)", rt.PlayerSpawn, "bob", 1, cyclic())

-- The module still works.
local got
rt.Subscribe("after", function(_, data) got = data end)
T.ok(rt.Publish("after", "ok"), "Publish after the cyclic tables")
R.pump(function() return got end, "the event after the cyclic tables")
T.eq(got, "ok", "payload")
print("regress: ok")
HOST.Exit(0)
