-- gmsv_realtime: the server-side glue. Copy this file to
-- garrysmod/lua/autorun/server/realtime.lua and the binary module for your
-- server to garrysmod/lua/bin/ (see the README).
--
-- It loads the module, pumps its event queue once per frame with a 0-delay
-- timer (which keeps running while the server hibernates), starts pumping
-- after Initialize so that every addon has registered its handlers, and,
-- when realtime.toml says [events] auto = true, publishes game events from
-- GMod's hooks. Running it again in the same state (Lua autorefresh) keeps
-- its state.

if CLIENT then return end

local function binary_name()
	local win = system and system.IsWindows and system.IsWindows()
	local x64 = jit and jit.arch == "x64"
	if win then return "gmsv_realtime_" .. (x64 and "win64" or "win32") .. ".dll" end
	return "gmsv_realtime_" .. (x64 and "linux64" or "linux") .. ".dll"
end

local ok, err = pcall(require, "realtime")
if not ok or type(realtime) ~= "table" then
	-- require returned, yet the module did not open: it said why itself
	local why = ok and "it loaded but did not open; its own line above says why" or tostring(err)
	ErrorNoHalt("[realtime] could not load the binary module (" .. why .. "): this server needs garrysmod/lua/bin/"
		.. binary_name() .. "\n")
	return
end

-- The glue's state lives in the module's table, so that Lua autorefresh
-- (this file run again in the same state, on a dev server) keeps it: the
-- pump keeps running and game events keep flowing without a second
-- Initialize. A map change makes a new state, and a new table.
local glue = rawget(realtime, "_glue")
if type(glue) ~= "table" then
	glue = { started = false, auto = false, skip = { "!", "/" }, reload = realtime.Reload }
	rawset(realtime, "_glue", glue)
end

-- The pump: exactly one ProcessEvents per server frame. Only the 0-delay
-- timer PUMP calls it: GMod runs a 0-delay timer once per frame whether
-- Think comes before or after the timers, and also while the server
-- hibernates (no Think, CurTime and engine.TickCount() stand still, timers
-- with a delay freeze). Think and the 0-delay WATCHDOG timer only bring
-- PUMP back if something removed it; the pump never raises, so GMod never
-- removes it for an error.
local PUMP, WATCHDOG = "realtime.pump", "realtime.watchdog"

local function pump()
	local ok, err = pcall(realtime.ProcessEvents)
	if not ok then ErrorNoHalt("[realtime] ProcessEvents: " .. tostring(err) .. "\n") end
end

local function ensure_timers()
	if not glue.started then return end
	if not timer.Exists(PUMP) then timer.Create(PUMP, 0, 0, pump) end
	if not timer.Exists(WATCHDOG) then timer.Create(WATCHDOG, 0, 0, ensure_timers) end
end

local function refresh_settings()
	local stats = realtime.GetStats()
	local events = stats.events or {}
	glue.auto = events.auto == true
	if type(events.chat_skip_prefixes) == "table" then glue.skip = events.chat_skip_prefixes end
end

hook.Add("Initialize", "realtime", function()
	glue.started = true
	-- The map this state runs, for the heartbeat hash (not a setting).
	if game and game.GetMap then pcall(realtime.Config, { map = game.GetMap() }) end
	refresh_settings()
	ensure_timers()
end)

hook.Add("Think", "realtime", ensure_timers)

if glue.started then
	-- Autorefresh: the timers run this copy's functions from now on.
	timer.Create(PUMP, 0, 0, pump)
	timer.Create(WATCHDOG, 0, 0, ensure_timers)
	refresh_settings()
end

-- Reload picks up [events] as well. It wraps the module's own Reload,
-- kept from the first run, so an autorefresh does not wrap it again.
function realtime.Reload(...)
	local ok, res = glue.reload(...)
	if ok then refresh_settings() end
	return ok, res
end

hook.Add("RealtimeConnected", "realtime", function()
	print("[realtime] " .. realtime.Status())
end)
hook.Add("RealtimeDisconnected", "realtime", function(reason)
	print("[realtime] disconnected: " .. tostring(reason))
end)

-- Game events, published when [events] auto = true. A failure never
-- disturbs the gamemode's own hooks, and no hook here returns a value, so
-- none changes what the game does.
local function publish(fn, ...)
	if not glue.auto then return end
	local ok, err = pcall(fn, ...)
	if not ok then ErrorNoHalt("[realtime] " .. tostring(err) .. "\n") end
end

local function name_of(ent)
	if IsValid(ent) and ent:IsPlayer() then return ent:Nick() end
	return nil
end

hook.Add("PlayerSpawn", "realtime", function(ply)
	publish(function() return realtime.PlayerSpawn(ply:Nick(), ply:Team(), ply:GetPos()) end)
end)

hook.Add("PlayerDeath", "realtime", function(victim, inflictor, attacker)
	publish(function()
		local weapon = IsValid(inflictor) and inflictor:GetClass() or nil
		if weapon == "player" and IsValid(attacker) and attacker.GetActiveWeapon then
			local w = attacker:GetActiveWeapon()
			weapon = IsValid(w) and w:GetClass() or nil
		end
		return realtime.PlayerDeath(victim:Nick(), name_of(attacker), weapon)
	end)
end)

-- Chat: team chat says so (team = true); lines starting with one of
-- [events] chat_skip_prefixes are commands ("!login hunter2"), not chat.
local function is_command(text)
	for _, prefix in ipairs(glue.skip) do
		if text:sub(1, #prefix) == prefix then return true end
	end
	return false
end

hook.Add("PlayerSay", "realtime", function(ply, text, team_chat)
	if type(text) ~= "string" or is_command(text) then return end
	publish(function() return realtime.ChatMessage(ply:Nick(), text, team_chat == true) end)
end)

-- Damage as taken: PostEntityTakeDamage runs after armour, god mode and
-- every EntityTakeDamage hook had their say; took is false when the
-- damage was blocked.
hook.Add("PostEntityTakeDamage", "realtime", function(target, dmg, took)
	if not took or not (IsValid(target) and target:IsPlayer()) then return end
	publish(function() return realtime.PlayerTakeDamage(target:Nick(), dmg:GetDamage(), name_of(dmg:GetAttacker())) end)
end)

-- Round hooks of the gamemodes that have them (Trouble in Terrorist Town).
hook.Add("TTTBeginRound", "realtime", function()
	publish(function() return realtime.RoundStart(engine.ActiveGamemode(), game.GetMap()) end)
end)
hook.Add("TTTEndRound", "realtime", function(result)
	publish(function() return realtime.RoundEnd(result) end)
end)
