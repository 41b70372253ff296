-- Attack: out of memory. The host's allocator refuses every allocation
-- past HOST.MemLimit(n) bytes more than the state holds ($HOST_MEMLIMIT;
-- PUC Lua 5.1 and 32-bit LuaJIT), and each realtime.* call, the pump among
-- them, runs under limits from 0 bytes up, with events queued. Each call
-- returns or raises "not enough memory"; then, with memory again, On and
-- Off have left Go and the handler table agreeing (an event on "z" reaches
-- the handler if and only if the route is in GetStats), the queue drains
-- and the pump works.
local T = require "testlib"
local rt = realtime
if jit then jit.off() end
HOST.ExpectErrors("not enough memory", "log lines were dropped", "was removed while events for it waited")
T.ok(HOST.MemLimit, "a host with HOST.MemLimit")

T.depth(1)
rt.ProcessEvents() -- RealtimeConnected (local)

-- 1. On and Off under every small limit.
local zcalls = 0
local zfn = function() zcalls = zcalls + 1 end
local function agree(what, limit)
	local inGo = rt.GetStats().routes["z (z)"] ~= nil
	local nh = rt.GetStats().dropped.no_handler
	local received = rt.GetStats().received
	zcalls = 0
	rt.Publish("z", "1")
	local deadline = HOST.Time() + 5
	while rt.GetStats().received == received and HOST.Time() < deadline do end
	T.drain()
	local extra = rt.GetStats().dropped.no_handler - nh
	T.ok(zcalls == (inGo and 1 or 0) and extra == 0, string.format(
		"%s under a limit of %d bytes: route in GetStats %s, handler called %d times, %d more no_handler",
		what, limit, tostring(inGo), zcalls, extra))
end
for limit = 0, 8000, 8 do
	for _, op in ipairs({ { "On", "z", "z", zfn }, { "Off", "z" } }) do
		collectgarbage()
		collectgarbage("stop") -- a collection under the limit frees what the limit counts
		HOST.MemLimit(limit)
		pcall(rt[op[1]], select(2, unpack(op)))
		HOST.MemLimit()
		collectgarbage("restart")
		agree(op[1], limit)
	end
	rt.Off("z")
end

-- 2. Every call, events queued, under growing limits.
local handled = 0
rt.On("m:*", "m", function(ch, data)
	handled = handled + 1
	local t = {}
	for i = 1, 10 do t[i] = tostring(data) .. i end
end, { decode = "json" })
local payload = { a = { 1, 2, 3 }, b = "xyz", c = { d = { e = "f" } } }
local calls = {
	function() return rt.ProcessEvents() end,
	function() return rt.Publish("m:x", payload) end,
	function() return rt.GetStats() end,
	function() return rt.On("y", "y", zfn) end,
	function() return rt.Off("y") end,
	function() return rt.Reload() end,
	function() return rt.Status() end,
	function() return rt.Append("s", payload) end,
	function() return rt.PlayerSpawn("bob", 1, Vector(1, 2, 3)) end,
	function() return rt.Handler("hh", zfn) end,
	function() return rt.Config({ ["server.id"] = "oom" }) end,
	function() return rt.Stream("st", "st", zfn) end,
	function() return rt.Off("st") end,
}
local refused, returned = 0, 0
for round = 1, 400 do
	for i = 1, 10 do rt.Publish("m:" .. (i % 3), payload) end
	collectgarbage()
	HOST.MemLimit((round % 80) * 100)
	for j = 1, #calls do
		local ok, err = pcall(calls[j])
		if ok then
			returned = returned + 1
		elseif err == "not enough memory" then -- compared, not copied: no allocation
			refused = refused + 1
		end
	end
	HOST.MemLimit()
end
T.ok(refused > 0 and returned > 0, string.format("calls refused for memory (%d) and calls that returned (%d)", refused, returned))
rt.Off("y")
rt.Off("st")
T.drain()
T.eq(rt.GetStats().queue.depth, 0, "events left in the queue")
T.ok(handled > 0, "handler called")
rt.Off("m")

-- 3. The pump works.
rt.On("z", "z", zfn)
zcalls = 0
rt.Publish("z", "1")
T.depth(1)
T.drain()
T.eq(zcalls, 1, "an event after the attack")
rt.Off("z")

HOST.Run(function() print("attack_oom: ok") end)
