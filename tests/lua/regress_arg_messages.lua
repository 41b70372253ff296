-- Issue 11, defect 10: argument messages. Config({[true]=1}) said "key 0";
-- Off("pat", nil) silently took the pattern for an id; On("x") blamed
-- argument #3 instead of #2.
local T = require "testlib"
local rt = realtime

local ok, err = rt.Config({ [true] = 1 })
T.eq(ok, false, "Config with a boolean key")
T.ok(not tostring(err):find("key 0", 1, true), "Config({[true]=1}) names the key, not \"key 0\": " .. tostring(err))

local removed = false
rt.On("elsewhere", "pat", function() end)
local okOff, res = pcall(rt.Off, "pat", nil)
if okOff then removed = res end
T.ok(not okOff, "Off(\"pat\", nil) is an argument error, not Off(\"pat\") (it removed id \"pat\": " .. tostring(removed) .. ")")
T.ok(tostring(res):find("#2", 1, true), "Off(\"pat\", nil) blames argument #2: " .. tostring(res))

ok, err = pcall(rt.On, "x")
T.ok(not ok, "On(\"x\") raises")
T.ok(tostring(err):find("#2", 1, true), "On(\"x\") blames argument #2: " .. tostring(err))
print("regress: ok")
HOST.Exit(0)
