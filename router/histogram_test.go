package router

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHistogramBuckets: every duration lands in the bucket whose range
// holds it, and every bucket is at most 1/16 (6.25%) of its lower bound
// wide, from 16ns to 2^40ns.
func TestHistogramBuckets(t *testing.T) {
	prevHi := uint64(0)
	for i := range histBuckets {
		lo, hi := histBounds(i)
		require.Equal(t, prevHi, lo, "bucket %d starts where %d ends", i, i-1)
		if lo >= 16 {
			assert.LessOrEqual(t, float64(hi-lo)/float64(lo), 1.0/16, "bucket %d [%d, %d)", i, lo, hi)
		}
		assert.Equal(t, i, histIndex(lo))
		assert.Equal(t, i, histIndex(hi-1))
		prevHi = hi
	}
	assert.Equal(t, histBuckets-1, histIndex(math.MaxUint64))
}

// TestHistogramQuantiles: quantiles of skewed samples (a tick-bound wait
// around 15ms with a tail, and sub-microsecond times) are within 10% of the
// exact ones.
func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for name, gen := range map[string]func() time.Duration{
		"tick-bound": func() time.Duration {
			return time.Duration(rng.ExpFloat64()*float64(5*time.Millisecond)) + 15*time.Millisecond
		},
		"sub-µs": func() time.Duration { return time.Duration(50 + rng.IntN(900)) },
		"wide":   func() time.Duration { return time.Duration(math.Exp(rng.Float64() * 25)) },
	} {
		var h Histogram
		samples := make([]time.Duration, 20000)
		var sum time.Duration
		for i := range samples {
			samples[i] = gen()
			sum += samples[i]
			h.Observe(samples[i])
		}
		slices.Sort(samples)
		for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
			exact := samples[int(math.Ceil(q*float64(len(samples))))-1]
			got := h.Quantile(q)
			assert.InEpsilon(t, float64(exact), float64(got), 0.10, "%s p%v: exact %s, histogram %s", name, q*100, exact, got)
		}
		_, total, hsum := h.Snapshot()
		assert.Equal(t, uint64(len(samples)), total)
		assert.Equal(t, sum, hsum)
	}
}

// TestCountBelow: Prometheus's cumulative le buckets from the fine ones.
func TestCountBelow(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{500 * time.Microsecond, 900 * time.Microsecond, 3 * time.Millisecond, 40 * time.Millisecond, time.Hour} {
		h.Observe(d)
	}
	counts, _, _ := h.Snapshot()
	assert.Equal(t, []uint64{0, 2, 3, 3, 4, 4}, CountBelow(counts, []time.Duration{100 * time.Microsecond, time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond, time.Minute}))
	var empty Histogram
	assert.Equal(t, time.Duration(0), empty.Quantile(0.5))
}

// BenchmarkDispatched is the main thread's accounting of one dispatched
// event: counters and the latency histograms.
func BenchmarkDispatched(b *testing.B) {
	r, err := New(parseConfig(b, "[[routes]]\npattern = \"player:*\"\nhandler = \"h\"\n"))
	require.NoError(b, err)
	e := &Event{Kind: KindMessage, Route: r.Table().Routes()[0], Received: 1}
	now := int64(15 * time.Millisecond)
	for b.Loop() {
		r.Dispatched(e, now)
	}
}
