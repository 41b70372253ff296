-- Attack: print (or ErrorNoHalt) replaced by a function that calls the
-- module. A console forwarder that calls realtime.Reload (or Connect) adds
-- a log line for every line it prints; ProcessEvents prints the log lines
-- "while any wait", so one call never returns. The hostile print stops
-- after `cap` lines so the run can end; the pump must have stopped long
-- before (it had one line to print when the call began).
local T = require "testlib"
local rt = realtime

local cap = 2000
local real_print = print
local lines = 0
rt.Reload() -- one log line waiting ("reloaded: ...")
print = function(...)
	lines = lines + 1
	if lines < cap then rt.Reload() end -- each adds the next line to print
end
rt.ProcessEvents()
print = real_print
T.ok(lines < cap, string.format("one ProcessEvents call printed %d log lines (stopped only by the script's own cap)", lines))

HOST.Run(function() print("attack_printloop: ok") end)
