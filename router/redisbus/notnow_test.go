package redisbus

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
)

// busyInstead is a command whose reply is an error reply BUSY, as Redis
// gives every command while a script runs past busy-reply-threshold: sent
// in place of one command of a pipeline, it makes that one command (and
// only it) "not now".
var busyInstead = []string{"eval", "return redis.error_reply('BUSY injected by the test')", "0"}

// editProxy forwards TCP connections to target, passing each command a
// client sends (its arguments) to edit first: a non-nil result is sent to
// the server in its place. One command stands for one, so the replies
// stay in order.
func editProxy(t *testing.T, target string, edit func(args []string) []string) string {
	return pipeProxy(t, target, func(cl, sv net.Conn) {
		go func() { _, _ = io.Copy(cl, sv); _ = cl.Close() }()
		defer sv.Close()
		rd := bufio.NewReader(cl)
		for {
			args, err := readArgs(rd)
			if err != nil {
				return
			}
			if e := edit(args); e != nil {
				args = e
			}
			var b strings.Builder
			fmt.Fprintf(&b, "*%d\r\n", len(args))
			for _, a := range args {
				fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
			}
			if _, err := io.WriteString(sv, b.String()); err != nil {
				return
			}
		}
	})
}

// readArgs reads one command (a RESP array of bulk strings).
func readArgs(rd *bufio.Reader) ([]string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[0] != '*' {
		return nil, fmt.Errorf("not a command: %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return nil, err
	}
	args := make([]string, n)
	for i := range args {
		h, err := rd.ReadString('\n')
		if err != nil {
			return nil, err
		}
		l, err := strconv.Atoi(strings.TrimSpace(h[1:]))
		if err != nil {
			return nil, err
		}
		b := make([]byte, l+2)
		if _, err := io.ReadFull(rd, b); err != nil {
			return nil, err
		}
		args[i] = string(b[:l])
	}
	return args, nil
}

// loggedReader starts a reader of stream "s", group "g" from "0" (consumer
// srv1, Block 200ms, RetryDelay 50ms) logging to t.Log; the flag it returns
// is set by the first log line containing every one of want.
func loggedReader(t *testing.T, cfg config.Redis, sink *chanSink, want ...string) (*StreamReader, *atomic.Bool) {
	var saw atomic.Bool
	o := StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, RetryDelay: 50 * time.Millisecond}
	o.Logf = func(f string, a ...any) {
		line := fmt.Sprintf(f, a...)
		t.Log(line)
		for _, w := range want {
			if !strings.Contains(line, w) {
				return
			}
		}
		saw.Store(true)
	}
	r, err := NewStreamReader(cfg, o, []StreamSpec{{Stream: "s", Group: "g", Start: "0"}}, sink)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); r.Wait() })
	return r, &saw
}

// TestStreamSeedDuringBusy: the reader's first read of the stream's last
// entries (XREVRANGE, which fills the duplicate check's window) answered
// BUSY was taken for a refusal (an ACL without XREVRANGE): the window
// stayed empty for the reader's life, so a copy the spool sent again after
// a crash was handed out a second time.
func TestStreamSeedDuringBusy(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	xadd(t, c, "s", "rt_id", "a", "n", "first") // handled before this reader started
	var revs, reads atomic.Int32
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		switch strings.ToLower(args[0]) {
		case "xrevrange":
			if revs.Add(1) == 1 {
				return busyInstead
			}
		case "xreadgroup":
			reads.Add(1)
		}
		return nil
	})
	sink := newChanSink(16)
	r := startReader(t, addr, "srv1", []StreamSpec{{Stream: "s", Group: "g", Start: "$"}}, sink, StreamOptions{})
	waitUntil(t, "the reader reading new entries", 10*time.Second, func() bool { return reads.Load() > 0 })
	xadd(t, c, "s", "rt_id", "a", "n", "copy")
	xadd(t, c, "s", "rt_id", "b", "n", "next")
	e := recv(t, sink, 10*time.Second)
	assert.Equal(t, []string{"rt_id", "b", "n", "next"}, e.Fields, "the copy was handed out")
	assert.Equal(t, uint64(1), r.Stats()["s"].Duplicates)
	require.GreaterOrEqual(t, revs.Load(), int32(1))
}

// TestStreamRetryBusyHalfWay: a retry pass (the entries Nacked and
// Requeued, claimed again) where one command Redis answered BUSY after the
// XCLAIM of the Nacked entries (which counts a delivery) went through was
// sent again whole: the Nacked entry's delivery was counted twice (handed
// out with deliveries=3 the second time, so dead-lettered a handler's try
// early), or, the XPENDING that reads the counts answered BUSY, it was
// handed out with deliveries=1 (a guess).
func TestStreamRetryBusyHalfWay(t *testing.T) {
	for _, tc := range []struct {
		name string
		busy func(args []string) bool // the command answered BUSY, once
	}{
		{"requeued XCLAIM", func(args []string) bool {
			return strings.EqualFold(args[0], "xclaim") && strings.EqualFold(args[len(args)-2], "retrycount")
		}},
		{"XPENDING", func(args []string) bool {
			return strings.EqualFold(args[0], "xpending") && len(args) == 6
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			c := client(t, srv)
			var armed, injected atomic.Bool
			addr := editProxy(t, srv.Addr(), func(args []string) []string {
				if armed.Load() && tc.busy(args) && injected.CompareAndSwap(false, true) {
					return busyInstead
				}
				return nil
			})
			sink := newChanSink(16)
			r := startReader(t, addr, "srv1", []StreamSpec{{Stream: "s", Group: "g", Start: "0"}}, sink, StreamOptions{})
			a := xadd(t, c, "s", "n", "a")
			b := xadd(t, c, "s", "n", "b")
			first := []Entry{recv(t, sink, 10*time.Second), recv(t, sink, 10*time.Second)}
			require.Equal(t, []string{a, b}, []string{first[0].ID, first[1].ID})
			armed.Store(true)
			r.Nack("s", "g", a)    // retried: a delivery counted
			r.Requeue("s", "g", b) // no handler saw it: its count kept
			got := map[string]int64{}
			for range 2 {
				e := recv(t, sink, 10*time.Second)
				got[e.ID] = e.Deliveries
			}
			assert.True(t, injected.Load(), "BUSY injected")
			assert.Equal(t, map[string]int64{a: 2, b: 1}, got, "deliveries of the retried (a) and requeued (b) entries")
			assert.Equal(t, int64(2), deliveryCount(t, c, "s", "g", a), "a's delivery count in Redis")
		})
	}
}

// deliveryCount is Redis's delivery counter of pending entry id.
func deliveryCount(t *testing.T, c *redis.Client, stream, group, id string) int64 {
	t.Helper()
	p, err := c.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: stream, Group: group, Start: id, End: id, Count: 1}).Result()
	require.NoError(t, err)
	require.Len(t, p, 1, "%s pending", id)
	return p[0].RetryCount
}

// TestStreamPendingRereadBusyHalfWay: the re-read of the consumer's own
// pending entries at start, where the XCLAIM that takes the entries a
// previous reader gave back uncounted (RETRYCOUNT) got BUSY after the one
// that counts a delivery went through, was tried again whole: the other
// entry's delivery was counted twice.
func TestStreamPendingRereadBusyHalfWay(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	kept := NewKept()
	spec := []StreamSpec{{Stream: "s", Group: "g", Start: "0"}}
	a := xadd(t, c, "s", "n", "a")
	b := xadd(t, c, "s", "n", "b")
	sink1 := newChanSink(1)
	r1 := startReader(t, srv.Addr(), "srv1", spec, sink1, StreamOptions{Kept: kept})
	waitUntil(t, "b refused by the full sink", 10*time.Second, func() bool { return r1.Stats()["s"].Refused > 0 })
	r1.Close() // b, held, is given back uncounted; a is with a handler
	r1.Wait()
	require.Equal(t, a, recv(t, sink1, 10*time.Second).ID)

	var injected atomic.Bool
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		if strings.EqualFold(args[0], "xclaim") && strings.EqualFold(args[len(args)-2], "retrycount") && injected.CompareAndSwap(false, true) {
			return busyInstead
		}
		return nil
	})
	sink2 := newChanSink(16)
	startReader(t, addr, "srv1", spec, sink2, StreamOptions{Kept: kept})
	got := map[string]int64{}
	for range 2 {
		e := recv(t, sink2, 10*time.Second)
		got[e.ID] = e.Deliveries
	}
	assert.True(t, injected.Load(), "BUSY injected")
	assert.Equal(t, map[string]int64{a: 2, b: 1}, got, "deliveries of the entry handed out (a) and the one given back (b) before")
	assert.Equal(t, int64(2), deliveryCount(t, c, "s", "g", a), "a's delivery count in Redis")
}

// TestStreamDeadLetterTransactionBusy: a dead-letter transaction that
// meets BUSY (a script run past busy-reply-threshold between the look-up
// and the MULTI) is discarded whole (EXECABORT, each XADD answered BUSY).
// That was taken for a refusal of each copy: one "error" event and log
// line per entry and per second while the script ran (LOADING: while the
// dataset loads), as for an ACL without the dead-letter stream.
func TestStreamDeadLetterTransactionBusy(t *testing.T) {
	srv, c := busyServer(t)
	multi, busy := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		if strings.EqualFold(args[0], "multi") && once.CompareAndSwap(false, true) {
			close(multi)
			select { // sent once Redis answers BUSY
			case <-busy:
			case <-time.After(10 * time.Second):
			}
		}
		return nil
	})
	sink := newChanSink(16)
	r, worker := loggedReader(t, streamConfig(addr), sink, "stream worker", "BUSY")
	const n = 3
	for i := range n {
		xadd(t, c, "s", "n", strconv.Itoa(i))
	}
	for range n {
		e := recv(t, sink, 10*time.Second)
		r.Dead(e.Stream, e.Group, e.ID, "malformed")
	}
	select {
	case <-multi:
	case <-time.After(10 * time.Second):
		t.Fatal("no dead-letter transaction")
	}
	stop := runBusyScript(t, srv)
	close(busy)
	waitUntil(t, "the transaction answered", 10*time.Second, func() bool { return worker.Load() || sink.hasEvent("error s dead-lettering") })
	stop()
	waitUntil(t, "the entries dead-lettered and counted", 10*time.Second, func() bool {
		return c.XLen(context.Background(), "s:dead").Val() == n && pendingCount(c, "s", "g") == 0 && r.Stats()["s"].Dead == n
	})
	assert.Equal(t, uint64(n), r.Stats()["s"].Dead, "counted more than once")
	assert.False(t, sink.hasEvent("error s dead-lettering"), "BUSY reported as a refused copy: %v", sink.events)
}

// TestStreamClaimLoopBusy: the claim loop's and the figures' commands
// answered BUSY (XCLAIM ... JUSTID that keeps the in-flight entries from
// other servers' claims, XAUTOCLAIM, XPENDING, XINFO GROUPS) were taken
// for refusals: reported as errors, and the idle reset put off a quarter
// of claim_after (the claim a half), instead of done again after the
// worker's backoff.
func TestStreamClaimLoopBusy(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	require.NoError(t, c.XGroupCreateMkStream(ctx, "s", "g", "0").Err())
	id := xadd(t, c, "s", "n", "left")
	require.NoError(t, c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "gone", Streams: []string{"s", ">"}}).Err())
	var mu sync.Mutex
	seen := map[string]int{} // by kind: commands sent; the first answered BUSY
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		kind := strings.ToLower(args[0])
		switch {
		case kind == "xclaim" && strings.EqualFold(args[len(args)-1], "justid"):
			kind = "justid"
		case kind == "xpending" && len(args) == 3, kind == "xautoclaim", kind == "xinfo":
		default:
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[kind]++; seen[kind] == 1 {
			return busyInstead
		}
		return nil
	})
	sink := newChanSink(16)
	startReader(t, addr, "srv1", []StreamSpec{{Stream: "s", Group: "g", ClaimAfter: 400 * time.Millisecond}}, sink, StreamOptions{})
	e := recv(t, sink, 10*time.Second)
	require.Equal(t, id, e.ID)
	waitUntil(t, "each command sent again after its BUSY", 15*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["justid"] >= 2 && seen["xautoclaim"] >= 2 && seen["xpending"] >= 2 && seen["xinfo"] >= 2
	})
	assert.False(t, sink.hasEvent("error"), "BUSY reported as an error: %v", sink.events)
}

// TestStreamSettleDuringMisconf: while Redis cannot save its snapshot
// (stop-writes-on-bgsave-error: a full disk, say) it refuses every write
// MISCONF until a save succeeds. The reader took that for a refusal (an
// ACL without the command): acknowledged entries stayed pending in Redis
// after the disk came back, to be handed out again at the next reconnect
// or restart ("ack"); the dead-letter transaction, whose XADD and XACK
// are refused as they are queued (EXECABORT: nothing ran), gave an
// "error" event and a log line per entry every second while it lasted,
// instead of a try again after the worker's backoff ("dead letter").
func TestStreamSettleDuringMisconf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		settle func(r *StreamReader, e Entry)
		met    string // in the log line that says the settling met MISCONF
		refuse string // the "error" event of a refusal
		done   func(t *testing.T, c *redis.Client, r *StreamReader) bool
	}{
		{"ack", func(r *StreamReader, e Entry) { r.Ack(e.Stream, e.Group, e.ID) }, "XACK", "error s XACK refused",
			func(t *testing.T, c *redis.Client, r *StreamReader) bool {
				return pendingCount(c, "s", "g") == 0 && r.Stats()["s"].Acked == 3
			}},
		{"dead letter", func(r *StreamReader, e Entry) { r.Dead(e.Stream, e.Group, e.ID, "malformed") }, "dead-lettering", "error s dead-lettering",
			func(t *testing.T, c *redis.Client, r *StreamReader) bool {
				return len(deadEntries(t, c, "s")) == 3 && pendingCount(c, "s", "g") == 0 && r.Stats()["s"].Dead == 3
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			srv := redistest.Start(t, "--dir", dir, "--save", "3600 1", "--dbfilename", "dump.rdb")
			c := client(t, srv)
			ctx := t.Context()
			sink := newChanSink(16)
			r, met := loggedReader(t, streamConfig(srv.Addr()), sink, tc.met, "MISCONF")
			for i := range 3 {
				xadd(t, c, "s", "n", strconv.Itoa(i))
			}
			var got []Entry
			for range 3 {
				got = append(got, recv(t, sink, 10*time.Second))
			}
			// The snapshot cannot be renamed onto a directory: the save fails.
			snapshot := filepath.Join(dir, "dump.rdb")
			require.NoError(t, os.Mkdir(snapshot, 0o755))
			saved := func(ok bool) func() bool {
				return func() bool {
					_ = c.BgSave(ctx).Err() // "already in progress" too
					err := c.Ping(ctx).Err()
					return ok == (err == nil) && (ok || strings.HasPrefix(err.Error(), "MISCONF"))
				}
			}
			waitUntil(t, "Redis to refuse writes (MISCONF)", 10*time.Second, saved(false))
			for _, e := range got {
				tc.settle(r, e)
			}
			waitUntil(t, "the reader to meet MISCONF", 10*time.Second, met.Load)
			require.NoError(t, os.Remove(snapshot))
			waitUntil(t, "Redis to save again", 10*time.Second, saved(true))
			waitUntil(t, "the entries settled and counted", 10*time.Second, func() bool { return tc.done(t, c, r) })
			assert.False(t, sink.hasEvent(tc.refuse), "MISCONF reported as a refusal")
		})
	}
}

// TestStreamDeadLetterBusyWithoutType: an ACL user given the commands the
// reader's documentation lists, TYPE not among them, has the dead-letter
// look-up's TYPE refused (NOPERM) before anything else. When the XPENDINGs
// after it were answered BUSY, the pipeline's first error was that NOPERM,
// so their BUSY was read as "not pending": the entries were dropped from
// the in-flight set without a dead letter, pending in Redis until the next
// reconnect.
func TestStreamDeadLetterBusyWithoutType(t *testing.T) {
	srv, c := busyServer(t)
	ctx := context.Background()
	require.NoError(t, c.Do(ctx, "ACL", "SETUSER", "rd", "on", ">pw", "~*", "+@all", "-type").Err())
	cfg := streamConfig(srv.Addr())
	cfg.URL = "redis://rd:pw@" + srv.Addr()
	sink := newChanSink(16)
	r, sawBusy := loggedReader(t, cfg, sink, "stream worker", "BUSY")
	const n = 3
	for i := range n {
		xadd(t, c, "s", "n", strconv.Itoa(i))
	}
	var got []Entry
	for range n {
		got = append(got, recv(t, sink, 10*time.Second))
	}
	stop := runBusyScript(t, srv)
	for _, e := range got {
		r.Dead(e.Stream, e.Group, e.ID, "malformed")
	}
	waitUntil(t, "the worker to meet BUSY, or the entries dropped", 10*time.Second, func() bool {
		return sawBusy.Load() || r.Stats()["s"].InFlight == 0
	})
	stop()
	// counted once the transaction's reply is read, just after Redis has them
	waitUntil(t, "the entries dead-lettered and counted", 10*time.Second, func() bool {
		return c.XLen(ctx, "s:dead").Val() == n && pendingCount(c, "s", "g") == 0 && r.Stats()["s"].Dead == n
	})
	assert.Equal(t, uint64(n), r.Stats()["s"].Dead, "counted more than once")
}

// TestStreamClaimCountsBusy: an entry a dead server left pending after
// its handler had it max_deliveries times is dead-lettered when another
// server claims it. When the XPENDING that reads the claimed entries'
// counts was answered BUSY, the count was taken for 1: the entry (a
// poison one, say, that took its servers down) was handed out again, with
// deliveries=1, instead of dead-lettered.
func TestStreamClaimCountsBusy(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	require.NoError(t, c.XGroupCreateMkStream(ctx, "s", "g", "0").Err())
	id := xadd(t, c, "s", "n", "poison")
	require.NoError(t, c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "gone", Streams: []string{"s", ">"}}).Err())
	require.NoError(t, c.XClaim(ctx, &redis.XClaimArgs{Stream: "s", Group: "g", Consumer: "gone", Messages: []string{id}}).Err())
	require.Equal(t, int64(2), deliveryCount(t, c, "s", "g", id))
	var injected atomic.Bool
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		if strings.EqualFold(args[0], "xpending") && len(args) == 6 && injected.CompareAndSwap(false, true) {
			return busyInstead
		}
		return nil
	})
	sink := newChanSink(16)
	r := startReader(t, addr, "srv1", []StreamSpec{{Stream: "s", Group: "g", MaxDeliveries: 2, ClaimAfter: 300 * time.Millisecond}}, sink, StreamOptions{})
	waitUntil(t, "the entry dead-lettered or handed out", 10*time.Second, func() bool {
		return len(deadEntries(t, c, "s")) > 0 || len(sink.ch) > 0
	})
	require.True(t, injected.Load(), "BUSY injected")
	select {
	case e := <-sink.ch:
		t.Fatalf("the entry handed out (deliveries=%d) instead of dead-lettered", e.Deliveries)
	default:
	}
	dead := deadEntries(t, c, "s")
	require.Len(t, dead, 1)
	assert.Equal(t, []string{"n", "poison", "rt_source_id", id, "rt_deliveries", "2"}, dead[0].fields)
	waitUntil(t, "nothing pending, the dead letter counted", 10*time.Second, func() bool {
		return pendingCount(c, "s", "g") == 0 && r.Stats()["s"].Dead == 1
	})
}

// TestStreamAcksAtCloseDuringBusy: the acks the worker sends at Close,
// and those that come after (lateAcks: a handler returning after a map
// change), gave up at the first BUSY: their entries stayed pending and
// were handed out again to the next reader, although Redis served again
// well within the pass's bound (write_timeout + read_timeout).
func TestStreamAcksAtCloseDuringBusy(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(map[bool]string{false: "at Close", true: "after Close"}[late], func(t *testing.T) {
			srv := redistest.Start(t)
			c := client(t, srv)
			var busy atomic.Bool
			var answered atomic.Int32 // XACKs answered BUSY
			addr := editProxy(t, srv.Addr(), func(args []string) []string {
				if strings.EqualFold(args[0], "xack") && busy.Load() {
					answered.Add(1)
					return busyInstead
				}
				return nil
			})
			sink := newChanSink(16)
			cfg := streamConfig(addr)
			cfg.WriteTimeout, cfg.ReadTimeout = config.Duration(5*time.Second), config.Duration(5*time.Second)
			r, err := NewStreamReader(cfg, StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, Logf: t.Logf}, []StreamSpec{{Stream: "s", Group: "g", Start: "0"}}, sink)
			require.NoError(t, err)
			t.Cleanup(func() { r.Close(); r.Wait() })
			xadd(t, c, "s", "n", "a")
			e := recv(t, sink, 10*time.Second)
			busy.Store(true)
			if late {
				r.Close()
				r.wg.Wait() // the worker's last pass done: only lateAcks sends it
				r.Ack(e.Stream, e.Group, e.ID)
			} else {
				r.Ack(e.Stream, e.Group, e.ID)
				waitUntil(t, "the worker to meet BUSY", 10*time.Second, func() bool { return answered.Load() > 0 })
				r.Close()
			}
			k := answered.Load()
			waited := make(chan struct{})
			go func() { r.Wait(); close(waited) }()
			// sent again (or given up)
			waitUntil(t, "the XACK sent again, or the reader done", 10*time.Second, func() bool {
				select {
				case <-waited:
					return true
				default:
					return answered.Load() >= k+2
				}
			})
			busy.Store(false)
			<-waited
			assert.Zero(t, pendingCount(c, "s", "g"), "the entry acknowledged left pending")
		})
	}
}

// TestStreamNotNowHoldsOnlyItsStream: Redis answering one stream's XACK
// "not now" (a Cluster node loading, its slot down) held back the acks,
// retries and dead letters of every stream after it in the worker's pass:
// the pass stopped at the first error and the whole worker backed off.
// Now only that stream waits.
func TestStreamNotNowHoldsOnlyItsStream(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	var busyA atomic.Bool
	busyA.Store(true)
	var refusedA atomic.Int32
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		if strings.EqualFold(args[0], "xack") && args[1] == "a" && busyA.Load() {
			refusedA.Add(1)
			return busyInstead
		}
		return nil
	})
	sink := newChanSink(16)
	r := startReader(t, addr, "srv1", []StreamSpec{{Stream: "a", Group: "g", Start: "0"}, {Stream: "b", Group: "g", Start: "0"}}, sink, StreamOptions{})
	xadd(t, c, "a", "n", "1")
	xadd(t, c, "b", "n", "1")
	for range 2 {
		e := recv(t, sink, 10*time.Second)
		r.Ack(e.Stream, e.Group, e.ID)
	}
	waitUntil(t, "a's XACK answered BUSY", 10*time.Second, func() bool { return refusedA.Load() > 0 })
	// b's ack goes after a's first BUSY, within the worker's next passes
	waitUntil(t, "b acknowledged while a's acks wait", 10*time.Second, func() bool { return pendingCount(c, "b", "g") == 0 })
	assert.Equal(t, int64(1), pendingCount(c, "a", "g"))
	busyA.Store(false)
	// the worker counts an ack once it has read XACK's reply: Redis may
	// show the entry acknowledged a moment before the count
	waitUntil(t, "a acknowledged and counted", 10*time.Second, func() bool {
		return pendingCount(c, "a", "g") == 0 && r.Stats()["a"].Acked == 1
	})
	assert.Equal(t, uint64(1), r.Stats()["b"].Acked)
}
