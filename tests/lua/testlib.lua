-- Assertions for the end-to-end scripts. A failed check raises an error
-- naming the check; the host turns it into a failed run.
local T = {}

local function show(v)
	if type(v) == "string" then return string.format("%q", v) end
	return tostring(v)
end

function T.eq(got, want, what)
	if got ~= want then error(string.format("%s: got %s, want %s", what or "value", show(got), show(want)), 2) end
end

function T.ok(cond, what)
	if not cond then error((what or "check") .. " failed", 2) end
end

-- T.errors(fn, pattern): fn must raise an error matching pattern (plain text).
function T.errors(fn, text, what)
	local ok, err = pcall(fn)
	if ok then error((what or text) .. ": no error raised", 2) end
	if not tostring(err):find(text, 1, true) then
		error(string.format("%s: error %s does not contain %s", what or "error", show(err), show(text)), 2)
	end
end

-- T.registry() counts the registry's entries and, among them, the
-- functions (handler references). luaL_unref keeps a freed slot as a number
-- in its free list, so the total grows by the few slots the list holds,
-- and stays there.
function T.registry()
	local n, fns = 0, 0
	for _, v in pairs(debug.getregistry()) do
		n = n + 1
		if type(v) == "function" then fns = fns + 1 end
	end
	return n, fns
end

-- T.wait_queued(n) spins until the router has queued n messages since it
-- started (GetStats().queued: status events are not counted), for a script
-- that has not started the pump.
function T.wait_queued(n)
	local deadline = HOST.Time() + 5
	while realtime.GetStats().queued < n do
		if HOST.Time() > deadline then error("never " .. n .. " messages queued", 2) end
	end
end

-- T.redis(...) sends one command to the test server (HOST.Redis: a client
-- of its own, outside the module, on every host including Windows).
function T.redis(...)
	return HOST.Redis(tonumber(os.getenv("TEST_REDIS_PORT")), ...)
end

-- T.depth(n) spins until n events wait for the pump (local delivery is a
-- goroutine's work), for scripts that pump by hand before Initialize.
function T.depth(n)
	local deadline = HOST.Time() + 10
	while realtime.GetStats().queue.depth < n do
		if HOST.Time() > deadline then error("queue never reached " .. n .. " events", 2) end
	end
end

-- T.drain() pumps until nothing waits (the budget may end a call early,
-- under qemu above all); it returns the events dispatched.
function T.drain()
	local n = 0
	repeat n = n + realtime.ProcessEvents() until realtime.GetStats().queue.depth == 0
	return n
end

return T
