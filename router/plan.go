package router

import (
	"slices"
	"sort"
	"strings"

	"github.com/gmod-realtime/realtime/router/pattern"
)

// Plan is the set of Redis subscriptions that covers a route table:
// SUBSCRIBE channels and PSUBSCRIBE patterns, each sorted. It may cover more
// channels than the routes take (see BuildPlan); the router filters locally.
type Plan struct {
	Channels []string
	Patterns []string
	// Streams are the stream routes' streams, read by Consumer (the
	// server id) in their groups.
	Streams  []StreamPlan
	Consumer string
}

// Len is the number of subscriptions.
func (p Plan) Len() int { return len(p.Channels) + len(p.Patterns) }

// PlanDiff is what changes between two plans.
type PlanDiff struct {
	Subscribe, Unsubscribe   []string // channels
	PSubscribe, PUnsubscribe []string // patterns
	// Streams, when StreamsChanged, are all the streams to read now, with
	// Consumer.
	Streams        []StreamPlan
	Consumer       string
	StreamsChanged bool
}

// Empty reports whether the diff changes nothing.
func (d PlanDiff) Empty() bool {
	return len(d.Subscribe)+len(d.Unsubscribe)+len(d.PSubscribe)+len(d.PUnsubscribe) == 0 && !d.StreamsChanged
}

// Diff returns what turns old into new.
func Diff(old, new Plan) PlanDiff {
	return PlanDiff{
		Subscribe:    minus(new.Channels, old.Channels),
		Unsubscribe:  minus(old.Channels, new.Channels),
		PSubscribe:   minus(new.Patterns, old.Patterns),
		PUnsubscribe: minus(old.Patterns, new.Patterns),
		Streams:      new.Streams, Consumer: new.Consumer,
		StreamsChanged: !slices.Equal(old.Streams, new.Streams) || old.Consumer != new.Consumer,
	}
}

// Apply returns p changed by d (a diff from Diff, whose lists are sorted).
func (p Plan) Apply(d PlanDiff) Plan {
	out := Plan{
		Channels: union(minus(p.Channels, d.Unsubscribe), d.Subscribe),
		Patterns: union(minus(p.Patterns, d.PUnsubscribe), d.PSubscribe),
		Streams:  p.Streams, Consumer: p.Consumer,
	}
	if d.StreamsChanged {
		out.Streams, out.Consumer = d.Streams, d.Consumer
	}
	return out
}

func union(a, b []string) []string {
	out := append(append([]string(nil), a...), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// minus returns a without the members of b; b must be sorted.
func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if _, found := slices.BinarySearch(b, s); !found {
			out = append(out, s)
		}
	}
	return out
}

type planItem struct {
	sub    string // the channel or pattern as subscribed
	prefix string // literal bytes every matching channel starts with
	exact  bool   // a channel, not a pattern
	keep   bool   // never covered: keeps its own subscription
}

// BuildPlan returns the subscriptions covering routes. Literal patterns are
// subscribed as channels. When there would be more than max subscriptions,
// routes that share a literal prefix are covered by one `prefix*` pattern,
// using the longest prefixes that fit (Redis spends time on every PUBLISH
// for every pattern subscribed on the server), but never by `*`: routes
// whose pattern starts with a wildcard keep their own, and the plan may
// then exceed max (see Router's warning).
func BuildPlan(routes []*Route, limit int) Plan { return buildPlan(routes, limit, nil) }

// buildPlan is BuildPlan where no route whose literal prefix starts with
// one of uncovered is covered: it keeps its own subscription (a covering
// pattern there was refused by Redis).
func buildPlan(routes []*Route, limit int, uncovered map[string]bool) Plan {
	seen := map[string]bool{}
	var items []planItem
	for _, r := range routes {
		if r.def.Stream != "" {
			continue
		}
		var it planItem
		if r.match.IsLiteral() {
			it = planItem{sub: r.match.Literal(), prefix: r.match.Literal(), exact: true}
		} else {
			it = planItem{sub: r.match.String(), prefix: r.match.Prefix()}
		}
		key := it.sub
		if it.exact {
			key = "c:" + key
		} else {
			key = "p:" + key
		}
		if !seen[key] {
			seen[key] = true
			for p := range uncovered {
				if strings.HasPrefix(it.prefix, p) {
					it.keep = true
				}
			}
			items = append(items, it)
		}
	}
	if len(items) > max(limit, 1) {
		items = cover(items, max(limit, 1))
	}
	var p Plan
	for _, it := range items {
		if it.exact {
			p.Channels = append(p.Channels, it.sub)
		} else {
			p.Patterns = append(p.Patterns, it.sub)
		}
	}
	sort.Strings(p.Channels)
	sort.Strings(p.Patterns)
	return p
}

// cover groups items by their first d prefix bytes, for the largest d that
// leaves at most max groups. A group of one keeps its own subscription, and
// so does every item with no literal prefix (a pattern that starts with a
// wildcard): covering those would take `*`, every channel of the Redis
// server, keyspace notifications included; as does an item marked keep. When even one-byte prefixes
// leave more than max groups, it returns those groups, over the bound.
//
// The number of groups only grows with d, so d is found by bisection, each
// step counting groups from the neighbours' common prefixes in sorted
// order: a registration's cost does not grow with the longest prefix (a
// 100 KB channel name took seconds per call when d was tried one by one).
func cover(items []planItem, limit int) []planItem {
	fixed := 0
	var prefixes []string
	for _, it := range items {
		if it.prefix == "" || it.keep {
			fixed++
		} else {
			prefixes = append(prefixes, it.prefix)
		}
	}
	if len(prefixes) == 0 {
		return items
	}
	sort.Strings(prefixes)
	common := make([]int, len(prefixes)-1) // common prefix length of neighbours
	longest := len(prefixes[len(prefixes)-1])
	for i := range common {
		a, b := prefixes[i], prefixes[i+1]
		n := 0
		for n < len(a) && n < len(b) && a[n] == b[n] {
			n++
		}
		common[i] = n
		longest = max(longest, len(a))
	}
	// groups is the number of distinct d-byte prefixes: neighbours in sorted
	// order fall in one group when their prefixes cut to d bytes are equal
	groups := func(d int) int {
		n := 1
		for i, c := range common {
			la, lb := min(d, len(prefixes[i])), min(d, len(prefixes[i+1]))
			if la != lb || c < la {
				n++
			}
		}
		return n
	}
	lo, hi := 1, longest // the largest d in [1, longest] within limit, else 1
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if fixed+groups(mid) <= limit {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return group(items, lo)
}

// group is cover's output for prefixes cut to d bytes: the items that keep
// their own subscription, then one item per group, in the order the groups
// first appear.
func group(items []planItem, d int) []planItem {
	groups := map[string][]planItem{}
	var order []string
	var out []planItem
	for _, it := range items {
		if it.prefix == "" || it.keep {
			out = append(out, it)
			continue
		}
		k := it.prefix[:min(d, len(it.prefix))]
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], it)
	}
	for _, k := range order {
		if g := groups[k]; len(g) == 1 {
			out = append(out, g[0])
		} else {
			out = append(out, planItem{sub: pattern.Quote(k) + "*", prefix: k})
		}
	}
	return out
}
