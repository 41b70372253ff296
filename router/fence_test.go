package router

import (
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gmod-realtime/realtime/config"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gate is a clock that, once armed, stops the next reading until let go:
// DeliverEntry reads it when it queues an entry it has checked.
type gate struct {
	armed   atomic.Bool
	in, out chan struct{}
}

func newGate() *gate { return &gate{in: make(chan struct{}), out: make(chan struct{})} }

func (g *gate) now() time.Time {
	if g.armed.CompareAndSwap(true, false) {
		g.in <- struct{}{}
		<-g.out
	}
	return time.Now()
}

// waitingOnFence reports whether a goroutine waits to take an RWMutex
// for writing (the router's fence is the package's only one).
func waitingOnFence() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "sync.(*RWMutex).Lock(")
}

// TestEntryOnItsWayIsRefusedOnceItsRouteIsGone: a stream entry checked
// against its route while the route is removed (realtime.Off, a reload
// without it) or the backend closed (Disconnect) is either queued before
// that change returns or not at all: once it has returned, no entry of
// the removed route reaches the queue, where no handler would take it
// (it was Nacked, counted a failed delivery, and dead-lettered at
// max_deliveries unhandled).
func TestEntryOnItsWayIsRefusedOnceItsRouteIsGone(t *testing.T) {
	const toml = "[server]\nid = \"s\"\n[[routes]]\nname = \"cfg\"\nstream = \"c\"\nhandler = \"h\"\n"
	for _, tc := range []struct {
		name   string
		stream string
		group  string
		change func(t *testing.T, r *Router)
	}{
		{"off", "cmds", "realtime:s", func(t *testing.T, r *Router) { assert.True(t, r.Off("dyn")) }},
		{"reload", "c", "realtime:s", func(t *testing.T, r *Router) {
			_, err := r.Apply(parseConfig(t, "[server]\nid = \"s\"\n"))
			assert.NoError(t, err)
		}},
		{"close", "cmds", "realtime:s", func(t *testing.T, r *Router) { assert.NoError(t, r.Close()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate()
			r, err := New(parseConfig(t, toml), WithClock(g.now))
			require.NoError(t, err)
			defer r.Close()
			def := config.Route{Name: "dyn", Stream: "cmds", Handler: "h"}
			require.NoError(t, config.CheckStreamRoute(&def)) // the defaults, as realtime.Stream has them
			_, err = r.On(def)
			require.NoError(t, err)
			b := &sinkBackend{}
			r.Attach(b)
			sink := b.sink.(EntrySink)

			g.armed.Store(true)
			took := make(chan bool, 1)
			go func() {
				took <- sink.DeliverEntry(StreamEntry{Stream: tc.stream, Group: tc.group, ID: "1-1",
					Fields: []string{"data", "x"}, Received: time.Now()}, nopSettler{})
			}()
			select { // checked against its route, about to be queued
			case <-g.in:
			case ok := <-took:
				t.Fatalf("the entry was not held on its way (taken: %v)", ok)
			}

			done := make(chan int, 1) // the queue's length when the change returned
			go func() {
				tc.change(t, r)
				done <- r.Queue().Pending()
			}()
			deadline := time.Now().Add(10 * time.Second)
			atReturn := -1
			for atReturn < 0 && !waitingOnFence() {
				require.True(t, time.Now().Before(deadline), "the change neither returned nor waited")
				select {
				case atReturn = <-done:
				case <-time.After(time.Millisecond):
				}
			}
			close(g.out)
			<-took
			if atReturn < 0 {
				atReturn = <-done
			}
			assert.Equal(t, atReturn, r.Queue().Pending(), "an entry was queued after its route was removed")
		})
	}
}
