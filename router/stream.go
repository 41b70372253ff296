package router

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gmod-realtime/realtime/config"
)

// StreamPlan is one stream a backend reads for a stream route: the stream,
// its consumer group (server id filled in) and the route's settings.
type StreamPlan struct {
	Stream, Group string
	Start         string // where a new group starts: "$" or "0"
	MaxDeliveries int64
	ClaimAfter    time.Duration
}

// StreamEntry is one entry a backend read from a stream route's group:
// its id, its fields (name, value, ...) and how often the group delivered
// it, this time included.
type StreamEntry struct {
	Stream, Group, ID string
	Fields            []string
	Deliveries        int64
	// Received is when the backend read it (one clock read for a whole
	// reply); zero: when DeliverEntry is called.
	Received time.Time
}

// Settler settles stream entries once their handler ran: a backend with
// stream routes implements it. Every method returns at once. SettleMany
// compares Settlers (==) to group outcomes: implement it on a pointer.
type Settler interface {
	// Ack acknowledges the entry: its handler returned.
	Ack(stream, group, id string)
	// Nack leaves the entry pending: it is delivered again later, until
	// its route's max_deliveries.
	Nack(stream, group, id string)
	// Dead moves the entry to "<stream>:dead" at once (it cannot be
	// decoded, so delivering it again would fail again).
	Dead(stream, group, id, reason string)
	// Release leaves the entry pending, to be offered again later, as
	// Nack does, but no handler saw it (it was pushed out of the full
	// queue): not a failed delivery, so it does not count towards
	// max_deliveries.
	Release(stream, group, id string)
}

// EntrySink is a Sink that takes stream entries: the router's sinks are.
type EntrySink interface {
	// DeliverEntry hands over an entry read from a stream route's group;
	// false leaves it pending, to be offered again later. s settles it.
	DeliverEntry(e StreamEntry, s Settler) bool
	// StreamEvent reports "dead" (detail: "<id> deliveries=<n>"),
	// "discarded" (local mode: dead, and no dead-letter stream; detail
	// "" after the first),
	// "nogroup" (the group was recreated), "error" or "log" (a line to
	// log) about stream (or "" for the reader as a whole).
	StreamEvent(stream, kind, detail string)
}

func (s *sink) DeliverEntry(e StreamEntry, st Settler) bool {
	return s.r.deliverEntry(e, st, s)
}

func (s *sink) StreamEvent(stream, kind, detail string) {
	if s.delivering() || s.current() {
		s.r.streamEvent(stream, kind, detail)
	}
}

// streamEvent counts and logs what a backend's stream reader reports.
func (r *Router) streamEvent(stream, kind, detail string) {
	switch kind {
	case "dead":
		r.Stats.DeadLettered.Add(1)
		r.Logf("warn", "stream %s: moved to %s: entry %s", quoteName(stream), quoteName(stream+":dead"), detail)
	case "discarded":
		// local mode: no dead-letter stream to move it to; logged once
		r.Stats.DeadLettered.Add(1)
		if detail != "" {
			r.Logf("warn", "stream %s: entry %s discarded after its route's max_deliveries (or undecodable): local mode has no dead-letter stream; "+
				"GetStats().dead_lettered counts them (logged once)", quoteName(stream), detail)
		}
	case "nogroup":
		r.Logf("warn", "stream %s: its consumer group was gone (the stream deleted?), made again: %s", quoteName(stream), detail)
	case "error":
		r.Logf("error", "stream %s: %s", quoteName(stream), detail)
	default:
		r.Logf("info", "%s", detail)
	}
}

// entryEvent is a stream entry's Event and its Entry, allocated together.
type entryEvent struct {
	ev Event
	en Entry
}

// entryKey names an entry in flight.
type entryKey struct{ stream, group, id string }

// streamPlan returns the streams of the stream routes, in route order (the
// config rejects two routes reading one stream with one group).
func streamPlan(routes []*Route) []StreamPlan {
	var out []StreamPlan
	for _, r := range routes {
		if r.def.Stream == "" {
			continue
		}
		p := StreamPlan{Stream: r.def.Stream, Group: r.group, Start: r.def.Start, MaxDeliveries: int64(r.def.MaxDeliveries)}
		if !strings.Contains(r.def.Group, config.ServerPlaceholder) {
			// a group other servers may read too: take over what a dead
			// one left pending (this server's own group has one consumer)
			p.ClaimAfter = r.def.ClaimAfter.D()
		}
		out = append(out, p)
	}
	return out
}

// DeliverEntry queues stream entry e for its route's handler, and reports
// whether it took it: false (no route for it, the queue full, the route's
// rate reached) leaves it pending for the backend to offer again later;
// never dropped. An entry already in flight (read again by a new
// connection while it waits for Lua) is taken and not queued twice. An
// entry whose data its route cannot decode is sent to the dead letters.
//
// Once a change that removes the entry's route (Apply, Off) or closes
// the backend (Close) has returned, no entry of it is queued any more:
// it stays pending in its stream for whoever reads that next, instead of
// reaching the main thread with no handler left to take it.
func (r *Router) DeliverEntry(e StreamEntry, s Settler) bool {
	return r.deliverEntry(e, s, nil)
}

// deliverEntry is DeliverEntry for the backend of sink from (nil: any).
func (r *Router) deliverEntry(e StreamEntry, s Settler, from *sink) bool {
	dead, took, queued, dropped := r.queueEntry(e, s, from)
	if dead != "" {
		s.Dead(e.Stream, e.Group, e.ID, dead) // logged when done (StreamEvent "dead")
	}
	if queued {
		r.pushed(dropped)
	}
	return took
}

// queueEntry queues e under r.fence (held for reading), so that a route
// removal or a close waits for it. It returns why e goes to the dead
// letters instead, whether it was taken, whether it was queued, and the
// events its push pushed out of the queue: handled once the fence is let
// go, since releasing an entry takes r.mu, which a route change holds
// while it waits for the fence.
func (r *Router) queueEntry(e StreamEntry, s Settler, from *sink) (dead string, took, queued bool, dropped []*Event) {
	r.fence.RLock()
	defer r.fence.RUnlock()
	if from != nil && !from.delivering() {
		return "", false, false, nil
	}
	now := e.Received
	if now.IsZero() {
		now = r.now()
	}
	rt := r.table.Load().streams[streamKey{e.Stream, e.Group}]
	if rt == nil {
		return "", false, false, nil
	}
	// Taken at once, as it is checked: two readers may offer it together.
	key := entryKey{e.Stream, e.Group, e.ID}
	r.entriesMu.Lock()
	had := len(r.entries)
	r.entries[key] = struct{}{} // one hash look-up: it was there if the map did not grow
	dup := len(r.entries) == had
	r.entriesMu.Unlock()
	if dup {
		return "", true, false, nil
	}
	defer func() {
		if !queued { // refused or dead: not in flight after all
			r.entriesMu.Lock()
			delete(r.entries, key)
			r.entriesMu.Unlock()
		}
	}()
	lim := r.lim.Load()
	both := &entryEvent{ // one allocation for the two
		ev: Event{Kind: KindMessage, Channel: e.Stream, Route: rt, Received: now.UnixNano()},
		en: Entry{ID: e.ID, Group: e.Group, Deliveries: e.Deliveries, settler: s},
	}
	ev := &both.ev
	ev.Entry = &both.en
	payload := 0 // what counts against queue.max_payload
	why := ""
	if rt.Decode == config.DecodeFields {
		ev.JSON = fieldsDoc(e.Fields)
		for _, f := range e.Fields {
			payload += len(f)
		}
	} else {
		var data string
		data, why = entryData(e.Fields)
		payload = len(data)
		switch {
		case why != "" || payload > lim.maxPayload:
		case rt.Decode == config.DecodeRaw:
			ev.Payload = data
		default:
			doc, err := ParseJSON(data, lim.jsonDepth)
			if err != nil {
				why = err.Error()
			}
			ev.Payload, ev.JSON = data, doc
		}
	}
	switch {
	case why != "":
		rt.Stats.DecodeErrors.Add(1)
		r.Stats.DecodeErrors.Add(1)
	case payload > lim.maxPayload || ev.size() > lim.maxBytes:
		// it would never fit: refused, it would stay at the head of
		// its stream and stop every entry after it
		why = fmt.Sprintf("too big: %d bytes, over queue.max_payload (%d bytes) or, decoded, queue.max_bytes (%d bytes)", payload, lim.maxPayload, lim.maxBytes)
	}
	if why != "" {
		return why, true, false, nil
	}
	// ev.size() as Push counts it (JSON tape included): an entry refused
	// here waits in Redis, one Push turns away is a delivery lost
	if r.queue.Pending() >= lim.maxEvents || ev.size()+r.queue.Bytes() > lim.maxBytes {
		return "", false, false, nil
	}
	if !rt.allow(now) {
		return "", false, false, nil
	}
	rt.Stats.Matched.Add(1)
	queued = true
	return "", true, true, r.pushOnly(ev)
}

// entryData is what a raw or json route's handler gets of an entry's
// fields: its "data" field.
func entryData(fields []string) (data, why string) {
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i] == "data" {
			return fields[i+1], ""
		}
	}
	names := make([]string, 0, len(fields)/2)
	for i := 0; i < len(fields); i += 2 {
		names = append(names, strconv.Quote(fields[i]))
	}
	slices.Sort(names)
	switch {
	case len(names) == 0:
		names = []string{"none"}
	case len(names) > 8:
		names = append(names[:8], "...")
	}
	return "", "it has no \"data\" field (its fields: " + strings.Join(names, ", ") + `; decode = "fields" hands a handler all of them)`
}

// fieldsDoc is an entry's fields as a table for a "fields" route, byte
// for byte (a JSON round trip would rewrite invalid UTF-8); a name given
// twice keeps its last value, as a Lua table would.
func fieldsDoc(fields []string) *Doc {
	nodes := make([]Node, 1, 1+len(fields)&^1)
	var bytes int64
	for i := 0; i+1 < len(fields); i += 2 {
		nodes = append(nodes, Node{Kind: KindString, Str: fields[i]}, Node{Kind: KindString, Str: fields[i+1]})
		bytes += int64(len(fields[i]) + len(fields[i+1]))
	}
	nodes[0] = Node{Kind: KindObject, Len: int32(len(nodes) / 2)}
	return &Doc{Nodes: nodes, Bytes: int64(cap(nodes))*nodeSize + bytes}
}

// Settle tells the backend what became of stream entry event e (a no-op
// for other events): acknowledged when its handler returned (ok), left
// pending to be delivered again otherwise.
func (r *Router) Settle(e *Event, ok bool) {
	r.SettleMany([]Settled{{Event: e, OK: ok}})
}

// Release gives back stream entry event e, which never reached a handler
// (its route was removed while it waited, or it was pushed out of the
// queue): offered again, no delivery counted.
func (r *Router) Release(e *Event) {
	r.SettleMany([]Settled{{Event: e, Release: true}})
}

// Settled is what became of a stream entry event, for SettleMany: its
// handler returned (OK), failed (neither), or no handler saw it
// (Release: offered again, no delivery counted).
type Settled struct {
	Event       *Event
	OK, Release bool
}

// Outcome is a Settlement's kind.
type Outcome uint8

const (
	OutcomeAck     Outcome = iota // Settler.Ack
	OutcomeNack                   // Settler.Nack
	OutcomeRelease                // Settler.Release
)

// Settlement is one entry's outcome for a BatchSettler.
type Settlement struct {
	Stream, Group, ID string
	Outcome           Outcome
}

// BatchSettler is a Settler that takes many outcomes in one call, each as
// the matching Ack, Nack or Release would, in order.
type BatchSettler interface {
	Settler
	SettleMany(batch []Settlement)
}

// SettleMany settles stream entry events as Settle and Release would, one
// after the other (events that are not entries are skipped), handing each
// backend its run of outcomes in one call when it is a BatchSettler.
func (r *Router) SettleMany(outs []Settled) {
	n := 0
	r.entriesMu.Lock()
	for _, o := range outs {
		if e := o.Event; e != nil && e.Entry != nil {
			delete(r.entries, entryKey{e.Channel, e.Entry.Group, e.Entry.ID})
			n++
		}
	}
	r.entriesMu.Unlock()
	if n == 0 {
		return
	}
	r.mu.Lock()
	b := r.backend
	r.mu.Unlock()
	attached, _ := b.(Settler)
	run := make([]Settlement, 0, n)
	var cur Settler // the Settler of run
	for _, o := range outs {
		e := o.Event
		if e == nil || e.Entry == nil {
			continue
		}
		s := attached
		if b == nil { // closed (Disconnect): the backend that delivered it settles it late
			s = e.Entry.settler
		}
		if s == nil {
			continue
		}
		if len(run) > 0 && s != cur {
			settleRun(cur, run)
			run = run[:0]
		}
		cur = s
		k := OutcomeNack
		switch {
		case o.Release:
			k = OutcomeRelease
		case o.OK:
			k = OutcomeAck
		}
		run = append(run, Settlement{Stream: e.Channel, Group: e.Entry.Group, ID: e.Entry.ID, Outcome: k})
	}
	if len(run) > 0 {
		settleRun(cur, run)
	}
}

// settleRun hands s its outcomes: in one call, or one by one.
func settleRun(s Settler, run []Settlement) {
	if bs, ok := s.(BatchSettler); ok {
		bs.SettleMany(run)
		return
	}
	for _, x := range run {
		switch x.Outcome {
		case OutcomeRelease:
			s.Release(x.Stream, x.Group, x.ID)
		case OutcomeAck:
			s.Ack(x.Stream, x.Group, x.ID)
		default:
			s.Nack(x.Stream, x.Group, x.ID)
		}
	}
}
