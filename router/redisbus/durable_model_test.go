package redisbus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router"
	"github.com/gmod-realtime/realtime/router/spool"
)

// TestAppendFaultModel runs random schedules (seeds printed; replay one
// with REDISBUS_FAULT_SEED=n) of appends to two streams interleaved with
// Redis stopped and resumed (SIGSTOP: the connection times out, appends
// go to the spool), connections cut mid-pipeline by a proxy (fault plans
// as TestFaultProxyRounds'), reloads that hand the outbox over to a new
// bus, and gmod13_close's Persist. The reference model is the list of
// rt_ids Append returned, per stream. Once the faults stop, a consumer
// that drops copies by rt_id (a sequence not above the highest seen)
// sees exactly that list on each stream: every entry, once, in order; the
// spool ends empty and the router's counts match.
func TestAppendFaultModel(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	for _, seed := range faultSeeds(t, 4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (replay: REDISBUS_FAULT_SEED=%d)", seed, seed)
			rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
			prefix := "m" + strconv.FormatUint(seed%1e6, 10) + ":"
			streams := []string{prefix + "a", prefix + "b"}
			p := startProxy(t, srv.Addr(), randomFaults(rand.New(rand.NewPCG(seed, 7)), 6))

			sp, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{ServerID: "srv", Logf: t.Logf})
			require.NoError(t, err)
			t.Cleanup(func() { _ = sp.Close() })
			d := NewDurable("srv", sp, nil)
			cfg, err := config.Parse("t.toml", []byte(fmt.Sprintf(
				"[redis]\nurl = \"redis://%s\"\nread_timeout = \"200ms\"\nwrite_timeout = \"200ms\"\nreconnect_min = \"20ms\"\nreconnect_max = \"200ms\"\noutbox_events = %d\n",
				p.Addr(), 20+rng.IntN(300))))
			require.NoError(t, err)
			r, err := router.New(cfg)
			require.NoError(t, err)
			newBus := func() *Bus {
				b, err := New(cfg.Redis)
				require.NoError(t, err)
				b.SetDurable(d)
				return b
			}
			bus := newBus()
			r.Attach(bus)
			t.Cleanup(func() { _ = r.Close() })

			state := func() string {
				d.mu.Lock()
				q, sp2 := d.queued, d.spooling
				d.mu.Unlock()
				return fmt.Sprintf("queued %d spooling %v spool %+v; bus live %v down %v preds %d outbox %d gens %d/%d writing %v",
					q, sp2, sp.Stats(), bus.live.Load(), bus.down.Load(), bus.preds.Load(), bus.OutboxLen(),
					bus.doneGen.Load(), bus.wantGen.Load(), bus.writing.Load())
			}
			wait := func(what string, cond func() bool) {
				t.Helper()
				deadline := time.Now().Add(30 * time.Second)
				for !cond() {
					if time.Now().After(deadline) {
						t.Fatalf("seed %d: timed out waiting for %s: %s", seed, what, state())
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			var logMu sync.Mutex
			var sendLog []string
			logSend := func(b *Bus, path string, ids []string) {
				logMu.Lock()
				sendLog = append(sendLog, fmt.Sprintf("%s %p %s %v", time.Now().Format("05.000000"), b, path, ids))
				logMu.Unlock()
			}
			debugSend.Store(&logSend)
			t.Cleanup(func() { debugSend.Store(nil) })
			want := map[string][]string{}
			paused, appended := false, 0
			for step := range 40 {
				switch op := rng.IntN(11); {
				case op < 5:
					logMu.Lock()
					sendLog = append(sendLog, fmt.Sprintf("step %d append", step))
					logMu.Unlock()
					s := streams[rng.IntN(2)]
					for range 1 + rng.IntN(60) {
						id, err := r.Append(s, fmt.Sprintf("%d", appended))
						require.NoError(t, err, "step %d", step)
						want[s] = append(want[s], id)
						appended++
					}
				case op == 5 && !paused:
					logMu.Lock()
					sendLog = append(sendLog, fmt.Sprintf("%s step %d pause", time.Now().Format("05.000000"), step))
					logMu.Unlock()
					srv.Pause()
					paused = true
					if rng.IntN(2) == 0 { // until the outage is reported: appends go to the spool
						waitUntil(t, "the outage reported", 10*time.Second, bus.down.Load)
					}
				case op == 6 && paused:
					logMu.Lock()
					sendLog = append(sendLog, fmt.Sprintf("%s step %d resume", time.Now().Format("05.000000"), step))
					logMu.Unlock()
					srv.Resume()
					paused = false
				case op == 7:
					logMu.Lock()
					sendLog = append(sendLog, fmt.Sprintf("%s step %d cut", time.Now().Format("05.000000"), step))
					logMu.Unlock()
					p.cut()
				case op == 8: // Reload with new [redis] settings
					logMu.Lock()
					sendLog = append(sendLog, fmt.Sprintf("%s step %d handover", time.Now().Format("05.000000"), step))
					logMu.Unlock()
					next := newBus()
					bus.HandOver(next)
					r.Replace(next)
					bus = next
				case op == 9: // gmod13_close
					logMu.Lock()
					sendLog = append(sendLog, fmt.Sprintf("%s step %d persist", time.Now().Format("05.000000"), step))
					logMu.Unlock()
					bus.Persist()
					require.NoError(t, sp.Sync())
				case op == 10 && !paused: // Redis back for good: appends go through the outbox again
					wait("connected with the spool flushed", func() bool {
						return bus.live.Load() && !d.Spooling()
					})
				}
			}
			if paused {
				srv.Resume()
			}
			p.heal()
			for _, s := range streams {
				deadline := time.Now().Add(30 * time.Second)
				for {
					ids, _, _ := entries(t, c, s)
					if len(ids) == len(want[s]) {
						break
					}
					if time.Now().After(deadline) {
						xs, _ := c.XRange(context.Background(), s, "-", "+").Result()
						var raw []string
						for _, x := range xs {
							raw = append(raw, fmt.Sprint(x.Values["rt_id"]))
						}
						logMu.Lock()
						for _, l := range sendLog {
							fmt.Fprintln(os.Stderr, "SEND", l)
						}
						logMu.Unlock()
						t.Fatalf("seed %d: stream %s: %d of %d entries after dedupe: %s\nwant %v\nraw  %v", seed, s, len(ids), len(want[s]), state(), want[s], raw)
					}
					time.Sleep(5 * time.Millisecond)
				}
				ids, data, dups := entries(t, c, s)
				require.Equal(t, want[s], ids, "stream %s: every entry once after dropping %d copies, in order (seed %d)", s, dups, seed)
				require.Len(t, data, len(ids))
				t.Logf("%s: %d entries, %d copies dropped", s, len(ids), dups)
			}
			waitUntil(t, "the spool empty and spooling over", 10*time.Second, func() bool {
				return sp.Stats().Depth == 0 && !d.Spooling()
			})
			t.Logf("%d appended, %d through the spool", appended, sp.Stats().Added)
			require.Equal(t, uint64(appended), r.Stats.Appended.Load())
			require.Zero(t, r.Stats.AppendFails.Load())
			require.Zero(t, sp.Stats().Dropped())
			require.Zero(t, d.Lost())
		})
	}
}
