-- For the example addons (examples/*, TestExamples): what they use of GMod
-- beyond tests/gmod/env.lua, and the handshake with the Go test. A driver
-- script requires it before Initialize, so the stubs are in place before
-- any addon's hook runs.
local E = { chat = {} }

-- PrintMessage(HUD_PRINTTALK, text) shows text in every player's chat;
-- here it prints "chat: text" and remembers the line.
HUD_PRINTTALK = 3
function PrintMessage(kind, text)
	E.chat[#E.chat + 1] = text
	print("chat: " .. text)
end

player = player or {}
function player.GetCount() return 5 end
function game.MaxPlayers() return 16 end

-- E.ready() waits until the module is connected (its config routes
-- subscribed) and tells the Go test, which then runs the README's commands.
function E.ready()
	HOST.WaitFor(realtime.IsConnected, 20, "connected to Redis")
	print("example: ready")
end

-- E.wait_chat(text) waits until PrintMessage showed text.
function E.wait_chat(text)
	HOST.WaitFor(function()
		for _, line in ipairs(E.chat) do
			if line == text then return true end
		end
		return false
	end, 20, "the chat line " .. text)
end

-- E.wait_sent(n) waits until n messages were published and Redis has
-- answered everything in the outbox.
function E.wait_sent(n)
	HOST.WaitFor(function()
		local s = realtime.GetStats()
		return s.published >= n and s.redis.outbox == 0
	end, 20, n .. " messages published and sent")
end

-- E.wait_dispatched(route, n) waits until route's handler had n events.
function E.wait_dispatched(route, n)
	HOST.WaitFor(function()
		local r = realtime.GetStats().routes[route]
		return r ~= nil and r.dispatched >= n
	end, 20, n .. " events dispatched on route " .. route)
end

return E
