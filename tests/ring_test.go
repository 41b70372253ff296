package tests

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestRing runs tests/lua/ring.lua (events in random bursts reach their
// handler once and in order, and the pump never stalls) with queues of 4,
// 64 and 10,000 events: the ring takes one, 16 and 2,500 of them ahead.
// SEED=n replays a run's choices.
func TestRing(t *testing.T) {
	seed := time.Now().UnixNano() % 1_000_000_007
	if s := os.Getenv("SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("SEED=%q: %v", s, err)
		}
		seed = n
	}
	for _, h := range hosts(luajit64, lua51, luajit32) {
		for _, size := range []int{4, 64, 10000} {
			t.Run(fmt.Sprintf("%s/%d", h.Name, size), func(t *testing.T) {
				t.Parallel()
				n := 20000
				if h.Name == luajit32.Name || size == 4 { // emulated, or one event at a time
					n = 2000
				}
				s := NewServer(t, h, fmt.Sprintf("[queue]\nmax_events = %d\n", size))
				out := s.RunScript("ring.lua", "SEED="+strconv.FormatInt(seed, 10), "RING_N="+strconv.Itoa(n))
				assert.Contains(t, out, "ring: ok", "reproduce: SEED=%d go test -run 'TestRing/%s/%d' ./tests", seed, h.Name, size)
			})
		}
	}
}
