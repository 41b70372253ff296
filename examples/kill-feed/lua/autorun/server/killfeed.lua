-- Kill feed and round results for a web dashboard (Trouble in Terrorist
-- Town's round hooks; other gamemodes have their own).
--
-- Channel contract, JSON:
--   dashboard:kill   one message per death
--     {"server", "map", "victim", "killer" ("" for a suicide or the world), "weapon" ("" if none), "round_time"}
--   dashboard:round  one message per round end
--     {"server", "map", "winner" (TTT's WIN_* number), "duration_s", "kills" (list of {"name", "kills"}, most first)}
-- The dashboard's backend subscribes to dashboard:* and pushes to browsers.

-- Autorun files load in name order, so this file may run before the glue
-- (realtime.lua). require loads the module once; a later require returns
-- it. If it is missing, the glue says which file the server needs.
if not pcall(require, "realtime") then return end

local server_id -- [server] id, read once (GetStats builds a whole table)
local function own_id()
	server_id = server_id or realtime.GetStats().server
	return server_id
end

local kills, round_start = {}, CurTime()

hook.Add("TTTBeginRound", "killfeed", function()
	kills, round_start = {}, CurTime()
end)

local function weapon_of(inflictor, attacker)
	local weapon = IsValid(inflictor) and inflictor:GetClass() or ""
	-- A shot: the inflictor is the player; the weapon is the one in hand.
	if weapon == "player" and IsValid(attacker) and attacker.GetActiveWeapon then
		local w = attacker:GetActiveWeapon()
		weapon = IsValid(w) and w:GetClass() or ""
	end
	return weapon
end

hook.Add("PlayerDeath", "killfeed", function(victim, inflictor, attacker)
	local killer = ""
	if IsValid(attacker) and attacker:IsPlayer() and attacker ~= victim then
		killer = attacker:Nick()
		kills[killer] = (kills[killer] or 0) + 1
	end
	realtime.Publish("dashboard:kill", {
		server = own_id(),
		map = game.GetMap(),
		victim = victim:Nick(),
		killer = killer,
		weapon = weapon_of(inflictor, attacker),
		round_time = math.floor(CurTime() - round_start),
	})
end)

hook.Add("TTTEndRound", "killfeed", function(result)
	local list = {}
	for name, n in pairs(kills) do list[#list + 1] = { name = name, kills = n } end
	table.sort(list, function(a, b) return a.kills > b.kills or (a.kills == b.kills and a.name < b.name) end)
	realtime.Publish("dashboard:round", {
		server = own_id(),
		map = game.GetMap(),
		winner = result,
		duration_s = math.floor(CurTime() - round_start),
		kills = list, -- an empty list is [] in the JSON
	})
end)
