package router

import (
	"sort"

	"github.com/gmod-realtime/realtime/router/pattern"
)

// Backend carries events between this server and the others: Redis, or the
// in-process local bus. Every method is safe for concurrent use and returns
// without waiting on the network. A new backend (say PostgreSQL
// LISTEN/NOTIFY) implements this interface and touches nothing else.
type Backend interface {
	// Start begins delivering to sink with the given plan. It is called
	// once, before any other method.
	Start(sink Sink, plan Plan)
	// Update applies a plan change on the live connection.
	Update(diff PlanDiff)
	// Publish queues payload for channel; it fails only when the outbox is
	// full or the backend is closed.
	Publish(channel, payload string) error
	// Append queues payload as a new entry of stream (XADD with the fields
	// "data" and "rt_id") and returns the entry's rt_id, "<server
	// id>-<sequence>"; it fails only when the entry can be neither queued
	// nor spooled, or the backend cannot append (closed, no streams).
	Append(stream, payload string) (string, error)
	// Close stops the backend's goroutines. It is idempotent and never
	// waits long: a hung connection is abandoned, not joined.
	Close() error
}

// Sink receives what a backend reads. The router implements it; its methods
// are safe for concurrent use and never block.
type Sink interface {
	// Deliver hands over one message published to channel.
	Deliver(channel, payload string)
	// SetStatus reports a connection status change; reason says why for
	// StatusDisconnected.
	SetStatus(s Status, reason string)
	// Drop counts a message the backend dropped before delivering it
	// (reason is one of the Drop* reasons).
	Drop(reason string)
	// PublishFailed counts a published message that is dropped, never
	// retried: the server refused it (an ACL denial, say), or it could
	// not be sent. reason says which, as "refused by the server: " and
	// the server's error, or "not sent: " and why.
	PublishFailed(channel, reason string)
	// SubscribeRefused reports that the server refused the subscription
	// to a channel (or pattern), with its reason; reason "" says a refused
	// subscription is now in place or gone. The routes it serves get no
	// events meanwhile; the others are unaffected.
	SubscribeRefused(name string, isPattern bool, reason string)
	// Discarded counts n published messages the backend accepted and
	// will never send: it was closed (realtime.Disconnect) with them
	// waiting, and handed them to no successor. It counts however late
	// the closed backend reports it.
	Discarded(n int)
}

// Status is a backend's connection state.
type Status int32

// Connection states, as realtime.Status() names them.
const (
	StatusDisconnected Status = iota
	StatusConnecting
	StatusConnected
	StatusLocal
)

func (s Status) String() string {
	switch s {
	case StatusConnecting:
		return "connecting"
	case StatusConnected:
		return "connected"
	case StatusLocal:
		return "local"
	}
	return "disconnected"
}

// Active is the set of subscriptions one connection has confirmed. Redis
// sends a message once per matching subscription (a SUBSCRIBE and every
// matching PSUBSCRIBE); Owns picks exactly one of those copies, so every
// route still gets each event once. Update it in the order the connection
// reads confirmations, from the reading goroutine only.
type Active struct {
	channels map[string]bool
	patterns []*pattern.Pattern // sorted by source
	// owner caches, by channel, the source of the first pattern matching
	// it ("" for none): Redis sends one copy per matching pattern, so
	// without it each message would cost patterns x patterns matches.
	owner map[string]string
}

// ownerCacheMax bounds the owner cache; past it, it starts over. Channel
// names longer than ownerCacheName bytes are not cached, so that the cache
// holds at most ownerCacheMax * ownerCacheName bytes of names: anyone who
// may publish can send names of any length (Redis takes up to 512 MB).
const (
	ownerCacheMax  = 4096
	ownerCacheName = 512
)

// NewActive returns an empty set.
func NewActive() *Active { return &Active{channels: map[string]bool{}, owner: map[string]string{}} }

// AddChannel and the others below record a confirmed (un)subscription.
func (a *Active) AddChannel(ch string) { a.channels[ch] = true }

// RemoveChannel records a confirmed UNSUBSCRIBE.
func (a *Active) RemoveChannel(ch string) { delete(a.channels, ch) }

// AddPattern records a confirmed PSUBSCRIBE.
func (a *Active) AddPattern(src string) {
	i := sort.Search(len(a.patterns), func(i int) bool { return a.patterns[i].String() >= src })
	if i < len(a.patterns) && a.patterns[i].String() == src {
		return
	}
	p, err := pattern.Compile(src)
	if err != nil {
		// Only a covering or route pattern is ever subscribed; both compile.
		return
	}
	a.patterns = append(a.patterns, nil)
	copy(a.patterns[i+1:], a.patterns[i:])
	a.patterns[i] = p
	clear(a.owner)
}

// RemovePattern records a confirmed PUNSUBSCRIBE.
func (a *Active) RemovePattern(src string) {
	i := sort.Search(len(a.patterns), func(i int) bool { return a.patterns[i].String() >= src })
	if i < len(a.patterns) && a.patterns[i].String() == src {
		a.patterns = append(a.patterns[:i], a.patterns[i+1:]...)
		clear(a.owner)
	}
}

// Owns reports whether the copy of a message on channel that arrived via
// subscription pat ("" for a SUBSCRIBE) is the one to deliver: the channel
// subscription if there is one, else the first matching pattern. A copy via
// a subscription no longer active (a late message) is never owned.
func (a *Active) Owns(pat, channel string) bool {
	if pat == "" {
		return a.channels[channel]
	}
	if a.channels[channel] {
		return false
	}
	owner, ok := a.owner[channel]
	if !ok {
		for _, p := range a.patterns {
			if p.Match(channel) {
				owner = p.String()
				break
			}
		}
		if len(channel) <= ownerCacheName {
			if len(a.owner) >= ownerCacheMax {
				clear(a.owner)
			}
			a.owner[channel] = owner
		}
	}
	return owner != "" && owner == pat
}
