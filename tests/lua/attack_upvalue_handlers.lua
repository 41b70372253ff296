-- Attack: debug.setupvalue on the body closure of realtime.On. Its upvalue
-- is the handler table, used with lua_rawset/lua_rawget without a type
-- check: a string there is taken for a table (a crash).
local T = require "testlib"
local _, body = debug.getupvalue(realtime.On, 1)
T.eq(type(body), "function", "On's body")
debug.setupvalue(body, 1, "not a table")
pcall(realtime.On, "x", function() end)

HOST.Run(function() print("attack_upvalue_handlers: ok") end)
