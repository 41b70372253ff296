-- A Garry's Mod server environment for tests/host: the libraries a binary
-- module and the realtime glue touch, written from GMod's documented
-- behaviour (the wiki's pages on hook.Add/Call/Run, timer.*, GM:Think,
-- GM:Tick, the Lua Hooks Order and hibernation) so that a test passing here
-- means something on a real server:
--   * a frame runs Think, then the timers (timer.Simple callbacks, then
--     timer.Create callbacks), then Tick; HOST.frame_order "timers-first"
--     runs the timers before Think, for code that must not care;
--   * hibernating (HOST.Hibernate(true), an empty server with
--     sv_hibernate_think 0): no Think, no Tick, CurTime() and
--     engine.TickCount() stand still, so timers with a delay freeze and only
--     0-delay timers run;
--   * hooks: the first non-nil return stops the chain and is the result;
--     then the gamemode's method; an object identifier is passed first and
--     the hook is removed once the object is invalid;
--   * timers: a callback that errors is reported and its timer removed;
--     timer.Remove stops a timer at once (timer.Exists is false) and frees it
--     in the next frame; timers created during the timer pass (a
--     timer.Simple(0) inside a callback) first run in the next frame;
--   * a base gamemode (GM) whose PlayerSay returns the text;
--   * ErrorNoHalt joins its arguments with tostring.
-- Every ErrorNoHalt and every error a frame catches goes to HOST.Errors; one
-- that the script did not announce with HOST.ExpectErrors(text, ...) fails
-- the run at the end of the frame. Loaded into every new Lua state.

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/../lua/?.lua;" .. package.path

SERVER, CLIENT = true, false

local tickrate = HOST.Info().tickrate
if tickrate <= 0 then tickrate = 66 end
local frame_order = HOST.frame_order or "think-first"
local curtime, tickcount, frame = 0, 0, 0
function CurTime() return curtime end
function RealTime() return HOST.Time() end
function SysTime() return HOST.Time() end
engine = {
	TickInterval = function() return 1 / tickrate end,
	TickCount = function() return tickcount end,
	ActiveGamemode = function() return "sandbox" end,
}
game = { GetMap = function() return HOST.map end }
-- The host's platform: its module suffix is win32/win64 on Windows.
local windows = HOST.Info().suffix:sub(1, 3) == "win"
system = {
	IsLinux = function() return not windows end,
	IsWindows = function() return windows end,
	IsOSX = function() return false end,
}

-- HOST.Frame(): the number of the current frame, counted while hibernating
-- too (engine.TickCount() is not).
function HOST.Frame() return frame end

-- Errors: printed and recorded in HOST.Errors; the run fails on one no
-- HOST.ExpectErrors text is part of.
local errors, expected, checked = {}, {}, 0
HOST.Errors = errors
function HOST.ExpectErrors(...)
	for i = 1, select("#", ...) do expected[#expected + 1] = tostring((select(i, ...))) end
end
local function check_errors()
	for i = checked + 1, #errors do
		local known = false
		for _, text in ipairs(expected) do
			if errors[i]:find(text, 1, true) then known = true; break end
		end
		if not known then HOST.Fail("unexpected error (announce it with HOST.ExpectErrors): " .. errors[i]) end
	end
	checked = #errors
end
function ErrorNoHalt(...)
	local parts = {}
	for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
	local msg = table.concat(parts)
	errors[#errors + 1] = msg
	io.stderr:write("[ERROR] ", msg)
end
-- report is what GMod does with an error that escapes a hook or a timer
-- during a frame: print it and go on.
local function report(where, err)
	ErrorNoHalt("[" .. where .. "] " .. tostring(err) .. "\n")
end

function MsgC(...)
	local out = {}
	for _, v in ipairs({ ... }) do
		if type(v) ~= "table" then out[#out + 1] = tostring(v) end
	end
	io.stdout:write(table.concat(out))
end
function Msg(...) io.stdout:write(table.concat({ ... })) end
function Color(r, g, b, a) return { r = r, g = g, b = b, a = a or 255 } end

-- IsValid as GMod's: an object is valid when it has an IsValid method that
-- says so.
function IsValid(v)
	if not v then return false end
	local isvalid = v.IsValid
	if not isvalid then return false end
	return isvalid(v) and true or false
end

-- Vector: a userdata with x, y, z, as GMod's.
local vectors = setmetatable({}, { __mode = "k" })
local vector_mt = {}
vector_mt.__index = function(v, k) return vectors[v][k] end
vector_mt.__tostring = function(v) local t = vectors[v]; return string.format("%f %f %f", t.x, t.y, t.z) end
function Vector(x, y, z)
	local v = newproxy(true)
	local mt = getmetatable(v)
	for k, f in pairs(vector_mt) do mt[k] = f end
	vectors[v] = { x = x or 0, y = y or 0, z = z or 0 }
	return v
end
function isvector(v) return vectors[v] ~= nil end

local function argerror(n, fn, want, v)
	error(string.format("bad argument #%d to '%s' (%s expected, got %s)", n, fn, want, type(v)), 3)
end

-- The base gamemode: the methods hook.Call falls back to. PlayerSay
-- returns the text, which is what the player's line becomes.
GM = { Name = "Base", FolderName = "base" }
function GM:Initialize() end
function GM:Think() end
function GM:Tick() end
function GM:ShutDown() end
function GM:PlayerSpawn() end
function GM:PlayerDeath() end
function GM:PlayerSay(ply, text, team_chat) return text end
function GM:EntityTakeDamage() end
function GM:PostEntityTakeDamage() end
GAMEMODE = GM
gmod = { GetGamemode = function() return GAMEMODE end }

-- hook
hook = {}
local hooks = {}
function hook.Add(event, id, fn)
	if type(event) ~= "string" then argerror(1, "Add", "string", event) end
	local it = type(id)
	if it ~= "string" and it ~= "table" and it ~= "userdata" then argerror(2, "Add", "string or object", id) end
	if type(fn) ~= "function" then argerror(3, "Add", "function", fn) end
	hooks[event] = hooks[event] or {}
	hooks[event][id] = fn
end
function hook.Remove(event, id)
	if hooks[event] then hooks[event][id] = nil end
end
function hook.GetTable() return hooks end
function hook.Call(event, gm, ...)
	local list = hooks[event]
	if list then
		for id, fn in pairs(list) do
			local a, b, c, d, e, f
			if type(id) == "string" then
				a, b, c, d, e, f = fn(...)
			elseif IsValid(id) then
				a, b, c, d, e, f = fn(id, ...)
			else
				list[id] = nil
			end
			if a ~= nil then return a, b, c, d, e, f end
		end
	end
	if gm == nil then return end
	local method = gm[event]
	if method == nil then return end
	return method(gm, ...)
end
function hook.Run(event, ...) return hook.Call(event, gmod.GetGamemode(), ...) end

-- timer: timers run on CurTime, so those with a delay freeze while the
-- server hibernates; 0-delay ones run every frame.
timer = {}
local timers, created, simple = {}, {}, {}
function timer.Create(name, delay, reps, fn)
	if type(name) ~= "string" and type(name) ~= "number" then argerror(1, "Create", "string", name) end
	if type(delay) ~= "number" then argerror(2, "Create", "number", delay) end
	if type(reps) ~= "number" then argerror(3, "Create", "number", reps) end
	if type(fn) ~= "function" then argerror(4, "Create", "function", fn) end
	if timers[name] then timers[name].removed = true end
	local t = { name = name, delay = delay, left = reps, fn = fn, next = curtime + delay }
	timers[name] = t
	created[#created + 1] = t
end
function timer.Remove(name)
	local t = timers[name]
	if t then
		t.removed = true
		timers[name] = nil
	end
end
timer.Destroy = timer.Remove
function timer.Exists(name) return timers[name] ~= nil end
function timer.Simple(delay, fn)
	if type(delay) ~= "number" then argerror(1, "Simple", "number", delay) end
	if type(fn) ~= "function" then argerror(2, "Simple", "function", fn) end
	simple[#simple + 1] = { at = curtime + delay, fn = fn }
end

local function run_timers()
	local due, later = {}, {}
	for _, s in ipairs(simple) do
		if s.at <= curtime then due[#due + 1] = s else later[#later + 1] = s end
	end
	simple = later -- timer.Simple calls made by the callbacks below go here: next frame
	for _, s in ipairs(due) do
		local ok, err = xpcall(s.fn, debug.traceback)
		if not ok then report("timer.Simple", err) end
	end
	-- Timers removed in an earlier frame are freed now.
	local live = {}
	for _, t in ipairs(created) do
		if not t.removed then live[#live + 1] = t end
	end
	created = live
	for i = 1, #live do -- timers created by the callbacks below wait for the next frame
		local t = live[i]
		if not t.removed and t.next <= curtime then
			local ok, err = xpcall(t.fn, debug.traceback)
			local finished = not ok
			if not ok then
				report("timer " .. tostring(t.name), err)
			elseif not t.removed then
				t.next = curtime + t.delay
				if t.left > 0 then
					t.left = t.left - 1
					finished = t.left == 0
				end
			end
			if finished and timers[t.name] == t then timer.Remove(t.name) end
		end
	end
end

local function run_hook(event)
	-- Lua 5.1's xpcall passes no arguments: wrap the call.
	local ok, err = xpcall(function() return hook.Run(event) end, debug.traceback)
	if not ok then report("hook " .. event, err) end
end

-- Coroutine tasks for test scripts: HOST.Run(fn) resumes fn every tick;
-- when it returns, the run exits 0; an error fails it.
local tasks = {}
function HOST.Run(fn) tasks[#tasks + 1] = coroutine.create(fn) end
function HOST.Yield() coroutine.yield() end
function HOST.Sleep(sec)
	local t = HOST.Time() + sec
	while HOST.Time() < t do coroutine.yield() end
end
-- HOST.WaitFor(fn, timeout, what): yields until fn() is true; fails on timeout.
function HOST.WaitFor(fn, timeout, what)
	local t = HOST.Time() + (timeout or 10)
	while not fn() do
		if HOST.Time() > t then error("timed out waiting for " .. (what or "a condition"), 2) end
		coroutine.yield()
	end
end

local function run_tasks()
	for i = #tasks, 1, -1 do
		local co = tasks[i]
		local ok, err = coroutine.resume(co)
		if not ok then
			HOST.Fail(debug.traceback(co, tostring(err)))
			table.remove(tasks, i)
		elseif coroutine.status(co) == "dead" then
			table.remove(tasks, i)
			if #tasks == 0 then HOST.Exit(0) end
		end
	end
end

-- __host_tick runs one server frame (the host calls it at the tick rate).
function __host_tick(hibernating)
	frame = frame + 1
	if not hibernating then
		tickcount = tickcount + 1
		curtime = curtime + 1 / tickrate
	end
	if frame_order == "timers-first" then
		run_timers()
		if not hibernating then run_hook("Think") end
	else
		if not hibernating then run_hook("Think") end
		run_timers()
	end
	if not hibernating then run_hook("Tick") end
	run_tasks()
	check_errors()
end

function include(path)
	local f = assert(loadfile(HOST.root .. "/garrysmod/lua/" .. path))
	return f()
end

function __host_autorun()
	for _, dir in ipairs({ "autorun", "autorun/server" }) do
		for _, file in ipairs(HOST.List(dir)) do
			include(dir .. "/" .. file)
		end
	end
end

-- Fake players, entities and damage for the game-event hooks.
local ent_methods = {
	IsValid = function() return true end,
	IsPlayer = function() return false end,
	GetClass = function(self) return self.class end,
}
local ent_mt = { __index = ent_methods }
function FakeEntity(class) return setmetatable({ class = class }, ent_mt) end
NULL = setmetatable({}, {
	__index = { IsValid = function() return false end, IsPlayer = function() return false end },
	__tostring = function() return "[NULL Entity]" end,
})

local player_mt = {}
player_mt.__index = player_mt
function player_mt:Nick() return self.name end
function player_mt:Name() return self.name end
function player_mt:SteamID() return self.steamid end
function player_mt:Team() return self.team end
function player_mt:GetPos() return self.pos end
function player_mt:IsPlayer() return true end
function player_mt:IsValid() return true end
function player_mt:GetClass() return "player" end
function player_mt:GetActiveWeapon() return self.weapon end
-- FakePlayer(name, team, pos, weapon): weapon is a class name; without one
-- the player holds nothing (GetActiveWeapon returns NULL).
function FakePlayer(name, team, pos, weapon)
	return setmetatable({ name = name, team = team or 1, pos = pos or Vector(0, 0, 0), steamid = "STEAM_0:0:" .. #name,
		weapon = weapon and FakeEntity(weapon) or NULL }, player_mt)
end
function FakeDamage(amount, attacker)
	return { GetDamage = function() return amount end, GetAttacker = function() return attacker end }
end

-- util.TableToJSON / util.JSONToTable, enough for tests.
util = {}
local function encode(v, out)
	local t = type(v)
	if t == "table" then
		local n = #v
		local count = 0
		for _ in pairs(v) do count = count + 1 end
		if count == n then
			out[#out + 1] = "["
			for i = 1, n do
				if i > 1 then out[#out + 1] = "," end
				encode(v[i], out)
			end
			out[#out + 1] = "]"
		else
			out[#out + 1] = "{"
			local first = true
			for k, x in pairs(v) do
				if not first then out[#out + 1] = "," end
				first = false
				encode(tostring(k), out)
				out[#out + 1] = ":"
				encode(x, out)
			end
			out[#out + 1] = "}"
		end
	elseif t == "string" then
		out[#out + 1] = '"' .. v:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
	elseif t == "number" then
		out[#out + 1] = (v == math.floor(v) and math.abs(v) < 2 ^ 53) and string.format("%d", v) or string.format("%.17g", v)
	elseif t == "boolean" then
		out[#out + 1] = tostring(v)
	elseif isvector(v) then
		encode({ x = v.x, y = v.y, z = v.z }, out)
	else
		out[#out + 1] = "null"
	end
end
function util.TableToJSON(t)
	local out = {}
	encode(t, out)
	return table.concat(out)
end

function util.JSONToTable(s)
	local i = 1
	local function ws() i = s:find("[^ \t\r\n]", i) or #s + 1 end
	local value
	local function str()
		local out = {}
		i = i + 1
		while true do
			local c = s:sub(i, i)
			if c == '"' then i = i + 1; return table.concat(out) end
			if c == "" then error("unterminated string") end
			if c == "\\" then
				local e = s:sub(i + 1, i + 1)
				local map = { n = "\n", t = "\t", r = "\r", b = "\b", f = "\f", ["/"] = "/", ["\\"] = "\\", ['"'] = '"' }
				if e == "u" then
					local cp = tonumber(s:sub(i + 2, i + 5), 16)
					out[#out + 1] = cp < 128 and string.char(cp) or "?"
					i = i + 6
				else
					out[#out + 1] = map[e]
					i = i + 2
				end
			else
				out[#out + 1] = c
				i = i + 1
			end
		end
	end
	function value()
		ws()
		local c = s:sub(i, i)
		if c == "{" then
			local t = {}
			i = i + 1
			ws()
			if s:sub(i, i) == "}" then i = i + 1; return t end
			while true do
				ws()
				local k = str()
				ws(); i = i + 1 -- :
				t[k] = value()
				ws()
				local d = s:sub(i, i); i = i + 1
				if d == "}" then return t end
			end
		elseif c == "[" then
			local t = {}
			i = i + 1
			ws()
			if s:sub(i, i) == "]" then i = i + 1; return t end
			while true do
				t[#t + 1] = value()
				ws()
				local d = s:sub(i, i); i = i + 1
				if d == "]" then return t end
			end
		elseif c == '"' then
			return str()
		elseif s:sub(i, i + 3) == "true" then i = i + 4; return true
		elseif s:sub(i, i + 4) == "false" then i = i + 5; return false
		elseif s:sub(i, i + 3) == "null" then i = i + 4; return nil
		end
		local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
		i = i + #num
		return tonumber(num)
	end
	local ok, v = pcall(value)
	if ok then return v end
end
