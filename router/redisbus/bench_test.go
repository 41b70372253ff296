package redisbus

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router"
)

// BenchmarkQueuedMemory: 10,000 200-byte messages from Redis routed and
// left in the queue, as with the pump stopped (make bench's memory row,
// without the module's ring): the Go heap they hold once collected
// (live-B/event) and what was allocated on their way (B/op, allocs/op,
// per event). With -memprofile, the allocation sites.
func BenchmarkQueuedMemory(b *testing.B) {
	const n = 10000
	r, _, c := benchBus(b, "[queue]\nmax_events = 100000\n[[routes]]\nname = \"p\"\npattern = \"player:*\"\nhandler = \"h\"\n")
	body := strings.Repeat("x", 200)
	var live, alloc, mallocs float64
	for range b.N {
		r.Drain(1<<30, 0, func(*router.Event) {})
		p := c.Pipeline() // built before: the allocations counted are the bus's and the router's, and Exec's
		for range n {
			p.Publish(context.Background(), "player:spawn", body)
		}
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		cmds, err := p.Exec(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for r.Queue().Pending() < n {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d queued", r.Queue().Pending(), n)
			}
			time.Sleep(time.Millisecond)
		}
		runtime.ReadMemStats(&m1)
		alloc += float64(m1.TotalAlloc - m0.TotalAlloc)
		mallocs += float64(m1.Mallocs - m0.Mallocs)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		live += float64(int64(m1.HeapAlloc) - int64(m0.HeapAlloc))
		runtime.KeepAlive(cmds) // the publisher's commands are not the bus's: not freed within the count
	}
	b.ReportMetric(live/float64(b.N*n), "live-B/event")
	b.ReportMetric(alloc/float64(b.N*n), "alloc-B/event")
	b.ReportMetric(mallocs/float64(b.N*n), "allocs/event")
}

// benchBus is a router attached to a connected Redis bus configured by
// toml, a client of the same redis-server, and the bus.
func benchBus(b *testing.B, toml string) (*router.Router, *Bus, *redis.Client) {
	srv := redistest.Start(b)
	cfg, err := config.Parse("bench.toml", []byte("[redis]\nurl = \""+srv.URL()+"\"\n"+toml))
	if err != nil {
		b.Fatal(err)
	}
	r, err := router.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	bus, err := New(cfg.Redis)
	if err != nil {
		b.Fatal(err)
	}
	r.Attach(bus)
	b.Cleanup(func() { _ = r.Close() })
	c := client2(b, srv)
	deadline := time.Now().Add(10 * time.Second)
	for connected := false; !connected; {
		if time.Now().After(deadline) {
			b.Fatal("not connected")
		}
		r.Drain(1<<30, 0, func(e *router.Event) { connected = connected || e.Status == router.StatusConnected })
		time.Sleep(time.Millisecond)
	}
	return r, bus, c
}

// BenchmarkPublish: messages published through the router (as Lua's
// Publish does, from one goroutine) until Redis acknowledged them all,
// beside go-redis pipelining the same messages 1,000 at a time
// (ref-msgs/s).
func BenchmarkPublish(b *testing.B) {
	r, bus, c := benchBus(b, "outbox_events = 1000000\n")
	_ = r
	ctx := context.Background()
	t0 := time.Now()
	for i := 0; i < b.N; {
		p := c.Pipeline()
		for j := 0; j < 1000 && i < b.N; j, i = j+1, i+1 {
			p.Publish(ctx, "bench:publish", "player1 joined the server")
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	ref := time.Since(t0)
	b.ResetTimer()
	base := bus.Stats.Published.Load()
	for range b.N {
		for r.Publish("bench:publish", "player1 joined the server") != nil { // the outbox is full
			runtime.Gosched()
		}
	}
	for bus.Stats.Published.Load()-base < uint64(b.N) {
		time.Sleep(50 * time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/ref.Seconds(), "ref-msgs/s")
}
