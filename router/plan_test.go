package router

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/router/pattern"
)

func routesOf(t testing.TB, defs ...config.Route) []*Route {
	var out []*Route
	for i, d := range defs {
		d.Name, d.Handler = fmt.Sprint(i), "h"
		rt, err := compileRoute(d, nil, time.Now(), "")
		require.NoError(t, err)
		out = append(out, rt)
	}
	return out
}

func TestBuildPlanExact(t *testing.T) {
	routes := routesOf(t,
		config.Route{Channel: "chat:message"},
		config.Route{Pattern: "player:*"},
		config.Route{Pattern: "player:*"},   // same pattern: one subscription
		config.Route{Pattern: `round\:end`}, // a literal pattern is a channel
		config.Route{Channel: "weird*name"}, // a channel with glob characters stays a channel
	)
	p := BuildPlan(routes, 64)
	assert.Equal(t, []string{"chat:message", "round:end", "weird*name"}, p.Channels)
	assert.Equal(t, []string{"player:*"}, p.Patterns)
}

func TestBuildPlanCovers(t *testing.T) {
	var defs []config.Route
	for i := 0; i < 30; i++ {
		defs = append(defs, config.Route{Pattern: fmt.Sprintf("game:%d:*", i)})
		defs = append(defs, config.Route{Channel: fmt.Sprintf("chat:%d", i)})
	}
	defs = append(defs, config.Route{Pattern: "admin:[ab]"})
	p := BuildPlan(routesOf(t, defs...), 4)
	assert.LessOrEqual(t, p.Len(), 4)
	assert.Equal(t, []string{"admin:[ab]", "chat:*", "game:*"}, p.Patterns)

	p = BuildPlan(routesOf(t, defs...), 1)
	assert.Equal(t, Plan{Patterns: []string{"admin:[ab]", "c*", "g*"}}, p, "one-byte prefixes at the widest, never *")
}

// TestBuildPlanNeverSubscribesToEverything: routes whose patterns start
// with a wildcard keep their own patterns rather than merge into `*`, and
// the channels beside them are still covered by prefixes.
func TestBuildPlanNeverSubscribesToEverything(t *testing.T) {
	defs := []config.Route{{Pattern: "*:death"}, {Pattern: "*:spawn"}}
	for i := 0; i < 63; i++ {
		defs = append(defs, config.Route{Channel: fmt.Sprintf("ch:%d", i)})
	}
	p := BuildPlan(routesOf(t, defs...), 64)
	assert.LessOrEqual(t, p.Len(), 64)
	assert.NotContains(t, p.Patterns, "*")
	assert.Subset(t, p.Patterns, []string{"*:death", "*:spawn"})
	assert.Equal(t, Plan{Patterns: []string{"*:death", "*:spawn", "ch:*"}}, BuildPlan(routesOf(t, defs...), 3))

	p = BuildPlan(routesOf(t, config.Route{Pattern: "*a"}, config.Route{Pattern: "?b"}, config.Route{Pattern: "[xy]c"}), 1)
	assert.Equal(t, Plan{Patterns: []string{"*a", "?b", "[xy]c"}}, p, "over the bound rather than *")
}

// TestPlanCoversEveryRoute: whatever the bound, every channel some route
// takes is matched by a subscription of the plan.
func TestPlanCoversEveryRoute(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alpha := []byte("ab:*?[]\\x")
	word := func() string {
		b := make([]byte, 1+r.IntN(6))
		for i := range b {
			b[i] = alpha[r.IntN(len(alpha))]
		}
		return string(b)
	}
	for round := 0; round < 200; round++ {
		var defs []config.Route
		for len(defs) < 1+r.IntN(40) {
			w := word()
			if r.IntN(2) == 0 {
				defs = append(defs, config.Route{Channel: w})
			} else if _, err := pattern.Compile(w); err == nil {
				defs = append(defs, config.Route{Pattern: w})
			}
		}
		routes := routesOf(t, defs...)
		limit := 1 + r.IntN(10)
		plan := BuildPlan(routes, limit)
		// Over the bound only when even one-byte prefixes cannot meet it:
		// the routes without a literal prefix, plus one per first byte.
		least, firsts := 0, map[byte]bool{}
		for _, rt := range routes {
			if p := rt.match.Prefix(); p == "" {
				least++
			} else if !firsts[p[0]] {
				firsts[p[0]] = true
				least++
			}
		}
		require.LessOrEqual(t, plan.Len(), max(limit, least))
		for _, p := range plan.Patterns {
			wild := false
			for _, rt := range routes {
				wild = wild || rt.Pattern() == p
			}
			require.True(t, wild || pattern.MustCompile(p).Prefix() != "", "%q is wider than any route", p)
		}
		var subs []*pattern.Pattern
		for _, c := range plan.Channels {
			subs = append(subs, pattern.MustCompile(pattern.Quote(c)))
		}
		for _, p := range plan.Patterns {
			subs = append(subs, pattern.MustCompile(p))
		}
		for i := 0; i < 300; i++ {
			ch := word()
			for _, rt := range routes {
				if !rt.Matches(ch) {
					continue
				}
				covered := false
				for _, s := range subs {
					covered = covered || s.Match(ch)
				}
				require.True(t, covered, "channel %q of route %q not covered by %+v", ch, rt.Pattern(), plan)
			}
		}
	}
}

func TestDiff(t *testing.T) {
	d := Diff(Plan{Channels: []string{"a", "b"}, Patterns: []string{"x*"}},
		Plan{Channels: []string{"b", "c"}, Patterns: []string{"y*"}})
	assert.Equal(t, PlanDiff{Subscribe: []string{"c"}, Unsubscribe: []string{"a"},
		PSubscribe: []string{"y*"}, PUnsubscribe: []string{"x*"}}, d)
	assert.True(t, Diff(Plan{}, Plan{}).Empty())
}

func TestPlanApply(t *testing.T) {
	old := Plan{Channels: []string{"a", "b"}, Patterns: []string{"x*"}}
	new := Plan{Channels: []string{"b", "c"}, Patterns: []string{"y*"}}
	assert.Equal(t, new, old.Apply(Diff(old, new)))
}
