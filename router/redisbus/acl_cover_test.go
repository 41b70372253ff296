package redisbus

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestACLUserPastMaxSubscriptions (found by an attacker of issue 12): an
// ACL user allowed game:* (`resetchannels &game:*`) with more routes than
// max_subscriptions, on channels it may each use. The plan covered them
// with one `game:chat:*` pattern, which Redis refuses (it checks
// PSUBSCRIBE patterns literally against the ACL), so none of the routes
// got an event although SUBSCRIBE to each channel is allowed. A refused
// covering pattern must give way to the routes' own subscriptions.
func TestACLUserPastMaxSubscriptions(t *testing.T) {
	srv, admin := aclServer(t)
	var toml strings.Builder
	toml.WriteString("max_subscriptions = 4\n")
	for i := range 6 {
		fmt.Fprintf(&toml, "[[routes]]\nname = \"chat%d\"\nchannel = \"game:chat:%d\"\nhandler = \"h\"\n", i, i)
	}
	h, _ := startLogged(t, gameConfig(srv, toml.String()))
	h.waitStatus("connected")
	ctx := context.Background()
	for i := range 6 {
		ch := fmt.Sprintf("game:chat:%d", i)
		h.waitFor(ch, 10*time.Second, func() bool {
			admin.Publish(ctx, ch, "x")
			return slicesContains(h.msgs, fmt.Sprintf("chat%d<-%s=x", i, ch))
		})
	}
	for i := range 6 {
		assert.Empty(t, h.r.Table().Route(fmt.Sprintf("chat%d", i)).Stats.Refused())
	}
	require.Equal(t, []string{"connecting", "connected"}, h.statuses, "no reconnect")
}
