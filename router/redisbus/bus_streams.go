package redisbus

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/gmod-realtime/realtime/router"
)

// The Bus's stream routes: a StreamReader started with the first plan that
// names streams, changed by plan diffs, closed with the Bus. The Bus is
// the router's Settler: Ack, Nack and Dead go to the reader.

type busStreams struct {
	mu       sync.Mutex
	r        *StreamReader
	consumer string
	closed   bool
}

// applyStreams makes the reader read streams as consumer.
func (b *Bus) applyStreams(streams []router.StreamPlan, consumer string) {
	specs := make([]StreamSpec, 0, len(streams))
	for _, s := range streams {
		specs = append(specs, StreamSpec{Stream: s.Stream, Group: s.Group, Start: s.Start, MaxDeliveries: s.MaxDeliveries, ClaimAfter: s.ClaimAfter})
	}
	bs := &b.streams
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.closed {
		return
	}
	if bs.r != nil && len(specs) > 0 && consumer != bs.consumer {
		bs.r.Close()
		bs.r = nil
	}
	if bs.r != nil {
		// With no stream routes left the reader stays, reading nothing:
		// the entries it handed over and Lua has yet to handle are
		// acknowledged through it (closed, they would stay pending and
		// come again if the route came back).
		if err := bs.r.Update(specs); err != nil {
			b.streamEvent("", "error", err.Error())
		}
		return
	}
	if len(specs) == 0 {
		return
	}
	r, err := NewStreamReader(b.cfg, StreamOptions{Consumer: consumer, Logf: b.streamLog, Kept: b.kept, Trim: func() (int64, string) {
		b.durable.learnClock(context.Background(), b.client) // a server that only dead-letters
		return b.durable.trim()
	}}, specs, busEntries{b})
	if err != nil {
		b.streamEvent("", "error", err.Error())
		return
	}
	bs.r, bs.consumer = r, consumer
}

// closeStreams closes the reader; Close calls it.
func (b *Bus) closeStreams() {
	bs := &b.streams
	bs.mu.Lock()
	defer bs.mu.Unlock()
	bs.closed = true
	if bs.r != nil {
		bs.r.Close()
	}
}

func (b *Bus) reader() *StreamReader {
	b.streams.mu.Lock()
	defer b.streams.mu.Unlock()
	return b.streams.r
}

// Ack, Nack and Dead settle an entry (router.Settler); without a reader
// (the routes were removed) the entry stays pending in Redis.
func (b *Bus) Ack(stream, group, id string) {
	if r := b.reader(); r != nil {
		r.Ack(stream, group, id)
	}
}

// Nack leaves the entry pending, to be delivered again.
func (b *Bus) Nack(stream, group, id string) {
	if r := b.reader(); r != nil {
		r.Nack(stream, group, id)
	}
}

// Release leaves the entry pending, to be offered again, without counting
// a failed delivery: no handler saw it (router.Settler).
func (b *Bus) Release(stream, group, id string) {
	if r := b.reader(); r != nil {
		r.Requeue(stream, group, id)
	}
}

// SettleMany settles a batch of entries (router.BatchSettler).
func (b *Bus) SettleMany(batch []router.Settlement) {
	if r := b.reader(); r != nil {
		r.SettleMany(batch)
	}
}

// Dead moves the entry to the stream's dead letters.
func (b *Bus) Dead(stream, group, id, reason string) {
	if r := b.reader(); r != nil {
		r.Dead(stream, group, id, reason)
	}
}

// StreamStats are the reader's figures by stream, nil without stream
// routes.
func (b *Bus) StreamStats() map[string]StreamStats {
	if r := b.reader(); r != nil {
		return r.Stats()
	}
	return nil
}

func (b *Bus) streamLog(format string, args ...any) {
	b.streamEvent("", "log", strings.TrimPrefix(fmt.Sprintf(format, args...), "realtime: "))
}

func (b *Bus) streamEvent(stream, kind, detail string) {
	if s, ok := b.sink.(router.EntrySink); ok {
		s.StreamEvent(stream, kind, detail)
	}
}

// busEntries hands the reader's entries to the router.
type busEntries struct{ b *Bus }

func (e busEntries) Entry(en Entry) bool {
	s, ok := e.b.sink.(router.EntrySink)
	return ok && s.DeliverEntry(router.StreamEntry{Stream: en.Stream, Group: en.Group, ID: en.ID, Fields: en.Fields, Deliveries: en.Deliveries, Received: en.Received}, e.b)
}

func (e busEntries) StreamEvent(stream, kind, detail string) { e.b.streamEvent(stream, kind, detail) }

// SetKept gives b's stream reader a Kept that outlives it (see Kept);
// call it before Start.
func (b *Bus) SetKept(k *Kept) { b.kept = k }
