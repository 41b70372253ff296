package redisbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/router"
)

// StreamSpec is one stream read with a consumer group.
type StreamSpec struct {
	Stream, Group string
	// Start is where a new group starts: "$" (new entries only, the
	// default when empty), "0" (everything the stream keeps) or an id.
	Start string
	// MaxDeliveries is how many times an entry is handed out before it is
	// dead-lettered; 0 means never.
	MaxDeliveries int64
	// ClaimAfter, for shared groups, is the idle time after which an entry
	// another consumer left pending is claimed (XAUTOCLAIM); 0 never claims.
	ClaimAfter time.Duration
}

func (s StreamSpec) key() string { return s.Stream + "\x00" + s.Group }

// Entry is one stream entry handed to the sink.
type Entry struct {
	Stream, Group, ID string
	Fields            []string // field/value pairs, in the entry's order
	// Deliveries is Redis's delivery counter for this entry, this
	// delivery included (1 the first time).
	Deliveries int64
	// Received is when the read loop read it, one clock read for its
	// reply; zero (offered again later, claimed): the sink's clock.
	Received time.Time
}

// StreamSink receives the entries. Its methods are called from the
// reader's goroutines, concurrently (different streams, retries, claims),
// and must not block.
type StreamSink interface {
	// Entry hands e over. false means no room now: the entry stays
	// pending and is offered again later, never dropped.
	Entry(e Entry) bool
	// StreamEvent reports "dead" (detail "<id> deliveries=<n>[ reason]"),
	// "nogroup" (the group was recreated) or "error" (a reason, no
	// secrets), for the caller to count and log.
	StreamEvent(stream, kind, detail string)
}

// StreamOptions are a StreamReader's settings; zero fields take the defaults.
type StreamOptions struct {
	// Consumer is the consumer name in every group: stable per server
	// (server.id), never random, or a restart orphans the pending entries.
	// Required.
	Consumer string
	// Count is the most entries one XREADGROUP returns at first, and
	// the page of a re-read of the pending entries. Default: 100.
	Count int64
	// MaxCount is how far a reader's COUNT of new entries grows: it
	// doubles after a read that came back full and was all taken by the
	// sink (a backlog), up to MaxCount, and falls back to Count when the
	// sink refuses an entry or a read comes back short. Fewer, larger
	// reads cost less per entry; the in-flight bound still applies.
	// Default: 1000 (at least Count).
	MaxCount int64
	// Block is how long one XREADGROUP waits for new entries. Default: 2s.
	Block time.Duration
	// RetryDelay is the wait before a Nacked entry is offered again.
	// Default: 1s.
	RetryDelay time.Duration
	// MaxInFlight bounds the entries in flight per stream. Default: 10000.
	MaxInFlight int
	// Kept, when set, holds the uncounted deliveries across readers (see
	// Kept); default: the reader's own.
	Kept *Kept
	// DedupeField names the field that identifies an entry's content
	// across copies: the spool sends an entry again with the same "rt_id"
	// when a crash came between XADD and its delete. An entry whose value
	// was seen on another entry of the stream among the last DedupeWindow
	// values is acknowledged without being handed out (Duplicates counts
	// them); the window is in memory, filled at start with the values of
	// the stream's last entries (up to 2,000), so that a copy sent after
	// a restart of the reader is dropped too. Default: "rt_id".
	DedupeField string
	// DedupeWindow is how many values the duplicate check remembers per
	// stream. Default: 10000; negative turns the check off.
	DedupeWindow int
	// Trim gives the trimming of the dead-letter streams' XADDs: MAXLEN ~
	// maxLen when maxLen > 0, else MINID ~ minID when minID != "" (the
	// durable appends' [streams] max_len or retention); nil: none.
	Trim func() (maxLen int64, minID string)
	// Logf logs; nil logs nothing.
	Logf func(format string, args ...any)
}

// StreamStats are one stream's figures.
type StreamStats struct {
	Stream, Group string
	Delivered     uint64 // entries the sink accepted (re-deliveries included)
	Acked         uint64 // entries acknowledged on Redis
	Retried       uint64 // Nacks that led to a retry
	Dead          uint64 // entries dead-lettered
	Refused       uint64 // offers the sink refused (offered again later)
	Claimed       uint64 // entries taken over from other consumers
	Gone          uint64 // pending entries deleted from the stream before delivery (acked)
	Duplicates    uint64 // copies dropped by the duplicate check (acked)
	NoGroup       uint64 // groups recreated after NOGROUP
	InFlight      int    // entries in the in-flight set now
	Pending       int64  // the group's pending entries (XPENDING), -1 before known
	Lag           int64  // entries not yet read by the group (XINFO GROUPS), -1 unknown
}

// flight is the state of one entry in the in-flight set.
type flight struct {
	state      flightState
	deliveries int64
	at         time.Time // stRetry: when to offer it again
	reason     string    // stDead
	requeued   bool      // stRetry: no handler saw it; its delivery count is kept
	tried      bool      // stDead: a transaction was sent and its reply lost
}

type flightState uint8

const (
	stSink    flightState = iota // with the sink
	stHeld                       // refused by the sink: in held, offered again
	stAck                        // Acked: XACK queued or in flight
	stRetry                      // Nacked: offered again at .at
	stDead                       // to dead-letter
	stRequeue                    // Requeue's argument to settle: stRetry, no delivery counted
	// stClaiming: being claimed, by the reader's pending re-read or the
	// worker's claim loop, not offered yet: neither takes it again (both
	// would count a delivery, and the second offer could come after the
	// first was acknowledged), and the claimer's offer replaces it.
	stClaiming
)

// stream is the reader's state for one StreamSpec.
type stream struct {
	key string

	mu      sync.Mutex
	spec    StreamSpec
	tracked map[string]*flight // the in-flight set; written by track only
	// top is the highest id ever put in tracked: an id above it is not
	// there, without a look-up
	top  string
	acks []string // ids in stAck not yet sent
	// spareAcks: a sent acks list, emptied, for acks once it is taken
	spareAcks []string
	deads     []string      // ids in stDead not yet carried out
	retries   []string      // ids in stRetry, in the order of .at
	held      []Entry       // refused by the sink, in order
	heldWait  time.Duration // the re-offer pace while refused
	heldNext  time.Time
	lastID    string // the highest id read, where a lost group is recreated
	removed   bool   // by Update: no more reads; goes once nothing is in flight
	// ackFailing: the last XACK was refused (reported once a streak)
	ackFailing bool
	// deadNext: a dead letter was refused; the next try not before then
	deadNext time.Time
	client   redis.UniversalClient
	stop     chan struct{} // closed to stop the reader goroutine

	room chan struct{} // the in-flight set shrank or held drained

	delivered, acked, retried, dead, refused, claimed, gone, nogroup atomic.Uint64
	duplicates                                                       atomic.Uint64
	claimPasses                                                      atomic.Uint64 // XAUTOCLAIM passes done
	pending, lag                                                     atomic.Int64

	// The duplicate check's window: DedupeField value -> the entry id that
	// carried it first, and the values in the order seen (a ring).
	seen      map[string]string
	seenOrder []string
	seenNext  int

	reread atomic.Bool // Release: re-read the pending entries

	// The worker's own timers; only the worker touches them.
	nextKeep, nextClaim, nextStats time.Time
	claimCursor                    string
	lastRefusal                    string // the last error reply reported by refused
	// notNowAt is when the stream is serviced again after Redis answered
	// one of its commands "not now" (its node LOADING, a slot down),
	// notNowFails the answers in a row: the other streams go on.
	notNowAt    time.Time
	notNowFails int
}

// StreamReader reads Redis Streams with consumer groups, at least once.
//
// Each stream (a StreamSpec: stream + group) has a reader goroutine with a
// client of its own, since XREADGROUP BLOCK holds its connection. It
// creates the group (XGROUP CREATE ... MKSTREAM at Start; BUSYGROUP is
// fine), re-reads the consumer's own pending entries, then reads new ones
// (XREADGROUP ... COUNT n BLOCK t STREAMS s ">"), a BLOCK timeout being
// "nothing yet". After any connection error it backs off (reconnect_min ..
// reconnect_max, with jitter) and starts over with the pending entries.
// After NOGROUP (the stream or the group was deleted under the live group)
// it recreates the group at the last id it read (Start if none, so entries
// added since the deletion are delivered), reports StreamEvent "nogroup"
// and logs it.
//
// Pending entries are re-read by listing them (XPENDING ... consumer) and
// taking them again (XCLAIM to ourselves), not with XREADGROUP ... 0: that
// would also re-deliver, and count a delivery of, every entry the sink
// still holds. The reader keeps an in-flight set: every entry handed to
// the sink (or held after the sink refused it) until its Ack, Nack or Dead
// has been carried out on Redis. An entry in it is never offered again by
// a re-read, and a reconnect does not lose it.
//
// A worker goroutine (one per StreamReader, on a second client) does
// everything else: XACK in one pipeline per pass (many ids per stream),
// the re-offer of Nacked entries after RetryDelay (XCLAIM to ourselves,
// which counts a delivery; Entry.Deliveries is Redis's delivery counter,
// read with XPENDING), dead-lettering, the re-offer of entries the sink
// refused (from memory, 2ms after progress, doubling to 200ms while it
// accepts nothing: no delivery is counted for a refusal), and for shared groups
// (ClaimAfter > 0) the claim loop: XAUTOCLAIM of entries idle longer than
// ClaimAfter (a dead server's), and an idle reset (XCLAIM ... JUSTID to
// ourselves) of every entry in our in-flight set at ClaimAfter/4, so that
// no other server claims what waits in our queue. Un-sent acks survive a
// lost connection and go out after it; an ack lost with the connection
// after Redis applied it is sent again, which is harmless.
//
// Dead-lettering: an entry whose handler failed MaxDeliveries times (on
// Nack, or found pending with that many deliveries), or that the sink
// declared malformed (Dead), is copied to "<stream>:dead" (its fields,
// then rt_source_id, rt_deliveries and, for Dead, rt_reason) and
// acknowledged; StreamEvent "dead" reports "<id> deliveries=<n>". The copy
// and the XACK go in one MULTI, so a retry after a lost reply writes the
// copy once (in a Cluster the two keys may be on different nodes: XADD,
// then XACK, and a lost reply can write it twice). A copy Redis refuses
// (an ACL without the dead-letter stream) leaves the entry pending and is
// reported as "error".
//
// Order: a stream's entries are offered in stream order, refused ones
// included; retried and claimed entries come when they are due.
//
// Commands used (for an ACL user): XGROUP CREATE, XREADGROUP, XPENDING,
// XCLAIM, XAUTOCLAIM (shared groups), XACK, XRANGE, XADD and MULTI/EXEC
// (dead letters), XINFO GROUPS (Lag). Also used where allowed: XREVRANGE
// (the duplicate check's window across restarts) and TYPE (a key of
// another type where the dead letters go is reported).
//
// Bounds: at most MaxInFlight entries per stream are in flight; the reader
// stops reading while that many are, or while the sink refuses, so
// entries wait in Redis (pending or unread), never in memory. The ack,
// retry and dead-letter lists hold in-flight ids only, so they are bounded
// by the same figure and Ack/Nack/Dead never need to drop or block: they
// take a mutex held only for map updates, never across the network.
//
// Close returns at once: the readers' clients are closed in the
// background, and the worker sends the acks and dead letters it holds in one
// last pass (bounded by write_timeout + read_timeout, sent again within
// it while Redis answers BUSY or LOADING) before closing its own. Acks that come later (a handler that returns after Disconnect or a
// map change) are sent in the background on a short-lived client of
// their own (lateAcks); Nacks and dead letters after Close leave the entry
// pending. An entry acked by a closed reader whose pipeline has not
// reached Redis yet (Redis unreachable) can be delivered again to a new
// reader: at-least-once.
//
// Release forgets what the sink holds (its queue was cleared as the Lua
// state closed): those entries are re-read from the pending list, as after
// a reconnect, instead of waiting for a restart.
//
// Delivery is at least once: an entry comes back after a crash, a lost
// ack, or a claim by another server, and Entry.ID lets a handler drop a
// duplicate. Copies of one entry appended twice by the spool (same
// "rt_id", different stream ids) are dropped by the reader itself within
// a window of recent values (StreamOptions.DedupeField).
//
// Safe for concurrent use; Ack, Nack, Dead, Release, Update, Stats and
// Close never wait on the network.
type StreamReader struct {
	cfg  config.Redis
	opt  StreamOptions
	sink StreamSink
	cmd  redis.UniversalClient // the worker's

	mu      sync.Mutex
	streams map[string]*stream
	kept    *Kept // StreamOptions.Kept, or the reader's own

	wake    chan struct{}
	done    chan struct{}
	closing sync.Once
	wg      sync.WaitGroup

	// late: a goroutine sends the acks that come after Close (lateAcks);
	// lateDone is broadcast when it stops.
	lateMu   sync.Mutex
	late     bool
	lateDone *sync.Cond
}

// NewStreamReader validates the specs and starts reading them.
func NewStreamReader(c config.Redis, o StreamOptions, specs []StreamSpec, sink StreamSink) (*StreamReader, error) {
	if o.Consumer == "" {
		return nil, errors.New("redisbus: stream reader needs a consumer name")
	}
	o.Count = cmp.Or(o.Count, 100)
	o.MaxCount = max(cmp.Or(o.MaxCount, 1000), o.Count)
	o.Block = cmp.Or(o.Block, 2*time.Second)
	o.RetryDelay = cmp.Or(o.RetryDelay, time.Second)
	o.MaxInFlight = cmp.Or(o.MaxInFlight, 10000)
	o.DedupeField = cmp.Or(o.DedupeField, "rt_id")
	o.DedupeWindow = cmp.Or(o.DedupeWindow, 10000)
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := checkSpecs(specs); err != nil {
		return nil, err
	}
	cmd, err := NewClient(c)
	if err != nil {
		return nil, err
	}
	r := &StreamReader{
		cfg: c, opt: o, sink: sink, cmd: cmd,
		streams: map[string]*stream{},
		kept:    cmp.Or(o.Kept, NewKept()),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	r.lateDone = sync.NewCond(&r.lateMu)
	r.wg.Add(1)
	go r.work()
	_ = r.Update(specs) // checked above
	return r, nil
}

func checkSpecs(specs []StreamSpec) error {
	seen := map[string]bool{}
	for i, s := range specs {
		if s.Stream == "" || s.Group == "" {
			return fmt.Errorf("redisbus: stream spec %d: stream and group are required", i)
		}
		if seen[s.key()] {
			return fmt.Errorf("redisbus: stream %q group %q given twice", s.Stream, s.Group)
		}
		seen[s.key()] = true
	}
	return nil
}

// Update makes the reader read specs: new streams start, removed ones stop
// reading (what is in flight of them can still be acked; their held and
// retried entries stay pending in Redis), and a changed spec's
// MaxDeliveries and ClaimAfter apply at once (Start only matters to a
// group not yet created). Invalid specs change nothing and return the
// error; after Close, Update does nothing.
func (r *StreamReader) Update(specs []StreamSpec) error {
	if err := checkSpecs(specs); err != nil {
		return err
	}
	want := map[string]StreamSpec{}
	for _, s := range specs {
		want[s.key()] = s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed() {
		return nil
	}
	for k, s := range r.streams {
		if _, ok := want[k]; !ok {
			r.stopStream(s)
		}
	}
	for k, spec := range want {
		s := r.streams[k]
		if s == nil {
			// room is made once: the worker signals it without s.mu
			s = &stream{key: k, tracked: map[string]*flight{}, room: make(chan struct{}, 1)}
			s.pending.Store(-1)
			s.lag.Store(-1)
			r.streams[k] = s
		}
		s.mu.Lock()
		s.spec = spec
		start := s.removed || s.stop == nil
		s.mu.Unlock()
		if start {
			if err := r.startStream(s); err != nil {
				r.opt.Logf("realtime: stream %q: %v", spec.Stream, err)
			}
		}
	}
	return nil
}

// startStream starts s's reader goroutine on a client of its own; r.mu held.
func (r *StreamReader) startStream(s *stream) error {
	rc := r.cfg
	// A raw XREADGROUP gets the client's read timeout, not BLOCK's.
	rc.ReadTimeout = config.Duration(r.cfg.ReadTimeout.D() + r.opt.Block)
	client, err := NewClient(rc)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.removed, s.client, s.stop = false, client, make(chan struct{})
	stop, exited := s.stop, make(chan struct{})
	s.mu.Unlock()
	prev := r.kept.follow(s.key, exited)
	r.wg.Add(1)
	go func() {
		defer r.kept.exit(s.key, exited)
		defer client.Close()
		if prev != nil { // the goroutine of the route removed before (by this reader or one closed): its last read offers first
			select {
			case <-prev:
			case <-stop:
				// Removed again before it read: it still exits after
				// prev, so that a reader started next waits for prev's
				// last read too (else its pending re-read takes prev's
				// entries, Redis counting a delivery no handler saw).
				<-prev
				r.wg.Done()
				return
			}
		}
		r.read(s, client, stop)
	}()
	return nil
}

// stopStream stops s's reader; r.mu held.
//
// A read in progress is not cut short: Redis may have served it already,
// counting a delivery, and the reply is then offered (its entries kept
// uncounted, or handed out if the stream is read again meanwhile) before
// the goroutine returns, within Block, and closes its client. The next
// goroutine to read that stream, of this reader or of the next one sharing
// its Kept, waits for that.
func (r *StreamReader) stopStream(s *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return
	}
	s.removed = true
	close(s.stop)
	// Held entries were read (Redis counted a delivery) but no handler saw
	// them, nor the requeued retries' last delivery: kept, so that the
	// re-read when the stream is read again does not count it.
	for _, e := range s.held {
		delete(s.tracked, e.ID)
		r.kept.keep(s.key, e.ID, e.Deliveries)
	}
	for _, id := range s.retries {
		if f := s.tracked[id]; f != nil && f.requeued {
			r.kept.keep(s.key, id, f.deliveries)
		}
		delete(s.tracked, id)
	}
	s.held, s.retries = nil, nil
}

// track puts id in s's in-flight set as f; s.mu held.
func (s *stream) track(id string, f *flight) {
	s.tracked[id] = f
	if idLess(s.top, id) {
		s.top = id
	}
}

// Kept holds the delivery counts of entries handed out that no handler
// saw (given back after their route was removed, or read as it went), by
// stream key and id, so that the re-read when the stream is read again
// does not count that delivery: claimed with their count (XCLAIM
// RETRYCOUNT). One Kept may outlive a reader (StreamOptions.Kept): the
// module keeps one across Disconnect/Connect and Reloads. Safe for
// concurrent use; at most maxKept entries.
type Kept struct {
	mu    sync.Mutex
	m     map[string]map[string]int64
	n     int
	exits map[string]chan struct{} // by stream key: closed when its last reader goroutine returned
}

// NewKept returns an empty Kept.
func NewKept() *Kept {
	return &Kept{m: map[string]map[string]int64{}, exits: map[string]chan struct{}{}}
}

// exit closes exited, and forgets it if no goroutine followed it.
func (k *Kept) exit(key string, exited chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	close(exited)
	if k.exits[key] == exited {
		delete(k.exits, key)
	}
}

// follow records exited as the channel of stream key's newest reader
// goroutine and returns the one before it (nil if none), which it must
// wait for before it reads.
func (k *Kept) follow(key string, exited chan struct{}) chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	prev := k.exits[key]
	k.exits[key] = exited
	return prev
}

// maxKept bounds a Kept: past it, an entry given back after its stream
// was removed has that delivery counted after all.
const maxKept = 10000

// keep records the delivery count of entry id of stream key.
func (k *Kept) keep(key, id string, deliveries int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if deliveries < 0 || k.n >= maxKept { // 0: not known, Redis's count is kept
		return
	}
	m := k.m[key]
	if m == nil {
		m = map[string]int64{}
		k.m[key] = m
	}
	if _, dup := m[id]; !dup {
		k.n++
	}
	m[id] = deliveries
}

// take returns and forgets the kept delivery counts of stream key's ids.
func (k *Kept) take(key string, ids []string) map[string]int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	m := k.m[key]
	if len(m) == 0 {
		return nil
	}
	out := map[string]int64{}
	for _, id := range ids {
		if d, ok := m[id]; ok {
			out[id] = d
			delete(m, id)
			k.n--
		}
	}
	if len(m) == 0 {
		delete(k.m, key)
	}
	return out
}

func (r *StreamReader) lookup(streamName, group string) *stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.streams[streamName+"\x00"+group]
}

// Ack records that the entry's handler returned: it is acknowledged
// (XACK, batched) and leaves the in-flight set once Redis has it. An id
// that is not with the sink (unknown, acked already) is ignored.
func (r *StreamReader) Ack(streamName, group, id string) {
	r.settle(streamName, group, id, stAck, "")
}

// Nack records that the entry's handler failed: it is offered again after
// RetryDelay, or dead-lettered if it had MaxDeliveries deliveries.
func (r *StreamReader) Nack(streamName, group, id string) {
	r.settle(streamName, group, id, stRetry, "")
}

// Dead dead-letters the entry now (a malformed entry: retrying cannot help).
func (r *StreamReader) Dead(streamName, group, id, reason string) {
	r.settle(streamName, group, id, stDead, reason)
}

// Requeue is Nack for an entry no handler saw (the sink dropped it after
// taking it: pushed out of its full queue): it is offered again after
// RetryDelay with the delivery count it had (XCLAIM ... RETRYCOUNT), and
// never dead-lettered for it.
func (r *StreamReader) Requeue(streamName, group, id string) {
	r.settle(streamName, group, id, stRequeue, "")
}

func (r *StreamReader) settle(streamName, group, id string, to flightState, reason string) {
	s := r.lookup(streamName, group)
	if s == nil {
		return
	}
	var late settled
	s.mu.Lock()
	r.settleLocked(s, id, to, reason, &late)
	s.mu.Unlock()
	r.settledAll(s, &late)
}

// settled is what settleLocked leaves to do once the stream's lock is let
// go.
type settled struct {
	room, wake, acked bool
	kept              []keptEntry // Requeued entries of a removed stream
}

type keptEntry struct {
	id         string
	deliveries int64
}

// settleLocked settles entry id of s (s.mu held) as settle does, and notes
// in late what is to be done after.
func (r *StreamReader) settleLocked(s *stream, id string, to flightState, reason string, late *settled) {
	requeue := to == stRequeue
	if requeue {
		to = stRetry
	}
	f := s.tracked[id]
	if f == nil && !s.removed && (to != stRetry || len(s.tracked) < r.opt.MaxInFlight) {
		// An entry another reader of this consumer handed over (the one
		// it replaced, at a Reload or a reconnect with new settings):
		// Redis has it pending for this consumer, so it is settled here.
		// Its delivery count is read again when it is offered again.
		f = &flight{state: stSink}
		s.track(id, f)
	}
	if f != nil && f.state == stClaiming && (to == stAck || to == stDead) {
		// Handed over by the reader it replaced while a claim (the
		// pending re-read, the claim loop) takes it: settled here, the
		// claim's offer drops it. A Nack needs nothing: the claim hands
		// it out again.
		f.state = stSink
	}
	if f == nil || f.state != stSink {
		return
	}
	if to == stRetry && s.removed {
		delete(s.tracked, id) // stays pending in Redis
		late.room = true
		if requeue {
			late.kept = append(late.kept, keptEntry{id, f.deliveries})
		}
		return
	}
	if to == stRetry && !requeue && s.spec.MaxDeliveries > 0 && f.deliveries >= s.spec.MaxDeliveries {
		to, reason = stDead, ""
	}
	f.state, f.reason, f.requeued = to, reason, requeue
	switch to {
	case stAck:
		s.acks = append(s.acks, id)
		late.acked = true
	case stDead:
		s.deads = append(s.deads, id)
		late.wake = true
	case stRetry:
		f.at = time.Now().Add(r.opt.RetryDelay)
		s.retries = append(s.retries, id)
		s.retried.Add(1)
	}
}

// settledAll does what settleLocked left to do for s, s.mu let go.
func (r *StreamReader) settledAll(s *stream, late *settled) {
	if late.room {
		signal(s.room)
	}
	for _, k := range late.kept {
		r.kept.keep(s.key, k.id, k.deliveries)
	}
	if late.acked && r.closed() {
		r.lateAcks()
	} else if late.acked {
		signal(r.wake)
	}
	if late.wake {
		signal(r.wake)
	}
}

// SettleMany settles a batch of entries as Ack, Nack and Requeue would one
// by one, taking each stream's lock once for each run of its entries
// (router.BatchSettler).
func (r *StreamReader) SettleMany(batch []router.Settlement) {
	for i := 0; i < len(batch); {
		j := i + 1
		for j < len(batch) && batch[j].Stream == batch[i].Stream && batch[j].Group == batch[i].Group {
			j++
		}
		if s := r.lookup(batch[i].Stream, batch[i].Group); s != nil {
			var late settled
			s.mu.Lock()
			for _, x := range batch[i:j] {
				to := stRetry
				switch x.Outcome {
				case router.OutcomeAck:
					to = stAck
				case router.OutcomeRelease:
					to = stRequeue
				}
				r.settleLocked(s, x.ID, to, "", &late)
			}
			s.mu.Unlock()
			r.settledAll(s, &late)
		}
		i = j
	}
}

// lateAcks sends the acks that come after Close (a handler that returned
// after Disconnect, a map change or a Reload's hand-over), so that their
// entries are not delivered again: in the background, on a client of its
// own (the worker's is closed), one goroutine at a time, each pass within
// write_timeout + read_timeout (sent again within it while Redis answers
// BUSY, LOADING ...). After a connection error, or that long, it gives up:
// those entries stay pending and come again, as before.
func (r *StreamReader) lateAcks() {
	r.lateMu.Lock()
	defer r.lateMu.Unlock()
	if r.late {
		return // the running one looks again before it stops
	}
	r.late = true
	go func() {
		c, err := NewClient(r.cfg)
		for err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), r.cfg.WriteTimeout.D()+r.cfg.ReadTimeout.D())
			err = r.untilSent(ctx, func() error {
				return eachStream(r.all(), func(s *stream) error { return r.flushAcksOn(ctx, c, s) })
			})
			cancel()
			r.lateMu.Lock()
			if !r.acksQueued() {
				break // with lateMu: a later Ack starts another
			}
			r.lateMu.Unlock()
		}
		if err != nil {
			r.opt.Logf("realtime: streams: acknowledging after the reader closed: %v (those entries come again)", err)
			r.lateMu.Lock()
		}
		r.late = false
		r.lateDone.Broadcast()
		r.lateMu.Unlock()
		if c != nil {
			_ = c.Close()
		}
	}()
}

// all returns the streams.
func (r *StreamReader) all() []*stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := make([]*stream, 0, len(r.streams))
	for _, s := range r.streams {
		all = append(all, s)
	}
	return all
}

// acksQueued reports whether a stream has acks not yet sent.
func (r *StreamReader) acksQueued() bool {
	for _, s := range r.all() {
		s.mu.Lock()
		n := len(s.acks)
		s.mu.Unlock()
		if n > 0 {
			return true
		}
	}
	return false
}

// Release forgets every entry now with the sink (handed out and not yet
// Acked, Nacked or Dead), for when the sink has discarded them: the queue
// cleared as the Lua state closes. They are still pending in Redis, and
// each reader re-reads its pending entries (within Block), as after a
// reconnect: they come back, with a delivery counted. An Ack for one of
// them that arrives after Release is ignored.
func (r *StreamReader) Release() {
	r.mu.Lock()
	all := make([]*stream, 0, len(r.streams))
	for _, s := range r.streams {
		all = append(all, s)
	}
	r.mu.Unlock()
	for _, s := range all {
		s.mu.Lock()
		for id, f := range s.tracked {
			if f.state == stSink {
				delete(s.tracked, id)
			}
		}
		s.mu.Unlock()
		s.reread.Store(true)
		signal(s.room)
	}
}

// Stats returns each stream's figures, keyed by stream name (by
// "stream@group" for a stream read by several groups). It never waits on
// the network: Pending and Lag are refreshed by the worker every 2s.
func (r *StreamReader) Stats() map[string]StreamStats {
	r.mu.Lock()
	all := make([]*stream, 0, len(r.streams))
	groups := map[string]int{}
	for _, s := range r.streams {
		all = append(all, s)
	}
	r.mu.Unlock()
	out := map[string]StreamStats{}
	for _, s := range all {
		s.mu.Lock()
		spec, n, removed := s.spec, len(s.tracked), s.removed
		s.mu.Unlock()
		if removed {
			continue
		}
		groups[spec.Stream]++
		out[spec.Stream+"@"+spec.Group] = StreamStats{
			Stream: spec.Stream, Group: spec.Group,
			Delivered: s.delivered.Load(), Acked: s.acked.Load(), Retried: s.retried.Load(),
			Dead: s.dead.Load(), Refused: s.refused.Load(), Claimed: s.claimed.Load(),
			Gone: s.gone.Load(), Duplicates: s.duplicates.Load(), NoGroup: s.nogroup.Load(), InFlight: n,
			Pending: s.pending.Load(), Lag: s.lag.Load(),
		}
	}
	for k, st := range out {
		if groups[st.Stream] == 1 {
			delete(out, k)
			out[st.Stream] = st
		}
	}
	return out
}

// Close stops reading; it returns at once (see the file comment for the
// last acks). Idempotent.
func (r *StreamReader) Close() {
	r.closing.Do(func() {
		r.mu.Lock()
		close(r.done) // under mu: no Update starts a stream after this
		for _, s := range r.streams {
			r.stopStream(s)
		}
		r.mu.Unlock()
	})
}

// Wait blocks until the goroutines have exited after Close; for tests.
// Acks sent after Close (lateAcks) included.
func (r *StreamReader) Wait() {
	r.wg.Wait()
	r.lateMu.Lock()
	for r.late {
		r.lateDone.Wait()
	}
	r.lateMu.Unlock()
}

func (r *StreamReader) closed() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// backoff is the wait before attempt n (0-based), as the Bus's.
func (r *StreamReader) backoff(n int) time.Duration {
	d, top := max(r.cfg.ReconnectMin.D(), time.Millisecond), max(r.cfg.ReconnectMax.D(), time.Millisecond)
	for i := 0; i < n && d < top; i++ {
		d *= 2
	}
	d = min(d, top)
	return d/2 + rand.N(d/2+1)
}

func sleepOr(d time.Duration, stop <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// isNoGroup reports whether err says the group (or its stream) is gone.
func isNoGroup(err error) bool {
	if !isReply(err) {
		return false
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "NOGROUP") || strings.HasPrefix(msg, "UNBLOCKED")
}

// read is s's reader goroutine: group, own pending entries, new entries.
func (r *StreamReader) read(s *stream, client redis.UniversalClient, stop chan struct{}) {
	defer r.wg.Done()
	ctx := context.Background()
	failures, lost := 0, 0 // lost: NOGROUPs since the last read of new entries
	needGroup, needPending := true, true
	needSeed := r.opt.DedupeWindow > 0
	cursor := "-"
	count := r.opt.Count // the next read's COUNT (see StreamOptions.MaxCount)
	s.mu.Lock()
	name := s.spec.Stream
	s.mu.Unlock()
	// The entries of a read of new ones are offered on a goroutine of
	// their own while the next read goes to Redis (offering, routing and
	// filling the ring one by one took longer than the read's round trip,
	// and the pump waited for both in turn). One batch at a time, in order:
	// a read's entries are offered once the previous read's are. Anything
	// else (the group, pending entries, an error, the end) waits for them
	// first: a pending re-read must see every entry read in the in-flight
	// set, or it would offer one again.
	var ob offerBatch
	defer ob.wait()
	for {
		select {
		case <-stop:
			return
		default:
		}
		if s.reread.Swap(false) {
			needPending, cursor = true, "-"
		}
		if needGroup || needSeed || needPending {
			ob.wait()
		}
		var err error
		switch {
		case needGroup:
			err = r.createGroup(ctx, s, client)
			needGroup = err != nil
		case needSeed:
			err = r.seedSeen(ctx, s, client)
			needSeed = err != nil
		case needPending:
			if !r.waitRoom(s, stop) {
				return
			}
			var more bool
			cursor, more, err = r.readPending(ctx, s, client, cursor)
			needPending = more || err != nil
			if !needPending {
				cursor = "-"
			}
		default:
			if !r.waitRoom(s, stop) {
				return
			}
			if err = r.readNew(ctx, s, client, &count, &ob); err == nil {
				lost = 0
			}
		}
		if err == nil {
			if failures > 0 {
				r.opt.Logf("realtime: stream %q: reading again", name)
			}
			failures = 0
			continue
		}
		ob.wait()
		select {
		case <-stop:
			return
		default:
		}
		if isNoGroup(err) {
			if lost > 0 && !sleepOr(r.backoff(lost-1), stop) { // lost again at once: not in a loop
				return
			}
			lost++
			s.nogroup.Add(1)
			s.mu.Lock()
			at := cmp.Or(s.lastID, cmp.Or(s.spec.Start, "$"))
			s.mu.Unlock()
			r.opt.Logf("realtime: stream %q: consumer group lost (%v); recreating it at %s", name, err, at)
			r.sink.StreamEvent(name, "nogroup", "recreated at "+at)
			needGroup, needPending, cursor = true, true, "-"
			continue
		}
		if failures == 0 {
			r.opt.Logf("realtime: stream %q: %v", name, err)
			r.sink.StreamEvent(name, "error", err.Error())
		}
		if !isReply(err) {
			needPending, cursor = true, "-" // the connection is new: own pending first
		}
		if !sleepOr(r.backoff(failures), stop) {
			return
		}
		failures++
	}
}

// waitRoom waits until s has room in its in-flight set and nothing held.
func (r *StreamReader) waitRoom(s *stream, stop chan struct{}) bool {
	for {
		s.mu.Lock()
		ok := len(s.tracked) < r.opt.MaxInFlight && len(s.held) == 0
		room := s.room
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-room:
		case <-stop:
			return false
		}
	}
}

// createGroup creates s's group (and stream) at the last id read, or at
// Start; BUSYGROUP means it exists.
func (r *StreamReader) createGroup(ctx context.Context, s *stream, client redis.UniversalClient) error {
	s.mu.Lock()
	spec, at := s.spec, cmp.Or(s.lastID, cmp.Or(s.spec.Start, "$"))
	s.mu.Unlock()
	err := client.Do(ctx, "xgroup", "create", spec.Stream, spec.Group, at, "mkstream").Err()
	if err != nil && isReply(err) && strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return nil
	}
	return err
}

// readPending offers the page of the consumer's own pending entries after
// cursor that are not in flight, and returns the next cursor and whether
// there may be more.
func (r *StreamReader) readPending(ctx context.Context, s *stream, client redis.UniversalClient, cursor string) (string, bool, error) {
	s.mu.Lock()
	spec := s.spec
	s.mu.Unlock()
	page, err := client.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: spec.Stream, Group: spec.Group, Start: cursor, End: "+", Count: r.opt.Count, Consumer: r.opt.Consumer,
	}).Result()
	if err != nil {
		return cursor, true, err
	}
	if len(page) == 0 {
		return "-", false, nil
	}
	next := "(" + page[len(page)-1].ID
	var take []string
	counts := map[string]int64{}
	ids := make([]string, len(page))
	for i, p := range page {
		ids[i] = p.ID
	}
	kept := r.kept.take(s.key, ids) // given back uncounted while the stream was removed
	s.mu.Lock()
	for _, p := range page {
		if s.tracked[p.ID] != nil {
			continue
		}
		if d, ok := keepCount(kept, p.ID, p.RetryCount); ok {
			kept[p.ID] = d // claimed with it
			take = append(take, p.ID)
			counts[p.ID] = d
			s.track(p.ID, &flight{state: stClaiming})
			continue
		}
		delete(kept, p.ID) // stale: counted
		if spec.MaxDeliveries > 0 && p.RetryCount >= spec.MaxDeliveries {
			s.track(p.ID, &flight{state: stDead, deliveries: p.RetryCount})
			s.deads = append(s.deads, p.ID)
			continue
		}
		take = append(take, p.ID)
		counts[p.ID] = p.RetryCount + 1
		s.track(p.ID, &flight{state: stClaiming})
	}
	s.mu.Unlock()
	signal(r.wake)
	if len(take) == 0 {
		return next, int64(len(page)) == r.opt.Count, nil
	}
	var entries []rawEntry
	byCount := map[int64][]string{} // kept: claimed with their count (RETRYCOUNT), not counted again
	var counted []string
	for _, id := range take {
		if d, ok := kept[id]; ok {
			byCount[d] = append(byCount[d], id)
		} else {
			counted = append(counted, id)
		}
	}
	// On an error nothing is offered: the kept counts go back to the
	// Kept for the next try, or it would count the delivery they stand
	// for (and dead-letter the entry at max_deliveries = 1).
	unclaimed := func(err error) (string, bool, error) {
		r.unclaim(s, take)
		for d, kids := range byCount {
			for _, id := range kids {
				r.kept.keep(s.key, id, d)
			}
		}
		return cursor, true, err
	}
	// The kept ones first: claimed again as they are if a later claim
	// fails, where the counted ones would be counted twice.
	for d, kids := range byCount {
		es, err := xclaim(ctx, client, spec, r.opt.Consumer, kids, "retrycount", d)
		if err != nil {
			return unclaimed(err)
		}
		entries = append(entries, es...)
	}
	if len(counted) > 0 {
		es, err := xclaim(ctx, client, spec, r.opt.Consumer, counted)
		if err != nil {
			return unclaimed(err)
		}
		entries = append(es, entries...)
	}
	r.offerClaimed(s, spec, take, entries, counts)
	return next, int64(len(page)) == r.opt.Count, nil
}

// unclaim drops from s's in-flight set the ids still being claimed
// (stClaiming): the claim failed, they stay pending in Redis.
func (r *StreamReader) unclaim(s *stream, ids []string) {
	s.mu.Lock()
	for _, id := range ids {
		if f := s.tracked[id]; f != nil && f.state == stClaiming {
			delete(s.tracked, id)
		}
	}
	s.mu.Unlock()
	signal(s.room)
}

// offerClaimed offers entries, taken (claimed) from ids with the given
// delivery counts; the ids no longer in the stream are acked.
func (r *StreamReader) offerClaimed(s *stream, spec StreamSpec, ids []string, entries []rawEntry, counts map[string]int64) {
	found := map[string]bool{}
	for _, e := range entries {
		if e.fields == nil {
			continue
		}
		found[e.id] = true
		r.offer(s, Entry{Stream: spec.Stream, Group: spec.Group, ID: e.id, Fields: e.fields, Deliveries: counts[e.id]})
	}
	var gone []string
	for _, id := range ids {
		if !found[id] {
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 {
		return
	}
	s.gone.Add(uint64(len(gone)))
	s.mu.Lock()
	for _, id := range gone {
		if f := s.tracked[id]; f == nil || f.state == stRetry || f.state == stClaiming {
			s.track(id, &flight{state: stAck})
			s.acks = append(s.acks, id)
		}
	}
	s.mu.Unlock()
	signal(r.wake)
}

// readNew reads and offers new entries, waiting up to Block for some;
// *next is the read's COUNT, adapted for the next read.
// offerBatch is the read loop's batch of n new entries being offered (see
// read): done is closed once they all were.
type offerBatch struct {
	done chan struct{}
	n    int
}

// wait returns once the batch being offered, if any, was.
func (ob *offerBatch) wait() {
	if ob.done != nil {
		<-ob.done
		ob.done, ob.n = nil, 0
	}
}

// readNew reads new entries (">") and offers them on a goroutine of their
// own (ob), once the previous read's are offered.
func (r *StreamReader) readNew(ctx context.Context, s *stream, client redis.UniversalClient, next *int64, ob *offerBatch) error {
	room := func() (StreamSpec, int64) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.spec, int64(r.opt.MaxInFlight - len(s.tracked))
	}
	// The batch still being offered counts as in flight already (some of
	// it may be, twice: a smaller read, never one past MaxInFlight).
	spec, left := room()
	if left -= int64(ob.n); left < 1 && ob.done != nil {
		ob.wait()
		if spec, left = room(); left < 1 {
			return nil // full: the read loop waits for room
		}
	}
	count := max(min(*next, left), 1)
	args := []any{"xreadgroup", "group", spec.Group, r.opt.Consumer, "count", count,
		"block", r.opt.Block.Milliseconds(), "streams", spec.Stream, ">"}
	entries, err := readRaw(ctx, client, args...)
	if err == errRawReply {
		// an error reply: Redis ran nothing, so the generic path sends it
		// again, to type the error (or follow a Cluster's redirection)
		entries, err = readGeneric(ctx, client, args...)
	}
	if err == redis.Nil {
		*next = r.opt.Count
		return nil // nothing yet
	}
	if err != nil {
		*next = r.opt.Count
		return err
	}
	n := len(entries)
	now := time.Now()
	ob.wait()
	s.mu.Lock()
	refused := len(s.held) > 0 // by the previous read's entries
	s.mu.Unlock()
	done := make(chan struct{})
	ob.done, ob.n = done, n
	go func() {
		defer close(done)
		for _, e := range entries {
			if e.fields == nil {
				continue
			}
			r.offer(s, Entry{Stream: spec.Stream, Group: spec.Group, ID: e.id, Fields: e.fields, Deliveries: 1, Received: now})
		}
	}()
	switch {
	case refused || int64(n) < count:
		*next = r.opt.Count
	case count == *next: // not cut by the in-flight bound: a backlog
		*next = min(2**next, r.opt.MaxCount)
	}
	return nil
}

// offer hands e to the sink, or holds it if the sink refuses (or earlier
// entries are held: they go first).
func (r *StreamReader) offer(s *stream, e Entry) {
	s.mu.Lock()
	if s.removed {
		// Read just as its route went: stays pending, and the delivery
		// Redis counted reached no handler.
		delete(s.tracked, e.ID)
		s.mu.Unlock()
		r.kept.keep(s.key, e.ID, e.Deliveries)
		return
	}
	if !idLess(s.top, e.ID) { // else not in the set: no look-up (a new entry, read with ">")
		if f := s.tracked[e.ID]; f != nil && f.state != stRetry && f.state != stClaiming {
			s.mu.Unlock()
			return // in flight already (settled while it was being claimed)
		}
	}
	if idLess(s.lastID, e.ID) {
		s.lastID = e.ID
	}
	if r.duplicate(s, e) {
		s.track(e.ID, &flight{state: stAck, deliveries: e.Deliveries})
		s.acks = append(s.acks, e.ID)
		s.mu.Unlock()
		s.duplicates.Add(1)
		signal(r.wake)
		return
	}
	f := &flight{state: stSink, deliveries: e.Deliveries}
	s.track(e.ID, f)
	if len(s.held) > 0 {
		f.state = stHeld
		e.Received = time.Time{} // offered later: the sink's clock then
		s.held = append(s.held, e)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if r.sink.Entry(e) {
		s.delivered.Add(1)
		return
	}
	s.refused.Add(1)
	s.mu.Lock()
	if s.removed {
		// Removed while the sink had it (realtime.Off: the route went,
		// so the sink refused it): stopStream kept the held entries
		// already, and this one is not among them. Kept too, or the
		// next reader's pending re-read counts a delivery no handler saw.
		if s.tracked[e.ID] == f {
			delete(s.tracked, e.ID)
		}
		s.mu.Unlock()
		r.kept.keep(s.key, e.ID, e.Deliveries)
		signal(s.room)
		return
	}
	f.state = stHeld
	e.Received = time.Time{}
	s.held = append(s.held, e)
	if s.heldWait == 0 {
		s.heldWait = minHeldWait
		s.heldNext = time.Now().Add(s.heldWait)
	}
	s.mu.Unlock()
	signal(r.wake)
}

// duplicate reports whether e is a copy of an entry handed out before: its
// DedupeField value was seen on another entry of s within the window. It
// remembers the value otherwise. s.mu held.
func (r *StreamReader) duplicate(s *stream, e Entry) bool {
	if r.opt.DedupeWindow <= 0 {
		return false
	}
	key := fieldValue(e.Fields, r.opt.DedupeField)
	if key == "" {
		return false
	}
	if first, ok := s.seen[key]; ok {
		return first != e.ID // the same entry again is a redelivery
	}
	r.remember(s, key, e.ID)
	return false
}

// remember ties key to the entry id in s's window, forgetting the oldest
// value when it is full. s.mu held.
func (r *StreamReader) remember(s *stream, key, id string) {
	if s.seen == nil {
		s.seen = map[string]string{}
	}
	key = strings.Clone(key) // not a slice of its reply (see readRaw)
	if len(s.seenOrder) < r.opt.DedupeWindow {
		s.seenOrder = append(s.seenOrder, key)
	} else {
		delete(s.seen, s.seenOrder[s.seenNext])
		s.seenOrder[s.seenNext] = key
		s.seenNext = (s.seenNext + 1) % len(s.seenOrder)
	}
	s.seen[key] = id
}

// seedLimit bounds the entries seedSeen reads: copies come from the last
// spool flush or outbox batch of a server that died (256 entries each),
// beside what other servers added meanwhile.
const seedLimit = 2000

// seedPage and seedBytes bound each XREVRANGE of seedSeen (in entries) and
// the bytes of all its replies: copies come from the last flush or batch
// of a server, at most 1 MiB each, so the last 16 MiB of a stream of big
// entries holds them.
// The first page is small, its entries' size unknown.
const (
	seedFirst = 16
	seedPage  = 200
	seedBytes = 16 << 20
)

// seedSeen fills s's duplicate window, before s is read for the first
// time, with the DedupeField values of the stream's last entries (oldest
// first, so that each value is tied to its first entry): a copy that a
// server's spool sends after this reader restarted (the server died
// between Redis taking an entry and the spool forgetting it) is dropped
// like one that comes while it runs, even if the first was handled and
// acknowledged before the restart.
func (r *StreamReader) seedSeen(ctx context.Context, s *stream, client redis.UniversalClient) error {
	s.mu.Lock()
	name := s.spec.Stream
	s.mu.Unlock()
	// In pages, newest first, each sized by the last one's entries, up to
	// seedBytes of replies: the entries come with their payloads, and
	// 2,000 of them in one reply could be gigabytes. Only the ids and
	// the values are kept.
	limit := min(r.opt.DedupeWindow, seedLimit)
	var ids, keys []string
	end, page, read, scanned := "+", seedFirst, 0, 0
	for scanned < limit && read < seedBytes { // the last limit entries, with a value or not
		count := min(page, limit-scanned)
		if end != "+" {
			count++ // the range includes end, read already
		}
		v, err := client.Do(ctx, "xrevrange", name, end, "-", "count", count).Result()
		if err != nil && !notNow(err) {
			// Refused (an ACL without XREVRANGE, say): read without it;
			// copies are then dropped only within one run of the reader.
			// Not now (BUSY, LOADING): the read loop tries again.
			r.opt.Logf("realtime: stream %q: cannot read its last entries for the duplicate check (%v): a copy sent after a restart may be handed out", name, err)
			break
		}
		if err != nil {
			return err
		}
		es := parseEntries(v)
		got := len(es)
		if end != "+" && len(es) > 0 && es[0].id == end {
			es = es[1:]
		}
		bytes := 0
		scanned += len(es)
		for _, e := range es {
			for _, f := range e.fields {
				bytes += len(f)
			}
			if key := fieldValue(e.fields, r.opt.DedupeField); key != "" {
				ids, keys = append(ids, e.id), append(keys, strings.Clone(key))
			}
		}
		read += bytes
		if got < count || len(es) == 0 {
			break // the stream's first entry
		}
		end = es[len(es)-1].id
		// as many entries as a quarter of the budget holds, at the size
		// of these
		page = max(1, min(seedPage, (seedBytes/4)/max(1, bytes/len(es))))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(ids) - 1; i >= 0; i-- { // oldest first
		if _, ok := s.seen[keys[i]]; !ok {
			r.remember(s, keys[i], ids[i])
		}
	}
	return nil
}

// fieldValue returns the value of the first field name in pairs, or "".
func fieldValue(pairs []string, name string) string {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] == name {
			return pairs[i+1]
		}
	}
	return ""
}

// idLess compares stream ids "ms-seq"; "" is the least. It compares the
// decimal parts by length, then byte by byte, without parsing them (the
// read loop calls it for every entry).
func idLess(a, b string) bool {
	if a == "" {
		return b != ""
	}
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if c := cmpDecimal(am, bm); c != 0 {
		return c < 0
	}
	return cmpDecimal(as, bs) < 0
}

// cmpDecimal compares two unsigned decimal numbers written in strings.
func cmpDecimal(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return cmp.Compare(len(a), len(b))
	}
	return strings.Compare(a, b)
}

// rawEntry is one entry of a reply; fields is nil for an entry deleted
// from the stream.
type rawEntry struct {
	id     string
	fields []string
}

// parseEntries reads [[id, [f, v, ...]], ...] keeping the fields' order
// (go-redis's XMessage keeps them in a map).
func parseEntries(v any) []rawEntry {
	list, _ := v.([]any)
	out := make([]rawEntry, 0, len(list))
	for _, item := range list {
		pair, _ := item.([]any)
		if len(pair) != 2 {
			continue
		}
		id, _ := pair[0].(string)
		fv, ok := pair[1].([]any)
		e := rawEntry{id: id}
		if ok {
			e.fields = make([]string, 0, len(fv))
			for _, x := range fv {
				s, _ := x.(string)
				e.fields = append(e.fields, s)
			}
		}
		out = append(out, e)
	}
	return out
}

// readGeneric is readRaw through go-redis's generic reply.
func readGeneric(ctx context.Context, c redis.UniversalClient, args ...any) ([]rawEntry, error) {
	v, err := c.Do(ctx, args...).Result()
	if err != nil {
		return nil, err
	}
	var out []rawEntry
	streams, _ := v.([]any)
	for _, st := range streams {
		if pair, _ := st.([]any); len(pair) == 2 {
			out = append(out, parseEntries(pair[1])...)
		}
	}
	return out, nil
}

// xclaim takes ids to consumer (min idle 0: they are ours or meant to be),
// counting a delivery, and returns them with their fields.
func xclaim(ctx context.Context, c redis.UniversalClient, spec StreamSpec, consumer string, ids []string, opts ...any) ([]rawEntry, error) {
	args := []any{"xclaim", spec.Stream, spec.Group, consumer, 0}
	for _, id := range ids {
		args = append(args, id)
	}
	v, err := c.Do(ctx, append(args, opts...)...).Result()
	if err != nil {
		return nil, err
	}
	return parseEntries(v), nil
}

// work is the worker goroutine: acks, retries, dead letters, held
// entries, claims and figures, for every stream.
func (r *StreamReader) work() {
	defer r.wg.Done()
	defer func() { go r.cmd.Close() }()
	// A pass runs when woken (Ack, Nack, Dead, a refusal), every tick, and
	// when the sink's refusals are due to be offered again.
	tick := min(r.opt.RetryDelay/2, 100*time.Millisecond)
	timer := time.NewTimer(tick)
	defer timer.Stop()
	failures := 0
	var retryAt time.Time
	for {
		select {
		case <-r.wake:
		case <-timer.C:
		case <-r.done:
			r.lastFlush()
			return
		}
		now := time.Now()
		r.mu.Lock()
		all := make([]*stream, 0, len(r.streams))
		for _, s := range r.streams {
			all = append(all, s)
		}
		r.mu.Unlock()
		sort.Slice(all, func(i, j int) bool { return all[i].key < all[j].key })
		next := now.Add(tick)
		for _, s := range all {
			if at, ok := r.offerHeld(s, now); ok && at.Before(next) {
				next = at
			}
		}
		timer.Stop()
		timer.Reset(max(next.Sub(now), time.Millisecond))
		if now.Before(retryAt) {
			continue
		}
		var err error
		for _, s := range all {
			if now.Before(s.notNowAt) {
				continue
			}
			switch e := r.serviceStream(s, now); {
			case e == nil:
				s.notNowFails = 0
			case isReply(e): // "not now" for this stream's commands only
				if s.notNowFails == 0 {
					r.opt.Logf("realtime: stream worker: %v", e)
				}
				s.notNowAt = now.Add(r.backoff(s.notNowFails))
				s.notNowFails++
			default: // the connection: every stream waits
				err = e
			}
			if err != nil {
				break
			}
		}
		r.forgetRemoved(all)
		if err != nil {
			if failures == 0 {
				r.opt.Logf("realtime: stream worker: %v", err)
			}
			retryAt = now.Add(r.backoff(failures))
			failures++
			continue
		}
		failures = 0
	}
}

// forgetRemoved drops the state of removed streams with nothing in flight.
func (r *StreamReader) forgetRemoved(all []*stream) {
	for _, s := range all {
		s.mu.Lock()
		gone := s.removed && len(s.tracked) == 0
		s.mu.Unlock()
		if gone {
			r.mu.Lock()
			if r.streams[s.key] == s {
				s.mu.Lock()
				if s.removed && len(s.tracked) == 0 {
					delete(r.streams, s.key)
				}
				s.mu.Unlock()
			}
			r.mu.Unlock()
		}
	}
}

// offerHeld offers the entries the sink refused again, in order, and
// returns when to try next if some are still held. The pace is 2ms after
// progress, doubling up to 200ms while the sink accepts nothing.
func (r *StreamReader) offerHeld(s *stream, now time.Time) (time.Time, bool) {
	s.mu.Lock()
	if len(s.held) == 0 || now.Before(s.heldNext) {
		defer s.mu.Unlock()
		return s.heldNext, len(s.held) > 0
	}
	s.mu.Unlock()
	progress := false
	for {
		s.mu.Lock()
		if len(s.held) == 0 {
			s.heldWait = 0
			s.mu.Unlock()
			signal(s.room)
			return time.Time{}, false
		}
		// Only the worker takes from held: e stays its head, unless
		// Update empties it.
		e := s.held[0]
		f := s.tracked[e.ID]
		if f != nil {
			f.state = stSink // before the sink can Ack it
		}
		s.mu.Unlock()
		ok := f != nil && r.sink.Entry(e)
		s.mu.Lock()
		if f != nil && !ok {
			f.state = stHeld
			if progress {
				s.heldWait = minHeldWait
			} else {
				s.heldWait = min(2*s.heldWait, maxHeldWait)
			}
			s.heldNext = now.Add(s.heldWait)
			next := s.heldNext
			s.mu.Unlock()
			s.refused.Add(1)
			return next, true
		}
		if len(s.held) > 0 && s.held[0].ID == e.ID { // not emptied by Update meanwhile
			s.held = s.held[1:]
		}
		s.mu.Unlock()
		if ok {
			s.delivered.Add(1)
			progress = true
		}
	}
}

// The pace of offering again what the sink refused.
const (
	minHeldWait = 2 * time.Millisecond
	maxHeldWait = 200 * time.Millisecond
)

// serviceStream does s's network work due at now; it returns the first
// connection error (reply errors are logged and dealt with).
func (r *StreamReader) serviceStream(s *stream, now time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.WriteTimeout.D()+r.cfg.ReadTimeout.D())
	defer cancel()
	if err := r.flushAcks(ctx, s); err != nil {
		return err
	}
	if err := r.flushDeads(ctx, s); err != nil {
		return err
	}
	s.mu.Lock()
	spec, removed := s.spec, s.removed
	s.mu.Unlock()
	if removed {
		return nil
	}
	if err := r.retryDue(ctx, s, spec, now); err != nil {
		return err
	}
	if spec.ClaimAfter > 0 {
		if now.After(s.nextKeep) {
			if err := r.keepAlive(ctx, s, spec); err != nil {
				return err
			}
			s.nextKeep = now.Add(spec.ClaimAfter / 4)
		}
		if now.After(s.nextClaim) {
			if err := r.autoClaim(ctx, s, spec); err != nil {
				return err
			}
			s.nextClaim = now.Add(min(spec.ClaimAfter/2, 5*time.Second))
		}
	}
	if now.After(s.nextStats) {
		r.refreshStats(ctx, s, spec)
		s.nextStats = now.Add(2 * time.Second)
	}
	return nil
}

// flushAcks sends s's queued acks in one XACK; on a connection error they
// stay queued.
func (r *StreamReader) flushAcks(ctx context.Context, s *stream) error {
	return r.flushAcksOn(ctx, r.cmd, s)
}

// flushAcksOn is flushAcks on client c.
func (r *StreamReader) flushAcksOn(ctx context.Context, c redis.UniversalClient, s *stream) error {
	s.mu.Lock()
	ids, spec := s.acks, s.spec
	s.acks, s.spareAcks = s.spareAcks, nil
	s.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	pipe := c.Pipeline()
	for i := 0; i < len(ids); i += 1000 {
		// the ids as *string into ids: in an interface as they are (a
		// string would be boxed, an allocation each); ids is not written
		// before the pipeline's commands are done with
		args := make([]any, 3, 3+min(len(ids)-i, 1000))
		args[0], args[1], args[2] = "xack", spec.Stream, spec.Group
		for j := i; j < min(i+1000, len(ids)); j++ {
			args = append(args, &ids[j])
		}
		pipe.Do(ctx, args...)
	}
	cmds, _ := pipe.Exec(ctx)
	var refused error
	n := 0
	for i, c := range cmds {
		err := c.Err()
		if notNow(err) {
			s.mu.Lock()
			s.acks = append(ids, s.acks...)
			s.mu.Unlock()
			return fmt.Errorf("stream %q: XACK: %w", spec.Stream, err)
		}
		if err != nil {
			refused = cmp.Or(refused, err)
			continue
		}
		n += min(len(ids)-1000*i, 1000)
	}
	s.mu.Lock()
	s.forget(ids, stAck, nil)
	if cap(ids) > cap(s.spareAcks) && cap(ids) <= r.opt.MaxInFlight {
		clear(ids)
		s.spareAcks = ids[:0] // the next flush's list: no growing it again
	}
	wasFailing := s.ackFailing
	s.ackFailing = refused != nil
	s.mu.Unlock()
	if refused != nil && !wasFailing {
		// NOPERM (an ACL user without XACK), or the stream replaced:
		// the entries stay pending in Redis and come again when the
		// group is read anew; never counted as acknowledged
		msg := fmt.Sprintf("XACK refused, entries left pending (they come again after a reconnect or restart): %v", refused)
		r.opt.Logf("realtime: stream %q: %s", spec.Stream, msg)
		r.sink.StreamEvent(spec.Stream, "error", msg)
	}
	s.acked.Add(uint64(n))
	signal(s.room)
	return nil
}

// lastFlush sends the acks and dead letters held at Close, within the
// timeouts: again after the backoff while Redis answers BUSY, LOADING ...,
// not after a connection error.
func (r *StreamReader) lastFlush() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.WriteTimeout.D()+r.cfg.ReadTimeout.D())
	defer cancel()
	r.mu.Lock()
	all := make([]*stream, 0, len(r.streams))
	for _, s := range r.streams {
		all = append(all, s)
	}
	r.mu.Unlock()
	_ = r.untilSent(ctx, func() error {
		return eachStream(all, func(s *stream) error {
			if err := r.flushAcks(ctx, s); err != nil {
				return err
			}
			return r.flushDeads(ctx, s)
		})
	})
}

// eachStream calls send for each stream, in the order of their keys, and
// returns the first error. One stream's reply error (BUSY, LOADING: its
// commands are kept for the next try) does not hold the others back: it
// goes on with the next stream. A connection error ends it at once.
func eachStream(all []*stream, send func(s *stream) error) error {
	all = slices.Clone(all)
	slices.SortFunc(all, func(a, b *stream) int { return strings.Compare(a.key, b.key) })
	var first error
	for _, s := range all {
		err := send(s)
		if err != nil && !isReply(err) {
			return err
		}
		first = cmp.Or(first, err)
	}
	return first
}

// untilSent calls send again while Redis answers "not now" (BUSY,
// LOADING: a reply, not a connection error, which ends it as before),
// waiting the backoff between tries, until ctx ends; it returns send's
// last error.
func (r *StreamReader) untilSent(ctx context.Context, send func() error) error {
	for n := 0; ; n++ {
		err := send()
		if err == nil || !isReply(err) || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(r.backoff(n))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// forget drops from the in-flight set the ids still in state st (settled
// there), but those in except; s.mu held.
func (s *stream) forget(ids []string, st flightState, except map[string]bool) {
	for _, id := range ids {
		if f := s.tracked[id]; f != nil && f.state == st && !except[id] {
			delete(s.tracked, id)
		}
	}
}

// dead is one entry to dead-letter.
type dead struct {
	id, reason string
	n          int64 // deliveries
	tried      bool  // a write whose reply was lost went before
}

// flushDeads dead-letters s's queued entries: the copy to
// "<stream>:dead" and the XACK in one MULTI, for the entries still
// pending. A transaction whose reply a lost connection took is either
// applied (the entry is no longer pending: nothing to do) or not, so the
// retry writes each dead letter once. (In a Cluster, with the two keys on
// different nodes, the copy can be written twice.)
func (r *StreamReader) flushDeads(ctx context.Context, s *stream) error {
	s.mu.Lock()
	if time.Now().Before(s.deadNext) {
		s.mu.Unlock()
		return nil
	}
	ids, spec := s.deads, s.spec
	s.deads = nil
	list := make([]dead, len(ids))
	for i, id := range ids {
		if f := s.tracked[id]; f != nil {
			list[i] = dead{id, f.reason, f.deliveries, f.tried}
		} else {
			list[i] = dead{id: id}
		}
	}
	s.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	requeue := func(err error, sent []dead) error {
		s.mu.Lock()
		for _, d := range sent {
			if f := s.tracked[d.id]; f != nil {
				f.tried = true
			}
		}
		s.deads = append(ids, s.deads...)
		s.mu.Unlock()
		return err
	}
	pipe := r.cmd.Pipeline()
	// A key of another type in the dead letters' place fails the XADD
	// only when it runs, and a MULTI goes on with the XACK: look first.
	deadType := pipe.Type(ctx, spec.Stream+":dead")
	ranges := make([]*redis.Cmd, len(list))
	pending := make([]*redis.XPendingExtCmd, len(list))
	for i, d := range list {
		ranges[i] = pipe.Do(ctx, "xrange", spec.Stream, d.id, d.id)
		pending[i] = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: spec.Stream, Group: spec.Group, Start: d.id, End: d.id, Count: 1})
	}
	cmds, _ := pipe.Exec(ctx)
	for _, c := range cmds {
		// each: a refused TYPE (an ACL without it) can come before a BUSY
		if err := c.Err(); notNow(err) {
			return requeue(fmt.Errorf("stream %q: dead-lettering: %w", spec.Stream, err), nil)
		}
	}
	var argss [][]any
	var written, earlier []dead
	var again []string // refused: pending, tried again in a second
	for i, d := range list {
		p, err := pending[i].Result()
		if err != nil || len(p) == 0 {
			if d.tried {
				earlier = append(earlier, d) // the lost reply's transaction was applied
			}
			continue
		}
		if d.n == 0 {
			// Settled with no count here: handed over by the reader this
			// one replaced, or while a claim took it. Redis's is the one.
			d.n = p[0].RetryCount
		}
		if t := deadType.Val(); t != "" && t != "none" && t != "stream" {
			// not acknowledged: it stays pending and comes back
			r.opt.Logf("realtime: stream %q: dead-lettering %s: %q is a %s, not a stream", spec.Stream, d.id, spec.Stream+":dead", t)
			r.sink.StreamEvent(spec.Stream, "error", fmt.Sprintf("dead-lettering %s: %q is a %s, not a stream", d.id, spec.Stream+":dead", t))
			again = append(again, d.id)
			continue
		}
		args := []any{"xadd", spec.Stream + ":dead"}
		if r.opt.Trim != nil {
			if maxLen, minID := r.opt.Trim(); maxLen > 0 {
				args = append(args, "maxlen", "~", maxLen)
			} else if minID != "" {
				args = append(args, "minid", "~", minID)
			}
		}
		args = append(args, "*")
		var fields []string
		if v, err := ranges[i].Result(); err == nil {
			if es := parseEntries(v); len(es) == 1 {
				fields = es[0].fields
			}
		}
		for _, f := range fields {
			args = append(args, f)
		}
		args = append(args, "rt_source_id", d.id, "rt_deliveries", d.n)
		if d.reason != "" {
			args = append(args, "rt_reason", d.reason)
		}
		argss = append(argss, args)
		written = append(written, d)
	}
	if len(written) > 0 {
		adds, err := r.writeDead(ctx, spec, written, argss)
		if err != nil {
			sent := written // the reply lost: it may have been applied
			if isReply(err) {
				sent = nil // answered "not now" (EXECABORT): nothing ran
			}
			return requeue(fmt.Errorf("stream %q: dead-lettering: %w", spec.Stream, err), sent)
		}
		kept := written[:0]
		for i, d := range written {
			if err := adds[i].Err(); err != nil {
				// Refused (an ACL without the dead-letter stream, say):
				// not acknowledged, it stays pending and comes back.
				r.opt.Logf("realtime: stream %q: dead-lettering %s: %v", spec.Stream, d.id, err)
				r.sink.StreamEvent(spec.Stream, "error", fmt.Sprintf("dead-lettering %s: %v", d.id, err))
				again = append(again, d.id)
				continue
			}
			kept = append(kept, d)
		}
		written = kept
	}
	written = append(written, earlier...)
	for _, d := range written {
		detail := fmt.Sprintf("%s deliveries=%d", d.id, d.n)
		if d.reason != "" {
			detail += " " + d.reason
		}
		r.sink.StreamEvent(spec.Stream, "dead", detail)
	}
	s.mu.Lock()
	retry := map[string]bool{}
	for _, id := range again {
		retry[id] = true
	}
	s.forget(ids, stDead, retry)
	if len(again) > 0 {
		s.deads = append(again, s.deads...)
		s.deadNext = time.Now().Add(time.Second)
	}
	s.mu.Unlock()
	s.dead.Add(uint64(len(written)))
	signal(s.room)
	return nil
}

// writeDead adds the dead letters and acknowledges their entries: in one
// MULTI on a single server, so that a retry after a lost reply can tell
// whether it was applied; in a Cluster (the two keys in different slots)
// the XACKs follow the XADDs that succeeded.
func (r *StreamReader) writeDead(ctx context.Context, spec StreamSpec, list []dead, argss [][]any) ([]*redis.Cmd, error) {
	adds := make([]*redis.Cmd, len(list))
	if _, cluster := r.cmd.(*redis.ClusterClient); !cluster {
		tx := r.cmd.TxPipeline()
		for i, d := range list {
			adds[i] = tx.Do(ctx, argss[i]...)
			tx.XAck(ctx, spec.Stream, spec.Group, d.id)
		}
		cmds, err := tx.Exec(ctx)
		if notNow(err) {
			return nil, err
		}
		for _, c := range cmds {
			// EXECABORT: a command was answered "not now" as it was
			// queued (BUSY, LOADING, or MISCONF, READONLY: writes
			// refused for now), and none ran
			if notNow(c.Err()) {
				return nil, c.Err()
			}
		}
		return adds, nil
	}
	pipe := r.cmd.Pipeline()
	for i := range list {
		adds[i] = pipe.Do(ctx, argss[i]...)
	}
	if _, err := pipe.Exec(ctx); notNow(err) {
		return nil, err
	}
	var ids []string
	for i, d := range list {
		if adds[i].Err() == nil {
			ids = append(ids, d.id)
		}
	}
	if len(ids) > 0 {
		if err := r.cmd.XAck(ctx, spec.Stream, spec.Group, ids...).Err(); notNow(err) {
			return nil, err
		}
	}
	return adds, nil
}

// retryDue offers again the Nacked entries whose delay is over: XCLAIM to
// ourselves (a delivery), with the count from XPENDING.
func (r *StreamReader) retryDue(ctx context.Context, s *stream, spec StreamSpec, now time.Time) error {
	s.mu.Lock()
	n := 0
	for n < len(s.retries) && n < 1000 {
		f := s.tracked[s.retries[n]]
		if f != nil && f.at.After(now) {
			break
		}
		n++
	}
	ids := s.retries[:n:n]
	s.retries = s.retries[n:]
	keep := map[string]int64{} // requeued: the delivery count to keep
	for _, id := range ids {
		if f := s.tracked[id]; f != nil && f.requeued {
			keep[id] = f.deliveries // 0: handed over, Redis's count is kept
		}
	}
	s.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	entries, counts, err := r.claimWithCounts(ctx, spec, ids, keep)
	if err != nil && !notNow(err) {
		// NOGROUP (the reader recreates the group), or an ACL without
		// XCLAIM: they stay pending, for the next re-read, the requeued
		// ones' last delivery uncounted (kept).
		r.opt.Logf("realtime: stream %q: retrying %d entries: %v", spec.Stream, len(ids), err)
		s.mu.Lock()
		s.forget(ids, stRetry, nil)
		s.mu.Unlock()
		r.keepAll(s, keep)
		signal(s.room)
		return nil
	}
	if err != nil {
		s.mu.Lock()
		removed := s.removed
		if removed {
			s.forget(ids, stRetry, nil) // as stopStream does with the retries
		} else {
			s.retries = append(ids, s.retries...)
		}
		s.mu.Unlock()
		if removed {
			r.keepAll(s, keep)
			signal(s.room)
		}
		return fmt.Errorf("stream %q: retrying %d entries: %w", spec.Stream, len(ids), err)
	}
	r.offerOrDead(s, spec, ids, entries, counts)
	return nil
}

// offerOrDead is offerClaimed, but the entries whose count (the claim's
// delivery included) is past MaxDeliveries are dead-lettered: a dead
// server's, taken over (autoClaim), had that many deliveries already.
func (r *StreamReader) offerOrDead(s *stream, spec StreamSpec, ids []string, entries []rawEntry, counts map[string]int64) {
	if spec.MaxDeliveries > 0 {
		dead := map[string]bool{}
		offer := entries[:0:0]
		s.mu.Lock()
		for _, e := range entries {
			if e.fields != nil && counts[e.id] > spec.MaxDeliveries {
				if f := s.tracked[e.id]; f != nil && f.state != stRetry && f.state != stClaiming {
					dead[e.id] = true // settled while it was being claimed
					continue
				}
				s.track(e.id, &flight{state: stDead, deliveries: counts[e.id] - 1})
				s.deads = append(s.deads, e.id)
				dead[e.id] = true
				continue
			}
			offer = append(offer, e)
		}
		s.mu.Unlock()
		if len(dead) > 0 {
			entries = offer
			ids = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return dead[id] })
			signal(r.wake)
		}
	}
	r.offerClaimed(s, spec, ids, entries, counts)
}

// keepAll records the delivery counts of s's entries in counts (by id) in
// the Kept.
func (r *StreamReader) keepAll(s *stream, counts map[string]int64) {
	for id, d := range counts {
		r.kept.keep(s.key, id, d)
	}
}

// claimWithCounts takes ids to ourselves and returns them with their
// delivery counts. The ids in keep are claimed with their delivery count
// set to keep's (XCLAIM ... RETRYCOUNT: not counted again); the others
// count a delivery, their counts read (XPENDING) before. The claim that
// counts goes last, the steps before it being the same when sent again:
// a pass cut short by a reply (BUSY) or an error and tried again counts
// one delivery, not two.
func (r *StreamReader) claimWithCounts(ctx context.Context, spec StreamSpec, ids []string, keep map[string]int64) ([]rawEntry, map[string]int64, error) {
	var counted []string
	byCount := map[int64][]string{}
	counts := map[string]int64{}
	pipe := r.cmd.Pipeline()
	cmds := make([]*redis.XPendingExtCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: spec.Stream, Group: spec.Group, Start: id, End: id, Count: 1})
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range cmds {
		p, err := c.Result()
		if notNow(err) {
			return nil, nil, err
		}
		var now int64 // Redis's count; 0: not pending
		if err == nil && len(p) == 1 {
			now = p[0].RetryCount
		}
		id := ids[i]
		if n, ok := keepCount(keep, id, now); ok {
			byCount[n] = append(byCount[n], id)
			counts[id] = n
		} else {
			counted = append(counted, id)
			counts[id] = now + 1
		}
	}
	var entries, kept []rawEntry
	for n, ids := range byCount {
		es, err := xclaim(ctx, r.cmd, spec, r.opt.Consumer, ids, "retrycount", n)
		if err != nil {
			return nil, nil, err
		}
		kept = append(kept, es...)
	}
	if len(counted) > 0 {
		es, err := xclaim(ctx, r.cmd, spec, r.opt.Consumer, counted)
		if err != nil {
			return nil, nil, err
		}
		entries = es
	}
	return append(entries, kept...), counts, nil
}

// keepCount returns the count kept for id, if there is one and Redis's
// count now is not past it: delivered since it was kept (another server
// claimed it), the kept count is stale, and claiming with it (XCLAIM
// RETRYCOUNT) would set the entry's delivery counter back.
func keepCount(keep map[string]int64, id string, now int64) (int64, bool) {
	n, ok := keep[id]
	if ok && n == 0 {
		// not known: a Requeue handed over by the reader this one
		// replaced. Redis's count, which has the delivery no handler saw
		n = now
	}
	return n, ok && n > 0 && n >= now
}

// keepAlive resets the idle time of every entry in s's in-flight set
// (XCLAIM ... JUSTID to ourselves: no delivery counted), so that no other
// server claims them.
func (r *StreamReader) keepAlive(ctx context.Context, s *stream, spec StreamSpec) error {
	s.mu.Lock()
	ids := make([]string, 0, len(s.tracked))
	for id := range s.tracked {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	pipe := r.cmd.Pipeline()
	for i := 0; i < len(ids); i += 1000 {
		args := []any{"xclaim", spec.Stream, spec.Group, r.opt.Consumer, 0}
		for _, id := range ids[i:min(i+1000, len(ids))] {
			args = append(args, id)
		}
		pipe.Do(ctx, append(args, "justid")...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		if notNow(err) { // again after the backoff: not left to grow idle
			return fmt.Errorf("stream %q: resetting idle times: %w", spec.Stream, err)
		}
		r.refused(s, spec, "resetting idle times", err)
	}
	return nil
}

// autoClaim takes over entries other consumers left pending longer than
// ClaimAfter (XAUTOCLAIM ... JUSTID, one page per pass: no delivery counted
// yet), claims them as a retry does (their counts read, then the XCLAIM
// that counts a delivery) and offers them, or dead-letters those that had
// MaxDeliveries deliveries. Taken over but not claimed (BUSY, a lost
// connection), they are retried at once, as Nacked entries are.
func (r *StreamReader) autoClaim(ctx context.Context, s *stream, spec StreamSpec) error {
	s.mu.Lock()
	room := int64(r.opt.MaxInFlight - len(s.tracked))
	held := len(s.held)
	cursor := cmp.Or(s.claimCursor, "0-0")
	s.mu.Unlock()
	if room <= 0 || held > 0 {
		return nil
	}
	v, err := r.cmd.Do(ctx, "xautoclaim", spec.Stream, spec.Group, r.opt.Consumer,
		spec.ClaimAfter.Milliseconds(), cursor, "count", min(room, r.opt.Count), "justid").Result()
	if err != nil {
		if notNow(err) {
			return fmt.Errorf("stream %q: claiming: %w", spec.Stream, err)
		}
		r.refused(s, spec, "claiming", err)
		return nil
	}
	reply, _ := v.([]any)
	if len(reply) < 2 {
		return nil
	}
	next, _ := reply[0].(string)
	s.claimCursor = next
	s.claimPasses.Add(1)
	list, _ := reply[1].([]any)
	var fresh []string
	s.mu.Lock()
	for _, x := range list {
		if id, _ := x.(string); id != "" && s.tracked[id] == nil {
			fresh = append(fresh, id)
			s.track(id, &flight{state: stClaiming}) // not re-read meanwhile
		}
	}
	s.mu.Unlock()
	if len(fresh) == 0 {
		return nil
	}
	s.claimed.Add(uint64(len(fresh)))
	r.opt.Logf("realtime: stream %q: claimed %d entries idle over %v", spec.Stream, len(fresh), spec.ClaimAfter)
	// The consumer's own entries given back uncounted (Kept) keep their
	// count, as in the pending re-read.
	keep := r.kept.take(s.key, fresh)
	entries, counts, err := r.claimWithCounts(ctx, spec, fresh, keep)
	if err != nil {
		s.mu.Lock()
		var retry []string
		now := time.Now()
		for _, id := range fresh {
			if f := s.tracked[id]; f == nil || f.state != stClaiming {
				continue // settled meanwhile
			}
			if s.removed { // pending, for the next reader's re-read
				delete(s.tracked, id)
				continue
			}
			f := &flight{state: stRetry, at: now}
			if n, ok := keep[id]; ok { // retried with it
				f.deliveries, f.requeued = n, true
				delete(keep, id)
			}
			s.track(id, f)
			retry = append(retry, id)
		}
		s.retries = append(retry, s.retries...)
		s.mu.Unlock()
		r.keepAll(s, keep) // removed, or settled meanwhile: kept again
		signal(s.room)
		if notNow(err) {
			return fmt.Errorf("stream %q: claiming: %w", spec.Stream, err)
		}
		r.refused(s, spec, "claiming", err)
		return nil
	}
	r.offerOrDead(s, spec, fresh, entries, counts)
	return nil
}

// refused logs and reports an error reply to the worker's periodic work,
// once until a different one comes (NOGROUP is the reader's to handle).
func (r *StreamReader) refused(s *stream, spec StreamSpec, what string, err error) {
	if isNoGroup(err) {
		return
	}
	msg := what + ": " + err.Error()
	if s.lastRefusal == msg {
		return
	}
	s.lastRefusal = msg
	r.opt.Logf("realtime: stream %q: %s", spec.Stream, msg)
	r.sink.StreamEvent(spec.Stream, "error", msg)
}

// refreshStats reads the group's pending count and lag; errors leave the
// old figures, and only refusals are reported (BUSY, LOADING: next time).
func (r *StreamReader) refreshStats(ctx context.Context, s *stream, spec StreamSpec) {
	if p, err := r.cmd.XPending(ctx, spec.Stream, spec.Group).Result(); err == nil {
		s.pending.Store(p.Count)
	} else if !notNow(err) {
		r.refused(s, spec, "reading the pending count", err)
	}
	groups, err := r.cmd.XInfoGroups(ctx, spec.Stream).Result()
	if err != nil {
		if !notNow(err) {
			r.refused(s, spec, "reading the lag", err)
		}
		return
	}
	for _, g := range groups {
		if g.Name == spec.Group {
			s.lag.Store(g.Lag)
		}
	}
}
