-- Hostile realtime.Append calls (tests/append_test.go
-- TestAppendHostileArguments): a stream name with NUL bytes, a payload of
-- 8 MiB, a self-referencing table, a number, each reported as an error
-- or an rt_id, never a crash; then "atk: done".
local rt = realtime
HOST.Run(function()
	HOST.WaitFor(rt.IsConnected, 10, "connected")
	local id, err = rt.Append("a\0b", "nul")
	print("nul stream: " .. tostring(id) .. " " .. tostring(err))
	id, err = rt.Append("big", string.rep("x", 8 * 1024 * 1024))
	print("big: " .. tostring(id ~= nil and id ~= false) .. " " .. tostring(err))
	local t = {}
	t.self = t
	local ok, e = pcall(rt.Append, "cyc", t)
	print("cycle: " .. tostring(ok) .. " " .. tostring(e))
	id, err = rt.Append("num", 42)
	print("num: " .. tostring(id) .. " " .. tostring(err))
	ok, e = pcall(rt.Append, "a", "b", "c")
	print("extra: " .. tostring(ok) .. " " .. tostring(e))
	ok, e = pcall(rt.Append, 5, "b")
	print("numstream: " .. tostring(ok) .. " " .. tostring(e))
	HOST.WaitFor(function() local s = rt.GetStats() return s.redis.outbox == 0 and s.spool.entries == 0 end, 20, "sent")
	print("atk: done")
end)
