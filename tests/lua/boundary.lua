-- The Lua boundary against hostile scripts (local mode): each block is a
-- defect of issue 11 that once froze, crashed or misrouted the server.
-- It runs before Initialize, so this script alone calls ProcessEvents.
local T = require "testlib"
local rt = realtime
-- The module reports these as it should (ErrorNoHalt).
HOST.ExpectErrors("was removed while events for it waited", "hostile __index", "finalizer says no")


local function dropped(reason) return rt.GetStats().dropped[reason] end


T.depth(1)
rt.ProcessEvents() -- RealtimeConnected (local)
local _, fns_before = T.registry()

-- 1. Cyclic and shared tables: an error naming the path, never a freeze.
local cyc = {}
cyc.a, cyc.b = cyc, cyc
T.errors(function() rt.Publish("x", cyc) end, "cannot encode a table that contains itself (a cycle)")
local dag = {}
for _ = 1, 40 do dag = { l = dag, r = dag } end -- 2^40 paths, no cycle
T.errors(function() rt.Publish("x", dag) end, "bad argument #2 to 'Publish' (the value is too large")
local ok, err = rt.RoundEnd(1, cyc)
T.eq(ok, false, "RoundEnd with a cyclic score")
T.ok(tostring(err):find("a cycle", 1, true), "RoundEnd's error: " .. tostring(err))
T.errors(function() rt.RoundEnd(1, dag) end, "too large")
ok, err = rt.Config({ host = cyc })
T.eq(ok, false, "Config with a table value")
local shared_got
local shared = { 1, 2 }
rt.On("shared", function(_, data) shared_got = data end)
T.ok(rt.Publish("shared", { a = shared, b = shared }), "a table met twice on two paths is fine")

-- 10. Argument messages.
ok, err = rt.Config({ [true] = 1 })
T.eq(ok, false, "Config with a boolean key")
T.ok(err:find("a boolean key", 1, true), "Config names the key's type: " .. err)
T.errors(function() rt.Off("pat", nil) end, "bad argument #2 to 'Off' (string expected, got nil)")
T.errors(function() rt.On("x") end, "bad argument #2 to 'On' (function expected, got no value)")
T.errors(function() rt.On("x", "id") end, "bad argument #3 to 'On' (function expected, got no value)")

-- 7. Numbers out of range are errors or clamped, never wrapped.
T.errors(function() rt.ProcessEvents(0 / 0) end, "bad argument #1 to 'ProcessEvents' (at least 1 expected)")
T.errors(function() rt.On("n", "id", print, { burst = 1e10 }) end,
	"bad argument #4 to 'On' (burst: 1e+10 is not a whole number from 0 to 2147483647)")
T.errors(function() rt.On("n", "id", print, { burst = 2.7 }) end, "burst: 2.7 is not a whole number")

-- 9. JSON out of Lua: no duplicate keys, valid UTF-8; strings stay bytes.
T.errors(function() rt.Publish("x", { [1] = "a", ["1"] = "b" }) end, 'the keys 1 and "1" both become the JSON key "1"')
local utf = {}
rt.On("utf", function(_, data) utf[#utf + 1] = data end)
T.ok(rt.Publish("utf", { s = "a\255b" }), "Publish of a table with invalid UTF-8")
T.ok(rt.Publish("utf", "a\255b"), "Publish of a string with invalid UTF-8")

-- A metamethod that calls the module while an outer call walks its table:
-- each call has its own arguments and results.
local vec_got
local vec = newproxy(true)
getmetatable(vec).__index = function()
	rt.Publish("nested", "n")
	rt.GetStats()
	return 1
end
rt.On("vec", function(_, data) vec_got = data end)
T.ok(rt.Publish("vec", { pos = vec, name = "bob" }), "Publish of a table holding a re-entering Vector")

-- 7. ProcessEvents(3e9) is "no limit", not a wrapped negative.
T.depth(4)
T.ok(rt.ProcessEvents(3e9) >= 1, "ProcessEvents(3e9) dispatches")
T.drain()
T.ok(shared_got == '{"a":[1,2],"b":[1,2]}' or shared_got == '{"b":[1,2],"a":[1,2]}', "shared table: " .. tostring(shared_got))
T.eq(utf[1], '{"s":"a\\ufffdb"}', "invalid UTF-8 in a table becomes U+FFFD")
T.eq(utf[2], "a\255b", "a string payload is sent byte for byte")
T.ok(vec_got and vec_got:find('"pos":{"x":1,"y":1,"z":1}', 1, true) and vec_got:find('"name":"bob"', 1, true),
	"the outer walk survived the nested calls: " .. tostring(vec_got))

-- 2. A handler that removes its own registration and adds another route:
-- the rest of the batch must not reach the new function.
local a_calls, misrouted = 0, 0
rt.On("a:*", "once", function()
	a_calls = a_calls + 1
	rt.Off("a:*", "once")
	rt.On("b:*", "other", function(ch) if ch:sub(1, 2) ~= "b:" then misrouted = misrouted + 1 end end)
end)
local no_handler, handler_errors = dropped("no_handler"), dropped("handler_error")
for i = 1, 20 do rt.Publish("a:" .. i, "x") end
T.depth(20)
T.drain()
T.eq(a_calls, 1, "the removed handler ran once")
T.eq(misrouted, 0, "events of a:* that reached b:*'s handler")
T.eq(dropped("no_handler") - no_handler, 19, "the rest of the batch counted as no_handler")
T.eq(dropped("handler_error"), handler_errors, "no 'attempt to call' errors")
rt.Off("b:*", "other")

-- 3. An error raised while an event is built (here: a hostile _G.__index
-- when the pump looks up hook.Run for a status event) is reported, and
-- the pump goes on working.
local saved_hook = hook
hook = nil
setmetatable(_G, { __index = function(_, k) if k == "hook" then error("hostile __index") end end })
rt.Disconnect() -- queues RealtimeDisconnected
local pok, perr = pcall(rt.ProcessEvents)
setmetatable(_G, nil)
hook = saved_hook
T.ok(pok, "ProcessEvents does not raise: " .. tostring(perr))
T.ok(rt.Connect(), "Connect (local mode again)")
T.depth(1)
T.drain()
local after = 0
rt.On("after", "after", function() after = after + 1 end)
rt.Publish("after", "x")
T.depth(1)
T.eq(T.drain(), 1, "the pump works after the error")
T.eq(after, 1, "handler call after the error")

-- 3. Finalizers that raise, hundreds of events per frame: no crash, and
-- every event is either handled or counted.
local handled = 0
rt.On("gc:*", function()
	for _ = 1, 3 do
		local u = newproxy(true)
		getmetatable(u).__gc = function() error("finalizer says no") end
	end
	handled = handled + 1 -- not reached when a finalizer raised in here
end, { decode = "json" })
local old_pause = collectgarbage("setpause", 10)
local errors_before = dropped("handler_error")
for i = 1, 400 do rt.Publish("gc:" .. i, '{"n":' .. i .. ',"s":"' .. string.rep("x", 50) .. '"}') end
T.depth(400)
-- From here any allocation may raise a finalizer's error, this script's
-- own included: only pcall'd calls until every finalizer has run.
local pump_error, spins = nil, 0
while spins < 100000 do
	spins = spins + 1
	local ok2, st = pcall(rt.GetStats)
	if ok2 and st.queue.depth == 0 then break end
	local ok3, e = pcall(rt.ProcessEvents)
	if not ok3 then pump_error = e end
end
collectgarbage("setpause", old_pause)
for _ = 1, 100000 do
	if pcall(collectgarbage) then break end -- each raising finalizer stops a collection
end
T.eq(pump_error, nil, "ProcessEvents raised with finalizers raising")
-- Every event is handled or counted as failed; on PUC Lua 5.1 one can be
-- both (a finalizer that raises after the handler returned, inside its
-- pcall).
local failed = dropped("handler_error") - errors_before
T.ok(handled <= 400 and handled + failed >= 400, string.format("handled %d + failed %d", handled, failed))
rt.Publish("after", "y")
T.depth(1)
T.eq(T.drain(), 1, "the pump works after the finalizers")

-- The budget (2 ms by default) is checked before each event: a handler
-- slower than the whole budget gets exactly one event per call, and the
-- calls show in GetStats().frames.
local slow = 0
rt.On("slow", "slow", function()
	slow = slow + 1
	local until_t = HOST.Time() + 0.003
	while HOST.Time() < until_t do end
end)
for _ = 1, 5 do rt.Publish("slow", "x") end
T.depth(5)
for i = 1, 5 do T.eq(rt.ProcessEvents(), 1, "slow events in call " .. i) end
T.eq(slow, 5, "slow handler calls")
local frames = rt.GetStats().frames
T.ok(frames.count >= 5 and frames.over_budget >= 5 and frames.max_us >= 3000 and frames.p99_us >= frames.p50_us,
	string.format("frames: count %d, over %d, p50 %d, p99 %d, max %d us", frames.count, frames.over_budget,
		frames.p50_us, frames.p99_us, frames.max_us))
T.eq(rt.GetStats().frames.count, 0, "GetStats starts the frame figures over")

rt.Off("after")
rt.Off("slow")
local _, fns_after = T.registry()
T.eq(fns_after, fns_before, "functions in the registry")

HOST.Run(function() print("boundary: ok") end)
