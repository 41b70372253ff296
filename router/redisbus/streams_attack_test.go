package redisbus

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestStreamDeadLetterRefused: when Redis refuses the copy to
// "<stream>:dead" (here a key of another type in its place: WRONGTYPE; an
// ACL user without rights on it gets NOPERM), the entry must not be
// acknowledged, or it is gone: neither handled nor in the dead letters. It
// stays pending, and is dead-lettered once the key can be written.
func TestStreamDeadLetterRefused(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "cmds:dead", "not a stream", 0).Err())
	sink := newChanSink(16)
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "cmds", Group: "g", Start: "0", MaxDeliveries: 2}}, sink, StreamOptions{})
	bad := xadd(t, c, "cmds", "data", "{not json")
	failing := xadd(t, c, "cmds", "data", "1")

	e := recv(t, sink, 10*time.Second)
	require.Equal(t, bad, e.ID)
	r.Dead(e.Stream, e.Group, e.ID, "not JSON")
	for i := 0; i < 2; i++ {
		e = recv(t, sink, 10*time.Second)
		require.Equal(t, failing, e.ID)
		r.Nack(e.Stream, e.Group, e.ID)
	}
	waitUntil(t, "the reader to report the dead letters", 10*time.Second, func() bool {
		return sink.hasEvent("dead cmds") || sink.hasEvent("error cmds")
	})
	assert.Equal(t, int64(2), pendingCount(c, "cmds", "g"), "entries acknowledged while their dead letter could not be written: lost (events %v)", sink.events)

	require.NoError(t, c.Del(ctx, "cmds:dead").Err())
	waitUntil(t, "the dead letters once the key can be written", 10*time.Second, func() bool {
		return len(deadEntries(t, c, "cmds")) == 2 && pendingCount(c, "cmds", "g") == 0
	})
	var src []string
	for _, d := range deadEntries(t, c, "cmds") {
		src = append(src, atkField(d.fields, "rt_source_id"))
	}
	assert.ElementsMatch(t, []string{bad, failing}, src)
}

// TestStreamAckRefused: an ACL user that may read the group but not XACK
// gets NOPERM for every acknowledgement: the entries stay pending in
// Redis and come back after a restart. That must not pass silently as
// acknowledged: it is reported as a stream error.
func TestStreamAckRefused(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	require.NoError(t, c.Do(ctx, "acl", "setuser", "rt", "on", ">pw", "~*", "&*", "+@all", "-xack").Err())
	sink := newChanSink(16)
	cfg := streamConfig(srv.Addr())
	cfg.URL = "redis://rt:pw@" + srv.Addr()
	r, err := NewStreamReader(cfg, StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, Logf: t.Logf},
		[]StreamSpec{{Stream: "cmds", Group: "g", Start: "0", MaxDeliveries: 3}}, sink)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); r.Wait() })
	xadd(t, c, "cmds", "data", "1")
	e := recv(t, sink, 10*time.Second)
	r.Ack(e.Stream, e.Group, e.ID)
	waitUntil(t, "the reader to settle the entry", 10*time.Second, func() bool { return r.Stats()["cmds"].InFlight == 0 })
	assert.Equal(t, int64(1), pendingCount(c, "cmds", "g"))
	assert.True(t, sink.hasEvent("error cmds"), "XACK refused, and nothing said: events %v", sink.events)
	assert.Zero(t, r.Stats()["cmds"].Acked, "counted as acknowledged")
}

// TestStreamWrongType: a key of another type under the stream's name is
// reported (WRONGTYPE) and read again once it is a stream.
func TestStreamWrongType(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "cmds", "not a stream", 0).Err())
	sink := newChanSink(16)
	startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "cmds", Group: "g", Start: "0", MaxDeliveries: 3}}, sink, StreamOptions{})
	waitUntil(t, "the reader to report the wrong type", 10*time.Second, func() bool { return sink.hasEvent("error cmds WRONGTYPE") })
	require.NoError(t, c.Del(ctx, "cmds").Err())
	id := xadd(t, c, "cmds", "data", "1")
	e := recv(t, sink, 10*time.Second)
	assert.Equal(t, id, e.ID)
}

// atkField returns the value of field name in pairs.
func atkField(pairs []string, name string) string {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] == name {
			return pairs[i+1]
		}
	}
	return ""
}
