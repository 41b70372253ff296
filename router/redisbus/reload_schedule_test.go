package redisbus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestRandomReloadSchedules drives a router the way module/api does over
// random seeds (printed; replay with REDISBUS_FAULT_SEED=n): publishes,
// Reloads that replace the connection (HandOver + Replace), live
// Reconfigures, Connects (HandOver, Close, Attach), Disconnect then
// Connect, a Disconnect right after a Reload (the old bus draining), and
// connection cuts through the fault proxy, in random order. After the schedule the faults stop, and then:
// the last bus connects and routes, every bus created has stopped its
// goroutines once the router is closed (no hang, no leak), and every
// message Publish accepted reached Redis or is counted.
func TestRandomReloadSchedules(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	for _, seed := range faultSeeds(t, 8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (replay: REDISBUS_FAULT_SEED=%d)", seed, seed)
			rng := rand.New(rand.NewPCG(seed, seed))
			p := startProxy(t, srv.Addr(), randomFaults(rand.New(rand.NewPCG(seed, 1)), 2+rng.IntN(8)))
			tag := fmt.Sprintf("r%d:", seed)
			got := collect(t, c, tag+"*")
			cfgFor := func(rt int) string {
				return fmt.Sprintf("[redis]\nurl = \"redis://%s\"\nread_timeout = \"%dms\"\nwrite_timeout = \"100ms\"\nreconnect_min = \"10ms\"\nreconnect_max = \"50ms\"\noutbox_events = %d\n",
					p.Addr(), 100+rt, 1000+rng.IntN(1000))
			}
			h := startHarness(t, cfgFor(0)+fmt.Sprintf("[[routes]]\nname = \"own\"\npattern = \"%s*\"\nhandler = \"h\"\n", tag))
			buses := []*Bus{h.bus}
			cur := h.bus
			var accepted []int
			next := 0
			var ops []string
			newBus := func() *Bus {
				nb, err := New(redisConfig(t, cfgFor(1+rng.IntN(200))))
				require.NoError(t, err)
				buses = append(buses, nb)
				return nb
			}
			for step := 0; step < 30; step++ {
				switch op := rng.IntN(12); {
				case op < 4:
					for k := rng.IntN(40); k > 0; k-- {
						if h.r.Publish(tag+"m", fmt.Sprint(next)) == nil {
							accepted = append(accepted, next)
						}
						next++
					}
					ops = append(ops, "publish")
				case op < 6:
					nb := newBus()
					cur.HandOver(nb)
					h.r.Replace(nb)
					cur = nb
					ops = append(ops, "replace")
				case op == 6:
					cur.Reconfigure(redisConfig(t, strings.Replace(cfgFor(0), "reconnect_max = \"50ms\"", "reconnect_max = \"80ms\"", 1)))
					ops = append(ops, "reconfigure")
				case op == 7:
					p.cut()
					ops = append(ops, "cut")
				case op == 8:
					nb := newBus()
					_ = h.r.Close() // Disconnect, then Connect: the outbox is discarded
					accepted = nil
					h.r.Attach(nb)
					cur = nb
					ops = append(ops, "reattach")
				case op == 9: // Connect (module/api's attach): the outbox moves
					nb := newBus()
					cur.HandOver(nb)
					_ = h.r.Close()
					h.r.Attach(nb)
					cur = nb
					ops = append(ops, "connect")
				case op == 10: // Reload, then at once Disconnect and Connect
					nb := newBus()
					cur.HandOver(nb)
					h.r.Replace(nb)
					if rng.IntN(2) == 0 {
						time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond) // maybe connected, the old one draining
					}
					_ = h.r.Close()
					accepted = nil
					nb2 := newBus()
					h.r.Attach(nb2)
					cur = nb2
					ops = append(ops, "replace+reattach")
				default:
					h.drain()
					ops = append(ops, "drain")
				}
				if rng.IntN(3) == 0 {
					time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
				}
			}
			t.Logf("schedule: %v", ops)
			p.heal()
			h.waitFor("the last bus routing", 30*time.Second, func() bool {
				c.Publish(ctx, tag+"probe", "p")
				return slicesContains(h.msgs, "own<-"+tag+"probe=p")
			})
			h.waitFor("the outbox sent", 30*time.Second, func() bool { return cur.OutboxLen() == 0 })
			_ = h.r.Close()
			for i, b := range buses {
				waited := make(chan struct{})
				go func() { b.Wait(); close(waited) }()
				select {
				case <-waited:
				case <-time.After(20 * time.Second):
					t.Fatalf("bus %d of %d: goroutines still running 20s after Close", i, len(buses))
				}
			}
			// Messages accepted before the last Disconnect may be discarded
			// (Close discards the outbox); the others reach Redis.
			var lost []int
			for _, i := range accepted {
				if got.get(fmt.Sprintf("%sm=%d", tag, i)) == 0 {
					lost = append(lost, i)
				}
			}
			assert.Empty(t, lost, "accepted by Publish since the last Disconnect, never at Redis, publish_failed %d; schedule %v",
				h.r.Stats.PublishFails.Load(), ops)
		})
	}
}
