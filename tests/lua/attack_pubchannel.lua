-- Attack on Publish's one-entry channel cache (module/bridge.go
-- channelString) and the writer's boxing of a run of one channel: channels
-- of one length that differ in one byte (NUL and 0xff included), built
-- fresh each time and collected between publishes, alternating with longer
-- and shorter ones; publishes from a handler and from __gc finalizers run
-- by the collector in the middle of the loop. Every payload names its
-- channel: the Go side checks each message Redis got is on its own
-- channel, once, in order.
local T = require "testlib"
local rt = realtime

local seed = tonumber(os.getenv("PUBCHANNEL_SEED") or "1")
math.randomseed(seed)
print("attack_pubchannel: seed " .. seed)

local sent = 0
local function pub(ch, tag)
	sent = sent + 1
	local ok, err = rt.Publish(ch, ch .. "|" .. sent .. "|" .. tag)
	T.ok(ok, "Publish: " .. tostring(err))
end

local bytes = { "a", "b", "\0", "\255" }
local function fresh(n)
	local t = {}
	for i = 1, n do t[i] = bytes[math.random(#bytes)] end
	return "pc:" .. table.concat(t) -- a new string, not interned before
end

-- From a handler: each event of pc:h* publishes once more.
local hsent, handled = 0, 0
rt.On("pc:h*", function(ch)
	handled = handled + 1
	pub("pc:r" .. ch:sub(5), "handler")
end)

local function finalizer(i)
	local u = newproxy(true)
	getmetatable(u).__gc = function() pub(fresh(2 + i % 3), "gc") end
end

for i = 1, 3000 do
	local k = math.random(10)
	if k <= 6 then
		pub(fresh(2), "loop")             -- same length, another byte
	elseif k == 7 then
		pub(fresh(1 + math.random(4)), "loop") -- other lengths
	elseif k == 8 then
		hsent = hsent + 1
		pub("pc:h" .. bytes[math.random(2)], "loop")
	else
		finalizer(i)
	end
	if i % 97 == 0 then collectgarbage("collect") end
	if i % 301 == 0 then rt.ProcessEvents() end
end
collectgarbage("collect")
collectgarbage("collect")
HOST.Run(function()
	HOST.WaitFor(function()
		T.drain()
		return handled == hsent and realtime.GetStats().redis.outbox == 0
	end, 30, "every publish sent, every pc:h event handled")
	collectgarbage("collect") -- finalizers left: they publish too
	HOST.WaitFor(function() return realtime.GetStats().redis.outbox == 0 end, 30, "the last ones sent")
	print("attack_pubchannel: ok " .. sent)
end)
