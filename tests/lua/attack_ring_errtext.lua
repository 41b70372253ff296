-- A handler's error text reaches the log whole: the ring copies it into C
-- memory for Go, and cut it at 4,096 bytes (before the ring, the whole
-- text was logged), in the middle of a UTF-8 character if it fell there.
local T = require "testlib"
local rt = realtime
T.depth(1)
T.drain() -- RealtimeConnected
local lines = {}
local saved = ErrorNoHalt
ErrorNoHalt = function(s) lines[#lines + 1] = s end
local long = string.rep("é", 3000) .. " END" -- 6,004 bytes
rt.Subscribe("longerr", function() error(long, 0) end)
T.ok(rt.Publish("longerr", "x"), "Publish")
local deadline = HOST.Time() + 10
while #lines == 0 and HOST.Time() < deadline do rt.ProcessEvents() end
ErrorNoHalt = saved
T.ok(#lines > 0, "the handler's error was logged")
T.ok(lines[1]:find(long, 1, true), string.format("the log line (%d bytes) has the whole error text (%d bytes)", #lines[1], #long))
print("attack_ring_errtext: ok")
HOST.Exit(0)
