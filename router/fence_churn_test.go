package router

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gmod-realtime/realtime/config"
	"github.com/stretchr/testify/require"
)

// fenceChurnSeedEnv replays TestFenceChurn with the seed a failure
// printed: the same changes in the same order, the same entries and drain
// batches (the goroutines' interleaving, and so which sink an entry is
// offered through, is the scheduler's).
const fenceChurnSeedEnv = "FENCE_CHURN_SEED"

const (
	churnDeliverers = 6
	churnEntries    = 5000  // per deliverer
	churnMaxChanges = 10000 // the changing goroutine stops earlier, once the deliverers are done
	churnPace       = 4     // entries offered between two changes, on average
	churnStall      = 10 * time.Second
	churnYield      = 4  // yields a queueing entry waits at most for a change to begin
	churnWiden      = 64 // yields a queueing entry waits at most for a change in progress to return
)

// churnSpan is when a route or a sink counted, in churnClock ticks: from
// before the change that made it count began to after the one that ended
// it returned (to 0: it still counts). An entry queued at tick q for it
// must have from < q < to.
type churnSpan struct{ from, to int64 }

// explainSpans says which change q falls before or after, for a failure;
// changeAt names the changes by their start and done ticks.
func explainSpans(spans []churnSpan, q int64, changeAt map[int64]string) string {
	var last *churnSpan
	for i := range spans {
		if spans[i].from < q {
			last = &spans[i]
		}
	}
	switch {
	case last == nil && len(spans) == 0:
		return "it never was"
	case last == nil:
		return fmt.Sprintf("before %s began", changeAt[spans[0].from])
	case last.to != 0 && q >= last.to:
		return fmt.Sprintf("after %s returned", changeAt[last.to])
	}
	return "within its span"
}

func inSpans(spans []churnSpan, q int64) bool {
	for _, s := range spans {
		if s.from < q && (s.to == 0 || q < s.to) {
			return true
		}
	}
	return false
}

// churnClock is the router's clock: a logical one, each reading a tick
// of one counter that the changing goroutine also reads before and after
// each change. DeliverEntry reads it when it queues an entry it has
// checked (Queued), so an entry's Queued orders its push against the
// changes. A reading for DeliverEntry yields a little, for a change to
// begin, and while a change is in progress waits for it to return (at
// most churnWiden yields): an entry checked against a route or sink the
// change removes is then queued after the change returned, unless the
// fence holds the change back until it is queued.
type churnClock struct {
	base int64
	seq  atomic.Int64
	ver  atomic.Uint64 // odd while a change is in progress
	// widened counts the readings that waited on a change in progress
	widened atomic.Int64
}

func (c *churnClock) now() time.Time {
	v := c.ver.Load()
	if y := rand.IntN(churnYield); (y > 0 || v&1 == 1) && forDeliverEntry() {
		// a change may begin meanwhile
		for ; y > 0 && c.ver.Load() == v; y-- {
			runtime.Gosched()
		}
		// and return meanwhile, unless the fence holds it back
		if v = c.ver.Load(); v&1 == 1 {
			c.widened.Add(1)
			for i := 0; i < churnWiden && c.ver.Load() == v; i++ {
				runtime.Gosched()
			}
		}
	}
	return time.Unix(0, c.base+c.seq.Add(1))
}

// forDeliverEntry reports whether the clock is read for DeliverEntry (not
// by the change itself: On, Apply and SetStatus read it too).
func forDeliverEntry() bool {
	var pcs [16]uintptr
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs[:])])
	for {
		f, more := frames.Next()
		if strings.Contains(f.Function, "eliverEntry") {
			return true
		}
		if !more {
			return false
		}
	}
}

func (c *churnClock) tick() int64 { return c.seq.Add(1) }

// churnSettler records how each entry was settled, by id.
type churnSettler struct {
	mu  sync.Mutex
	got map[string][]string
}

func (s *churnSettler) add(id, how string) {
	s.mu.Lock()
	s.got[id] = append(s.got[id], how)
	s.mu.Unlock()
}

func (s *churnSettler) Ack(_, _, id string)       { s.add(id, "ack") }
func (s *churnSettler) Nack(_, _, id string)      { s.add(id, "nack") }
func (s *churnSettler) Dead(_, _, id, why string) { s.add(id, "dead: "+why) }
func (s *churnSettler) Release(_, _, id string)   { s.add(id, "release") }

// churnBackend is a Backend and Settler whose settlements all go to one
// churnSettler (as do those of entries settled after a Close, through
// the Settler they were delivered with).
type churnBackend struct {
	*churnSettler
	sink  Sink
	drain func() // Drain's done, called later by the changing goroutine
}

// Drain makes a Replace's old backend drain until the changing goroutine
// calls done (a "drained" change): it delivers meanwhile, beside its
// successor.
func (b *churnBackend) Drain(done func()) { b.drain = done }

func (b *churnBackend) Start(s Sink, _ Plan)                  { b.sink = s }
func (b *churnBackend) Update(PlanDiff)                       {}
func (b *churnBackend) Publish(string, string) error          { return nil }
func (b *churnBackend) Append(string, string) (string, error) { return "", ErrNoBackend }
func (b *churnBackend) Close() error                          { return nil }

// churnState is what the changing goroutine last made of the router, for
// the deliverers: at version ver (even), an entry of a stream in present
// offered through a sink in delivering (or DeliverEntry) is taken.
type churnState struct {
	ver        uint64
	present    map[string]bool
	active     int          // index in the sinks, -1: closed
	delivering map[int]bool // the active sink and the draining ones
}

// churnOffer is one DeliverEntry call and its answer.
type churnOffer struct {
	stream string
	sink   int // -1: Router.DeliverEntry
	took   bool
}

// churnPop is a queued entry as the main thread took it.
type churnPop struct {
	stream, route string
	queued        int64 // tick
	times         int
}

// TestFenceChurn: the fence of TestEntryOnItsWayIsRefusedOnceItsRouteIsGone
// under churn. Six deliverers offer stream entries through the sinks (as a
// stream reader does: mostly the active one's, some a replaced or closed
// backend's, some through Router.DeliverEntry) while one goroutine removes
// and adds routes (realtime.Off/On, reloads with fewer or more config
// routes), closes (Disconnect) and attaches backends, replaces one and
// promotes its successor (the old one draining until a later change says
// it drained), and the main thread drains the queue, settling in batches:
// acknowledged when the entry's route is still there, released when it is
// gone. Checked against a model of the changes, in ticks of one logical
// clock:
//   - an entry is refused (left pending) or taken, never both: a taken one
//     is drained exactly once and settled exactly once (ack or release), a
//     refused one never queued nor settled, none lost;
//   - a taken entry was queued (its Queued tick) after the change that
//     added its route (or activated its sink) began and before the change
//     that removed it (or closed, replaced or retired its backend)
//     returned: none is queued after such a change returned;
//   - an entry offered while nothing changed, to a route that is there,
//     through the sink that delivers, is taken (the fence refuses nothing
//     it should not);
//   - nothing deadlocks: every goroutine makes progress within churnStall.
//
// FENCE_CHURN_SEED=<seed> replays a failure's schedule.
func TestFenceChurn(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(fenceChurnSeedEnv); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, fenceChurnSeedEnv)
	}
	t.Logf("seed %d (replay: %s=%d go test -run TestFenceChurn ./router/)", seed, fenceChurnSeedEnv, seed)
	tag := fmt.Sprintf("seed %d (replay: %s=%d)", seed, fenceChurnSeedEnv, seed)

	dynStreams := []string{"dyn0", "dyn1", "dyn2"}
	cfgStreams := []string{"cfg0", "cfg1", "cfg2"}
	streams := append(slices.Concat(dynStreams, cfgStreams), "none") // none: never routed
	// configs[mask]: the config routes cfg<i> for the bits i of mask
	var configs []*config.Config
	for mask := range 1 << len(cfgStreams) {
		var b strings.Builder
		b.WriteString("[server]\nid = \"s\"\n[queue]\nmax_events = 65536\nmax_bytes = \"64MiB\"\n")
		for i, s := range cfgStreams {
			if mask&(1<<i) != 0 {
				fmt.Fprintf(&b, "[[routes]]\nname = \"c%d\"\nstream = %q\nhandler = \"h\"\ndecode = \"json\"\n", i, s)
			}
		}
		configs = append(configs, parseConfig(t, b.String()))
	}
	dynDefs := make([]config.Route, len(dynStreams))
	for i, s := range dynStreams {
		dynDefs[i] = config.Route{Name: "d" + strconv.Itoa(i), Stream: s, Handler: "h"}
		require.NoError(t, config.CheckStreamRoute(&dynDefs[i]))
	}

	clk := &churnClock{base: time.Now().UnixNano()}
	kick := make(chan struct{}, 1)
	r, err := New(configs[len(configs)-1], WithClock(clk.now), WithQueued(func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}))
	require.NoError(t, err)
	stalled := false
	defer func() {
		if !stalled { // else Close would wait on what is stuck
			_ = r.Close()
		}
	}()
	settler := &churnSettler{got: map[string][]string{}}

	// The model, owned by the changing goroutine until it is done.
	spans := map[string][]churnSpan{}
	present := map[string]bool{}
	var sinkSpans []churnSpan
	var sinksMu sync.Mutex
	var sinks []*sink // read by the deliverers
	var backends []*churnBackend
	addSink := func(b *churnBackend) int {
		sinksMu.Lock()
		defer sinksMu.Unlock()
		sinks = append(sinks, b.sink.(*sink))
		backends = append(backends, b)
		sinkSpans = append(sinkSpans, churnSpan{})
		return len(sinks) - 1
	}
	draining := map[int]bool{} // replaced, delivering until drained
	var drains []int           // replaced, not drained yet (draining, or stopped by a close or an attach)

	// Start: every route, one backend attached.
	start := clk.tick()
	for _, s := range cfgStreams {
		spans[s], present[s] = []churnSpan{{from: start}}, true
	}
	for i, def := range dynDefs {
		_, err := r.On(def)
		require.NoError(t, err)
		spans[dynStreams[i]], present[dynStreams[i]] = []churnSpan{{from: start}}, true
	}
	b0 := &churnBackend{churnSettler: settler}
	r.Attach(b0)
	active, pending := addSink(b0), -1
	sinkSpans[active].from = start
	var state atomic.Pointer[churnState]
	publish := func() {
		p := make(map[string]bool, len(present))
		for s, ok := range present {
			p[s] = ok
		}
		d := map[int]bool{active: active >= 0}
		for i := range draining {
			d[i] = true
		}
		state.Store(&churnState{ver: clk.ver.Load() + 1, present: p, active: active, delivering: d})
	}
	publish()
	clk.ver.Add(2) // even, matching the state

	var (
		progress   atomic.Int64
		offered    atomic.Int64 // DeliverEntry calls returned
		changed    atomic.Int64 // changes returned
		churnDone  atomic.Bool
		overlapped atomic.Int64 // offers a change began or returned during
		mustTake   atomic.Int64 // offers nothing changed during, to a route there through the sink delivering
		violMu     sync.Mutex
		violations []string
		changes    []string             // the changing goroutine's log, for a failure
		changeAt   = map[int64]string{} // by its start and its done tick
	)
	violate := func(format string, args ...any) {
		violMu.Lock()
		violations = append(violations, fmt.Sprintf(format, args...))
		violMu.Unlock()
	}

	// The deliverers.
	offers := make([]map[string]churnOffer, churnDeliverers)
	var deliverers, workers sync.WaitGroup
	var deliverersDone atomic.Bool
	received := time.Unix(0, clk.base)
	for d := range churnDeliverers {
		offers[d] = make(map[string]churnOffer, churnEntries)
		deliverers.Add(1)
		go func() {
			defer deliverers.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(1+d)))
			for n := range churnEntries {
				for offered.Load() >= (changed.Load()+2)*churnPace && !churnDone.Load() {
					runtime.Gosched() // the changes' turn
				}
				stream := streams[rng.IntN(len(streams))]
				st := state.Load()
				sinksMu.Lock()
				// mostly the active sink as last seen, else the newest
				// (a Replace's, still connecting), an older one (a
				// draining backend's reader, or a closed one's, late),
				// or none
				si := st.active
				switch x := rng.IntN(20); {
				case x < 2 || si < 0:
					si = len(sinks) - 1
				case x < 4:
					si = len(sinks) - 1 - rng.IntN(min(len(sinks), 4))
				case x < 5:
					si = rng.IntN(len(sinks))
				case x < 7:
					si = -1
				}
				var s *sink
				if si >= 0 {
					s = sinks[si]
				}
				sinksMu.Unlock()
				id := fmt.Sprintf("%d-%d", d, n)
				e := StreamEntry{Stream: stream, Group: "realtime:s", ID: id, Deliveries: 1,
					Fields: []string{"data", `{"n":` + strconv.Itoa(n) + `}`}, Received: received}
				v1 := clk.ver.Load()
				st = state.Load()
				var took bool
				if s != nil {
					took = s.DeliverEntry(e, settler)
				} else {
					took = r.DeliverEntry(e, settler)
				}
				v2 := clk.ver.Load()
				offered.Add(1)
				progress.Add(1)
				offers[d][id] = churnOffer{stream: stream, sink: si, took: took}
				switch {
				case v1 != v2 || v1&1 == 1 || st.ver != v1:
					overlapped.Add(1) // a change began or returned meanwhile: either answer
				case st.present[stream] && (si < 0 || st.delivering[si]):
					mustTake.Add(1)
					if !took {
						violate("entry %s of %s (sink %d) refused while nothing changed (version %d), its route there and its sink delivering", id, stream, si, v1)
					}
				}
			}
		}()
	}

	// The changing goroutine.
	workers.Add(1)
	go func() {
		defer workers.Done()
		defer churnDone.Store(true)
		rng := rand.New(rand.NewPCG(seed, 0))
		opened := func(s string, at int64) {
			if !present[s] {
				spans[s] = append(spans[s], churnSpan{from: at})
				present[s] = true
			}
		}
		closed := func(s string, at int64) {
			if present[s] {
				spans[s][len(spans[s])-1].to = at
				present[s] = false
			}
		}
		stopAll := func(done int64) { // the active sink and the draining ones
			if active >= 0 {
				sinkSpans[active].to = done
			}
			for i := range draining {
				sinkSpans[i].to = done
			}
			clear(draining)
		}
		for i := 0; i < churnMaxChanges && !deliverersDone.Load(); i++ {
			var what string
			var change func()
			var after func(start, done int64)
			switch op := rng.IntN(16); {
			case op < 5: // realtime.Stream
				k := rng.IntN(len(dynDefs))
				what = "on " + dynDefs[k].Name
				change = func() {
					if _, err := r.On(dynDefs[k]); err != nil {
						violate("On(%s): %v", dynDefs[k].Name, err)
					}
				}
				after = func(start, _ int64) { opened(dynStreams[k], start) }
			case op < 7: // realtime.Off, of one or two (there or not)
				ks := []int{rng.IntN(len(dynDefs))}
				if rng.IntN(3) == 0 {
					ks = append(ks, rng.IntN(len(dynDefs)))
				}
				var names []string
				for _, k := range ks {
					names = append(names, dynDefs[k].Name)
				}
				what = fmt.Sprintf("off %v", names)
				change = func() { r.Off(names...) }
				after = func(_, done int64) {
					for _, k := range ks {
						closed(dynStreams[k], done)
					}
				}
			case op < 9: // a reload with some config routes (each kept at 3 in 4)
				mask := 0
				for i := range cfgStreams {
					if rng.IntN(4) != 0 {
						mask |= 1 << i
					}
				}
				what = fmt.Sprintf("reload %03b", mask)
				change = func() {
					if _, err := r.Apply(configs[mask]); err != nil {
						violate("Apply: %v", err)
					}
				}
				after = func(start, done int64) {
					for i, s := range cfgStreams {
						if mask&(1<<i) != 0 {
							opened(s, start)
						} else {
							closed(s, done)
						}
					}
				}
			case active < 0 || op == 15: // a Connect: attached, over what there was
				b := &churnBackend{churnSettler: settler}
				what = "attach"
				change = func() { r.Attach(b) }
				after = func(start, done int64) {
					stopAll(done)
					active, pending = addSink(b), -1
					sinkSpans[active].from = start
				}
			case op == 9: // realtime.Disconnect
				what = "close"
				change = func() { _ = r.Close() }
				after = func(_, done int64) {
					stopAll(done)
					active, pending = -1, -1
				}
			case (op == 10 || op == 14) && len(drains) > 0: // a replaced backend drained: retired
				k := rng.IntN(len(drains))
				si := drains[k]
				drains = slices.Delete(drains, k, k+1)
				what = fmt.Sprintf("drained %d", si)
				change = backends[si].drain // not nil: promote checked
				after = func(_, done int64) {
					if draining[si] {
						sinkSpans[si].to = done
						delete(draining, si)
					}
				}
			case op < 12 || pending < 0: // a reconnect with new settings (again, before the last connected)
				b := &churnBackend{churnSettler: settler}
				what = "replace"
				change = func() { r.Replace(b) }
				after = func(_, _ int64) { pending = addSink(b) }
			default: // ... which connected: the old backend retired
				what = fmt.Sprintf("promote %d", pending)
				sinksMu.Lock()
				s := sinks[pending]
				sinksMu.Unlock()
				change = func() { s.SetStatus(StatusConnected, "") }
				after = func(start, _ int64) {
					draining[active] = true
					if backends[active].drain != nil {
						drains = append(drains, active)
					} else {
						violate("promote %d: the replaced backend %d was not asked to drain", pending, active)
					}
					active, pending = pending, -1
					sinkSpans[active].from = start
				}
			}
			start := clk.tick()
			clk.ver.Add(1)
			change()
			done := clk.tick()
			after(start, done)
			changes = append(changes, fmt.Sprintf("%s [%d,%d]", what, start, done))
			changeAt[start], changeAt[done] = changes[len(changes)-1], changes[len(changes)-1]
			publish()
			clk.ver.Add(1)
			progress.Add(1)
			changed.Add(1)
			// churnPace entries a change, on average: some changes follow
			// another at once
			for want := changed.Load()*churnPace - rng.Int64N(2*churnPace); offered.Load() < want && !deliverersDone.Load(); {
				runtime.Gosched()
			}
		}
	}()
	workers.Add(1)
	go func() {
		defer workers.Done()
		deliverers.Wait()
		deliverersDone.Store(true)
	}()

	// The main thread.
	pops := map[string]*churnPop{}
	drained := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(drained)
		rng := rand.New(rand.NewPCG(seed, uint64(1+churnDeliverers)))
		var batch []Settled
		flush := func() {
			if len(batch) > 0 {
				r.SettleMany(batch)
				batch = batch[:0]
			}
		}
		want := 1
		for stopping := false; ; {
			for e := r.Next(); e != nil; e = r.Next() {
				progress.Add(1)
				if e.Entry == nil {
					continue // a status (a promote's connected)
				}
				p := pops[e.Entry.ID]
				if p == nil {
					p = &churnPop{stream: e.Channel, route: e.Route.Name, queued: e.Queued - clk.base}
					pops[e.Entry.ID] = p
				}
				p.times++
				there := r.Table().Route(e.Route.Name) != nil
				batch = append(batch, Settled{Event: e, OK: there, Release: !there})
				if len(batch) >= want {
					flush()
					want = 1 + rng.IntN(8)
				}
			}
			flush()
			if stopping {
				return
			}
			select {
			case <-kick:
			case <-stop:
				stopping = true // one more round: everything was queued before stop
			}
		}
	}()

	wait := func(what string, done <-chan struct{}) {
		last := progress.Load()
		for {
			select {
			case <-done:
				return
			case <-time.After(churnStall):
			}
			if p := progress.Load(); p != last {
				last = p
				continue
			}
			stalled = true
			buf := make([]byte, 1<<22)
			t.Fatalf("%s: no progress for %v while waiting for %s: deadlock?\n%s", tag, churnStall, what, buf[:runtime.Stack(buf, true)])
		}
	}
	workersDone := make(chan struct{})
	go func() { workers.Wait(); close(workersDone) }()
	wait("the deliverers and the changes", workersDone)
	close(stop)
	wait("the main thread's last drain", drained)

	// Check.
	fail := func(format string, args ...any) { violate(format, args...) }
	explain := func(spans []churnSpan, q int64) string { return explainSpans(spans, q, changeAt) }
	var taken, refused, acked, released int
	settler.mu.Lock()
	got := settler.got
	settler.mu.Unlock()
	seen := map[string]bool{}
	for d := range offers {
		for id, o := range offers[d] {
			seen[id] = true
			p, how := pops[id], got[id]
			if !o.took {
				refused++
				if p != nil || len(how) > 0 {
					fail("entry %s of %s (sink %d) refused, yet drained %v, settled %v", id, o.stream, o.sink, p != nil, how)
				}
				continue
			}
			taken++
			switch {
			case p == nil:
				fail("entry %s of %s (sink %d) taken, never drained (settled %v): lost", id, o.stream, o.sink, how)
				continue
			case p.times != 1:
				fail("entry %s of %s drained %d times", id, o.stream, p.times)
			case len(how) != 1 || how[0] != "ack" && how[0] != "release":
				fail("entry %s of %s settled %v, want one ack or release", id, o.stream, how)
			}
			if len(how) > 0 && how[0] == "ack" {
				acked++
			} else {
				released++
			}
			if p.stream != o.stream || p.route == "" {
				fail("entry %s of %s drained as %s's, of route %q", id, o.stream, p.stream, p.route)
			}
			if !inSpans(spans[o.stream], p.queued) {
				fail("entry %s of %s (sink %d) queued at tick %d, when its route was not there: %s", id, o.stream, o.sink, p.queued, explain(spans[o.stream], p.queued))
			}
			if o.sink >= 0 && !inSpans(sinkSpans[o.sink:o.sink+1], p.queued) {
				fail("entry %s of %s queued at tick %d through sink %d, which did not deliver then: %s", id, o.stream, p.queued, o.sink, explain(sinkSpans[o.sink:o.sink+1], p.queued))
			}
		}
	}
	for id := range pops {
		if !seen[id] {
			fail("entry %s drained, never offered", id)
		}
	}
	for id, how := range got {
		if !seen[id] {
			fail("entry %s settled %v, never offered", id, how)
		}
	}
	if n := r.Queue().Pending(); n != 0 {
		fail("%d events left in the queue", n)
	}
	r.entriesMu.Lock()
	if n := len(r.entries); n != 0 {
		fail("%d entries still in flight", n)
	}
	r.entriesMu.Unlock()
	t.Logf("%d changes, %d entries: %d taken (%d acked, %d released after their route went), %d refused; "+
		"%d offered during a change, %d queued while one was in progress, %d offered while nothing changed to a route there through the delivering sink",
		len(changes), taken+refused, taken, acked, released, refused, overlapped.Load(), clk.widened.Load(), mustTake.Load())
	if len(violations) > 0 {
		slices.Sort(violations)
		shown := violations[:min(len(violations), 20)]
		t.Fatalf("%s: %d violations (of %d changes, %d entries):\n  %s", tag, len(violations), len(changes), taken+refused, strings.Join(shown, "\n  "))
	}
}
