-- A seeded random fuzzer of the realtime.* Lua API, run by TestLuaFuzz
-- (tests/fuzz_test.go) in the GMod-like host, in local mode, and by
-- TestLuaFuzzRedis against a redis-server.
--
-- It makes random sequences of every realtime.* call, from the top level,
-- from inside handlers and from coroutines, with hostile values (cyclic,
-- shared, deep and huge tables, sparse arrays, metatables whose
-- __index/__tostring/__gc raise, NaN, infinities, huge numbers, binary
-- strings, functions, userdata, coroutines) and hostile handlers (raise any
-- value, yield, re-enter the API, unregister themselves, allocate userdata
-- whose __gc raises). After each step it checks:
--   * no realtime.* call uses more than FUZZ_STEP_MS (100) ms of the main
--     thread's CPU, its handlers' own time excluded: the best of three
--     for calls that can be repeated (those refused for their arguments,
--     Publish, On with an id, ...), else five times that, measured once
--     (CPU time rather than wall time, yet a VM's host can still steal
--     some); a call that never returns is
--     ended by SIGALRM after FUZZ_ALARM_S (10) s of wall time (LuaJIT's
--     ffi), and TestLuaFuzz prints the seed;
--   * no crash, no "internal error" (a recovered Go panic);
--   * every handler call goes to a function registered, when the current
--     pump started or since, for a pattern that matches the channel (a
--     reference model of the registrations and a Redis glob matcher);
--   * no handler fails with an error it did not raise itself (an
--     "attempt to call a number value" is a released reference);
--   * realtime.Off returns whether the model had such a registration;
--     numbers are never wrapped (ProcessEvents(3e9), burst = 1e10, 2.7);
--   * the pump is alive (a probe event is delivered) every so often and
--     at the end, and the registry is back to its baseline once
--     everything is unregistered.
-- A failure prints "fuzz: FAIL seed=S step=N: what" and the last steps;
-- SEED=S reproduces it (event timing aside: the local bus is a goroutine).
--
-- Environment: SEED, FUZZ_STEPS (default 2000), FUZZ_STEP_MS (100),
-- FUZZ_ALARM_S (10), FUZZ_SKIP (comma list of generators to leave out:
-- cycle, shared, deep, huge, gcerror, metaerror, yield, reentry, coroutine,
-- config, connect, badnum, plainud, longkey, hugeconfig, namecollision,
-- reentryreg: no On/Off/Handler from handlers),
-- FUZZ_TRACE=1 prints every step as it starts
-- (TestLuaFuzz sets it: a hang's last line is the call that hung),
-- FUZZ_HOME=connected for a config with [redis] (TestLuaFuzzRedis),
-- FUZZ_VERBOSE=1 also the module's log lines.

local rt = realtime
local SEED = tonumber(os.getenv("SEED") or "") or os.time()
local STEPS = tonumber(os.getenv("FUZZ_STEPS") or "") or 2000
local STEP_LIMIT = (tonumber(os.getenv("FUZZ_STEP_MS") or "") or 100) / 1000
local ONCE_FACTOR = 5 -- for calls that cannot be timed again (see call)
local ALARM_S = tonumber(os.getenv("FUZZ_ALARM_S") or "") or 10
local VERBOSE = os.getenv("FUZZ_VERBOSE") == "1"
local TRACE = VERBOSE or os.getenv("FUZZ_TRACE") == "1"
local SKIP = {}
for w in (os.getenv("FUZZ_SKIP") or ""):gmatch("[^,%s]+") do SKIP[w] = true end

-- LuaJIT 2.1.0-beta3 (GMod's x86-64 runtime) crashes by itself when a
-- __gc finalizer raises during a collection that JIT-compiled code started
-- (the unwinder meets trace frames): a plain Lua loop that makes such
-- garbage under pcall segfaults with no module loaded. That is not the
-- module's to prevent, so raising finalizers are fuzzed with the JIT off.
if jit and not SKIP.gcerror then jit.off() end

local unpack = unpack or table.unpack
local pack = function(...) return { n = select("#", ...), ... } end

-- ---- Deterministic random numbers (Park-Miller: exact in doubles, the
-- same on LuaJIT and PUC Lua) -------------------------------------------
local state = SEED % 2147483646 + 1
local function rnd()
	state = state * 16807 % 2147483647
	return state / 2147483647
end
local function rand(a, b) -- integer in [a, b]
	if not b then a, b = 1, a end
	return a + math.floor(rnd() * (b - a + 1))
end
local function chance(p) return rnd() < p end
local function pick(t) return t[rand(#t)] end

-- ---- Clocks and the hang detector -----------------------------------------
-- cpu() is the main thread's CPU time (the Go side of a call runs on the
-- calling thread; the module's goroutines do not count); alarm(s) ends the
-- process with SIGALRM after s seconds of wall time.
local alarm, cpu = function() end, os.clock
do
	local ok, ffi = pcall(require, "ffi")
	if ok then
		ffi.cdef([[
			unsigned int alarm(unsigned int seconds);
			struct fuzz_timespec { long tv_sec; long tv_nsec; };
			int clock_gettime(int clk, struct fuzz_timespec *tp);
		]])
		if ALARM_S > 0 then alarm = function(s) ffi.C.alarm(s) end end
		local ts = ffi.new("struct fuzz_timespec")
		local CLOCK_THREAD_CPUTIME_ID = 3
		cpu = function()
			ffi.C.clock_gettime(CLOCK_THREAD_CPUTIME_ID, ts)
			return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
		end
	end
end

-- ---- Reporting ------------------------------------------------------------
local step, recent = 0, {}
local function note(s)
	recent[#recent + 1] = s
	if #recent > 40 then table.remove(recent, 1) end
	if TRACE then io.stdout:write("fuzz: step ", step, ": ", s, "\n") end
end

local gc_armed = false -- __gc and metamethods raise only inside realtime.* calls

local function fail(msg)
	gc_armed = false
	alarm(0)
	print(string.format("fuzz: FAIL seed=%d step=%d: %s", SEED, step, msg))
	print("fuzz: last steps (oldest first):")
	for _, s in ipairs(recent) do print("  " .. s) end
	print(string.format("fuzz: reproduce with SEED=%d FUZZ_STEPS=%d", SEED, STEPS))
	io.stdout:flush()
	os.exit(1)
end

local desc = setmetatable({}, { __mode = "k" }) -- table -> what the generator made
local function describe(t, d)
	desc[t] = d
	return t
end

local function show(v)
	local t = type(v)
	if t == "string" then
		local s = string.format("%q", #v > 40 and v:sub(1, 40) .. "..." or v)
		return (s:gsub("[%z\1-\31\127-\255]", function(c) return string.format("\\%d", c:byte()) end))
	elseif t == "boolean" or t == "nil" then
		return tostring(v)
	elseif t == "number" then
		return v == math.floor(v) and math.abs(v) < 2 ^ 53 and string.format("%d", v) or tostring(v)
	elseif t == "table" then
		local ok, mt = pcall(getmetatable, v)
		return "table(" .. (desc[v] or "?") .. (ok and mt and ",mt" or "") .. ")"
	end
	return t
end

-- ---- Redis glob matching (stringmatchlen, case-sensitive) ----------------
local function glob(p, s, pi, si)
	pi, si = pi or 1, si or 1
	local plen, slen = #p, #s
	while pi <= plen do
		local c = p:sub(pi, pi)
		if c == "*" then
			while p:sub(pi + 1, pi + 1) == "*" do pi = pi + 1 end
			if pi == plen then return true end
			for k = si, slen + 1 do
				if glob(p, s, pi + 1, k) then return true end
			end
			return false
		elseif si > slen then
			return false
		elseif c == "?" then
			si = si + 1
		elseif c == "[" then
			pi = pi + 1
			local neg = p:sub(pi, pi) == "^"
			if neg then pi = pi + 1 end
			local match, x = false, s:byte(si)
			while true do
				local d = p:sub(pi, pi)
				if d == "\\" and pi + 1 <= plen then
					pi = pi + 1
					if p:byte(pi) == x then match = true end
				elseif d == "]" then
					break
				elseif pi > plen then
					pi = pi - 1
					break
				elseif pi + 2 <= plen and p:sub(pi + 1, pi + 1) == "-" then
					local a, b = p:byte(pi), p:byte(pi + 2)
					if a > b then a, b = b, a end
					pi = pi + 2
					if x >= a and x <= b then match = true end
				elseif p:byte(pi) == x then
					match = true
				end
				pi = pi + 1
			end
			if neg then match = not match end
			if not match then return false end
			si = si + 1
		elseif c == "\\" and pi < plen then
			pi = pi + 1
			if p:byte(pi) ~= s:byte(si) then return false end
			si = si + 1
		else
			if p:byte(pi) ~= s:byte(si) then return false end
			si = si + 1
		end
		pi = pi + 1
	end
	return si > slen
end

-- ---- The config routes (garrysmod/cfg/realtime.toml, written by the test)
local routes = {} -- handler name -> list of patterns
local hook_patterns = {} -- hook name -> list of patterns
do
	local f = io.open(HOST.root .. "/garrysmod/cfg/realtime.toml")
	local text = f and f:read("*a") or ""
	if f then f:close() end
	local blocks, at = {}, text:find("[[routes]]", 1, true)
	while at do
		local next_at = text:find("[[routes]]", at + 1, true)
		blocks[#blocks + 1] = text:sub(at + 10, (next_at or #text + 1) - 1)
		at = next_at
	end
	for _, block in ipairs(blocks) do
		local pat = block:match('\npattern%s*=%s*"([^"]*)"')
		local ch = block:match('\nchannel%s*=%s*"([^"]*)"')
		local h = block:match('\nhandler%s*=%s*"([^"]*)"')
		local p = pat and { pattern = pat } or { pattern = ch, exact = true }
		local hk = h:match("^hook:(.*)")
		local into = hk and hook_patterns or routes
		local key = hk or h
		into[key] = into[key] or {}
		table.insert(into[key], p)
	end
end
local handler_names = {}
for name in pairs(routes) do handler_names[#handler_names + 1] = name end
table.sort(handler_names)
handler_names[#handler_names + 1] = "fz_unrouted"

-- ---- Values -----------------------------------------------------------------
local numbers = {
	0, -0, 1, -1, 0.5, 2.7, -2.5, 7, 100, 1e10, 3e9, 2 ^ 31, 2 ^ 31 - 1, -2 ^ 31, 2 ^ 32, 2 ^ 53, 2 ^ 53 + 2,
	2 ^ 63, 2 ^ 64, 1e300, -1e300, 1 / 0, -1 / 0, 0 / 0, 5e-324, 1e-300, 4242.25,
}
local function gen_number()
	if SKIP.badnum or chance(0.3) then return rand(-1000, 1000) end
	if chance(0.2) then return (rnd() - 0.5) * 10 ^ rand(-10, 30) end
	return pick(numbers)
end

local alphabet = { "a", "b", "c", ":", "x", "h" }
local function gen_channel()
	local t = {}
	for i = 1, rand(1, 7) do t[i] = pick(alphabet) end
	if chance(0.05) then t[#t + 1] = pick({ "*", "?", "[", "\0", "\255", " " }) end
	return table.concat(t)
end

local function gen_bytes(n)
	local t = {}
	for i = 1, n do t[i] = string.char(rand(0, 255)) end
	return table.concat(t)
end

local function gen_string()
	local k = rand(10)
	if k == 1 then return "" end
	if k == 2 then return gen_bytes(rand(1, 64)) end
	if k == 3 then return pick({ "\255\254", "\192\128", "\237\160\128", "a\0b", "\226\130", "\0" }) end
	if k == 4 and not SKIP.huge then return string.rep(pick({ "x", "\0", "\"", "\\" }), rand(1000, 100000)) end
	if k == 5 then return tostring(gen_number()) end
	return gen_channel()
end

local gen_value

local function gc_proxy(what)
	local u = newproxy(true)
	local mt = getmetatable(u)
	if SKIP.plainud then mt.__index = function() end end
	if what == "gc" and not SKIP.gcerror then
		mt.__gc = function() if gc_armed then error("fuzz-gc finalizer") end end
	elseif what == "index" and not SKIP.metaerror then
		mt.__index = function() if gc_armed then error("fuzz-index") end end
	elseif what == "tostring" and not SKIP.metaerror then
		mt.__tostring = function() error("fuzz-tostring") end
	elseif what == "vector" then
		mt.__index = function(_, k) return ({ x = gen_number(), y = 1, z = 2 })[k] end
	end
	return u
end

local function gen_table(depth)
	local k = rand(14)
	local t = {}
	if k == 1 then
		return describe(t, "empty")
	elseif k == 2 then
		for i = 1, rand(0, 12) do t[i] = gen_value(depth + 1) end
	elseif k == 3 then -- sparse
		for _ = 1, rand(1, 6) do t[pick({ 1, 2, 3, 10, 1000, 2 ^ 31, 2 ^ 40, -1, 0, 1.5 })] = gen_value(depth + 1) end
	elseif k == 4 then -- keys that clash or cannot be JSON keys
		t[1], t["1"] = "a", "b"
		if chance(0.5) then t[true] = 1 end
		if chance(0.3) then t[{}] = 1 end
		if chance(0.3) then t[print] = 1 end
		if chance(0.3) then t[1 / 0] = 1 end
	elseif k == 5 and not SKIP.cycle then
		t.a = t
		if chance(0.5) then t.b = t end
		if chance(0.5) then t.c = { d = t } end
		return describe(t, "cyclic")
	elseif k == 6 and not SKIP.shared then -- a DAG: 2^levels paths, levels nodes
		local levels = rand(2, 40)
		local c = { leaf = 1 }
		for _ = 1, levels do c = { l = c, r = c } end
		return describe(c, "shared" .. levels)
	elseif k == 7 and not SKIP.deep then
		local levels = rand(10, 300)
		local c = {}
		for _ = 1, levels do c = { c } end
		return describe(c, "deep" .. levels)
	elseif k == 8 and not SKIP.huge then
		local n = rand(1000, 30000)
		if chance(0.5) then
			for i = 1, n do t[i] = i end
		else
			for i = 1, n do t["k" .. i] = i end
		end
		return describe(t, "huge" .. n)
	elseif k == 9 and not SKIP.metaerror then
		setmetatable(t, {
			__index = function() if gc_armed then error("fuzz-index") end end,
			__tostring = function() error("fuzz-tostring") end,
			__newindex = function() error("fuzz-newindex") end,
		})
		rawset(t, "v", gen_value(depth + 1))
		return describe(t, "metaerror")
	elseif k == 10 then -- a vector-ish table
		t.x, t.y, t.z = gen_number(), gen_number(), gen_number()
	elseif k == 11 then
		t[1], t[2], t[3] = gen_number(), gen_number(), gen_number()
	else
		for _ = 1, rand(0, 6) do
			local key = gen_string()
			if SKIP.longkey then key = key:sub(1, 100) end
			t[key] = gen_value(depth + 1)
		end
	end
	local what = ({ "", "array", "sparse", "clashing keys" })[k] or (k == 10 or k == 11) and "vector-ish" or "object"
	local inner = {}
	for _, v in pairs(t) do
		if type(v) == "table" and desc[v] and #inner < 3 then inner[#inner + 1] = desc[v] end
		if type(v) == "string" and #v > 1000 and #inner < 3 then inner[#inner + 1] = "string" .. #v end
	end
	if #inner > 0 then what = what .. "{" .. table.concat(inner, ",") .. "}" end
	return describe(t, what)
end

function gen_value(depth)
	depth = depth or 0
	local k = rand(depth > 3 and 8 or 16)
	if k == 1 then return nil end
	if k == 2 then return chance(0.5) end
	if k <= 4 then return gen_number() end
	if k <= 7 then return gen_string() end
	if k == 8 then return pick({ print, function() end }) end
	if k == 9 then return coroutine.create(function() end) end
	if k == 10 then return newproxy(false) end
	if k == 11 then return gc_proxy(pick({ "gc", "index", "tostring", "vector", SKIP.plainud and "vector" or "plain" })) end
	if k == 12 then return Vector(gen_number(), gen_number(), gen_number()) end
	if k == 13 then return io.stdout end
	return gen_table(depth)
end

local function gen_pattern()
	local t = {}
	for i = 1, rand(1, 5) do
		t[i] = pick({ "a", "b", "c", ":", "x", "h", "*", "*", "?", "[ab]", "[^a]", "[a-c]", "\\*", "a", "b" })
	end
	return table.concat(t)
end

-- ---- The reference model ---------------------------------------------------
-- A token is one registration: its function, the patterns it may receive,
-- and when it stopped being registered.
local epoch, pumping = 0, 0 -- pump count; depth of ProcessEvents calls
local regs = {} -- route name -> token (realtime.On/Subscribe/SubscribePattern)
local named = {} -- handler name -> token (realtime.Handler)
local counts = { calls = 0, delivered = 0, ok_publish = 0 }
local handler_depth, handler_cpu = 0, 0
local api -- the step table, for calls from handlers

local function routename(pat, id) return id .. " (" .. pat .. ")" end

local function kill(tok)
	if tok and tok.live then
		tok.live = false
		tok.dead = epoch
	end
end

local expected_errors = {
	"fuzz-raise", "(error object is not a string)", "attempt to yield", "fuzz-gc", "fuzz-index",
	"fuzz-tostring", "fuzz-newindex", "4242.25",
	-- a raising finalizer inside the traceback of a handler's error
	"error in error handling",
}
local function expected(msg)
	for _, e in ipairs(expected_errors) do
		if msg:find(e, 1, true) then return true end
	end
	return false
end

-- The module prints its log lines through ErrorNoHalt and print.
local function check_log(line)
	line = tostring(line)
	if line:find("internal error", 1, true) then fail("log: " .. line) end
	local msg = line:match('^%[realtime%] handler of .- failed on ".-": (.*)')
	if msg and not expected(msg) then fail("a handler failed with an error it did not raise: " .. line) end
end
local orig_error_no_halt, orig_print = ErrorNoHalt, print
function ErrorNoHalt(...)
	check_log(table.concat({ ... }))
	if VERBOSE then return orig_error_no_halt(...) end
end
function print(...)
	local s = {}
	for i = 1, select("#", ...) do s[i] = tostring((select(i, ...))) end
	check_log(table.concat(s, "\t"))
	if VERBOSE or not tostring((...)):find("^%[realtime%]") then return orig_print(...) end
end

local behaviours = { "plain", "plain", "plain", "raise", "yield", "gc", "reenter", "reenter", "offself", "swap" }

local function handler_check(tok, ch, data, meta)
	counts.delivered = counts.delivered + 1
	if not (tok.live or (pumping > 0 and tok.dead == epoch)) then
		fail(string.format("%s was called for %s after it was unregistered (pump %d, unregistered in pump %s)",
			tok.what, show(ch), epoch, tostring(tok.dead)))
	end
	if type(ch) ~= "string" then fail(tok.what .. " called with channel " .. show(ch)) end
	local ok = false
	for _, p in ipairs(tok.patterns) do
		if p.exact and ch == p.pattern or not p.exact and glob(p.pattern, ch) then ok = true end
	end
	if not ok then fail(string.format("%s got channel %s, which none of its patterns matches", tok.what, show(ch))) end
	if type(meta) ~= "table" then fail(tok.what .. " called with meta " .. show(meta)) end
	local mp = false
	for _, p in ipairs(tok.patterns) do
		-- an exact channel's route may show it as the glob that matches only it
		if p.pattern == meta.pattern or p.exact and p.pattern:gsub("[%*%?%[%]\\]", "\\%0") == meta.pattern then mp = true end
	end
	if not mp then fail(string.format("%s got meta.pattern %s for channel %s", tok.what, show(meta.pattern), show(ch))) end
end

local quiet = false -- handlers only check (while probing the pump)

local function behave(tok)
	if quiet then return end
	local b = tok.behaviour
	if b == "raise" then
		local v = pick({ "fuzz-raise", "fuzz-raise", 4242.25, false, {}, print, "table" })
		if v == "table" then v = setmetatable({}, { __tostring = function() error("fuzz-tostring") end }) end
		if v == nil or v == "fuzz-raise" then error("fuzz-raise") end
		error(v, 0)
	elseif b == "yield" and not SKIP.yield then
		coroutine.yield("fuzz-yield")
	elseif b == "gc" and not SKIP.gcerror then
		for _ = 1, rand(1, 20) do gc_proxy("gc") end
	elseif b == "reenter" and not SKIP.reentry then
		for _ = 1, rand(1, 3) do api.random_call(true) end
	elseif b == "offself" and not SKIP.reentry and not SKIP.reentryreg then
		api.off_token(tok)
	elseif b == "swap" and not SKIP.reentry and not SKIP.reentryreg then
		-- defect 2's shape: unregister itself, register something else
		api.off_token(tok)
		api.on(true)
	end
end

local function new_token(what, patterns)
	local tok = { what = what, patterns = patterns, live = true, behaviour = pick(behaviours) }
	tok.fn = function(ch, data, meta)
		local armed = gc_armed
		gc_armed = false
		local c0 = cpu()
		handler_depth = handler_depth + 1
		handler_check(tok, ch, data, meta)
		local ok, err = pcall(behave, tok)
		handler_depth = handler_depth - 1
		if handler_depth == 0 then handler_cpu = handler_cpu + (cpu() - c0) end
		gc_armed = armed
		if not ok then error(err, 0) end
	end
	return tok
end

for name, pats in pairs(hook_patterns) do
	local tok = { what = "hook " .. name, patterns = pats, live = true }
	hook.Add(name, "fuzz", function(ch, data, meta)
		local armed = gc_armed
		gc_armed = false
		handler_check(tok, ch, data, meta)
		gc_armed = armed
	end)
end

-- ---- Calling the API -------------------------------------------------------
-- call runs realtime[name](...) under pcall with __gc and __index armed,
-- times it, and checks the error, if any, is an ordinary one.
local call_retry = false
local repeatable = {
	Publish = true, GetStats = true, Status = true, IsConnected = true, Config = true, PlayerSpawn = true,
	PlayerDeath = true, ChatMessage = true, PlayerTakeDamage = true, RoundStart = true, RoundEnd = true,
}
-- can_repeat: calls made again with the same arguments change nothing
-- more; On and its kin with an id replace their own registration with the
-- same function.
local function can_repeat(name, args)
	if repeatable[name] then return true end
	return (name == "On" or name == "Subscribe" or name == "SubscribePattern")
		and type(args[2]) == "string" and type(args[3]) == "function"
end

local call
function call(name, ...)
	local args = pack(...)
	local c0, h0, w0 = cpu(), handler_cpu, HOST.Time()
	local top = pumping == 0 and name == "ProcessEvents"
	if top then epoch = epoch + 1 end
	if name == "ProcessEvents" then pumping = pumping + 1 end
	-- Armed only for the call itself: the fuzzer's own allocations (a
	-- table for the results) must not run a raising finalizer.
	gc_armed = true
	local ok, r1, r2 = pcall(rt[name], unpack(args, 1, args.n))
	gc_armed = false
	local res = { ok, r1, r2, n = 3 }
	if name == "ProcessEvents" then pumping = pumping - 1 end
	local used = (cpu() - c0) - (handler_cpu - h0)
	local wall = HOST.Time() - w0
	counts.calls = counts.calls + 1
	-- A call refused for its arguments changed nothing: it can be repeated.
	local refused = not ok and type(r1) == "string" and r1:find("bad argument", 1, true)
	local repeated = (refused or can_repeat(name, args)) and not call_retry
	if used > STEP_LIMIT and repeated then
		-- a call with no effect on the model: time it twice more, keep the best
		call_retry = true
		for _ = 1, 2 do
			local c1, h1 = cpu(), handler_cpu
			gc_armed = true
			pcall(rt[name], unpack(args, 1, args.n))
			gc_armed = false
			used = math.min(used, (cpu() - c1) - (handler_cpu - h1))
		end
		call_retry = false
	end
	-- One measurement of a call that cannot be repeated is only a hint:
	-- this VM counts time stolen by its host as the thread's CPU time
	-- (650 ms once in CI for a call that takes 0.1 ms). It fails at
	-- ONCE_FACTOR times the limit; over the limit, it is reported.
	local limit = repeated and STEP_LIMIT or STEP_LIMIT * ONCE_FACTOR
	if used > STEP_LIMIT then
		local a = {}
		for i = 1, math.min(args.n, 4) do a[i] = show(args[i]) end
		local msg = string.format("realtime.%s(%s) took %.0f ms of CPU (%.0f ms wall; %s), limit %.0f ms",
			name, table.concat(a, ", "), used * 1000, wall * 1000,
			repeated and "the best of 3" or "measured once", limit * 1000)
		if used > limit then fail(msg) end
		print("fuzz: slow call at step " .. step .. ": " .. msg)
	end
	if not res[1] and type(res[2]) == "string" and res[2]:find("internal error", 1, true) then
		fail("realtime." .. name .. ": " .. res[2])
	end
	return res
end

-- An error is acceptable for a call when it is an argument error, or one
-- of the errors the fuzzer itself raises from metamethods and finalizers.
local function plain_error(err)
	return type(err) == "string" and (err:find("bad argument", 1, true) or expected(err)
		or err:find("^realtime%.") or err:find("stack overflow") or err:find("nested"))
end

local function check_error(name, res)
	if res[1] then return end
	if not plain_error(res[2]) then fail("realtime." .. name .. " raised " .. show(res[2])) end
end

-- HOME is the status the run starts in and goes back to: "local", or
-- "connected" with FUZZ_HOME=connected (TestLuaFuzzRedis: the config's
-- [redis] points at the test's redis-server).
local HOME = os.getenv("FUZZ_HOME") or "local"
local live_local = true -- the module is at HOME (Publish delivers)

api = {}

local function off_model(pat, id)
	local had = false
	for key, tok in pairs(regs) do
		if tok.id == id and (pat == nil or tok.pattern == pat) then
			had = true
			kill(tok)
			regs[key] = nil
		end
	end
	return had
end

function api.off_token(tok)
	if not tok.live or not tok.id then return end
	local res = call("Off", tok.pattern, tok.id)
	-- a finalizer that raised inside the call: Off changed nothing, again
	for _ = 1, 10 do
		if res[1] or not expected(tostring(res[2])) then break end
		res = call("Off", tok.pattern, tok.id)
	end
	note("  Off(" .. show(tok.pattern) .. ", " .. show(tok.id) .. ") from " .. tok.what)
	if not res[1] then fail("Off(pattern, id) of a registration raised " .. show(res[2])) end
	local had = off_model(tok.pattern, tok.id)
	if res[2] ~= had then fail("Off(" .. show(tok.pattern) .. ", " .. show(tok.id) .. ") returned " .. show(res[2]) .. ", model says " .. tostring(had)) end
end

local function gen_opts()
	local o = {}
	if chance(0.3) then o.decode = pick({ "json", "raw", "xml", 5 }) end
	if chance(0.2) then o.json = chance(0.5) end
	if chance(0.3) then
		o.rate = pick({ "10/s", "1/m", "100/x", "0/s", "-1/s", gen_string(), not SKIP.badnum and "1e30/s" or "5/s" })
	end
	if chance(0.4) then
		o.burst = SKIP.badnum and rand(0, 100) or pick({ 0, 1, 5, 2.7, 1e10, -1, 2 ^ 31, 2 ^ 31 - 1, 1 / 0, 0 / 0, "3", gen_number() })
	end
	return o
end

-- on registers a random handler with On, Subscribe or SubscribePattern.
function api.on(inside)
	local fname = pick({ "On", "On", "Subscribe", "SubscribePattern" })
	local exact = fname == "Subscribe"
	local pat = exact and gen_channel() or gen_pattern()
	local id = chance(0.7) and pick({ "h1", "h2", "h3", "once", "other" }) or nil
	if id == nil and chance(0.1) then id = gen_string() end
	local opts = chance(0.3) and gen_opts() or nil
	local garbage = not inside and chance(0.08)
	local tok = new_token(fname .. " " .. show(pat) .. " id " .. show(id), { { pattern = pat, exact = exact } })
	local args
	if garbage then
		-- the only function it may register is the token's
		args = pack(gen_value(), gen_value(), gen_value(), gen_value())
		if chance(0.5) then args[3] = tok.fn end
		for i = 2, 3 do
			if type(args[i]) == "function" then args[i] = tok.fn end
		end
	elseif id ~= nil then
		args = pack(pat, id, tok.fn, opts)
	else
		args = pack(pat, tok.fn, opts)
	end
	note((inside and "  " or "") .. fname .. "(" .. show(args[1]) .. ", " .. show(args[2]) .. ", ...)" ..
		(opts and (" burst=" .. show(opts.burst) .. " rate=" .. show(opts.rate)) or ""))
	local res = call(fname, unpack(args, 1, args.n))
	check_error(fname, res)
	local burst = opts and opts.burst
	if opts and not garbage and burst ~= nil then
		local valid = type(burst) == "number" and burst >= 0 and burst == math.floor(burst) and burst < 2 ^ 31
		if res[1] and not valid and (type(burst) == "number" or type(burst) == "string") then
			fail(fname .. " accepted burst = " .. show(burst) .. " (wrapped or truncated, not refused)")
		end
		if not res[1] and type(burst) == "number" and burst >= 0 and tostring(res[2]):find("negative") then
			fail(fname .. " with burst = " .. show(burst) .. " says: " .. tostring(res[2]))
		end
	end
	if not res[1] or type(res[2]) ~= "string" then
		if res[1] then fail(fname .. " returned " .. show(res[2]) .. ", not an id") end
		return
	end
	if garbage then
		-- the module took garbage: find what it registered from the id
		if type(args[1]) ~= "string" and type(args[1]) ~= "number" then fail(fname .. " accepted pattern " .. show(args[1])) end
		if args[3] ~= tok.fn and args[2] ~= tok.fn then return end
		pat = tostring(args[1])
		tok.patterns[1].pattern = pat
	end
	tok.id, tok.pattern = res[2], pat
	local key = routename(pat, tok.id)
	kill(regs[key])
	regs[key] = tok
	if opts and opts.rate == "1e30/s" and burst == nil and rt.Status() == HOME and not inside then api.rate_probe(tok) end
end

-- rate_probe: a route allowed 1e30 events a second delivers every event.
function api.rate_probe(tok)
	quiet = true
	local ch = "rp" .. step
	local got = 0
	local t2 = new_token("rate probe", { { pattern = ch, exact = true } })
	t2.behaviour = "plain"
	local f = t2.fn
	t2.fn = function(...) got = got + 1; return f(...) end
	local res = call("On", ch, "rate-probe", t2.fn, { rate = "1e30/s" })
	if not res[1] then
		quiet = false
		return
	end
	t2.id, t2.pattern = res[2], ch
	regs[routename(ch, t2.id)] = t2
	local deadline, again, stayed = HOST.Time() + 3, 0, true
	while got < 3 and HOST.Time() < deadline do
		if HOST.Time() >= again then -- again every 0.5 s, as the probe
			for _ = 1, 3 do call("Publish", ch, "x") end
			again = HOST.Time() + 0.5
		end
		call("ProcessEvents")
		stayed = stayed and rt.Status() == HOME
	end
	-- A connection lost meanwhile (an earlier step's timeouts under load)
	-- delivers nothing: the probe says nothing then.
	if got < 3 and stayed then
		local st = rt.GetStats()
		fail(string.format("a route with rate = \"1e30/s\" delivered %d events in 3 s, 3 wanted (status %s, received %d, queued %d, dispatched %d, queue.depth %d, rate_limited %d, route matched %s)",
			got, rt.Status(), st.received, st.queued, st.dispatched, st.queue.depth, st.rate_limited,
			tostring(st.routes[routename(ch, t2.id)] and st.routes[routename(ch, t2.id)].matched)))
	end
	api.off_token(t2)
	quiet = false
end

function api.off(inside)
	local ids = {}
	for _, tok in pairs(regs) do ids[#ids + 1] = tok end
	table.sort(ids, function(a, b) return routename(a.pattern, a.id) < routename(b.pattern, b.id) end)
	local k = rand(4)
	if k == 1 and #ids > 0 then
		api.off_token(pick(ids))
	elseif k == 2 and #ids > 0 then
		local tok = pick(ids)
		note((inside and "  " or "") .. "Off(" .. show(tok.id) .. ")")
		local res = call("Off", tok.id)
		check_error("Off", res)
		if res[1] then
			local had = off_model(nil, tok.id)
			if res[2] ~= had then fail("Off(" .. show(tok.id) .. ") returned " .. show(res[2]) .. ", model says " .. tostring(had)) end
		end
	else
		local a, b = gen_value(), chance(0.5) and gen_value() or nil
		note((inside and "  " or "") .. "Off(" .. show(a) .. ", " .. show(b) .. ")")
		local res = call("Off", a, b)
		check_error("Off", res)
		if res[1] then
			local had
			if b ~= nil then had = off_model(tostring(a), tostring(b)) else had = off_model(nil, tostring(a)) end
			if res[2] ~= had then fail("Off(" .. show(a) .. ", " .. show(b) .. ") returned " .. show(res[2]) .. ", model says " .. tostring(had)) end
		end
	end
end

function api.handler(inside)
	local name = chance(0.9) and pick(handler_names) or gen_string()
	if chance(0.05) and not SKIP.namecollision then
		-- the name an On registration's route has: it must not take its events
		local keys = {}
		for key in pairs(regs) do keys[#keys + 1] = key end
		table.sort(keys)
		if #keys > 0 then name = pick(keys) end
	end
	local k = rand(5)
	local tok, fnarg
	if k <= 3 then
		tok = new_token("Handler " .. show(name), routes[name] or {})
		fnarg = tok.fn
	elseif k == 4 then
		fnarg = nil
	else
		fnarg = gen_value()
		if type(fnarg) == "function" then fnarg = 5 end
	end
	note((inside and "  " or "") .. "Handler(" .. show(name) .. ", " .. show(fnarg) .. ")")
	local res = call("Handler", name, fnarg)
	check_error("Handler", res)
	if res[1] and (fnarg == nil or tok) then
		kill(named[name])
		named[name] = tok
	end
end

local function gen_payload()
	if chance(0.4) then return gen_string() end
	return gen_value()
end

function api.publish(inside)
	local ch = chance(0.9) and gen_channel() or gen_value()
	local payload = gen_payload()
	note((inside and "  " or "") .. "Publish(" .. show(ch) .. ", " .. show(payload) .. ")")
	local res = call("Publish", ch, payload)
	check_error("Publish", res)
	if res[1] and res[2] == true then counts.ok_publish = counts.ok_publish + 1 end
end

-- burst publishes many events to channels some handler wants, then pumps:
-- batches with many events per route (defects 2 and 3 need them).
function api.burst()
	local pats = {}
	for _, tok in pairs(regs) do pats[#pats + 1] = tok end
	table.sort(pats, function(a, b) return routename(a.pattern, a.id) < routename(b.pattern, b.id) end)
	local n, sent = rand(20, 400), 0
	local before = rt.GetStats().received
	note("burst of " .. n)
	for _ = 1, n do
		local ch = gen_channel()
		if #pats > 0 and chance(0.7) then
			local p = pick(pats).pattern
			if not p:find("[%[%]\\]") then ch = p:gsub("%*", function() return pick(alphabet) end):gsub("%?", "a") end
		end
		local payload = "x"
		if chance(0.2) then
			payload = gen_payload()
			note("  Publish(" .. show(ch) .. ", " .. show(payload) .. ")")
		end
		local res = call("Publish", ch, payload)
		check_error("Publish", res)
		if res[1] and res[2] == true then sent = sent + 1 end
	end
	-- Let the bus deliver them (no assertion: it only makes the batches big).
	if rt.Status() == HOME then
		local deadline = HOST.Time() + 0.5
		while rt.GetStats().received < before + sent and HOST.Time() < deadline do end
	end
	api.pump()
end

function api.pump(inside)
	local max = nil
	if chance(0.3) then max = gen_number() end
	if inside then note("  ProcessEvents(" .. show(max) .. ")") else note("ProcessEvents(" .. show(max) .. ")") end
	local res = call("ProcessEvents", max)
	if not res[1] then
		local err = tostring(res[2])
		if type(max) == "number" and max >= 1 and err:find("at least 1", 1, true) then
			fail("ProcessEvents(" .. show(max) .. ") raised: " .. err)
		end
		if err:find("bad argument", 1, true) and not (type(max) == "number" and max >= 1) then return end
		if not expected(err) then fail("ProcessEvents raised " .. show(res[2])) end
		note("  ProcessEvents raised " .. show(err))
	elseif type(res[2]) ~= "number" then
		fail("ProcessEvents returned " .. show(res[2]))
	elseif inside and res[2] ~= 0 then
		fail("ProcessEvents inside a handler dispatched " .. res[2] .. " events")
	end
end

function api.stats()
	local which = pick({ "GetStats", "Status", "IsConnected" })
	note(which .. "()")
	local res = call(which)
	if not res[1] and not expected(tostring(res[2])) then fail(which .. " raised " .. show(res[2])) end
	if not res[1] then return end
	local v = res[2]
	if which == "GetStats" and (type(v) ~= "table" or type(v.queue) ~= "table") then fail("GetStats returned " .. show(v)) end
	if which == "Status" and not ({ connected = 1, connecting = 1, disconnected = 1, ["local"] = 1 })[v] then fail("Status returned " .. show(v)) end
	if which == "IsConnected" and type(v) ~= "boolean" then fail("IsConnected returned " .. show(v)) end
end

function api.reload()
	note("Reload()")
	local res = call("Reload")
	check_error("Reload", res)
	if res[1] and res[2] ~= true and res[2] ~= false then fail("Reload returned " .. show(res[2])) end
end

-- Config never points the module anywhere but 127.0.0.1 port 1, where
-- nothing listens: every call that can succeed sets the port (without one,
-- a host or a password means 127.0.0.1:6379, maybe a developer's Redis).
function api.config()
	if SKIP.config then return end
	local args
	local k = rand(3)
	if k == 1 then
		args = pack(pick({ "127.0.0.1", 5, {}, true }), pick({ 1, "1", "x", -1, 0 / 0, 1e30, 2 ^ 31 }),
			chance(0.5) and gen_string() or nil, chance(0.5) and gen_number() or nil)
	elseif k == 2 then
		local t = {}
		if chance(0.5) then t.host = "127.0.0.1" end
		t.port = pick({ 1, "1", -5, 1 / 0, 3e9 }) -- never the default port
		if chance(0.3) then t.password = gen_string() end
		if chance(0.3) then t.timeout = gen_number() end
		if chance(0.3) then t[pick({ "ratee", "host2", "redis.nope" })] = 1 end
		if chance(0.2) then t[pick({ true, 1, 2.5 })] = gen_value() end
		if chance(0.3) then t[pick({ "password", "timeout" })] = gen_value() end
		if chance(0.1) then t[pick({ "host", "port" })] = pick({ {}, true, print }) end
		args = pack(t)
	else
		args = pack(gen_value())
		if type(args[1]) == "string" then args = pack("127.0.0.1", 1) end
		if SKIP.hugeconfig and type(args[1]) == "table" and (desc[args[1]] or ""):find("^huge") then args[1] = {} end
	end
	note("Config(" .. show(args[1]) .. ", " .. show(args[2]) .. ", ...)")
	local res = call("Config", unpack(args, 1, args.n))
	check_error("Config", res)
end

function api.connect()
	if SKIP.connect then return end
	local k = rand(4)
	local res
	if k == 1 then
		note("Disconnect()")
		res = call("Disconnect")
		check_error("Disconnect", res)
	elseif k == 2 then
		note("Connect()")
		res = call("Connect")
		check_error("Connect", res)
	else
		local url = pick({ "http://nowhere", "http://" .. gen_bytes(8), "", "ftp://127.0.0.1:1" })
		note("Connect(" .. show(url) .. ")")
		res = call("Connect", url)
		check_error("Connect", res)
	end
	live_local = rt.Status() == HOME
end

-- restore goes back to HOME: the overrides realtime.Config can set,
-- removed, then Connect().
function api.restore()
	note("restore " .. HOME)
	call("Config", nil, nil, nil, nil)
	call("Connect")
	local deadline = HOST.Time() + 5
	while rt.Status() ~= HOME and HOST.Time() < deadline do end
	live_local = rt.Status() == HOME
	if not live_local then fail("cannot go back to " .. HOME .. ": status " .. rt.Status()) end
end

local game = { "PlayerSpawn", "PlayerDeath", "ChatMessage", "PlayerTakeDamage", "RoundStart", "RoundEnd" }
function api.game_event(inside)
	local fn = pick(game)
	local args
	if chance(0.3) then
		args = pack(gen_string(), gen_number(), pick({ Vector(1, 2, 3), { 1, 2, 3 }, { x = 1, y = 2, z = 3 }, gen_value() }))
	else
		args = pack(gen_value(), gen_value(), gen_value(), gen_value(), gen_value())
	end
	note((inside and "  " or "") .. fn .. "(" .. show(args[1]) .. ", " .. show(args[2]) .. ", " .. show(args[3]) .. ")")
	local res = call(fn, unpack(args, 1, args.n))
	check_error(fn, res)
end

-- probe: the pump is alive: an event to a fresh channel is delivered.
function api.probe(why)
	local was_quiet = quiet
	quiet = true
	if rt.Status() ~= HOME then api.restore() end
	local ch = "probe" .. step
	local got = false
	local tok = new_token("probe", { { pattern = ch, exact = true } })
	tok.behaviour = "plain"
	local f = tok.fn
	tok.fn = function(...) got = true; return f(...) end
	note("probe " .. ch .. " (" .. why .. ")")
	-- The finalizers waiting to run do so here, disarmed: with more of them
	-- than the retries below, every Subscribe raised (seed 731595588)
	collectgarbage()
	local res = call("Subscribe", ch, "probe", tok.fn)
	for _ = 1, 10 do -- a finalizer that raised inside the call: nothing changed, again
		if res[1] or not expected(tostring(res[2])) then break end
		res = call("Subscribe", ch, "probe", tok.fn)
	end
	if not res[1] then fail("Subscribe of the probe raised " .. show(res[2])) end
	tok.id, tok.pattern = res[2], ch
	regs[routename(ch, tok.id)] = tok
	local n = 0
	for _ = 1, 2 do
		-- published again every 0.5 s: with Redis, the first may go out
		-- before the new subscription is made (pub/sub keeps nothing)
		local deadline, again = HOST.Time() + 5, 0
		while not got and HOST.Time() < deadline do
			if HOST.Time() >= again then
				res = call("Publish", ch, "ping")
				if not res[1] or not res[2] then fail("Publish of the probe: " .. show(res[2]) .. " " .. show(res[3])) end
				again = HOST.Time() + 0.5
			end
			call("ProcessEvents")
			n = n + 1
		end
		-- left HOME meanwhile (a reconnect the fuzzer started): once more
		if got or rt.Status() == HOME then break end
		api.restore()
	end
	if not got then
		local st = rt.GetStats()
		local route = st.routes[routename(ch, tok.id)] or {}
		fail(string.format("the pump is dead (%s): a probe event was not delivered after %d ProcessEvents calls (queue depth %s, status %s;"
			.. " received %s, published %s, publish_failed %s, outbox %s; the probe route: matched %s, refused %q; %d routes)",
			why, n, tostring(st.queue.depth), rt.Status(), tostring(st.received), tostring(st.published),
			tostring(st.publish_failed), tostring(st.redis.outbox), tostring(route.matched), tostring(route.refused),
			(function() local c = 0 for _ in pairs(st.routes) do c = c + 1 end return c end)()))
	end
	api.off_token(tok)
	quiet = was_quiet
end

-- coroutine runs a few calls inside a coroutine (another lua_State).
function api.coroutine()
	if SKIP.coroutine then return end
	note("coroutine {")
	local co = coroutine.create(function()
		for _ = 1, rand(1, 4) do api.random_call(false) end
	end)
	local ok, err = coroutine.resume(co)
	note("}")
	if not ok then error(err, 0) end
end

function api.gc()
	note("collectgarbage")
	gc_armed = false
	collectgarbage()
end

local weighted = {
	{ api.on, 14 }, { api.off, 8 }, { api.handler, 5 }, { api.publish, 14 }, { api.pump, 10 }, { api.burst, 4 },
	{ api.stats, 4 }, { api.reload, 2 }, { api.config, 3 }, { api.connect, 2 }, { api.game_event, 8 },
	{ api.coroutine, 2 }, { api.gc, 1 },
}
local inside_ok = { [api.on] = true, [api.off] = true, [api.handler] = true, [api.publish] = true, [api.pump] = true,
	[api.stats] = true, [api.game_event] = true, [api.reload] = true, [api.config] = true }
local total = 0
for _, w in ipairs(weighted) do total = total + w[2] end

function api.random_call(inside)
	while true do
		local x = rand(total)
		for _, w in ipairs(weighted) do
			x = x - w[2]
			if x <= 0 then
				local reg = w[1] == api.on or w[1] == api.off or w[1] == api.handler
				if not inside or inside_ok[w[1]] and not (reg and SKIP.reentryreg) then return w[1](inside) end
				break
			end
		end
	end
end

-- ---- The run ------------------------------------------------------------------
local function registry()
	local n, fns = 0, 0
	for _, v in pairs(debug.getregistry()) do
		if type(v) ~= "number" then n = n + 1 end
		if type(v) == "function" then fns = fns + 1 end
	end
	return n, fns
end

print(string.format("fuzz: seed=%d steps=%d skip=%s", SEED, STEPS, os.getenv("FUZZ_SKIP") or ""))
collectgarbage()
collectgarbage()
local base_n, base_fns = registry()

for i = 1, STEPS do
	step = i
	alarm(ALARM_S)
	if (not live_local or rt.Status() ~= HOME) and chance(0.2) then api.restore() end
	local ok, err = pcall(api.random_call, false)
	if not ok and not expected(tostring(err)) then fail("the step raised " .. show(err)) end
	if i % 250 == 0 then api.probe("every 250 steps") end
end

-- The end: unregister everything, drain, and check the registry and pump.
step = STEPS + 1
alarm(ALARM_S * 3)
gc_armed = false
quiet = true
if not live_local then api.restore() end
api.probe("after the run")
for key, tok in pairs(regs) do
	local res = call("Off", tok.pattern, tok.id)
	if not res[1] or res[2] ~= true then fail("final Off of " .. key .. ": " .. show(res[2])) end
	kill(tok)
	regs[key] = nil
end
for name in pairs(named) do
	call("Handler", name, nil)
	kill(named[name])
	named[name] = nil
end
for _, name in ipairs(handler_names) do call("Handler", name, nil) end
-- Drain: references the module keeps for queued events may be released
-- by the pump only, so it runs at least twice.
local deadline = HOST.Time() + 5
repeat call("ProcessEvents") until rt.GetStats().queue.depth == 0 or HOST.Time() > deadline
call("ProcessEvents")
collectgarbage()
collectgarbage()
local n, fns = registry()
if fns ~= base_fns or n ~= base_n then
	fail(string.format("registry: %d entries (%d functions) after unregistering everything, %d (%d) at the start", n, fns, base_n, base_fns))
end
api.probe("at the end")
alarm(0)
print(string.format("fuzz: ok seed=%d steps=%d calls=%d delivered=%d", SEED, STEPS, counts.calls, counts.delivered))
HOST.Exit(0)
