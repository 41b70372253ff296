package localbus_test

import (
	"bytes"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/router"
	"github.com/gmod-realtime/realtime/router/localbus"
)

func TestLocalRoundTrip(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte("[[routes]]\npattern = \"player:*\"\nhandler = \"h\"\n"))
	require.NoError(t, err)
	r, err := router.New(cfg)
	require.NoError(t, err)
	require.Zero(t, projectGoroutines(), "no goroutine of ours runs before Attach")
	bus := localbus.New(4)
	r.Attach(bus)
	assert.Equal(t, router.StatusLocal, r.Status())
	assert.Equal(t, 1, projectGoroutines(), "the bus delivers from one goroutine")

	require.NoError(t, r.Publish("player:spawn", "a\x00b"))
	require.NoError(t, r.Publish("chat:message", "unrouted"))
	var got []string
	require.Eventually(t, func() bool {
		r.Drain(10, 0, func(e *router.Event) {
			if e.Kind == router.KindMessage {
				got = append(got, e.Channel+"="+e.Payload)
			}
		})
		return r.Stats.Received.Load() == 2
	}, 5*time.Second, time.Millisecond)
	r.Drain(10, 0, func(e *router.Event) { got = append(got, e.Channel+"="+e.Payload) })
	assert.Equal(t, []string{"player:spawn=a\x00b"}, got, "NUL bytes survive; unrouted channels are filtered")
	assert.Equal(t, uint64(1), r.Stats.Dropped()[router.DropNoRoute])

	require.NoError(t, r.Close())
	bus.Wait()
	assert.ErrorIs(t, bus.Publish("x", "y"), localbus.ErrClosed)
	require.NoError(t, bus.Close(), "Close is idempotent")
	// Wait returns once the goroutine has left its loop; it is gone from the
	// runtime a moment later.
	require.Eventually(t, func() bool { return projectGoroutines() == 0 }, 5*time.Second, time.Millisecond,
		"a goroutine of the router or the bus outlives Close")
}

// projectGoroutines counts the goroutines running the router's or the bus's
// code, not counting tests' own (this test's, testify's).
func projectGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("gmod-realtime/realtime/")) && !bytes.Contains(g, []byte("_test.")) {
			n++
		}
	}
	return n
}

func TestLocalOutboxFull(t *testing.T) {
	bus := localbus.New(2) // not started: nothing drains the outbox
	require.NoError(t, bus.Publish("a", "1"))
	require.NoError(t, bus.Publish("a", "2"))
	assert.ErrorIs(t, bus.Publish("a", "3"), localbus.ErrFull)
}

// Local stream entries: ids like Redis's ("<ms>-<seq>"), strictly
// increasing however fast they come; an entry its route cannot decode is
// discarded at once (no dead-letter stream in memory), counted as
// dead-lettered, and only the first such entry is logged.
func TestLocalStreamIDsAndUndecodable(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte("[server]\nid = \"s\"\n[[routes]]\nstream = \"jobs\"\nhandler = \"h\"\ndecode = \"json\"\n"))
	require.NoError(t, err)
	var mu sync.Mutex
	var lines []string
	r, err := router.New(cfg, router.WithLog(func(_, line string) {
		mu.Lock()
		lines = append(lines, line)
		mu.Unlock()
	}))
	require.NoError(t, err)
	bus := localbus.New(4000)
	r.Attach(bus)
	defer r.Close()

	idRE := regexp.MustCompile(`^[0-9]+-[0-9]+$`)
	var ids []string
	for i := range 3000 {
		payload := `{"n":1}`
		if i%1000 == 999 {
			payload = `{"n":` // not JSON
		}
		id, err := bus.Append("jobs", payload)
		require.NoError(t, err)
		require.Regexp(t, idRE, id)
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		a, b := strings.Split(ids[i-1], "-"), strings.Split(ids[i], "-")
		am, _ := strconv.ParseUint(a[0], 10, 64)
		bm, _ := strconv.ParseUint(b[0], 10, 64)
		as, _ := strconv.ParseUint(a[1], 10, 64)
		bs, _ := strconv.ParseUint(b[1], 10, 64)
		require.True(t, bm > am || bm == am && bs > as, "id %s after %s", ids[i], ids[i-1])
	}
	handled := 0
	require.Eventually(t, func() bool {
		r.Drain(1000, 0, func(e *router.Event) {
			if e.Entry != nil {
				handled++
				r.Settle(e, true)
			}
		})
		return bus.Held() == 0
	}, 10*time.Second, time.Millisecond)
	assert.Equal(t, 2997, handled)
	assert.Equal(t, uint64(3), bus.Stats.Dead.Load())
	assert.Equal(t, uint64(3), r.Stats.DeadLettered.Load())
	assert.Equal(t, uint64(2997), bus.Stats.Acked.Load())
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, l := range lines {
		if strings.Contains(l, "local mode has no dead-letter stream") {
			n++
			assert.Contains(t, l, "JSON", "why it was discarded")
		}
	}
	assert.Equal(t, 1, n, "discarded entries logged once: %q", lines)
}
