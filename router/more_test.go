package router

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failingBackend refuses every publish, like a full outbox.
type failingBackend struct{ sinkBackend }

var errFull = errors.New("outbox full")

func (b *failingBackend) Publish(string, string) error          { return errFull }
func (b *failingBackend) Append(string, string) (string, error) { return "", errFull }

// TestPublishCounts: GetStats' published counts what the backend accepted,
// publish_failed what it refused; with no backend Publish says so.
func TestPublishCounts(t *testing.T) {
	r, err := New(parseConfig(t, ""))
	require.NoError(t, err)
	assert.ErrorIs(t, r.Publish("a", "b"), ErrNoBackend)
	assert.Equal(t, uint64(0), r.Stats.Published.Load()+r.Stats.PublishFails.Load(), "nothing to count without a backend")

	r.Attach(&sinkBackend{})
	require.NoError(t, r.Publish("a", "b"))
	assert.Equal(t, uint64(1), r.Stats.Published.Load())

	r.Attach(&failingBackend{})
	assert.ErrorIs(t, r.Publish("a", "b"), errFull)
	assert.Equal(t, uint64(1), r.Stats.Published.Load())
	assert.Equal(t, uint64(1), r.Stats.PublishFails.Load())

	require.NoError(t, r.Close())
	assert.Nil(t, r.Backend())
	assert.ErrorIs(t, r.Publish("a", "b"), ErrNoBackend, "closed")
	require.NoError(t, r.Close(), "Close twice")
}

// TestRefusedPublishLoggedEveryTenSeconds: docs/ARCHITECTURE.md "refused ... dropped, not
// retried ... publish_failed, and one log line every 10 s with Redis's
// reason".
func TestRefusedPublishLoggedEveryTenSeconds(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	var lines []string
	r, err := New(parseConfig(t, "[log]\nrate = \"unlimited\"\n"), WithClock(clk.now), WithLog(func(_, line string) { lines = append(lines, line) }))
	require.NoError(t, err)
	b := &sinkBackend{}
	r.Attach(b)
	for range 5 {
		b.sink.PublishFailed("game:x", "refused by the server: NOPERM no channel")
	}
	assert.Equal(t, uint64(5), r.Stats.PublishFails.Load())
	assert.Equal(t, uint64(5), r.Stats.Refused.Load())
	require.Len(t, lines, 1, "one line for the burst: %q", lines)
	assert.Contains(t, lines[0], `publish to "game:x" refused by the server: NOPERM no channel; message dropped (1 publishes failed so far)`)

	clk.add(9 * time.Second)
	b.sink.PublishFailed("game:x", "NOPERM no channel")
	assert.Len(t, lines, 1, "within 10 s: counted, not logged")
	clk.add(time.Second)
	b.sink.PublishFailed("game:y", "refused by the server: NOPERM other")
	require.Len(t, lines, 2)
	assert.Contains(t, lines[1], `"game:y" refused by the server: NOPERM other; message dropped (7 publishes failed so far)`)

	// A backend that was replaced counts nothing any more.
	r.Attach(&sinkBackend{})
	b.sink.PublishFailed("game:x", "late")
	assert.Equal(t, uint64(7), r.Stats.PublishFails.Load())
}

// TestBackendDropsAreCounted: a message the backend dropped before routing
// (its inbox was full) is counted by reason and logged; once the backend
// is replaced its late reports count nothing.
func TestBackendDropsAreCounted(t *testing.T) {
	var lines []string
	r, err := New(parseConfig(t, ""), WithLog(func(_, line string) { lines = append(lines, line) }))
	require.NoError(t, err)
	b := &sinkBackend{}
	r.Attach(b)
	b.sink.Drop(DropQueueFull)
	assert.Equal(t, uint64(1), r.Stats.Dropped()[DropQueueFull])
	require.Len(t, lines, 1)
	assert.Contains(t, lines[0], "dropped a message (queue_full): routing is not keeping up with Redis")

	require.NoError(t, r.Close())
	b.sink.Drop(DropQueueFull)
	b.sink.Deliver("x", "y")
	assert.Equal(t, uint64(1), r.Stats.Dropped()[DropQueueFull])
	assert.Equal(t, uint64(0), r.Stats.Received.Load())
}

// TestNextAndUndispatched: the main thread takes events one by one; an
// event taken and then not handed to a handler (removed meanwhile) takes
// its dispatch count back.
func TestNextAndUndispatched(t *testing.T) {
	var pending atomic.Int64
	r, err := New(parseConfig(t, "[[routes]]\nname = \"a\"\npattern = \"a:*\"\nhandler = \"h\"\nrate = \"200/s\"\n"), WithPendingCounter(&pending))
	require.NoError(t, err)
	assert.Equal(t, "200/s", r.Table().Route("a").Rate().String())
	r.Deliver("a:1", "one")
	r.Deliver("a:2", "two")
	assert.Equal(t, int64(2), pending.Load(), "the shared pending counter (the C shim's empty-queue check)")

	e := r.Next()
	require.NotNil(t, e)
	assert.Equal(t, "one", e.Payload)
	assert.Equal(t, int64(1), pending.Load())
	r.Dispatched(e, time.Now().UnixNano())
	assert.Equal(t, uint64(1), r.Stats.Dispatched.Load())
	assert.Equal(t, uint64(1), e.Route.Stats.Dispatched.Load())
	r.Undispatched(e)
	assert.Equal(t, uint64(0), r.Stats.Dispatched.Load())
	assert.Equal(t, uint64(0), e.Route.Stats.Dispatched.Load())

	require.NotNil(t, r.Next())
	assert.Nil(t, r.Next(), "empty")
	assert.Equal(t, int64(0), pending.Load())
}

// TestLogLevelFilter: docs/CONFIG.md "[log] level": lines below the level
// never reach the log.
func TestLogLevelFilter(t *testing.T) {
	for _, tc := range []struct {
		level string
		want  []string
	}{
		{"debug", []string{"debug", "info", "warn", "error"}},
		{"info", []string{"info", "warn", "error"}},
		{"warn", []string{"warn", "error"}},
		{"error", []string{"error"}},
	} {
		var got []string
		r, err := New(parseConfig(t, "[log]\nrate = \"unlimited\"\nlevel = \""+tc.level+"\"\n"),
			WithLog(func(level, line string) { got = append(got, level+":"+line) }))
		require.NoError(t, err)
		for _, l := range []string{"debug", "info", "warn", "error"} {
			r.Logf(l, "a %s line", l)
		}
		var want []string
		for _, l := range tc.want {
			want = append(want, l+":a "+l+" line")
		}
		assert.Equal(t, want, got, "level %s", tc.level)
	}
}

// TestLogRateLimit: docs/CONFIG.md "[log] rate": repeated lines past the
// rate are not written; the next line written says how many were
// suppressed. The bucket (1/h, a burst of 1) cannot refill during the
// test, so no timing is involved.
func TestLogRateLimit(t *testing.T) {
	var mu sync.Mutex
	var got []string
	r, err := New(parseConfig(t, "[log]\nrate = \"1/h\"\n"), WithLog(func(_, line string) {
		mu.Lock()
		got = append(got, line)
		mu.Unlock()
	}))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 4 { // backends log from their goroutines: shared, race-free
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				r.Logf("error", "line %d.%d", g, i)
			}
		}()
	}
	wg.Wait()
	require.Len(t, got, 1, "one line of 100 within the rate")

	_, err = r.Apply(parseConfig(t, "[log]\nrate = \"unlimited\"\n"))
	require.NoError(t, err)
	r.Logf("error", "after")
	require.Len(t, got, 2)
	assert.Equal(t, "after (99 more lines suppressed)", got[1])
	r.Logf("error", "again")
	assert.Equal(t, "again", got[2], "the count is reported once")

	quiet, err := New(parseConfig(t, ""))
	require.NoError(t, err)
	quiet.Logf("error", "no WithLog: %s", "nowhere") // must not panic
}

// TestEventCopiesShareBytes: a message queued for several routes counts
// its bytes once against queue.max_bytes (docs/CONFIG.md "a message queued for
// several routes counts once").
func TestEventCopiesShareBytes(t *testing.T) {
	q := NewQueue(100, 1<<20, true)
	var c Copies
	payload := strings.Repeat("p", 1000)
	for i := range 3 {
		e := &Event{Kind: KindMessage, Channel: "ch", Payload: payload, Received: int64(i)}
		e.ShareWith(&c)
		q.Push(e)
	}
	assert.Equal(t, int64(1002), q.Bytes(), "three copies, one message's bytes")
	single := NewQueue(100, 1<<20, true)
	for range 3 {
		single.Push(&Event{Kind: KindMessage, Channel: "ch", Payload: payload})
	}
	assert.Equal(t, int64(3006), single.Bytes(), "three messages")
	for q.Pop() != nil {
	}
	assert.Equal(t, int64(0), q.Bytes(), "all copies gone: nothing counted")
	assert.Equal(t, 0, q.Pending())
}

// TestAppendCounts: GetStats' appended counts what the backend accepted,
// append_failed what it refused; the backend's rt_id is returned.
func TestAppendCounts(t *testing.T) {
	r, err := New(parseConfig(t, ""))
	require.NoError(t, err)
	_, err = r.Append("s", "x")
	assert.ErrorIs(t, err, ErrNoBackend)
	r.Attach(&sinkBackend{})
	id, err := r.Append("s", "x")
	require.NoError(t, err)
	assert.Equal(t, "srv-1", id)
	r.Attach(&failingBackend{})
	_, err = r.Append("s", "x")
	assert.ErrorIs(t, err, errFull)
	assert.Equal(t, uint64(1), r.Stats.Appended.Load())
	assert.Equal(t, uint64(1), r.Stats.AppendFails.Load())
	assert.Zero(t, r.Stats.Published.Load()+r.Stats.PublishFails.Load(), "appends are not publishes")
}
