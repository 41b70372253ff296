-- Issue 11, defect 2: registry references were released as soon as Off,
-- Handler or On returned, while events of the current batch still held
-- them: the slot was reused and another handler (or a number: "attempt
-- to call a number value") received the events.
local T = require "testlib"
local R = require "regresslib"
local rt = realtime

local errors = {}
local error_no_halt = ErrorNoHalt
function ErrorNoHalt(...)
	errors[#errors + 1] = table.concat({ ... })
	return error_no_halt(...)
end

-- A handler that unregisters itself and registers another function: the
-- rest of its batch must not reach the new function.
local a, wrong = 0, {}
local function fnB(ch) if ch:sub(1, 2) == "a:" then wrong[#wrong + 1] = ch end end
rt.On("a:*", "once", function()
	a = a + 1
	rt.Off("a:*", "once")
	rt.On("b:*", "other", fnB)
end)
for i = 1, 20 do rt.Publish("a:" .. i, "x") end
T.depth(20)
R.pump(function() return rt.GetStats().queue.depth == 0 end, "the 20 events")
T.eq(#wrong, 0, "events of a:* delivered to the b:* handler (" .. table.concat(wrong, " ") .. ")")
T.ok(a >= 1, "the a:* handler ran")

-- Without a new registration: the released reference must not be called.
local calls = 0
rt.On("c:*", "self", function()
	calls = calls + 1
	rt.Off("self")
end)
for i = 1, 20 do rt.Publish("c:" .. i, "x") end
T.depth(20)
R.pump(function() return rt.GetStats().queue.depth == 0 end, "the 20 c: events")
for _, e in ipairs(errors) do
	T.ok(not e:find("attempt to call", 1, true), "a released reference was called: " .. e)
end
T.eq(rt.GetStats().dropped.handler_error or 0, 0, "handler errors")

print("regress: ok")
HOST.Exit(0)
