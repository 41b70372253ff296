-- An error raised in a hook or a timer during a frame fails the run unless
-- the script announced it (ERRORS_EXPECTED=1); tests/harness_test.go runs
-- both.
if os.getenv("ERRORS_EXPECTED") == "1" then HOST.ExpectErrors("unannounced") end
local where = os.getenv("ERRORS_IN")
if where == "timer" then
	timer.Simple(0, function() error("unannounced " .. where) end)
else
	hook.Add(where, "errors", function() error("unannounced " .. where) end)
end
HOST.Run(function()
	for _ = 1, 5 do HOST.Yield() end
	print("errors: done")
end)
