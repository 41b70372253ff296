package router

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Drop reasons, as GetStats names them.
const (
	DropQueueFull    = "queue_full"
	DropRateLimited  = "rate_limited"
	DropTooBig       = "too_big"
	DropNoRoute      = "no_route"
	DropNoHandler    = "no_handler"
	DropHandlerError = "handler_error"
	DropInternal     = "internal" // an internal error of the module (a recovered Go panic)
)

// Stats are the router's global counters. Safe for concurrent use.
type Stats struct {
	Received     atomic.Uint64 // messages handed over by the backend
	Published    atomic.Uint64 // Publish calls accepted by the backend
	PublishFails atomic.Uint64 // Publish calls refused (outbox full, closed) or messages the server refused
	Refused      atomic.Uint64 // of PublishFails, messages the server refused (dropped, not retried)
	Appended     atomic.Uint64 // Append calls accepted by the backend (queued or spooled)
	AppendFails  atomic.Uint64 // Append calls refused (outbox and spool full, closed) or entries dropped later (refused by the server, discarded)
	Queued       atomic.Uint64 // events queued (one per matching route)
	Dispatched   atomic.Uint64
	DecodeErrors atomic.Uint64    // JSON routes' payloads delivered raw
	DeadLettered atomic.Uint64    // stream entries moved to "<stream>:dead"
	dropped      [7]atomic.Uint64 // by reason, in dropReasons order
	Latency      Histogram        // receipt to dispatch: Own + Wait
	Own          Histogram        // the module's own time: receipt to queued (matching, rate limit, JSON decoding)
	Wait         Histogram        // queued to dispatch: waiting for the main thread's next pump
}

var dropReasons = [...]string{DropQueueFull, DropRateLimited, DropTooBig, DropNoRoute, DropNoHandler, DropHandlerError, DropInternal}

// Drop counts one event dropped for reason.
func (s *Stats) Drop(reason string) {
	for i, r := range dropReasons {
		if r == reason {
			s.dropped[i].Add(1)
			return
		}
	}
}

// Dropped returns the drop counts by reason.
func (s *Stats) Dropped() map[string]uint64 {
	m := make(map[string]uint64, len(dropReasons))
	for i, r := range dropReasons {
		m[r] = s.dropped[i].Load()
	}
	return m
}

// Histogram counts durations in log-linear buckets: exact below 16ns, then
// 16 buckets per power of two, so a bucket's width is at most 1/16 of its
// lower bound and a quantile read at a bucket's middle is within 3.2% of
// the true value (6.25% at worst for the bucket's upper bound), from 16ns
// to 2^40ns (18 minutes; longer durations count in the last bucket). Safe
// for concurrent use; Observe is two atomic adds.
type Histogram struct {
	buckets [histBuckets]atomic.Uint64
	sum     atomic.Int64 // nanoseconds
}

const (
	histSub     = 16 // buckets per power of two; a power of two
	histSubBits = 4  // log2(histSub)
	histMaxExp  = 40
	histBuckets = histSub + (histMaxExp-histSubBits+1)*histSub
)

// histIndex is the bucket of ns nanoseconds.
func histIndex(ns uint64) int {
	if ns < histSub {
		return int(ns)
	}
	e := bits.Len64(ns) - 1 // ns is in [2^e, 2^(e+1))
	if e > histMaxExp {
		return histBuckets - 1
	}
	sub := int(ns>>(e-histSubBits)) & (histSub - 1)
	return histSub + (e-histSubBits)*histSub + sub
}

// histBounds returns bucket i's range [lo, hi) in nanoseconds.
func histBounds(i int) (lo, hi uint64) {
	if i < histSub {
		return uint64(i), uint64(i) + 1
	}
	e := (i-histSub)/histSub + histSubBits
	sub := uint64((i - histSub) % histSub)
	return (histSub + sub) << (e - histSubBits), (histSub + sub + 1) << (e - histSubBits)
}

// Observe records one duration (a negative one as 0).
func (h *Histogram) Observe(d time.Duration) {
	ns := max(d, 0)
	h.buckets[histIndex(uint64(ns))].Add(1)
	h.sum.Add(int64(ns))
}

// Snapshot returns the bucket counts, their total and the sum of the
// observed durations.
func (h *Histogram) Snapshot() (counts []uint64, total uint64, sum time.Duration) {
	counts = make([]uint64, histBuckets)
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	return counts, total, time.Duration(h.sum.Load())
}

// Quantile returns the q-quantile (0 < q <= 1) as the middle of its
// bucket, or 0 with no observations.
func (h *Histogram) Quantile(q float64) time.Duration {
	counts, total, _ := h.Snapshot()
	return QuantileOf(counts, total, q)
}

// QuantileOf is Quantile of a Snapshot's counts and total.
func QuantileOf(counts []uint64, total uint64, q float64) time.Duration {
	if total == 0 {
		return 0
	}
	target := max(uint64(math.Ceil(q*float64(total))), 1)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= target {
			lo, hi := histBounds(i)
			return time.Duration(lo + (hi-lo)/2)
		}
	}
	lo, _ := histBounds(histBuckets - 1)
	return time.Duration(lo)
}

// CountBelow returns, for each bound (ascending), the number of
// observations in buckets that end at or below it: a Prometheus histogram's
// le buckets, each within one bucket's width (6.25%) of the bound.
func CountBelow(counts []uint64, bounds []time.Duration) []uint64 {
	out := make([]uint64, len(bounds))
	var seen uint64
	j := 0
	for i, c := range counts {
		_, hi := histBounds(i)
		for j < len(bounds) && hi > uint64(bounds[j]) {
			out[j] = seen
			j++
		}
		seen += c
	}
	for ; j < len(bounds); j++ {
		out[j] = seen
	}
	return out
}
