package router

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sinkBackend keeps the sink it is started with.
type sinkBackend struct{ sink Sink }

func (b *sinkBackend) Start(s Sink, _ Plan)                  { b.sink = s }
func (b *sinkBackend) Update(PlanDiff)                       {}
func (b *sinkBackend) Publish(string, string) error          { return nil }
func (b *sinkBackend) Append(string, string) (string, error) { return "srv-1", nil }
func (b *sinkBackend) Close() error                          { return nil }

// TestRefusedSubscriptionMarksTheRoutesItServes: a refused channel marks
// its route, a refused covering pattern every route under it, and a later
// success clears the mark; the log line names the routes, not the others.
func TestRefusedSubscriptionMarksTheRoutesItServes(t *testing.T) {
	var lines []string
	var toml strings.Builder
	toml.WriteString("[redis]\nmax_subscriptions = 3\n")
	for _, rt := range []struct{ name, key, value string }{
		{"spawn", "channel", "player:spawn"}, {"death", "pattern", "player:death:*"},
		{"chat", "channel", "chat:msg"}, {"admin", "channel", "admin:x"},
	} {
		fmt.Fprintf(&toml, "[[routes]]\nname = %q\n%s = %q\nhandler = \"h\"\n", rt.name, rt.key, rt.value)
	}
	r, err := New(parseConfig(t, toml.String()), WithLog(func(_, line string) { lines = append(lines, line) }))
	require.NoError(t, err)
	b := &sinkBackend{}
	r.Attach(b)
	plan := r.Plan()
	require.Contains(t, plan.Patterns, "player:*", "the player routes share a covering pattern: %+v", plan)

	refused := func() map[string]string {
		m := map[string]string{}
		for _, rt := range r.Table().Routes() {
			if why := rt.Stats.Refused(); why != "" {
				m[rt.Name] = why
			}
		}
		return m
	}
	b.sink.SubscribeRefused("player:*", true, "NOPERM no")
	assert.Equal(t, map[string]string{"spawn": "NOPERM no", "death": "NOPERM no"}, refused())
	require.NotEmpty(t, lines)
	assert.Contains(t, lines[len(lines)-1], `"player:*"`)
	assert.Contains(t, lines[len(lines)-1], `["spawn" "death"]`)
	// The routes it covered subscribe on their own (an ACL may allow
	// their channels and not the pattern); the backend's confirmation
	// that the pattern is gone clears the marks.
	plan = r.Plan()
	assert.Equal(t, []string{"player:death:*"}, plan.Patterns)
	assert.Contains(t, plan.Channels, "player:spawn")
	b.sink.SubscribeRefused("player:*", true, "")
	assert.Empty(t, refused())

	// A refused exact channel marks only its route, also across a reload
	// that keeps the route; a newer backend starts with no marks.
	b.sink.SubscribeRefused("chat:msg", false, "NOPERM chat")
	assert.Equal(t, map[string]string{"chat": "NOPERM chat"}, refused())
	sum, err := r.Apply(parseConfig(t, "[[routes]]\nname = \"chat\"\nchannel = \"chat:msg\"\nhandler = \"h\"\n"))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"chat": "NOPERM chat"}, refused())
	assert.Equal(t, []string{"chat"}, sum.Refused, "a reload reports the routes Redis refuses")
	assert.Contains(t, sum.String(), `Redis refuses the subscriptions of routes ["chat"]`)
	r.Attach(&sinkBackend{})
	assert.Empty(t, refused())
}

// TestLogLinesShowChannelNamesEscapedAndShort: a channel name from the
// network reaches a log line escaped and cut, however long.
func TestLogLinesShowChannelNamesEscapedAndShort(t *testing.T) {
	var lines []string
	r, err := New(parseConfig(t, "[queue]\nmax_payload = \"10B\"\n"), WithLog(func(_, line string) { lines = append(lines, line) }))
	require.NoError(t, err)
	r.Deliver("evil\n\x1b[31m"+strings.Repeat("x", 100_000), strings.Repeat("p", 20))
	require.Len(t, lines, 1)
	assert.NotContains(t, lines[0], "\n")
	assert.NotContains(t, lines[0], "\x1b")
	assert.Less(t, len(lines[0]), 400)
	assert.Contains(t, lines[0], `"evil\n\x1b[31mxxx`)
	assert.Contains(t, lines[0], "(100010 bytes)")
}

// closingBackend is a sinkBackend that records Close.
type closingBackend struct {
	sinkBackend
	closed bool
}

func (b *closingBackend) Close() error { b.closed = true; return nil }

// connectedRouter is a router with one route, "a", attached to a backend
// that is connected.
func connectedRouter(t *testing.T) (*Router, *closingBackend) {
	r, err := New(parseConfig(t, "[[routes]]\nname = \"a\"\nchannel = \"a\"\nhandler = \"h\"\n"))
	require.NoError(t, err)
	old := &closingBackend{}
	r.Attach(old)
	old.sink.SetStatus(StatusConnected, "")
	return r, old
}

// TestReplaceHandsOverOnConnect: the replacing backend's messages and
// statuses wait until it is connected; the old one delivers until then and
// is closed then; a Replace of a Replace that never connected closes it.
func TestReplaceHandsOverOnConnect(t *testing.T) {
	r, old := connectedRouter(t)

	slow := &closingBackend{}
	r.Replace(slow)
	slow.sink.SetStatus(StatusConnecting, "")
	next := &closingBackend{}
	r.Replace(next)
	assert.True(t, slow.closed, "the replacement that never connected is dropped")
	assert.False(t, old.closed)

	next.sink.Deliver("a", "early") // before it is connected: not used
	old.sink.Deliver("a", "old")
	assert.Equal(t, StatusConnected, r.Status())
	next.sink.SetStatus(StatusConnected, "")
	assert.True(t, old.closed)
	old.sink.Deliver("a", "late") // after the handover: ignored
	next.sink.Deliver("a", "new")
	assert.Equal(t, []string{"connected", "old", "new"}, drained(r), "one connected status, no disconnect")
	assert.Same(t, next, r.Backend())
}

// TestReplaceThatFailsIsReported: when the replacing backend's connection
// fails, the router does not keep the old one up behind Lua's back (its
// publishes already go to the new one): the old one is closed and the
// failure is the status; the new one goes on retrying.
func TestReplaceThatFailsIsReported(t *testing.T) {
	r, old := connectedRouter(t)
	failed := &closingBackend{}
	r.Replace(failed)
	failed.sink.SetStatus(StatusConnecting, "")
	assert.False(t, old.closed, "still connecting: the old one delivers")
	failed.sink.SetStatus(StatusDisconnected, "auth")
	assert.True(t, old.closed, "failed: the old one is closed")
	assert.Equal(t, StatusDisconnected, r.Status())
	failed.sink.SetStatus(StatusConnected, "") // its retry worked
	failed.sink.Deliver("a", "after")
	assert.Equal(t, []string{"connected", "disconnected", "connected", "after"}, drained(r))
}

// drained drains r: messages' payloads and statuses' names.
func drained(r *Router) []string {
	var got []string
	r.Drain(100, 0, func(e *Event) {
		if e.Kind == KindMessage {
			got = append(got, e.Payload)
		} else {
			got = append(got, e.Status.String())
		}
	})
	return got
}

// drainingBackend is a closingBackend that drains on request.
type drainingBackend struct {
	closingBackend
	done func()
}

func (b *drainingBackend) Drain(done func()) { b.done = done }

// TestReplaceDrainsTheOldBackend: a replaced backend that can drain still
// delivers what it had read after its successor connected, until it has
// drained; it is closed then.
func TestReplaceDrainsTheOldBackend(t *testing.T) {
	r, err := New(parseConfig(t, "[[routes]]\nname = \"a\"\nchannel = \"a\"\nhandler = \"h\"\n"))
	require.NoError(t, err)
	old := &drainingBackend{}
	r.Attach(old)
	next := &closingBackend{}
	r.Replace(next)
	next.sink.SetStatus(StatusConnected, "")
	require.NotNil(t, old.done, "asked to drain")
	assert.False(t, old.closed)
	old.sink.Deliver("a", "backlog")
	old.sink.SetStatus(StatusDisconnected, "x") // not its status to report any more
	old.done()
	assert.True(t, old.closed)
	old.sink.Deliver("a", "after")
	var got []string
	r.Drain(100, 0, func(e *Event) {
		if e.Kind == KindMessage {
			got = append(got, e.Payload)
		} else {
			got = append(got, e.Status.String())
		}
	})
	assert.Equal(t, []string{"connected", "backlog"}, got)
}

// TestRefusedPatternMarksOnlyTheRoutesItCarries (found by an attacker of
// issue 12): routes "players" (player:*) and "deaths" (player:death:*)
// each have their own subscription; Redis refusing player:* (an ACL that
// allows only player:death:*) marked "deaths" refused too, and the log
// line said it got no events, while its own subscription delivered them.
// Only a covering pattern carries the events of the routes under it.
func TestRefusedPatternMarksOnlyTheRoutesItCarries(t *testing.T) {
	var lines []string
	r, err := New(parseConfig(t, "[[routes]]\nname = \"players\"\npattern = \"player:*\"\nhandler = \"h\"\n"+
		"[[routes]]\nname = \"deaths\"\npattern = \"player:death:*\"\nhandler = \"h\"\n"),
		WithLog(func(_, line string) { lines = append(lines, line) }))
	require.NoError(t, err)
	b := &sinkBackend{}
	r.Attach(b)
	require.Equal(t, []string{"player:*", "player:death:*"}, r.Plan().Patterns)
	b.sink.SubscribeRefused("player:*", true, "NOPERM no")
	assert.Equal(t, "NOPERM no", r.Table().Route("players").Stats.Refused())
	assert.Empty(t, r.Table().Route("deaths").Stats.Refused(), "deaths has its own subscription")
	require.NotEmpty(t, lines)
	assert.Contains(t, lines[len(lines)-1], `routes ["players"] get no events`)
}
