package redisbus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRefusalClearedByAReloadToAnotherUser: a route whose subscription the
// user game may not make is marked refused. A Reload to the user boss,
// who may, replaces the connection (HandOver + Replace, as module/api's
// reconnect does); the new connection subscribes and the route gets its
// events, so it must no longer be reported refused.
func TestRefusalClearedByAReloadToAnotherUser(t *testing.T) {
	srv, admin := aclServer(t)
	ctx := context.Background()
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "boss", "on", ">bosspw", "allchannels", "~*", "+@all").Err())
	const routes = "[[routes]]\nname = \"secret\"\nchannel = \"admin:secret\"\nhandler = \"h\"\n"
	h, _ := startLogged(t, gameConfig(srv, routes))
	h.waitStatus("connected")
	require.Eventually(t, func() bool { return h.r.Table().Route("secret").Stats.Refused() != "" }, 5*time.Second, 10*time.Millisecond)

	next, err := New(redisConfig(t, fmt.Sprintf("[redis]\nurl = \"redis://boss:bosspw@%s\"\nread_timeout = \"300ms\"\nreconnect_min = \"50ms\"\n", srv.Addr())))
	require.NoError(t, err)
	h.bus.HandOver(next)
	h.r.Replace(next)
	h.waitFor("the route's event over the new connection", 10*time.Second, func() bool {
		admin.Publish(ctx, "admin:secret", "x")
		return slicesContains(h.msgs, "secret<-admin:secret=x")
	})
	assert.Empty(t, h.r.Table().Route("secret").Stats.Refused(), "the route gets its events, yet is still reported refused")
}
