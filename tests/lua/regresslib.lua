-- Helpers for the regression scripts (tests/lua/regress_*.lua, run by
-- TestRegressions): a hang watchdog and a synchronous pump.
local R = {}

-- R.watchdog(seconds) ends the process with SIGALRM after seconds of wall
-- time (LuaJIT's ffi): a call that never returns fails the run instead of
-- hanging it. R.watchdog(0) disarms it. Not a timed assertion: it only
-- catches calls that do not return at all.
local ffi_ok, ffi = pcall(require, "ffi")
if ffi_ok then ffi.cdef("unsigned int alarm(unsigned int seconds);") end
function R.watchdog(seconds)
	if ffi_ok then ffi.C.alarm(seconds) end
end

-- R.expect(what, fn, ...) runs fn under pcall with a 10 s watchdog and
-- returns pcall's results; what names the call in the output, so a hang's
-- last line says which call hung.
function R.expect(what, fn, ...)
	print("regress: calling " .. what)
	R.watchdog(10)
	local res = { pcall(fn, ...) }
	R.watchdog(0)
	return unpack(res)
end

-- R.pump(cond, what) calls realtime.ProcessEvents until cond() is true;
-- it fails after 5 s (the local bus delivers in microseconds).
function R.pump(cond, what)
	local deadline = HOST.Time() + 5
	while not cond() do
		if HOST.Time() > deadline then error("timed out waiting for " .. what, 2) end
		pcall(realtime.ProcessEvents)
	end
end

return R
