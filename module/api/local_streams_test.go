package api

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/router/localbus"
)

// localBus is the local-mode module's bus.
func localBus(t *testing.T, m *Module) *localbus.Bus {
	t.Helper()
	lb, ok := m.Router().Backend().(*localbus.Bus)
	require.True(t, ok, "not in local mode: %T", m.Router().Backend())
	return lb
}

// pumpLocal runs the queued calls as the shim would: a call whose
// realtime.Stream route has no function in the Lua state (has says) is
// reported as having none; the others go to handle, whose false is an
// error raised by the handler.
func pumpLocal(m *Module, has func(route string) bool, handle func(Dispatch) bool) int {
	return pumpLocalWith(m, has, handle, false)
}

// pumpLocalWith is pumpLocal; batched, it settles the frame's stream
// entries in one Settle at its end and counts them then, as the ring does
// (otherwise each through Finish as it is handled).
func pumpLocalWith(m *Module, has func(route string) bool, handle func(Dispatch) bool, batched bool) int {
	n := 0
	type done struct {
		d         *Dispatch
		noHandler bool
		at        int64
		failed    int
	}
	var frame []done
	finish := func(d *Dispatch, noHandler bool, at int64, failed int) {
		if batched {
			frame = append(frame, done{d, noHandler, at, failed})
			return
		}
		m.Finish(d, noHandler, at, failed, "failing on purpose")
	}
	m.BeginFrame()
	for d, ok := m.Take(); ok; d, ok = m.Take() {
		if d.Event.Entry == nil {
			m.Finish(&d, false, time.Now().UnixNano(), 0, "")
			continue
		}
		// As the ring's pump: no handler for an entry whose registration
		// was removed, even if one of the same name was made since.
		cur := m.Router().Table().Route(d.Event.Route.Name)
		if !has(d.Event.Route.Name) || cur == nil || cur.Stats != d.Event.Route.Stats {
			finish(&d, true, 0, 0)
			continue
		}
		n++
		failed := 0
		if !handle(d) {
			failed = 1
		}
		finish(&d, false, time.Now().UnixNano(), failed)
	}
	if len(frame) > 0 {
		outs := make([]Outcome, len(frame))
		for i, f := range frame {
			outs[i] = Outcome{D: f.d, NoHandler: f.noHandler, Failed: f.failed}
		}
		m.Settle(outs)
		for _, f := range frame {
			m.Count(f.d, f.noHandler, f.at, f.failed, "failing on purpose")
		}
	}
	return n
}

// TestLocalStreamModel drives local-mode stream routes with random
// Appends, handler errors, Off and On again, and checks every delivery
// against a model: each route (group) gets each entry appended while it is
// registered, its deliveries counted 1, 2, ... with no gap and no repeat; an
// entry whose handler returned is never delivered again; one that failed
// max_deliveries times is discarded and counted as dead-lettered; an
// Append over the bus's capacity of held entries fails and is counted;
// entries appended while no route reads the stream are counted as
// unread. At the end, every entry has been settled and none is held.
// Odd rounds settle each frame's entries in one batch (Settle), as the
// ring does; even rounds one by one (Finish): both against the model.
func TestLocalStreamModel(t *testing.T) {
	for round := range 6 {
		seed := uint64(time.Now().UnixNano()) + uint64(round)
		t.Run(strconv.Itoa(round), func(t *testing.T) { localStreamModel(t, seed, round%2 == 1) })
	}
}

type modelRoute struct {
	id, name, group string
	max             int
	on              bool
}

type modelEntry struct {
	fails    map[string]int // by route name: how often its handler raises
	calls    map[string]int // by route name: handler calls so far
	done     map[string]bool
	appended map[string]bool // routes registered when it was appended
}

func localStreamModel(t *testing.T, seed uint64, batched bool) {
	rng := rand.New(rand.NewPCG(seed, 7))
	const capacity = 24
	t.Logf("seed %d batched %v", seed, batched)
	m, _ := start(t, fmt.Sprintf("[server]\nid = \"s1\"\n[redis]\noutbox_events = %d\n", capacity))
	lb := localBus(t, m)
	lb.SetRetryDelay(time.Duration(rng.IntN(3)) * time.Millisecond)

	routes := []*modelRoute{{id: "a", max: 1 + rng.IntN(4)}, {id: "b", group: "workers", max: 1 + rng.IntN(4)}}
	register := func(r *modelRoute) {
		_, name, err := m.Stream("jobs", r.id, StreamOptions{Group: r.group, MaxDeliveries: float64(r.max), HasMaxDeliveries: true})
		require.NoError(t, err)
		r.name, r.on = name, true
	}
	for _, r := range routes {
		register(r)
	}
	byName := map[string]*modelRoute{}
	for _, r := range routes {
		byName[r.name] = r
	}
	entries := map[string]*modelEntry{}
	var order []string
	held := 0 // entries held, once per reading route, as the model says
	var acked, dead, overflow, unread uint64
	settle := func(e *modelEntry, r *modelRoute) {
		e.done[r.name] = true
		held--
	}
	has := func(name string) bool { return byName[name] != nil && byName[name].on }
	handle := func(d Dispatch) bool {
		r := byName[d.Event.Route.Name]
		data := d.Event.Payload
		e := entries[data]
		require.NotNil(t, e, "seed %d: unknown entry %q (meta.id not the id Append returned?)", seed, data)
		require.True(t, e.appended[r.name], "seed %d: route %s got %s, appended while it was not registered", seed, r.name, data)
		require.False(t, e.done[r.name], "seed %d: route %s got %s again after it was settled", seed, r.name, data)
		e.calls[r.name]++
		require.Equal(t, int64(e.calls[r.name]), d.Event.Entry.Deliveries, "seed %d: %s on %s: meta.deliveries", seed, data, r.name)
		ok := e.calls[r.name] > e.fails[r.name]
		switch {
		case ok:
			acked++
			settle(e, r)
		case e.calls[r.name] >= r.max:
			dead++
			settle(e, r)
		}
		return ok
	}
	// An entry is keyed "<id>/#<n>": Append's id and its payload.
	appendKeyed := func() {
		readers := 0
		for _, r := range routes {
			if r.on {
				readers++
			}
		}
		n := len(order)
		e := &modelEntry{fails: map[string]int{}, calls: map[string]int{}, done: map[string]bool{}, appended: map[string]bool{}}
		for _, r := range routes {
			if r.on {
				e.appended[r.name] = true
				e.fails[r.name] = rng.IntN(r.max + 2)
			}
		}
		pending := "#" + strconv.Itoa(n)
		id, err := lb.Append("jobs", pending)
		switch {
		case readers == 0:
			require.NoError(t, err)
			unread++
			return
		case held+readers > capacity:
			require.ErrorIs(t, err, localbus.ErrFull, "seed %d: %d held + %d over capacity %d", seed, held, readers, capacity)
			overflow++
			return
		}
		require.NoError(t, err, "seed %d", seed)
		held += readers
		entries[id+"/"+pending] = e
		order = append(order, id)
	}
	for step := range 400 {
		switch op := rng.IntN(20); {
		case op < 8:
			for range 1 + rng.IntN(4) {
				appendKeyed()
			}
		case op < 17:
			// what the bus hands over meanwhile: wait a little for some
			waitUntil(100*time.Millisecond, func() bool { return m.Router().Queue().Pending() > 0 || lb.Ready() == 0 })
			pumpKeyed(t, m, has, entries, handle, batched)
		default:
			r := routes[rng.IntN(len(routes))]
			if r.on {
				require.NotEmpty(t, m.Off(r.id, "jobs"), "seed %d step %d", seed, step)
				r.on = false
			} else {
				register(r)
			}
		}
	}
	for _, r := range routes {
		if !r.on {
			register(r)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for lb.Held() > 0 && time.Now().Before(deadline) {
		if pumpKeyed(t, m, has, entries, handle, batched) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	require.Zero(t, lb.Held(), "seed %d: entries still held", seed)
	assert.Zero(t, held, "seed %d: the model still holds entries", seed)
	for k, e := range entries {
		for name := range e.appended {
			assert.True(t, e.done[name], "seed %d: %s never settled on %s", seed, k, name)
		}
	}
	assert.Equal(t, acked, lb.Stats.Acked.Load(), "seed %d: acked", seed)
	assert.Equal(t, dead, lb.Stats.Dead.Load(), "seed %d: dead", seed)
	assert.Equal(t, dead, m.Router().Stats.DeadLettered.Load(), "seed %d: GetStats().dead_lettered", seed)
	assert.Equal(t, overflow, lb.Stats.Overflow.Load(), "seed %d: overflow", seed)
	assert.Equal(t, unread, lb.Stats.Unread.Load(), "seed %d: unread", seed)
	// GetStats().streams: one row per group, counting since the group was
	// last added (a route Off and On again starts over, as with Redis)
	var sumAcked, sumDead uint64
	rows := lb.StreamStats()
	assert.Len(t, rows, 2, "seed %d: streams rows %v", seed, rows)
	for name, st := range rows {
		sumAcked += st.Acked
		sumDead += st.Dead
		assert.Zero(t, st.Pending, "seed %d: %s pending", seed, name)
		assert.True(t, st.Reading, "seed %d: %s read", seed, name)
	}
	assert.LessOrEqual(t, sumAcked, acked, "seed %d: acked by group", seed)
	assert.LessOrEqual(t, sumDead, dead, "seed %d: dead by group", seed)
	t.Logf("seed %d: %d entries, %d acked, %d dead, %d overflow, %d unread", seed, len(order), acked, dead, overflow, unread)
}

// pumpKeyed is pumpLocal for the model, whose entries are keyed by
// "<id>/<payload>".
func pumpKeyed(t *testing.T, m *Module, has func(string) bool, entries map[string]*modelEntry, handle func(Dispatch) bool, batched bool) int {
	return pumpLocalWith(m, has, func(d Dispatch) bool {
		ev := *d.Event
		ev.Payload = ev.Entry.ID + "/" + ev.Payload
		d.Event = &ev
		return handle(d)
	}, batched)
}

// waitUntil polls cond until it holds or d passed: for a step of a model
// run that may find nothing to do, never for an assertion.
func waitUntil(d time.Duration, cond func() bool) {
	for end := time.Now().Add(d); !cond() && time.Now().Before(end); {
		time.Sleep(200 * time.Microsecond)
	}
}

// GetStats() in local mode with stream routes: a well-formed table whose
// streams rows are the in-memory groups, and whose redis table counts the
// Appends (taken, unread).
func TestLocalStreamStats(t *testing.T) {
	m, _ := start(t, "[server]\nid = \"s1\"\n")
	lb := localBus(t, m)
	_, a, err := m.Stream("s", "a", StreamOptions{})
	require.NoError(t, err)
	_, _, err = m.Stream("t", "", StreamOptions{Group: "workers"})
	require.NoError(t, err)
	for range 3 {
		_, err := lb.Append("s", "x")
		require.NoError(t, err)
	}
	_, err = lb.Append("nobody", "x")
	require.NoError(t, err)
	handled := 0
	has := func(route string) bool { return route == a }
	deadline := time.Now().Add(10 * time.Second)
	for handled < 3 && time.Now().Before(deadline) {
		handled += pumpLocal(m, has, func(Dispatch) bool { return true })
	}
	require.Equal(t, 3, handled)

	st := docMap(t, m.Stats())
	streams := st["streams"].(map[string]any)
	require.Len(t, streams, 2, "%v", streams)
	s := streams["s"].(map[string]any)
	assert.Equal(t, "realtime:s1", s["group"])
	assert.Equal(t, 3.0, s["acked"])
	assert.Equal(t, 3.0, s["delivered"])
	assert.Equal(t, 0.0, s["pending"])
	assert.Equal(t, "workers", streams["t"].(map[string]any)["group"])
	r := st["redis"].(map[string]any)
	assert.Equal(t, 4.0, r["appended"])
	assert.Equal(t, 1.0, r["append_unread"])
	assert.Equal(t, 0.0, r["append_overflow"])
	assert.Equal(t, 0.0, r["entries_held"])
}
