-- The second start of the demo server (tests/demo/main.go): while it was
-- stopped, the demo sent an admin command to the stream admin:commands
-- with realtimectl append. The example addon admin_commands.lua handles it
-- (PrintMessage to the chat, an answer on admin:results); this script
-- shows the chat line and waits until the entry is acknowledged in Redis.
local chat = {}
HUD_PRINTTALK = HUD_PRINTTALK or 3
function PrintMessage(_, text)
	chat[#chat + 1] = text
	print("[chat] " .. text)
end

print("[demo] the server is up again; its stream route reads admin:commands from where its group left off")
HOST.Run(function()
	HOST.WaitFor(function() return #chat >= 1 end, 20, "the admin command")
	-- Redis has the acknowledgement once the reader's XACK returned: wait
	-- for it, so that the server does not stop with the command pending.
	HOST.WaitFor(function()
		local s = realtime.GetStats().streams["admin:commands"]
		return s ~= nil and s.acked >= 1
	end, 20, "the acknowledgement")
	local s = realtime.GetStats().streams["admin:commands"]
	print(string.format("[demo] stream route admin-commands: %d delivered, %d acknowledged, %d retried, %d dead-lettered",
		s.delivered, s.acked, s.retried, s.dead_lettered))
	print("[demo] done")
end)
