-- Main-thread cost of the module, measured in the host (local mode, so no
-- network in the way): ns per empty ProcessEvents, per dispatched string
-- and 10-field JSON event, and per Publish call, each beside a reference:
-- the nearest thing plain Lua does (a C call, the same handler call made
-- from Lua, JSON in Lua). The JSON references are the util.TableToJSON and
-- util.JSONToTable stand-ins of tests/gmod/env.lua, written in Lua: GMod's
-- own are native and faster, and are not measured here. Prints "bench:
-- <name> <ns> ns/op <reference ns>" lines for the Go driver (tests/bench).
if not realtime then require("realtime") end
local rt = realtime
-- Dispatch is timed in rounds of N events, each round queued and moved
-- into the ring before the pump starts (the ring takes up to 8,192), and
-- the best round counts: the main thread's own cost per event, not this
-- shared machine's other load nor the feeder's hand-off, which the frames
-- scenario measures.
local N = tonumber(os.getenv("BENCH_N") or "4000")
local ROUNDS = 5
local P = 20000 -- Publish calls timed
local json10 = '{"name":"player1","steamid":"STEAM_0:1:12345","team":2,"score":1234,"kills":17,' ..
	'"deaths":3,"alive":true,"weapon":"weapon_ak47","pos":{"x":1,"y":2,"z":3},"ping":48}'

local function report(name, total, n, ref)
	print(string.format("bench: %s %.1f ns/op ref=%.1f", name, total / n * 1e9, ref / n * 1e9))
end

local function time(n, fn)
	local t0 = HOST.Time()
	for i = 1, n do fn(i) end
	return HOST.Time() - t0
end

-- The reference for dispatch: a pure-Lua event queue, filled with N events
-- and drained with the same handler call ProcessEvents makes.
local function lua_queue_drain(fn, channel, payload, decode)
	local q = {}
	for i = 1, N do q[i] = { channel, payload .. "" } end
	local t0 = HOST.Time()
	for i = 1, N do
		local e = q[i]
		q[i] = nil
		pcall(fn, e[1], decode and decode(e[2]) or e[2], { pattern = e[1], route = e[1], received = HOST.Now() })
	end
	return HOST.Time() - t0
end

local function fill(channel, payload)
	for _ = 1, N do rt.Publish(channel, payload) end
	local deadline = HOST.Time() + 10
	while rt.GetStats().queue.depth < N do
		assert(HOST.Time() < deadline, "queue never filled")
	end
	local t = HOST.Time() + 0.02 -- the feeder moves them into the ring meanwhile
	while HOST.Time() < t do end
end

-- best runs fn (which returns seconds) ROUNDS times and returns the least.
local function best(fn)
	local b = math.huge
	for _ = 1, ROUNDS do b = math.min(b, fn()) end
	return b
end

local function drain()
	local t0 = HOST.Time()
	local n = 0
	while n < N do n = n + rt.ProcessEvents(N) end
	return HOST.Time() - t0
end

-- This runs before Initialize: nothing else pumps.
local M = 1000000
report("empty_process_events", time(M, function() rt.ProcessEvents() end), M, time(M, function() HOST.Nop() end))

local calls = 0
rt.Subscribe("bench:string", function() calls = calls + 1 end)
rt.Subscribe("bench:json", function(_, data) calls = calls + (data.ping and 1 or 0) end, { decode = "json" })

local function noop() calls = calls + 1 end
report("dispatch_string", best(function() fill("bench:string", "player1 joined the server") return drain() end), N,
	best(function() return lua_queue_drain(noop, "bench:string", "player1 joined the server") end))
report("dispatch_json10", best(function() fill("bench:json", json10) return drain() end), N,
	best(function() return lua_queue_drain(noop, "bench:json", json10, util.JSONToTable) end))
assert(calls >= 2 * ROUNDS * N, "handler calls " .. calls)

local outbox = {}
report("publish_string", time(P, function() rt.Publish("bench:none", "player1 joined the server") end), P,
	time(P, function(i) outbox[i] = { "bench:none", "player1 joined the server" } end))
local tbl = { name = "player1", team = 2, score = 1234, pos = Vector(1, 2, 3) }
report("publish_table", time(P, function() rt.Publish("bench:none", tbl) end), P,
	time(P, function(i) outbox[i] = util.TableToJSON(tbl) end))
report("publish_game_event", time(P, function() rt.PlayerDeath("player1", "player2", "weapon_ak47") end), P,
	time(P, function(i) outbox[i] = util.TableToJSON({ victim = "player1", attacker = "player2", weapon = "weapon_ak47", ts = os.time() * 1000, server = "x" }) end))
HOST.Exit(0)
