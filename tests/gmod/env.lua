-- A minimal Garry's Mod server environment for tests/host: the libraries a
-- binary module and the realtime glue touch, with GMod's semantics where
-- they matter (hook return values, 0-delay timers, an erroring timer is
-- removed, ErrorNoHalt does not halt). Loaded into every new Lua state.

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/../lua/?.lua;" .. package.path

SERVER, CLIENT = true, false

local tickrate = HOST.Info().tickrate
if tickrate <= 0 then tickrate = 66 end
local curtime, tickcount = 0, 0
function CurTime() return curtime end
function RealTime() return HOST.Time() end
function SysTime() return HOST.Time() end
engine = {
	TickInterval = function() return 1 / tickrate end,
	TickCount = function() return tickcount end,
	ActiveGamemode = function() return "sandbox" end,
}
game = { GetMap = function() return HOST.map end }
system = { IsLinux = function() return true end, IsWindows = function() return false end, IsOSX = function() return false end }

-- Errors: printed, counted, never fatal (as on a server).
local errors = {}
HOST.Errors = errors
function ErrorNoHalt(...)
	local msg = table.concat({ ... })
	errors[#errors + 1] = msg
	io.stderr:write("[ERROR] ", msg)
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

function IsValid(v)
	if v == nil then return false end
	local ok, valid = pcall(function() return v:IsValid() end)
	return ok and valid
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

-- hook: GMod's semantics: the first non-nil return stops the chain, then
-- GAMEMODE's method runs.
GM = { Name = "Sandbox" }
GAMEMODE = GM
hook = {}
local hooks = {}
function hook.Add(event, id, fn)
	if type(fn) ~= "function" then return end
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
		for _, fn in pairs(list) do
			local a, b, c, d, e, f = fn(...)
			if a ~= nil then return a, b, c, d, e, f end
		end
	end
	if gm and gm[event] then return gm[event](gm, ...) end
end
function hook.Run(event, ...) return hook.Call(event, GAMEMODE, ...) end

-- timer: a 0-delay timer runs every tick; a failing timer is removed.
timer = {}
local timers, simple = {}, {}
function timer.Create(name, delay, reps, fn)
	timers[name] = { delay = delay, reps = reps, left = reps, fn = fn, next = curtime + delay }
end
function timer.Remove(name) timers[name] = nil end
function timer.Exists(name) return timers[name] ~= nil end
function timer.Simple(delay, fn) simple[#simple + 1] = { at = curtime + delay, fn = fn } end

local function report(where, err)
	ErrorNoHalt("[" .. where .. "] " .. tostring(err) .. "\n")
end

local function run_timers()
	for name, t in pairs(timers) do
		if timers[name] == t and t.next <= curtime then
			local ok, err = xpcall(t.fn, debug.traceback)
			if not ok then
				report("timer " .. tostring(name), err)
				timers[name] = nil
			elseif timers[name] == t then
				t.next = curtime + t.delay
				if t.reps > 0 then
					t.left = t.left - 1
					if t.left <= 0 then timers[name] = nil end
				end
			end
		end
	end
	local due = {}
	for i = #simple, 1, -1 do
		if simple[i].at <= curtime then
			due[#due + 1] = table.remove(simple, i).fn
		end
	end
	for i = #due, 1, -1 do
		local ok, err = xpcall(due[i], debug.traceback)
		if not ok then report("timer.Simple", err) end
	end
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

function __host_tick(hibernating)
	tickcount = tickcount + 1
	curtime = curtime + 1 / tickrate
	run_timers()
	local ok, err = xpcall(hook.Run, debug.traceback, "Tick")
	if not ok then report("hook Tick", err) end
	if not hibernating then
		ok, err = xpcall(hook.Run, debug.traceback, "Think")
		if not ok then report("hook Think", err) end
	end
	run_tasks()
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

-- Fake players and damage for the game-event hooks.
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
function FakePlayer(name, team, pos)
	return setmetatable({ name = name, team = team or 1, pos = pos or Vector(0, 0, 0), steamid = "STEAM_0:0:" .. #name }, player_mt)
end
local ent_mt = { __index = { IsValid = function() return true end, IsPlayer = function() return false end, GetClass = function(self) return self.class end } }
function FakeEntity(class) return setmetatable({ class = class }, ent_mt) end
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
