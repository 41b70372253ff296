-- Payloads larger than a ring slot's tape (64 KiB) and JSON with more
-- nodes than a slot's (1,024), mixed at random with small events on two
-- routes: each reaches its handler once, intact and in order (the ring
-- grows a slot's memory only while the pump reads nothing of it).
-- SEED replays the choices (printed).
local T = require "testlib"
local rt = realtime
local SEED = tonumber(os.getenv("SEED") or "") or math.floor(HOST.Time() * 1000) % 1000000007
local N = tonumber(os.getenv("BIG_N") or "400")
local state = SEED % 2147483646 + 1
local function rand(n) -- 1..n, Park-Miller as fuzz.lua
	state = state * 16807 % 2147483647
	return 1 + state % n
end
T.depth(1)
T.drain() -- RealtimeConnected
print(string.format("attack_ring_big: seed %d, %d events", SEED, N))

local got, bad = 0, nil
local function check(seq, what)
	if bad then return end
	if seq ~= got + 1 then bad = string.format("%s event %s arrived after event %d", what, tostring(seq), got) end
	got = got + 1
end
local sizes = {}
rt.Subscribe("bigr", "bigr", function(_, data)
	local seq = tonumber(data:sub(1, 8))
	check(seq, "raw")
	if not bad and (#data ~= sizes[seq] or data:sub(-1) ~= string.char(65 + seq % 26)) then
		bad = string.format("raw event %d: %d bytes, want %d", seq, #data, sizes[seq])
	end
end)
rt.On("bigj", "bigj", function(_, data)
	local seq = data[1]
	check(seq, "json")
	if not bad and (#data ~= sizes[seq] or data[#data] ~= #data - 1 or data[2] ~= "s" .. seq) then
		bad = string.format("json event %d: %d nodes, want %d", seq, #data, sizes[seq])
	end
end, { decode = "json" })

local sent, deadline = 0, HOST.Time() + 60
while got < N and not bad and HOST.Time() < deadline do
	local burst = 0
	while sent < N and sent - got < 40 and burst < 3 * 1024 * 1024 do
		sent = sent + 1
		local r = rand(10)
		if r <= 4 then -- JSON: up to 5,000 numbers
			local k = r <= 2 and 2 + rand(20) or 1000 + rand(4000)
			local parts = { tostring(sent), '"s' .. sent .. '"' }
			for i = 3, k do parts[i] = tostring(i - 1) end
			sizes[sent] = k
			T.ok(rt.Publish("bigj", "[" .. table.concat(parts, ",") .. "]"), "Publish json")
		else -- raw: small, a bit over a slot, or several slots
			local size = r <= 6 and 8 + rand(50) or r <= 8 and 65536 + rand(4096) or 200000 + rand(300000)
			sizes[sent] = size
			T.ok(rt.Publish("bigr", string.format("%08d", sent) .. string.rep(string.char(65 + sent % 26), size - 8)), "Publish raw")
			burst = burst + size
		end
	end
	if rand(4) == 1 then rt.ProcessEvents(rand(3)) else rt.ProcessEvents() end
end
T.ok(not bad, tostring(bad) .. " (seed " .. SEED .. ")")
T.eq(got, N, "events handled (seed " .. SEED .. ")")
local st = rt.GetStats()
T.eq(st.dropped.queue_full, 0, "queue_full drops")
T.eq(st.dropped.too_big or 0, 0, "too_big drops")
print("attack_ring_big: ok")
HOST.Exit(0)
