-- Found by the fuzzer (tests/lua/fuzz.lua, seed 4 with
-- FUZZ_SKIP=badnum,cycle,shared,plainud,reentry,gcerror): the JSON
-- encoder builds every value's key path (for error messages) eagerly, so
-- a long key over a large array is quadratic: a 100 KB key over 11,000
-- numbers took 650 ms of the main thread. Here 1 MB over 200,000 numbers
-- would take minutes; the watchdog ends the run if the call does not
-- return within 10 s.
local T = require "testlib"
local R = require "regresslib"
local rt = realtime

local a = {}
for i = 1, 200000 do a[i] = i end
local ok = R.expect("Publish({[1 MB key] = 200,000 numbers})", rt.Publish, "k", { [string.rep("k", 1000000)] = a })
T.ok(ok ~= nil, "Publish returned")
print("regress: ok")
HOST.Exit(0)
