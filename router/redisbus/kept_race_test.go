package redisbus

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// offRefusingSink refuses its first entry after removing the stream from
// its reader, as realtime.Off does when it runs while the reader offers:
// the router's table no longer has the route, so DeliverEntry refuses.
type offRefusingSink struct {
	r    atomic.Pointer[StreamReader]
	once sync.Once
	err  error
	done chan struct{}
}

func (s *offRefusingSink) Entry(Entry) bool {
	s.once.Do(func() {
		s.err = s.r.Load().Update(nil) // the route removed under the offer
		close(s.done)
	})
	return false
}

func (s *offRefusingSink) StreamEvent(string, string, string) {}

// TestStreamRemovedWhileOffered: the stream's route is removed (Update
// without it) while the reader offers an entry it has just read, and the
// sink then refuses it (no route). Redis counted that read, no handler saw
// it: the next reader of the stream sharing the Kept (realtime.Connect
// after realtime.Disconnect) must deliver it uncounted, not dead-letter it
// at max_deliveries = 1. The refused entry was held by the removed stream
// after stopStream had moved its held entries to the Kept.
func TestStreamRemovedWhileOffered(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	spec := []StreamSpec{{Stream: "off", Group: "g", Start: "0", MaxDeliveries: 1}}
	kept := NewKept()
	hook := &offRefusingSink{done: make(chan struct{})}
	r1 := startReader(t, srv.Addr(), "srv1", nil, hook, StreamOptions{Kept: kept})
	hook.r.Store(r1)
	require.NoError(t, r1.Update(spec))
	id := xadd(t, c, "off", "data", "1")
	select {
	case <-hook.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the entry was never offered")
	}
	require.NoError(t, hook.err)
	r1.Close()

	sink := newChanSink(16)
	r2 := startReader(t, srv.Addr(), "srv1", spec, sink, StreamOptions{Kept: kept})
	waitUntil(t, "the entry delivered or dead-lettered", 10*time.Second, func() bool {
		return len(sink.ch) > 0 || len(deadEntries(t, c, "off")) > 0
	})
	require.Empty(t, deadEntries(t, c, "off"), "dead-lettered at its first counted delivery, never handled")
	e := recv(t, sink, 10*time.Second)
	require.Equal(t, id, e.ID)
	assert.Equal(t, int64(1), e.Deliveries, "the read no handler saw is not counted")
	r2.Ack(e.Stream, e.Group, e.ID)
	waitUntil(t, "acknowledged", 10*time.Second, func() bool { return pendingCount(c, "off", "g") == 0 })
	assert.Empty(t, deadEntries(t, c, "off"))
}

// TestStreamKeptSurvivesFailedClaim: the re-read of a pending entry kept
// uncounted (read by a reader whose stream went before any handler saw
// it) fails at its XCLAIM (here an ACL without XCLAIM; a lost connection
// does the same). The kept count must survive for the next try: the entry
// is delivered once XCLAIM works, its delivery not counted, instead of
// being dead-lettered unhandled at max_deliveries = 1 by the next re-read.
func TestStreamKeptSurvivesFailedClaim(t *testing.T) {
	srv, admin := aclServer(t, "-xclaim")
	ctx := context.Background()
	spec := StreamSpec{Stream: "kc", Group: "g", Start: "0", MaxDeliveries: 1}
	id := xadd(t, admin, "kc", "data", "1")
	require.NoError(t, admin.XGroupCreate(ctx, "kc", "g", "0").Err())
	// the read no handler saw: Redis counts a delivery
	require.NoError(t, admin.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "srv1", Streams: []string{"kc", ">"}, Count: 1}).Err())
	kept := NewKept()
	kept.keep(spec.key(), id, 1)

	sink := newChanSink(16)
	cfg := streamConfig(srv.Addr())
	cfg.URL = "redis://game:pw@" + srv.Addr()
	r, err := NewStreamReader(cfg, StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, Kept: kept, Logf: t.Logf}, []StreamSpec{spec}, sink)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); r.Wait() })
	waitUntil(t, "the refused XCLAIM reported", 10*time.Second, func() bool { return sink.hasEvent("error kc") })
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "game", "+xclaim").Err())
	waitUntil(t, "the entry delivered or dead-lettered", 10*time.Second, func() bool {
		return len(sink.ch) > 0 || len(deadEntries(t, admin, "kc")) > 0
	})
	require.Empty(t, deadEntries(t, admin, "kc"), "dead-lettered at its first counted delivery, never handled")
	e := recv(t, sink, 10*time.Second)
	require.Equal(t, id, e.ID)
	assert.Equal(t, int64(1), e.Deliveries, "the read no handler saw is not counted")
}

// TestStreamRequeueSurvivesRefusedClaim: an entry given back uncounted
// (Requeue: pushed out of the queue, no handler saw it) whose re-offer's
// XCLAIM is refused (an ACL without XCLAIM) stays pending with its
// delivery uncounted: the next reader (sharing the Kept) delivers it once
// XCLAIM works, instead of dead-lettering it unhandled at max_deliveries = 1.
func TestStreamRequeueSurvivesRefusedClaim(t *testing.T) {
	srv, admin := aclServer(t, "-xclaim")
	ctx := context.Background()
	spec := []StreamSpec{{Stream: "rq", Group: "g", Start: "0", MaxDeliveries: 1}}
	cfg := streamConfig(srv.Addr())
	cfg.URL = "redis://game:pw@" + srv.Addr()
	kept := NewKept()
	open := func(sink StreamSink) *StreamReader {
		r, err := NewStreamReader(cfg, StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, RetryDelay: 20 * time.Millisecond, Kept: kept, Logf: t.Logf}, spec, sink)
		require.NoError(t, err)
		t.Cleanup(func() { r.Close(); r.Wait() })
		return r
	}
	sink := newChanSink(16)
	r1 := open(sink)
	id := xadd(t, admin, "rq", "data", "1")
	e := recv(t, sink, 10*time.Second)
	require.Equal(t, id, e.ID)
	r1.Requeue(e.Stream, e.Group, e.ID)
	waitUntil(t, "the refused re-offer dropped from the in-flight set", 10*time.Second, func() bool { return r1.Stats()["rq"].InFlight == 0 })
	r1.Close()
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "game", "+xclaim").Err())

	sink2 := newChanSink(16)
	open(sink2)
	waitUntil(t, "the entry delivered or dead-lettered", 10*time.Second, func() bool {
		return len(sink2.ch) > 0 || len(deadEntries(t, admin, "rq")) > 0
	})
	require.Empty(t, deadEntries(t, admin, "rq"), "dead-lettered at its first counted delivery, never handled")
	e = recv(t, sink2, 10*time.Second)
	require.Equal(t, id, e.ID)
	assert.Equal(t, int64(1), e.Deliveries, "the requeued delivery is not counted")
}
