package redisbus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRefusedSubscriptionIsRetriedAfterTheACLAllowsIt (found by an
// attacker of issue 12): Redis does not drop a connection when an ACL
// grants it more, so a route refused once stayed without events on the
// live connection after the operator fixed the ACL (a Reload changed
// nothing either: the plan was the same). A refused subscription is sent
// again every reconnect_max while the connection lives, and the refusal
// is logged once, not at every attempt.
func TestRefusedSubscriptionIsRetriedAfterTheACLAllowsIt(t *testing.T) {
	srv, admin := aclServer(t)
	ctx := context.Background()
	h, logs := startLogged(t, gameConfig(srv, `
[[routes]]
name = "kills"
channel = "game:kill"
handler = "h"
[[routes]]
name = "admin"
pattern = "admin:*"
handler = "h"
`))
	h.waitStatus("connected")
	require.Eventually(t, func() bool { return h.r.Table().Route("admin").Stats.Refused() != "" }, 5*time.Second, 10*time.Millisecond)
	// Several retry intervals (reconnect_max is 500ms) pass while refused.
	h.waitFor("a few refused retries", 10*time.Second, func() bool {
		return h.bus.Stats.Resubscribed.Load() >= 3
	})
	assert.Equal(t, 1, countLines(logs, `Redis refused the subscription to pattern "admin:*"`), "logged once: %v", logs.all())

	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "game", "&admin:*").Err())
	h.waitFor("admin events without a reconnect", 15*time.Second, func() bool {
		admin.Publish(ctx, "admin:x", "y")
		return slicesContains(h.msgs, "admin<-admin:x=y")
	})
	assert.Empty(t, h.r.Table().Route("admin").Stats.Refused())
	assert.Equal(t, []string{"connecting", "connected"}, h.statuses, "never reconnected")
	admin.Publish(ctx, "game:kill", "k")
	h.waitFor("the other route still", 10*time.Second, func() bool { return slicesContains(h.msgs, "kills<-game:kill=k") })
}

func countLines(l *logLines, sub string) int {
	n := 0
	for _, line := range l.all() {
		if strings.Contains(line, sub) {
			n++
		}
	}
	return n
}
