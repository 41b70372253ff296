package redisbus

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestStreamBusyModel drives a stream reader over random seeds (printed;
// replay one with REDISBUS_FAULT_SEED=n) while Redis answers BUSY at
// random to the commands of the worker (XACK, XCLAIM, XPENDING,
// XAUTOCLAIM, XRANGE, TYPE, XINFO; the reader's own XPENDING and XCLAIM
// look the same to the proxy and meet it too), through a sink that
// refuses when full, a handler acking, nacking, requeuing or
// dead-lettering at random, with max_deliveries and the claim loop on.
// A reference model checks that no entry is handed out after its Ack,
// that deliveries never go backwards (a Nack's next hand-out counts one
// more, a Requeue's the same), and, once the faults stop, that every
// entry is acknowledged or dead-lettered, exactly once, as the model
// says, the figures agreeing.
func TestStreamBusyModel(t *testing.T) {
	for _, seed := range faultSeeds(t, 3) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (replay: REDISBUS_FAULT_SEED=%d)", seed, seed)
			busyModelRound(t, seed)
		})
	}
}

func busyModelRound(t *testing.T, seed uint64) {
	srv := redistest.Start(t)
	c := client(t, srv)
	var faulty atomic.Bool
	faulty.Store(true)
	var fmu sync.Mutex
	inMulti := false
	frng := rand.New(rand.NewPCG(seed, 1))
	episode := 0 // commands still to answer BUSY
	var injected atomic.Int32
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		fmu.Lock()
		defer fmu.Unlock()
		switch strings.ToLower(args[0]) {
		case "multi":
			// Inside a transaction Redis answers BUSY as it queues (EXEC
			// then discards it whole), never from EXEC's run: an EVAL
			// put in there would run beside the others.
			inMulti = true
			return nil
		case "exec", "discard":
			inMulti = false
			return nil
		case "xack":
			if inMulti { // only the worker sends MULTI, XACK
				return nil
			}
		case "xclaim", "xpending", "xautoclaim", "xrange", "type", "xinfo":
		default:
			return nil
		}
		if !faulty.Load() {
			return nil
		}
		if episode == 0 && frng.IntN(15) == 0 {
			episode = 1 + frng.IntN(8) // Redis busy for a while: the next commands
		}
		busy := episode > 0
		if busy {
			episode--
		}
		if busy {
			injected.Add(1)
			return busyInstead
		}
		return nil
	})
	const n, maxDeliveries = 30, 3
	sink := newChanSink(4)
	r := startReader(t, addr, "srv1", []StreamSpec{{Stream: "s", Group: "g", Start: "0", MaxDeliveries: maxDeliveries, ClaimAfter: 400 * time.Millisecond}}, sink, StreamOptions{RetryDelay: 20 * time.Millisecond})
	for i := range n {
		xadd(t, c, "s", "n", strconv.Itoa(i))
	}

	// The model: by id, what the handler did last and with which count.
	type state struct {
		last       string // "", "ack", "nack", "requeue", "dead"
		deliveries int64
		handed     int
	}
	model := map[string]*state{}
	done := 0 // entries settled for good (acked, or dead by Dead or Nack at the last try)
	hrng := rand.New(rand.NewPCG(seed, 2))
	deadline := time.Now().Add(30 * time.Second)
	for done < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d entries settled within 30s (%d BUSY injected); stats %+v", done, n, injected.Load(), r.Stats()["s"])
		}
		var e Entry
		select {
		case e = <-sink.ch:
		case <-time.After(100 * time.Millisecond):
			continue
		}
		st := model[e.ID]
		if st == nil {
			st = &state{}
			model[e.ID] = st
		}
		switch st.last {
		case "ack", "dead":
			t.Fatalf("%s handed out (deliveries=%d) after its %s", e.ID, e.Deliveries, st.last)
		case "nack":
			require.Equal(t, st.deliveries+1, e.Deliveries, "%s: deliveries after a Nack", e.ID)
		case "requeue":
			require.Equal(t, st.deliveries, e.Deliveries, "%s: deliveries after a Requeue", e.ID)
		default:
			require.Equal(t, int64(1), e.Deliveries, "%s: first delivery", e.ID)
		}
		st.deliveries = e.Deliveries
		st.handed++
		switch x := hrng.IntN(20); {
		case x < 11:
			st.last = "ack"
			r.Ack(e.Stream, e.Group, e.ID)
			done++
		case x < 16:
			st.last = "nack"
			if e.Deliveries >= maxDeliveries {
				st.last = "dead"
				done++
			}
			r.Nack(e.Stream, e.Group, e.ID)
		case x < 19:
			st.last = "requeue"
			r.Requeue(e.Stream, e.Group, e.ID)
		default:
			st.last = "dead"
			r.Dead(e.Stream, e.Group, e.ID, "malformed")
			done++
		}
	}
	faulty.Store(false)
	var acked, dead int
	for _, st := range model {
		switch st.last {
		case "ack":
			acked++
		case "dead":
			dead++
		}
	}
	t.Logf("%d BUSY injected; %d acked, %d dead", injected.Load(), acked, dead)
	for end := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st := r.Stats()["s"]
		p := pendingCount(c, "s", "g")
		if p == 0 && st.Acked == uint64(acked) && st.Dead == uint64(dead) {
			break
		}
		if time.Now().After(end) {
			pend, _ := c.XPendingExt(t.Context(), &redis.XPendingExtArgs{Stream: "s", Group: "g", Start: "-", End: "+", Count: 100}).Result()
			for _, x := range pend {
				t.Logf("pending %s deliveries=%d model=%+v", x.ID, x.RetryCount, *model[x.ID])
			}
			for _, d := range deadEntries(t, c, "s") {
				t.Logf("dead letter %v", d.fields)
			}
			for id, st := range model {
				t.Logf("model %s %+v", id, *st)
			}
			t.Logf("events %v", sink.events)
			t.Fatalf("not settled within 15s: pending %d, stats %+v, want acked %d dead %d", p, st, acked, dead)
		}
	}
	letters := map[string]int{}
	for _, d := range deadEntries(t, c, "s") {
		letters[fieldValue(d.fields, "rt_source_id")]++
	}
	for id, st := range model {
		want := 0
		if st.last == "dead" {
			want = 1
		}
		assert.Equal(t, want, letters[id], "%s's dead letters (last: %s)", id, st.last)
	}
	assert.Len(t, letters, dead)
	assert.Empty(t, sink.ch, "handed out after the end")
	st := r.Stats()["s"]
	assert.Zero(t, st.Gone)
	assert.Zero(t, st.InFlight)
}
