package router

import (
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
	Queued       atomic.Uint64 // events queued (one per matching route)
	Dispatched   atomic.Uint64
	DecodeErrors atomic.Uint64    // JSON routes' payloads delivered raw
	dropped      [7]atomic.Uint64 // by reason, in dropReasons order
	Latency      Histogram        // receipt to dispatch
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

// Histogram counts durations in power-of-two microsecond buckets: bucket i
// holds durations in [2^(i-1), 2^i) µs, bucket 0 those under 1µs. Safe for
// concurrent use.
type Histogram struct {
	buckets [32]atomic.Uint64
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	i := min(bits.Len64(us), len(h.buckets)-1)
	h.buckets[i].Add(1)
}

// Quantile returns an upper bound of the q-quantile (0 < q <= 1), or 0 with
// no observations.
func (h *Histogram) Quantile(q float64) time.Duration {
	var counts [32]uint64
	var total uint64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	target := uint64(q*float64(total) + 0.5)
	target = max(target, 1)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= target {
			return time.Duration(uint64(1)<<i) * time.Microsecond
		}
	}
	return time.Duration(uint64(1)<<31) * time.Microsecond
}
