package api

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router"
)

// scheduleSeeds returns n random seeds, or the one in
// REALTIME_SCHEDULE_SEED (to replay a failure).
func scheduleSeeds(t *testing.T, n int) []uint64 {
	if s := os.Getenv("REALTIME_SCHEDULE_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
		return []uint64{seed}
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = rand.Uint64()
	}
	return seeds
}

// TestRandomConnectReloadSchedules drives the module as Lua can, in a
// random order over random seeds (printed; replay with
// REALTIME_SCHEDULE_SEED=n): Publish, Reloads that replace the connection
// (to the right Redis or to an address where nothing listens) or change it
// live, Connect (right or wrong address), Disconnect, ProcessEvents, and
// the orders that race a handover: a Reload followed at once by Connect,
// or by Disconnect while the old connection drains. At the end a Connect
// to the right Redis must route events, and every message Publish accepted
// since the last Disconnect must reach Redis (Disconnect discards the
// outbox; Reload and Connect hand it over).
func TestRandomConnectReloadSchedules(t *testing.T) {
	srv := redistest.Start(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadURL := "redis://" + dead.Addr().String()
	require.NoError(t, dead.Close()) // nothing listens there now
	sub := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = sub.Close() })
	ctx := context.Background()

	for _, seed := range scheduleSeeds(t, 4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (replay: REALTIME_SCHEDULE_SEED=%d)", seed, seed)
			rng := rand.New(rand.NewPCG(seed, seed))
			tag := fmt.Sprintf("s%d:", seed)

			var mu sync.Mutex
			got := map[string]int{}
			ps := sub.PSubscribe(ctx, tag+"*")
			t.Cleanup(func() { _ = ps.Close() })
			_, err := ps.Receive(ctx)
			require.NoError(t, err)
			go func() {
				for msg := range ps.Channel() {
					mu.Lock()
					got[msg.Payload]++
					mu.Unlock()
				}
			}()

			// The file's settings; a new read timeout needs a new
			// connection, a new outbox bound does not.
			fileURL, readTimeout := srv.URL(), 300
			toml := func(outbox int) string {
				return fmt.Sprintf("[redis]\nurl = %q\nread_timeout = \"%dms\"\nconnect_timeout = \"200ms\"\nreconnect_min = \"10ms\"\nreconnect_max = \"50ms\"\noutbox_events = %d\n",
					fileURL, readTimeout, outbox)
			}
			url := func() string {
				if rng.IntN(4) == 0 {
					return deadURL
				}
				return srv.URL()
			}
			m, file := start(t, toml(5000))
			write := func(s string) { require.NoError(t, os.WriteFile(file, []byte(s), 0o644)) }
			_, _, err = m.On(tag+"*", "probe", OnOptions{})
			require.NoError(t, err)

			var accepted []string
			next := 0
			reload := func() {
				fileURL = url()
				readTimeout++
				write(toml(2000 + rng.IntN(3000)))
				_, err := m.Reload()
				require.NoError(t, err)
			}
			var ops []string
			for step := 0; step < 30; step++ {
				switch op := rng.IntN(12); {
				case op < 4:
					for k := rng.IntN(50); k > 0; k-- {
						p := fmt.Sprint(next)
						next++
						if m.Publish(tag+"m", p) == nil {
							accepted = append(accepted, p)
						}
					}
					ops = append(ops, "publish")
				case op < 6:
					reload()
					ops = append(ops, "reload")
				case op == 6: // the outbox bound only: applied live
					write(toml(2000 + rng.IntN(3000)))
					_, err := m.Reload()
					require.NoError(t, err)
					ops = append(ops, "reload-live")
				case op == 7:
					require.NoError(t, m.Connect(url()))
					ops = append(ops, "connect")
				case op == 8:
					m.Disconnect()
					accepted = nil
					ops = append(ops, "disconnect")
				case op == 9:
					drain(m)
					ops = append(ops, "process")
				case op == 10: // Reload, then Disconnect while it hands over or the old one drains
					reload()
					if rng.IntN(2) == 0 {
						time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
					}
					m.Disconnect()
					accepted = nil
					ops = append(ops, "reload+disconnect")
				default: // Reload, then Connect during its handover
					reload()
					if rng.IntN(2) == 0 {
						time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
					}
					require.NoError(t, m.Connect(url()))
					ops = append(ops, "reload+connect")
				}
				if rng.IntN(3) == 0 {
					time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
				}
			}
			t.Logf("schedule: %v", ops)

			require.NoError(t, m.Connect(srv.URL()))
			probed := false
			deadline := time.Now().Add(30 * time.Second)
			for !probed && time.Now().Before(deadline) {
				require.NoError(t, sub.Publish(ctx, tag+"probe", "p").Err())
				for _, d := range drain(m) {
					if d.Event.Kind == router.KindMessage && d.Event.Channel == tag+"probe" {
						probed = true
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
			require.True(t, probed, "no event routed after the last Connect; status %s; schedule %v", m.Status(), ops)

			var lost []string
			for time.Now().Before(deadline) {
				lost = lost[:0]
				mu.Lock()
				for _, p := range accepted {
					if got[p] == 0 {
						lost = append(lost, p)
					}
				}
				mu.Unlock()
				if len(lost) == 0 {
					break
				}
				drain(m)
				time.Sleep(10 * time.Millisecond)
			}
			assert.Empty(t, lost, "accepted by Publish since the last Disconnect, never at Redis (publish_failed %d); schedule %v",
				m.Router().Stats.PublishFails.Load(), ops)
		})
	}
}
