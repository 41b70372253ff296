-- The ring that takes events to the main thread (issue 19): events
-- published in random bursts reach their handler exactly once and in
-- order, whatever the queue's size (the ring holds a quarter of it), the
-- calls' max, GetStats and Reload in between; and the pump never stalls
-- with events on their way. Random choices come from SEED (printed; the
-- events' timing is the local bus goroutine's).
local T = require "testlib"
local rt = realtime
local SEED = tonumber(os.getenv("SEED") or "") or math.floor(HOST.Time() * 1000) % 1000000007
local N = tonumber(os.getenv("RING_N") or "20000")
local state = SEED % 2147483646 + 1
local function rand(n) -- 1..n, Park-Miller as fuzz.lua
	state = state * 16807 % 2147483647
	return 1 + state % n
end

T.depth(1)
T.drain() -- RealtimeConnected
local max_events = rt.GetStats().queue.max_events
print(string.format("ring: seed %d, %d events, queue of %d", SEED, N, max_events))

-- Events go to channels drawn at random, through two routes, so that
-- consecutive events differ in channel, route and pattern in every order
-- (the ring writes a string equal to the previous event's once per slot,
-- and the pump pushes the Lua string it made for that one): each handler
-- checks what it got against what was sent ("<n> <channel>").
local channels = { "ring", "ring:aa", "ring:bb", "ring:aa" } -- equal lengths: a stale string would fit
local got, bad = 0, nil
local function handler(pattern)
	local route = nil -- its name, as the first event says; "(pattern)" ends it
	return function(channel, data, meta)
		route = route or meta.route
		local n, sent_to = data:match("^(%d+) (.*)$")
		if bad then
		elseif tonumber(n) ~= got + 1 then
			bad = string.format("event %s arrived after event %d", data, got)
		elseif channel ~= sent_to or meta.route ~= route or meta.pattern ~= pattern or
			route:sub(-#pattern - 2) ~= "(" .. pattern .. ")" then
			bad = string.format("event %q arrived as channel %q, route %q, pattern %q at route %q",
				data, channel, tostring(meta.route), tostring(meta.pattern), route)
		end
		got = got + 1
	end
end
rt.Subscribe("ring", handler("ring"))
rt.SubscribePattern("ring:*", handler("ring:*"))

local sent, last_got, last_change = 0, 0, HOST.Time()
while got < N and not bad do
	-- a burst of at most half the queue, so that nothing is dropped
	local room = math.min(math.floor(max_events / 2) - (sent - got), N - sent)
	for _ = 1, room > 0 and rand(room) or 0 do
		sent = sent + 1
		local channel = channels[rand(#channels)]
		local ok, err = rt.Publish(channel, sent .. " " .. channel)
		T.ok(ok, "Publish: " .. tostring(err))
	end
	for _ = 1, rand(3) do
		local r = rand(20)
		if r <= 4 then rt.ProcessEvents(rand(8))
		elseif r == 5 then rt.GetStats()
		elseif r == 6 then assert(rt.Reload())
		else rt.ProcessEvents() end
	end
	if got ~= last_got then last_got, last_change = got, HOST.Time() end
	if HOST.Time() - last_change > 10 then
		local st = rt.GetStats()
		bad = string.format("stalled: %d of %d sent events handled, none for 10 s; queue.depth %d, queued %d, dispatched %d",
			got, sent, st.queue.depth, st.queued, st.dispatched)
	end
end
T.ok(not bad, tostring(bad) .. " (seed " .. SEED .. ")")
T.eq(got, N, "events handled")
local st = rt.GetStats()
T.eq(st.queue.depth, 0, "queue.depth at the end")
T.eq(st.dispatched, N, "dispatched")
T.eq(st.dropped.queue_full, 0, "queue_full drops")
print("ring: ok")
HOST.Exit(0)
