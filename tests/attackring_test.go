package tests

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestAttackRing runs the reproducers against the ring between Go and the
// pump (issue 19) on every host: each must print "<name>: ok".
func TestAttackRing(t *testing.T) {
	for _, name := range []string{
		"attack_ring_stats_error", // GetStats in a handler that then fails: the error is never counted
		"attack_ring_latency",     // a backlog taken one event per call: latency_us reports microseconds
	} {
		for _, h := range hosts(luajit64, lua51, luajit32) {
			t.Run(name+"/"+h.Name, func(t *testing.T) {
				t.Parallel()
				out := NewServer(t, h, "").RunScript(name + ".lua")
				assert.Contains(t, out, name+": ok")
			})
		}
	}
}
