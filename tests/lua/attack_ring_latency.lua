-- latency_us when the pump takes a backlog one event per call: the ring's
-- slot holds them all, and each event's dispatch time was the time the
-- pump started the slot, so events that waited many frames were reported
-- as having waited a few microseconds. latency_us is an upper bound (its
-- histogram's buckets): it must be at least the wait measured here, which
-- is itself less than the true wait (the events were received before).
local T = require "testlib"
local rt = realtime
local N = 40
T.depth(1)
T.drain() -- RealtimeConnected
local queued_at, waited, got = nil, 0, 0
rt.Subscribe("lat", function()
	got = got + 1
	waited = math.max(waited, HOST.Time() - queued_at)
end)
for i = 1, N do T.ok(rt.Publish("lat", tostring(i)), "Publish") end
T.depth(N)
queued_at = HOST.Time()
local deadline = queued_at + 30
while got < N and HOST.Time() < deadline do
	local t = HOST.Time() + 0.005 -- a frame of 5 ms between events
	while HOST.Time() < t do end
	rt.ProcessEvents(1)
end
T.eq(got, N, "events handled")
local st = rt.GetStats()
T.ok(waited >= 0.1, "the last events waited " .. waited .. " s")
local p999 = st.latency_us.p999
-- the histogram's quantiles are within 6.25% (16 buckets per power of two)
T.ok(p999 >= waited * 1e6 * 0.93, string.format("latency_us.p999 is %d us, but an event waited %d us", p999, waited * 1e6))
print("attack_ring_latency: ok")
HOST.Exit(0)
