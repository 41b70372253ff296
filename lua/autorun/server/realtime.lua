-- gmsv_realtime: the server-side glue. Copy this file to
-- garrysmod/lua/autorun/server/realtime.lua and the binary module for your
-- server to garrysmod/lua/bin/ (see the README).
--
-- It loads the module, pumps its event queue every tick with a 0-delay
-- timer (which keeps running while the server hibernates), starts pumping
-- after Initialize so that every addon has registered its handlers, and,
-- when realtime.toml says [events] auto = true, publishes game events from
-- GMod's hooks.

if CLIENT then return end

local function binary_name()
	local win = system and system.IsWindows and system.IsWindows()
	local x64 = jit and jit.arch == "x64"
	if win then return "gmsv_realtime_" .. (x64 and "win64" or "win32") .. ".dll" end
	return "gmsv_realtime_" .. (x64 and "linux64" or "linux") .. ".dll"
end

local ok, err = pcall(require, "realtime")
if not ok or type(realtime) ~= "table" then
	ErrorNoHalt("[realtime] could not load the binary module (" .. tostring(err) .. "): this server needs garrysmod/lua/bin/"
		.. binary_name() .. "\n")
	return
end

local PUMP, WATCHDOG = "realtime.pump", "realtime.watchdog"
local started, last_tick = false, -1

local function pump()
	last_tick = engine.TickCount()
	local ok, err = pcall(realtime.ProcessEvents)
	if not ok then ErrorNoHalt("[realtime] ProcessEvents: " .. tostring(err) .. "\n") end
end

-- ensure_pump re-creates the pump timer if something removed it.
local function ensure_pump()
	if started and not timer.Exists(PUMP) then timer.Create(PUMP, 0, 0, pump) end
end

local auto = false
local function refresh_settings()
	local stats = realtime.GetStats()
	auto = stats.events ~= nil and stats.events.auto == true
end

hook.Add("Initialize", "realtime", function()
	started = true
	ensure_pump()
	timer.Create(WATCHDOG, 1, 0, ensure_pump)
	refresh_settings()
	pump()
end)

-- The Think fallback: pumps when the timer did not run this tick, and
-- brings the timer back. While hibernating, Think stops and the timers
-- (the pump and its watchdog) carry on.
hook.Add("Think", "realtime", function()
	if not started then return end
	ensure_pump()
	if last_tick ~= engine.TickCount() then pump() end
end)

-- Reload picks up [events] auto as well.
local reload = realtime.Reload
function realtime.Reload(...)
	local ok, res = reload(...)
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
-- disturbs the gamemode's own hooks.
local function publish(fn, ...)
	if not auto then return end
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

hook.Add("PlayerSay", "realtime", function(ply, text)
	publish(function() return realtime.ChatMessage(ply:Nick(), text) end)
end)

hook.Add("EntityTakeDamage", "realtime", function(target, dmg)
	if not (IsValid(target) and target:IsPlayer()) then return end
	publish(function() return realtime.PlayerTakeDamage(target:Nick(), dmg:GetDamage(), name_of(dmg:GetAttacker())) end)
end)

-- Round hooks of the gamemodes that have them (Trouble in Terrorist Town).
hook.Add("TTTBeginRound", "realtime", function()
	publish(function() return realtime.RoundStart(engine.ActiveGamemode(), game.GetMap()) end)
end)
hook.Add("TTTEndRound", "realtime", function(result)
	publish(function() return realtime.RoundEnd(result) end)
end)
