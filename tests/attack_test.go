package tests

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestAttack runs the attack_*.lua reproducers (hostile scripts against the
// Lua boundary, local mode) on every Linux host: each must finish and print
// "<name>: ok"; a hang, a crash or a failed check fails it. Not on the
// Windows DLLs: the shim's Lua boundary has no Windows code, 32- and 64-bit
// run here, and under Wine these 20 runs would add over a minute to make
// test (TestBoundary runs there).
func TestAttack(t *testing.T) {
	all, luajit := hosts(luajit64, lua51, luajit32), hosts(luajit64, luajit32)
	for _, c := range []struct {
		name  string
		hosts []Host
	}{
		{"attack_printloop", all},   // print calling Reload: ProcessEvents prints forever
		{"attack_statusloop", all},  // a status hook that reconnects: ProcessEvents(1) never returns
		{"attack_gcnumber", all},    // finalizers raising numbers: an error escapes, the pump is stuck
		{"attack_routename", all},   // colliding handler names: an event reaches another route's handler
		{"attack_optargs", all},     // an On option of the wrong type blames argument #5, #7 or #8
		{"attack_getinfo", all},     // a hostile debug.getinfo: events failed, never handled
		{"attack_stream_args", all}, // hostile realtime.Stream arguments, finalizers, storms
		{"attack_reopen", all},      // a handler reopens the module: ProcessEvents runs inside ProcessEvents
		{"attack_offrename", all},   // Off, then another registration of the same route name: it got the removed one's events
		{"attack_rerequire", all},   // require again after package.loaded.realtime = nil: every handler lost
		// PUC Lua 5.1's debug.getupvalue does not touch C closures; LuaJIT's (GMod's) does.
		{"attack_upvalue_event", luajit},    // debug.setupvalue on a game event's body: out-of-bounds read
		{"attack_upvalue_handlers", luajit}, // debug.setupvalue on On's body: a string used as a table
		{"attack_upvalue_swap", luajit},     // ProcessEvents' body run by another entry: stack corruption
	} {
		name := c.name
		for _, h := range c.hosts {
			t.Run(name+"/"+h.Name, func(t *testing.T) {
				t.Parallel()
				out := NewServer(t, h, "").RunScript(name + ".lua")
				assert.Contains(t, out, name+": ok")
			})
		}
	}
}

// TestAttackMapBatch: a map change while the rest of a batch waits in the
// shim; each event is handled once in either map, or counted as no_handler.
// Linux hosts only, as TestAttack.
func TestAttackMapBatch(t *testing.T) {
	for _, mode := range []string{"keep", "drop"} {
		for _, h := range hosts(luajit64, lua51, luajit32) {
			t.Run(mode+"/"+h.Name, func(t *testing.T) {
				t.Parallel()
				out := NewServer(t, h, "").RunScript("attack_mapbatch.lua", "MAPBATCH="+mode)
				assert.Contains(t, out, "attack_mapbatch: ok")
			})
		}
	}
}

// TestAttackOOM: every realtime.* call, the pump's among them, under
// allocation limits from 0 bytes up (tests/lua/attack_oom.lua), on the
// hosts whose runtime takes the host's allocator (HOST_MEMLIMIT): PUC Lua
// 5.1 and 32-bit LuaJIT (64-bit LuaJIT has only its own).
func TestAttackOOM(t *testing.T) {
	for _, h := range hosts(lua51, luajit32) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			out := NewServer(t, h, "").RunScript("attack_oom.lua", "HOST_MEMLIMIT=1")
			assert.Contains(t, out, "attack_oom: ok")
		})
	}
}
