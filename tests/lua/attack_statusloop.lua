-- Attack: a status hook that causes another status event. Status hooks
-- (RealtimeConnected / RealtimeDisconnected) count neither against the
-- time budget nor against ProcessEvents' max, so a RealtimeConnected
-- hook that reconnects (Disconnect, then Connect: in local mode both
-- queue a status event at once) keeps one ProcessEvents(1) call running
-- forever. The hook stops reconnecting after `cap` calls so the run can
-- end; the pump must have returned long before.
local T = require "testlib"
local rt = realtime


local cap = 1000
local calls = 0
hook.Add("RealtimeConnected", "attack", function()
	calls = calls + 1
	if calls < cap then
		rt.Disconnect()
		rt.Connect()
	end
end)
T.depth(1) -- the RealtimeConnected of open
rt.ProcessEvents(1)
hook.Remove("RealtimeConnected", "attack")
T.ok(calls < cap, string.format("one ProcessEvents(1) call ran the RealtimeConnected hook %d times (stopped only by the script's own cap)", calls))

HOST.Run(function() print("attack_statusloop: ok") end)
