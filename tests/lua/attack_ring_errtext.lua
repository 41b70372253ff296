-- A handler's error text reaches the log whole: the ring copies it into C
-- memory for Go, and cut it at 4,096 bytes (before the ring, the whole
-- text was logged), in the middle of a UTF-8 character if it fell there.
-- Up to 64 KiB, that is: past it, it is cut on a character, with a note.
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
T.ok(#lines > 0, "the handler's error was logged")
T.ok(lines[1]:find(long, 1, true), string.format("the log line (%d bytes) has the whole error text (%d bytes)", #lines[1], #long))
-- An error text over 64 KiB is cut (on a character) with a note: a
-- 16 MB one was held in C until the end of the ProcessEvents call, and
-- printed whole.
local huge = "start " .. string.rep("é", 1048576) -- 2 MiB
rt.Subscribe("hugeerr", function() error(huge, 0) end)
T.ok(rt.Publish("hugeerr", "x"), "Publish")
lines = {}
deadline = HOST.Time() + 10
while #lines == 0 and HOST.Time() < deadline do rt.ProcessEvents() end
ErrorNoHalt = saved
T.ok(#lines > 0, "the huge error was logged")
local line = lines[1]
T.ok(#line < 70 * 1024, string.format("the log line is %d bytes", #line))
T.ok(line:find("start ééé", 1, true) and line:find("(cut: the error text is over 64 KiB)", 1, true), "the start of the text, then the note")
T.ok(line:find("éé ... (cut", 1, true), "cut between characters")
print("attack_ring_errtext: ok")
HOST.Exit(0)
