-- Attack: realtime.Off, then a new registration whose route has the same
-- name, while events of the removed one wait. The pump finds a handler by
-- its route's name only, so the new registration's function got the
-- removed one's events: Subscribe("k*", "id") (the channel "k*" only) got
-- an event on "kabc" that On("k*", "id") had matched, and an On made
-- again after Off got what was queued before the Off, which docs/API.md
-- says is counted as no_handler. On again without Off replaces the
-- registration and keeps its queued events (that must stay); a stream
-- route's entry queued at the Off comes again to the new one, uncounted.
local T = require "testlib"
local rt = realtime
HOST.ExpectErrors("was removed while events for it waited", "was removed while entries for it waited")

T.depth(1)
rt.ProcessEvents() -- RealtimeConnected (local)

local got = {}
local function rec(tag) return function(ch, data) got[#got + 1] = tag .. ":" .. ch .. "=" .. data end end
local function stats() return rt.GetStats().dropped.no_handler end

-- 1. Off, then Subscribe under the same name: the channel "k*" only.
rt.On("k*", "id", rec("glob"))
rt.Publish("kabc", "1")
T.depth(1)
T.eq(rt.Off("id"), true, "Off")
rt.Subscribe("k*", "id", rec("exact"))
rt.Publish("k*", "2")
T.depth(2)
T.drain()
T.eq(table.concat(got, " "), "exact:k*=2", "the Subscribe registration's calls")
T.eq(stats(), 1, "no_handler after the Subscribe case")
rt.Off("id")

-- 2. Off, then On again: what was queued before the Off goes to no one.
got = {}
rt.On("m", "id2", rec("old"))
rt.Publish("m", "1")
T.depth(1)
rt.Off("m", "id2")
rt.On("m", "id2", rec("new"))
rt.Publish("m", "2")
T.depth(2)
T.drain()
T.eq(table.concat(got, " "), "new:m=2", "the second On's calls")
T.eq(stats(), 2, "no_handler after the On case")
rt.Off("id2")

-- 3. On again without Off replaces: the queued event reaches the new function.
got = {}
rt.On("r", "id3", rec("first"))
rt.Publish("r", "1")
T.depth(1)
rt.On("r", "id3", rec("second"))
T.drain()
T.eq(table.concat(got, " "), "second:r=1", "a replaced registration's queued event")
T.eq(stats(), 2, "no_handler after the replace case")
rt.Off("id3")

-- 4. A stream route (local mode) off and on again with an entry queued:
-- the entry goes to no one then, and comes again to the new function
-- without a delivery counted (max_deliveries = 1: not discarded).
got = {}
rt.Stream("s", "id4", rec("first"), { max_deliveries = 1 })
T.ok(rt.Append("s", "1"), "Append")
T.depth(1)
rt.Off("id4")
rt.Stream("s", "id4", function(st, data, meta) got[#got + 1] = "again:" .. st .. "=" .. data .. "/" .. meta.deliveries end,
	{ max_deliveries = 1 })
local deadline = HOST.Time() + 10
repeat rt.ProcessEvents() until #got > 0 or HOST.Time() > deadline
T.eq(table.concat(got, " "), "again:s=1/1", "the stream entry after Off and Stream again")
T.eq(rt.GetStats().dead_lettered, 0, "entries discarded")
rt.Off("id4")

HOST.Run(function() print("attack_offrename: ok") end)
