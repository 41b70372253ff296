package tests

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestMaxPerFrame: docs/API.md "ProcessEvents([max]) ... dispatches until the
// queue is empty, [dispatch] budget is spent or max (default [dispatch]
// max_per_frame, 0: no count limit) events were dispatched"
// (tests/lua/maxperframe.lua), on every host.
func TestMaxPerFrame(t *testing.T) {
	for _, h := range hosts(luajit64, lua51, luajit32) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			s := NewServer(t, h, "[dispatch]\nmax_per_frame = 3\nbudget = \"100ms\"\n")
			assert.Contains(t, s.RunScript("maxperframe.lua"), "maxperframe: ok")
		})
	}
}
