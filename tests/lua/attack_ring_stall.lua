-- Lost wake-up of the ring's feeder when the byte budget fills the ring:
-- every event here is larger than the ring's share of queue.max_bytes, so
-- each one seals its slot and the next waits in the queue until that slot
-- has been dispatched (marked used by the pump) and freed by Go. If the
-- pump marks it used while the feeder is between its last look and its
-- sleep, and nothing else is published, nobody frees the slot: the event
-- waits forever while ProcessEvents returns 0. Handlers of random length
-- move that moment around; SEED replays the choices (printed).
local T = require "testlib"
local rt = realtime
local SEED = tonumber(os.getenv("SEED") or "") or math.floor(HOST.Time() * 1000) % 1000000007
local ROUNDS = tonumber(os.getenv("ROUNDS") or "1500")
local state = SEED % 2147483646 + 1
local function rand(n) -- 0..n-1, Park-Miller as fuzz.lua
	state = state * 16807 % 2147483647
	return state % n
end
T.depth(1)
T.drain() -- RealtimeConnected
local st = rt.GetStats()
print(string.format("attack_ring_stall: seed %d, max_bytes %d", SEED, st.queue.max_bytes))
local payload = string.rep("x", math.floor(st.queue.max_bytes / 4) + 16)
local got = 0
rt.Subscribe("stall", function()
	got = got + 1
	local t = HOST.Time() + rand(300) / 1e6
	while HOST.Time() < t do end
end)
local stop = HOST.Time() + 40
local rounds = 0
for r = 1, ROUNDS do
	if HOST.Time() > stop then break end
	for _ = 1, 2 do T.ok(rt.Publish("stall", payload), "Publish") end
	local deadline = HOST.Time() + 5
	while got < 2 * r do
		if HOST.Time() > deadline then
			st = rt.GetStats()
			error(string.format("stalled in round %d (seed %d): %d of %d events handled, none for 5 s; queue.depth %d, queued %d, dispatched %d",
				r, SEED, got, 2 * r, st.queue.depth, st.queued, st.dispatched))
		end
		rt.ProcessEvents()
	end
	rounds = r
end
T.eq(rt.GetStats().dropped.queue_full, 0, "queue_full drops")
print(string.format("attack_ring_stall: ok (%d rounds)", rounds))
HOST.Exit(0)
