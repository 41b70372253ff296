-- Attack: an On option of the wrong type blames an argument that does not
-- exist. l_on (module/shim.c) checks the option's value where rawget left
-- it, with lua.gettop(L) as the argument number: the options table is
-- argument #4 (or #3 without an id), yet the message says #5, #7 or #8.
local T = require "testlib"
local rt = realtime
local f = function() end

T.errors(function() rt.On("x", "id", f, { decode = {} }) end, "bad argument #4 to 'On' (decode: ")
T.errors(function() rt.On("x", f, { rate = {} }) end, "bad argument #3 to 'On' (rate: ")
T.errors(function() rt.On("x", "id", f, { burst = "3" }) end, "bad argument #4 to 'On' (burst: ")
T.errors(function() rt.Subscribe("x", f, { decode = {} }) end, "bad argument #3 to 'Subscribe' (decode: ")

HOST.Run(function() print("attack_optargs: ok") end)
