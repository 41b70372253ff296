-- Issue 11, defect 9: Publish("c", {[1]="a", ["1"]="b"}) produced the key
-- "1" twice, and strings with invalid UTF-8 went out raw, which is not
-- JSON for any other consumer. Either is refused or encoded as valid
-- JSON; a string payload stays byte-exact.
local T = require "testlib"
local R = require "regresslib"
local rt = realtime

local got = {}
rt.On("j:*", function(ch, data) got[ch] = data end)

local function valid_utf8(s)
	local i, n = 1, #s
	while i <= n do
		local c = s:byte(i)
		local len = c < 0x80 and 1 or c >= 0xC2 and c <= 0xDF and 2 or c >= 0xE0 and c <= 0xEF and 3 or c >= 0xF0 and c <= 0xF4 and 4 or 0
		if len == 0 or i + len - 1 > n then return false end
		for k = i + 1, i + len - 1 do
			local b = s:byte(k)
			if b < 0x80 or b > 0xBF then return false end
		end
		if len == 3 and c == 0xE0 and s:byte(i + 1) < 0xA0 then return false end -- overlong
		if len == 3 and c == 0xED and s:byte(i + 1) > 0x9F then return false end -- surrogate
		if len == 4 and c == 0xF0 and s:byte(i + 1) < 0x90 then return false end
		if len == 4 and c == 0xF4 and s:byte(i + 1) > 0x8F then return false end
		i = i + len
	end
	return true
end

local sent = {}
local function publish(ch, v)
	local ok, res = pcall(rt.Publish, ch, v)
	if ok and res then sent[#sent + 1] = ch end
end
publish("j:dup", { [1] = "a", ["1"] = "b" })
publish("j:dup2", { [2] = "a", ["2"] = "b", x = 1 })
publish("j:utf8", { s = "\255\254" })
publish("j:utf8key", { ["\192\128"] = 1 })
publish("j:surrogate", { "\237\160\128" })
T.ok(rt.Publish("j:raw", "\255\0\254"), "Publish of a binary string")
sent[#sent + 1] = "j:raw"
R.pump(function()
	for _, ch in ipairs(sent) do if not got[ch] then return false end end
	return true
end, "the published events")

T.eq(got["j:raw"], "\255\0\254", "a string payload is byte-exact")
for _, ch in ipairs(sent) do
	if ch ~= "j:raw" then
		local s = got[ch]
		T.ok(valid_utf8(s), ch .. ": the JSON is not valid UTF-8: " .. string.format("%q", s))
		local keys = {}
		for k in s:gmatch('[{,]"([^"]*)":') do
			T.ok(not keys[k], ch .. ": key " .. k .. " twice in " .. s)
			keys[k] = true
		end
	end
end
print("regress: ok")
HOST.Exit(0)
