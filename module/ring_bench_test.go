package main

import (
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/module/api"
)

// BenchmarkRingFeed is the Go side of a queued event on its way to the
// main thread in a drain: moved into the ring (fill), and its outcome
// counted once the pump gave its slot back (reap).
// The pump is stood in for by marking the ring's slots dispatched.
func BenchmarkRingFeed(b *testing.B) {
	m := api.Start(api.Options{Config: config.Options{Dir: b.TempDir(), Environ: []string{}}})
	saved := mod
	mod = m
	b.Cleanup(func() { feed.mod.Store(nil); m.Stop(); mod = saved })
	if _, _, err := m.On("bench:*", "bench", api.OnOptions{}); err != nil {
		b.Fatal(err)
	}
	emptyRing()
	setAhead(m)
	feed.mod.Store(m)
	r := m.Router()
	r.Deliver("bench:string", "x")
	if r.Queue().Pending() == 0 && inFlight() == 0 {
		b.Fatal("not routed")
	}
	const chunk = 1024
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		b.StopTimer()
		for range chunk {
			r.Deliver("bench:string", "player1 joined the server")
		}
		b.StartTimer()
		for r.Queue().Pending() > 0 || inFlight() > 0 {
			fill()
			pumpAll()
		}
	}
	b.StopTimer()
	if got := r.Stats.Queued.Load(); got < uint64(b.N) || r.Queue().Pending() != 0 {
		b.Fatalf("%d events queued of %d, %d left", got, b.N, r.Queue().Pending())
	}
	fill()
}

// pumpAll stands in for the pump: every event in the ring is dispatched
// and every sealed slot given back.
func pumpAll() {
	for {
		bt := slot(uint32(_Cvar_rt_events.head))
		st := state(bt).Load()
		if st != _Ciconst_RT_SLOT_OPEN && st != _Ciconst_RT_SLOT_SEALED {
			return
		}
		n := published(bt).Load()
		(*atomic.Uint64)(unsafe.Pointer(&_Cvar_rt_events.consumed)).Add(uint64(n - uint32(bt.cur)))
		bt.cur = _Ctype_uint32_t(n)
		if st == _Ciconst_RT_SLOT_OPEN { // Go may append to it yet
			return
		}
		state(bt).Store(_Ciconst_RT_SLOT_USED)
		_Cvar_rt_events.head++
	}
}
