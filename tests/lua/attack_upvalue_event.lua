-- Attack: debug.setupvalue on the body closure of a game event. The body's
-- upvalue is the event's index in the C array game_events, read with no
-- bounds check: any number indexes past the array (a crash).
local T = require "testlib"
local _, body = debug.getupvalue(realtime.PlayerDeath, 1)
T.eq(type(body), "function", "PlayerDeath's body")
debug.setupvalue(body, 1, 1e8)
pcall(realtime.PlayerDeath, "victim")

HOST.Run(function() print("attack_upvalue_event: ok") end)
