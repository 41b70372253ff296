-- Lost wake-up of the ring's feeder with the smallest ring: queue.max_events
-- 8 (the ring holds 2, wakes at 1), every ProcessEvents call takes one event
-- (max_per_frame 1), bursts of random size up to the queue's limit (so some
-- fill the ring and the queue exactly: each event goes to two routes), the pump called after a random
-- spin. Handlers of every arity are swapped in by On (same id) from inside a
-- handler, mid-call, so the pump's arity cache meets a new function of
-- another arity: each must see exactly the arguments it declares.
-- SEED replays the choices (printed).
local T = require "testlib"
local rt = realtime
local SEED = tonumber(os.getenv("SEED") or "") or math.floor(HOST.Time() * 1000) % 1000000007
local ROUNDS = tonumber(os.getenv("ROUNDS") or "600")
local state = SEED % 2147483646 + 1
local function rand(n) -- 0..n-1, Park-Miller as fuzz.lua
	state = state * 16807 % 2147483647
	return state % n
end
T.depth(1)
T.drain() -- RealtimeConnected
local st = rt.GetStats()
print(string.format("attack_ring_wake: seed %d, max_events %d", SEED, st.queue.max_events))
local got, bad = 0, nil
local makers = {
	function() return function() got = got + 1 end end,
	function() return function(ch) got = got + 1; if type(ch) ~= "string" then bad = "1-param ch " .. type(ch) end end end,
	function() return function(ch, data)
		got = got + 1
		if type(ch) ~= "string" or data ~= "p" then bad = "2-param args " .. type(ch) .. " " .. tostring(data) end
	end end,
	function() return function(ch, data, meta)
		got = got + 1
		if type(meta) ~= "table" or data ~= "p" then bad = "3-param meta " .. type(meta) .. " " .. tostring(data) end
	end end,
	function() return function(...)
		got = got + 1
		if select("#", ...) ~= 3 or type((select(3, ...))) ~= "table" then bad = "vararg got " .. select("#", ...) end
	end end,
}
local function install()
	rt.On("wake", "h", makers[rand(#makers) + 1]())
end
install()
-- a second handler that replaces the first mid-call, and makes garbage so
-- that a freed function's address can be reused by the next one made
local swapped = 0
rt.On("wake", "swap", function()
	swapped = swapped + 1
	if rand(3) == 0 then
		install()
		collectgarbage()
	end
end)
local stop = HOST.Time() + 40
local want, rounds = 0, 0
for r = 1, ROUNDS do
	if HOST.Time() > stop then break end
	local n = rand(st.queue.max_events / 2) + 1 -- each event is queued twice (two routes)
	for _ = 1, n do T.ok(rt.Publish("wake", "p"), "Publish") end
	want = want + n
	local deadline = HOST.Time() + 5
	while got < want or swapped < want do
		if HOST.Time() > deadline then
			local s = rt.GetStats()
			-- diagnosis: does one more event queued (queued() fills the ring itself) free the stuck ones?
			local before = got
			rt.Publish("unrelated", "x")
			local t2 = HOST.Time() + 2
			while HOST.Time() < t2 and got < want do rt.ProcessEvents() end
			error(string.format("stalled in round %d (seed %d): %d of %d events handled, none for 5 s; queue.depth %d, dispatched %d; after one more Publish: %d more handled",
				r, SEED, before, want, s.queue.depth, s.dispatched, got - before))
		end
		local t = HOST.Time() + rand(200) / 1e6
		while HOST.Time() < t do end
		rt.ProcessEvents()
	end
	if bad then error(string.format("round %d (seed %d): %s", r, SEED, bad)) end
	rounds = r
end
T.eq(rt.GetStats().dropped.queue_full, 0, "queue_full drops")
print(string.format("attack_ring_wake: ok (%d rounds)", rounds))
HOST.Exit(0)
