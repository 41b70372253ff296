-- The GMod emulation itself (tests/gmod/env.lua) against GMod's documented
-- behaviour, so that the other tests keep meaning what they say.
local T = require "testlib"
HOST.ExpectErrors("ErrorNoHalt 1 nil true", "timer that fails")

local order = {}
hook.Add("Think", "emulation", function() order[#order + 1] = "Think" end)
hook.Add("Tick", "emulation", function() order[#order + 1] = "Tick" end)
timer.Create("emulation", 0, 0, function() order[#order + 1] = "timer" end)

HOST.Run(function()
	-- Hooks: the first non-nil return is the result, then the gamemode.
	hook.Add("EmuSay", "a", function() return nil end)
	T.eq(hook.Run("EmuSay"), nil, "no hook returns, no gamemode method")
	function GAMEMODE:EmuSay(x) return "gm " .. x end
	T.eq(hook.Run("EmuSay", "y"), "gm y", "the gamemode's method when every hook returns nil")
	hook.Add("EmuSay", "b", function(x) return "hook " .. x end)
	T.eq(hook.Run("EmuSay", "y"), "hook y", "a hook's non-nil return stops the chain")
	T.eq(hook.Run("PlayerSay", FakePlayer("bob"), "hi", false), "hi", "the base gamemode's PlayerSay returns the text")
	T.errors(function() hook.Add("EmuSay", 5, print) end, "bad argument #2 to 'Add'")
	-- An object identifier comes first, and goes once invalid.
	local obj = { valid = true, IsValid = function(self) return self.valid end }
	local seen
	hook.Add("EmuObj", obj, function(self, x) seen = { self, x } end)
	hook.Run("EmuObj", 1)
	T.ok(seen[1] == obj and seen[2] == 1, "object identifier passed first")
	obj.valid = false
	seen = nil
	hook.Run("EmuObj", 2)
	T.eq(seen, nil, "an invalid object's hook is not called")
	T.eq(hook.GetTable().EmuObj[obj], nil, "an invalid object's hook is removed")

	-- ErrorNoHalt converts with tostring.
	ErrorNoHalt("ErrorNoHalt ", 1, " ", nil, " ", true, "\n")
	T.eq(HOST.Errors[#HOST.Errors], "ErrorNoHalt 1 nil true\n", "ErrorNoHalt's message")

	-- The frame: Think, timers, Tick (or timers first).
	order = {}
	HOST.Yield()
	local want = HOST.frame_order == "timers-first" and "timer Think Tick" or "Think timer Tick"
	T.eq(table.concat(order, " "), want, "frame order (" .. HOST.frame_order .. ")")

	-- timer.Simple(0) inside a timer callback runs in the next frame.
	local ran_at
	timer.Simple(0, function() timer.Simple(0, function() ran_at = HOST.Frame() end) end)
	HOST.Yield()
	local created_in = HOST.Frame()
	T.eq(ran_at, nil, "timer.Simple(0) made in a callback does not run in the same frame")
	HOST.Yield()
	T.eq(ran_at, created_in + 1, "timer.Simple(0) made in a callback runs in the next frame")

	-- timer.Remove: gone at once for timer.Exists, and never runs again.
	local removed_runs = 0
	timer.Create("removed", 0, 0, function() removed_runs = removed_runs + 1 end)
	HOST.Yield()
	T.eq(removed_runs, 1, "a 0-delay timer runs each frame")
	timer.Remove("removed")
	T.eq(timer.Exists("removed"), false, "timer.Exists after timer.Remove")
	HOST.Yield()
	T.eq(removed_runs, 1, "a removed timer does not run")

	-- A timer whose callback fails is reported and removed.
	timer.Create("fails", 0, 0, function() error("timer that fails") end)
	HOST.Yield()
	T.eq(timer.Exists("fails"), false, "a failing timer is removed")

	-- Hibernation: no Think, no Tick; CurTime and TickCount stand still, so
	-- a timer with a delay freezes while a 0-delay one runs.
	local delayed = 0
	timer.Create("delayed", 0.01, 0, function() delayed = delayed + 1 end)
	HOST.WaitFor(function() return delayed > 0 end, 5, "the delayed timer")
	HOST.Hibernate(true)
	HOST.Yield() -- the last frame before hibernating
	local t0, c0, d0 = engine.TickCount(), CurTime(), delayed
	order = {}
	for _ = 1, 10 do HOST.Yield() end
	T.eq(table.concat(order, " "), ("timer "):rep(10):sub(1, -2), "hibernating: only the 0-delay timer runs")
	T.eq(engine.TickCount(), t0, "TickCount while hibernating")
	T.eq(CurTime(), c0, "CurTime while hibernating")
	T.eq(delayed, d0, "a timer with a delay while hibernating")
	HOST.Hibernate(false)
	HOST.WaitFor(function() return delayed > d0 end, 5, "the delayed timer after waking up")
	print("emulation: ok")
end)
