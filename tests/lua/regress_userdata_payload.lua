-- Found by the fuzzer (tests/lua/fuzz.lua, seed 1 with FUZZ_SKIP=badnum):
-- Publish of a userdata whose metatable has no __index (newproxy(true), a
-- userdata with only __gc or __tostring) raised "attempt to index a
-- userdata value" from the shim's Vector check instead of refusing the
-- value with an argument error. The same path reads game event positions.
local T = require "testlib"
local rt = realtime

local u = newproxy(true)
getmetatable(u).__tostring = function() return "u" end
local ok, err = pcall(rt.Publish, "u", u)
T.ok(not tostring(err):find("attempt to index", 1, true), "Publish(userdata): " .. tostring(err))
ok, err = pcall(rt.Publish, "u", { pos = u })
T.ok(not tostring(err):find("attempt to index", 1, true), "Publish({pos = userdata}): " .. tostring(err))
ok, err = pcall(rt.PlayerSpawn, "bob", 1, u)
T.ok(not tostring(err):find("attempt to index", 1, true), "PlayerSpawn(name, team, userdata): " .. tostring(err))
print("regress: ok")
HOST.Exit(0)
