package tests

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestAttackRing runs the reproducers against the ring between Go and the
// pump (issue 19) on every host: each must print "<name>: ok".
func TestAttackRing(t *testing.T) {
	for _, c := range []struct{ name, config string }{
		{"attack_ring_stats_error", ""}, // GetStats in a handler that then fails: the error is never counted
		{"attack_ring_latency", ""},     // a backlog taken one event per call: latency_us reports microseconds
		// every event fills the ring's byte share: a lost wake-up of the feeder leaves one in the queue
		{"attack_ring_stall", "[queue]\nmax_bytes = 16384\nmax_payload = 16384\n"},
		// events over a slot's 64 KiB and 1,024 JSON nodes, mixed with small ones
		{"attack_ring_big", ""},
		{"attack_ring_errtext", ""}, // a handler's error text over 4 KiB: cut
		// the smallest ring, one event per call, bursts up to the queue's size, handlers of every arity swapped mid-call
		{"attack_ring_wake", "[queue]\nmax_events = 8\n[dispatch]\nmax_per_frame = 1\nbudget = \"100ms\"\n"},
	} {
		for _, h := range hosts(luajit64, lua51, luajit32) {
			t.Run(c.name+"/"+h.Name, func(t *testing.T) {
				t.Parallel()
				out := NewServer(t, h, c.config).RunScript(c.name + ".lua")
				if i := strings.LastIndex(out, c.name+": "); i >= 0 {
					t.Log(strings.TrimSpace(out[i:])) // the seed, the rounds
				}
				assert.Contains(t, out, c.name+": ok")
			})
		}
	}
}
