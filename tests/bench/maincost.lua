-- Main-thread cost of the module, measured in the host (local mode, so no
-- network in the way): ns per empty ProcessEvents, per dispatched string
-- and 10-field JSON event, and per Publish call. Prints one "bench:" line
-- per figure for tests/bench (the Go driver).
if not realtime then require("realtime") end
local rt = realtime
local N = tonumber(os.getenv("BENCH_N") or "20000")
local json10 = '{"name":"player1","steamid":"STEAM_0:1:12345","team":2,"score":1234,"kills":17,' ..
	'"deaths":3,"alive":true,"weapon":"weapon_ak47","pos":{"x":1,"y":2,"z":3},"ping":48}'

local function report(name, total, n)
	print(string.format("bench: %s %.0f ns/op (%d ops)", name, total / n * 1e9, n))
end

local function fill(channel, payload)
	for _ = 1, N do rt.Publish(channel, payload) end
	local deadline = HOST.Time() + 10
	while rt.GetStats().queue.depth < N do
		assert(HOST.Time() < deadline, "queue never filled")
	end
end

local function drain()
	local t0 = HOST.Time()
	local n = 0
	while n < N do n = n + rt.ProcessEvents(N) end
	return HOST.Time() - t0
end

-- This runs before Initialize: nothing else pumps.
local M = 1000000
local t0 = HOST.Time()
for _ = 1, M do rt.ProcessEvents() end
report("empty_process_events", HOST.Time() - t0, M)

local calls = 0
rt.Subscribe("bench:string", function() calls = calls + 1 end)
rt.Subscribe("bench:json", function(_, data) calls = calls + (data.ping and 1 or 0) end, { decode = "json" })

fill("bench:string", "player1 joined the server")
report("dispatch_string", drain(), N)
fill("bench:json", json10)
report("dispatch_json10", drain(), N)
assert(calls == 2 * N, "handler calls " .. calls)

t0 = HOST.Time()
for _ = 1, N do rt.Publish("bench:none", "player1 joined the server") end
report("publish_string", HOST.Time() - t0, N)
local tbl = { name = "player1", team = 2, score = 1234, pos = Vector(1, 2, 3) }
t0 = HOST.Time()
for _ = 1, N do rt.Publish("bench:none", tbl) end
report("publish_table", HOST.Time() - t0, N)
t0 = HOST.Time()
for _ = 1, N do rt.PlayerDeath("player1", "player2", "weapon_ak47") end
report("publish_game_event", HOST.Time() - t0, N)
HOST.Exit(0)
