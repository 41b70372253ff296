-- The Lua API against Redis: argument errors, handler registration and
-- replacement, registry references, Publish's encodings, game events,
-- handler errors, GetStats.
local T = require "testlib"
local rt = realtime
-- The failing handler below is logged through ErrorNoHalt.
HOST.ExpectErrors('[realtime] handler of route "bad (err:*)" failed on "err:x": ')

-- Arguments are checked as Lua's own library words it.
T.errors(function() rt.On("x", "id", nil) end, "bad argument #3 to 'On' (function expected, got nil)")
T.errors(function() rt.On(nil, print) end, "bad argument #1 to 'On' (string expected, got nil)")
T.errors(function() rt.Publish("x") end, "bad argument #2 to 'Publish' (string or table expected, got no value)")
T.errors(function() rt.Publish("x", { f = print }) end, "bad argument #2 to 'Publish' (payload.f: cannot encode a function)")
T.errors(function() rt.Publish("x", { 0 / 0 }) end, "bad argument #2 to 'Publish' (payload[1]: cannot encode NaN")
T.errors(function() rt.Publish("", "x") end, "bad argument #1 to 'Publish' (channel is empty)")
T.errors(function() rt.On("[", print) end, 'bad argument #1 to \'On\' (pattern "[": unterminated')
T.errors(function() rt.On("a", "id", print, { decode = "xml" }) end, "bad argument #4 to 'On' (decode: \"xml\"")
T.errors(function() rt.On("a", print, { rate = "fast" }) end, "bad argument #3 to 'On' (rate:")
T.errors(function() rt.PlayerSpawn("bob", "red", Vector(1, 2, 3)) end, "bad argument #2 to 'PlayerSpawn' (number expected, got string)")
T.errors(function() rt.PlayerSpawn("bob", 1, "here") end, "bad argument #3 to 'PlayerSpawn' (Vector, {x=, y=, z=}, {x, y, z} or three numbers expected, got string)")
T.errors(function() rt.ChatMessage("bob") end, "bad argument #2 to 'ChatMessage' (string expected, got no value)")
T.errors(function() rt.ChatMessage("bob", "hi", "yes") end, "bad argument #3 to 'ChatMessage' (boolean expected, got string)")
T.errors(function() rt.ProcessEvents(0) end, "bad argument #1 to 'ProcessEvents' (at least 1 expected)")
T.errors(function() rt.Handler("h", 5) end, "bad argument #2 to 'Handler' (function expected, got number)")
T.errors(function() rt.Handler("hook:X", print) end, "bad argument #1 to 'Handler'")
T.errors(function() rt.Off() end, "bad argument #1 to 'Off' (string expected, got no value)")
local t = {}
t.self = t
T.errors(function() rt.Publish("x", t) end, "payload.self: cannot encode a table that contains itself (a cycle)")

-- 100,000 On/Off cycles and 100,000 replacements leave the registry as it
-- was ($API_CYCLES of each: fewer under Wine, where a call into the module
-- costs far more).
local cycles = tonumber(os.getenv("API_CYCLES") or "100000")
local before, before_fns = T.registry()
for i = 1, cycles do
	local id = rt.On("leak:" .. (i % 10), function() end)
	T.ok(rt.Off(id), "Off of a registered id")
end
for _ = 1, cycles do rt.On("leak:*", "same", function() end) end
rt.Handler("named", function() end)
rt.Handler("named", function() end)
rt.Handler("named", nil)
T.ok(rt.Off("leak:*", "same"), "Off(pattern, id)")
T.ok(not rt.Off("leak:*", "same"), "second Off is false")
local after, after_fns = T.registry()
T.eq(after_fns, before_fns, "functions in the registry after " .. 2 * cycles .. " registrations")
T.ok(after <= before + 4, "registry size after " .. 2 * cycles .. " registrations: " .. after .. " entries, " .. before .. " before")

-- Before the pump starts (this runs before Initialize), events queue up and
-- ProcessEvents(max) dispatches at most max of them, and ProcessEvents()
-- (no max_per_frame here) more. A call may dispatch fewer on a loaded
-- machine: the budget ends it, or an event is still on its way to the
-- main thread, which ProcessEvents never waits for (a 2-core machine under
-- load gave "ProcessEvents(3): got 0" on win32). So each call is held to
-- "at most", and "exactly" is asked of one call out of several rounds.
local early = 0
rt.Subscribe("early", function() early = early + 1 end)
-- round publishes 10 events and pumps them with ProcessEvents(max); it
-- returns the most a call dispatched.
local function round(max)
	local queued, before, most = rt.GetStats().queued, early, 0
	for i = 1, 10 do rt.Publish("early", tostring(i)) end
	T.wait_queued(queued + 10)
	local deadline = HOST.Time() + 10
	repeat
		local n = rt.ProcessEvents(max)
		T.ok(n <= (max or 10), "ProcessEvents(" .. tostring(max) .. ") dispatched " .. n)
		if n > most then most = n end
		if HOST.Time() > deadline then error("ProcessEvents(" .. tostring(max) .. "): " .. early - before .. " of 10 events dispatched") end
	until early - before == 10
	return most
end
local reached = false
for _ = 1, 5 do
	if round(3) == 3 then reached = true break end
end
T.ok(reached, "a ProcessEvents(3) call dispatched 3 events")
reached = false
for _ = 1, 5 do
	if round() > 3 then reached = true break end
end
T.ok(reached, "a ProcessEvents() call dispatched more than 3 events")
T.eq(rt.ProcessEvents(), 0, "empty queue")

-- Handlers registered on load.
local calls, shapes, events, meta_seen = {}, {}, {}, nil
rt.On("rep:*", "same", function() calls[#calls + 1] = "first" end)
rt.On("rep:*", "same", function(ch, data, meta) calls[#calls + 1] = "second"; meta_seen = meta end)
rt.Subscribe("exact:*", function(ch) calls[#calls + 1] = "exact " .. ch end)
rt.On("shape:*", function(ch, data) shapes[ch] = data end)
rt.On("player:*", "events", function(ch, data) events[ch] = data end, { json = true })
rt.On("chat:*", "events", function(ch, data) events[ch] = data end, { decode = "json" })
rt.On("round:*", "events", function(ch, data) events[ch] = data end, { decode = "json" })
local good, nested = 0, 0
rt.On("err:*", "bad", function() error("boom") end)
rt.On("err:*", "good", function()
	good = good + 1
	nested = nested + rt.ProcessEvents() -- re-entry returns 0
end)

-- meta is made only for a handler that can see it (three parameters, or
-- "..."): a vararg handler still gets it, a two-parameter one its two.
-- A handler with fewer parameters gets those (the module builds no value
-- it cannot see), and one with none is still called.
local vararg_meta, two_args, one_arg, no_args = nil, nil, nil, 0
rt.On("arity:*", "va", function(...) vararg_meta = select(3, ...) end)
rt.On("arity:*", "two", function(ch, data) two_args = ch .. "=" .. data end)
rt.On("arity:*", "one", function(ch) one_arg = ch end)
rt.On("arity:*", "none", function() no_args = no_args + 1 end)

HOST.Run(function()
	rt.Publish("arity:x", "p")
	HOST.WaitFor(function() return vararg_meta ~= nil and two_args ~= nil end, 5, "the arity events")
	T.eq(type(vararg_meta), "table", "a vararg handler's third argument")
	T.eq(vararg_meta.route, "va (arity:*)", "a vararg handler's meta.route")
	T.eq(two_args, "arity:x=p", "a two-parameter handler's arguments")
	HOST.WaitFor(function() return one_arg ~= nil and no_args > 0 end, 5, "the one- and no-parameter handlers")
	T.eq(one_arg, "arity:x", "a one-parameter handler's channel")
	T.eq(no_args, 1, "a handler with no parameters is called once")
	rt.Publish("rep:x", "1")
	rt.Publish("exact:a", "not for the exact subscriber")
	rt.Publish("exact:*", "for it")
	HOST.WaitFor(function() return #calls >= 2 end, 5, "rep and exact events")
	HOST.Sleep(0.2)
	T.eq(#calls, 2, "calls (a replaced handler is not called)")
	T.eq(calls[1], "second", "the replacing handler runs")
	T.eq(calls[2], "exact exact:*", "Subscribe matches the channel literally")
	T.eq(meta_seen.pattern, "rep:*", "meta.pattern")
	T.eq(meta_seen.route, "same (rep:*)", "meta.route")
	T.ok(math.abs(meta_seen.received - os.time() * 1000) < 5000, "meta.received is unix ms")

	-- Publish encodes tables as util.TableToJSON shapes them.
	local cases = {
		["shape:array"] = { { 1, 2, 3 }, "[1,2,3]" },
		["shape:object"] = { { a = "x" }, '{"a":"x"}' },
		["shape:empty"] = { {}, "[]" },
		["shape:vector"] = { Vector(1, 2.5, -3), '{"x":1,"y":2.5,"z":-3}' },
		["shape:nested"] = { { pos = Vector(1, 2, 3) }, '{"pos":{"x":1,"y":2,"z":3}}' },
		["shape:sparse"] = { { [2] = true }, '{"2":true}' },
		["shape:escape"] = { { 'q"\\\n\1' }, '["q\\"\\\\\\n\\u0001"]' },
		["shape:binary"] = { "a\0b\255", "a\0b\255" },
		["shape:number"] = { 1.5, "1.5" },
	}
	for ch, c in pairs(cases) do T.ok(rt.Publish(ch, c[1]), "Publish " .. ch) end
	HOST.WaitFor(function()
		for ch in pairs(cases) do if not shapes[ch] then return false end end
		return true
	end, 5, "shape events")
	for ch, c in pairs(cases) do T.eq(shapes[ch], c[2], ch) end

	-- The six game events.
	T.ok(rt.PlayerSpawn("bob", 2, Vector(1, 2, 3)), "PlayerSpawn")
	T.ok(rt.PlayerDeath("bob", nil, "weapon_crowbar"), "PlayerDeath")
	T.ok(rt.ChatMessage("bob", "hi \0 there", true), "ChatMessage")
	T.ok(rt.PlayerTakeDamage("bob", 12.5, "alice"), "PlayerTakeDamage")
	T.ok(rt.RoundStart("terrortown", "ttt_minecraft_b5"), "RoundStart")
	T.ok(rt.RoundEnd(3, { traitors = 1, innocents = 4 }), "RoundEnd")
	HOST.WaitFor(function() return events["round:end"] and events["player:spawn"] and events["player:death"]
		and events["chat:message"] and events["player:damage"] and events["round:start"] end, 5, "game events")
	local spawn = events["player:spawn"]
	T.eq(spawn.name, "bob", "spawn.name")
	T.eq(spawn.team, 2, "spawn.team")
	T.eq(spawn.pos.z, 3, "spawn.pos.z")
	T.eq(spawn.server, "test-1", "spawn.server")
	T.ok(math.abs(spawn.ts - os.time() * 1000) < 5000, "spawn.ts is unix ms")
	T.eq(events["player:death"].attacker, nil, "death.attacker (nil for the world)")
	T.eq(events["player:death"].weapon, "weapon_crowbar", "death.weapon")
	T.eq(events["chat:message"].message, "hi \0 there", "chat.message keeps NUL")
	T.eq(events["chat:message"].team, true, "chat.team")
	T.eq(events["player:damage"].damage, 12.5, "damage.damage")
	T.eq(events["round:start"].map, "ttt_minecraft_b5", "round.map")
	T.eq(events["round:end"].score.innocents, 4, "round_end.score")

	-- A failing handler neither stops the pump nor the other handlers.
	for i = 1, 5 do rt.Publish("err:x", tostring(i)) end
	HOST.WaitFor(function() return good == 5 end, 5, "the good handler")
	T.eq(nested, 0, "ProcessEvents inside a handler")
	local st = rt.GetStats()
	T.eq(st.routes["bad (err:*)"].handler_errors, 5, "handler_errors of the bad route")
	T.eq(st.dropped.handler_error, 5, "dropped.handler_error")
	T.ok(st.received > 0 and st.dispatched > 0 and st.published > 0, "received/dispatched/published")
	T.eq(st.status, "connected", "status")
	T.eq(st.mode, "redis", "mode")
	-- Events wait at least until the next frame, so their latency is not 0.
	T.ok(st.latency_us.p50 > 0, "latency_us.p50 measured: " .. st.latency_us.p50)
	T.eq(st.queue.max_events, 10000, "queue.max_events")
	T.ok(rt.IsConnected(), "IsConnected")
	print("api: ok")
end)
