package router

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
)

// TestFailedApplyLeavesLimitsAlone: an Apply that fails (here on a route
// defined twice, after the changed route) changes nothing, not even the
// rate limit of a route it had got to.
func TestFailedApplyLeavesLimitsAlone(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r, err := New(parseConfig(t, "[[routes]]\nname = \"a\"\nchannel = \"a\"\nhandler = \"h\"\nrate = \"10/s\"\nburst = 1\n"), WithClock(c.now))
	require.NoError(t, err)
	r.Deliver("a", "x") // the bucket is empty now

	cfg := parseConfig(t, "[[routes]]\nname = \"a\"\nchannel = \"a\"\nhandler = \"h\"\nrate = \"1000/s\"\nburst = 1000\n")
	cfg.Routes = append(cfg.Routes, cfg.Routes[0])
	_, err = r.Apply(cfg)
	require.ErrorContains(t, err, "defined twice")

	c.add(100 * time.Millisecond) // 1 token at 10/s; 100 at 1000/s
	for i := 0; i < 5; i++ {
		r.Deliver("a", "x")
	}
	assert.Len(t, drainAll(r), 2, "the first message, and one more at 10/s")
	assert.Equal(t, uint64(4), r.Table().Route("a").Stats.RateLimited.Load())
}

// TestReloadKeepsTokensAcrossARateChange: a successful reload that changes
// a route's rate keeps what its bucket had spent.
func TestReloadKeepsTokensAcrossARateChange(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r, err := New(parseConfig(t, "[[routes]]\nname = \"a\"\nchannel = \"a\"\nhandler = \"h\"\nrate = \"1/s\"\nburst = 3\n"), WithClock(c.now))
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		r.Deliver("a", "x")
	}
	_, err = r.Apply(parseConfig(t, "[[routes]]\nname = \"a\"\nchannel = \"a\"\nhandler = \"h\"\nrate = \"2/s\"\nburst = 5\n"))
	require.NoError(t, err)
	r.Deliver("a", "x")
	assert.Len(t, drainAll(r), 3, "the bucket stayed empty")
	c.add(time.Second)
	for i := 0; i < 5; i++ {
		r.Deliver("a", "x")
	}
	assert.Len(t, drainAll(r), 2, "2 tokens a second at the new rate")
}

// TestConfigRouteNamedLikeADynamicOne: a config route may not take the
// name of a realtime.On registration; the Apply fails and changes nothing
// (before, the table held two routes of that name, and the config one's
// stats were reset on every reload).
func TestConfigRouteNamedLikeADynamicOne(t *testing.T) {
	r, err := New(parseConfig(t, ""))
	require.NoError(t, err)
	_, err = r.On(config.Route{Name: "dyn", Channel: "d", Handler: "h"})
	require.NoError(t, err)
	_, err = r.Apply(parseConfig(t, "[[routes]]\nname = \"dyn\"\nchannel = \"c\"\nhandler = \"h\"\n"))
	require.ErrorContains(t, err, `route "dyn"`)
	require.Len(t, r.Table().Routes(), 1)
	assert.True(t, r.Table().Routes()[0].Dynamic)
	assert.Equal(t, Plan{Channels: []string{"d"}}, r.Plan())
}
