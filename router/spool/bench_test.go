package spool

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

var benchPayload = []byte(strings.Repeat("p", 200))

func benchAdd(b *testing.B, o Options, syncEvery int) {
	o.MaxBytes = 1 << 40
	s := open(b, filepath.Join(b.TempDir(), "spool.db"), o)
	b.SetBytes(int64(len(benchPayload)))
	b.ResetTimer()
	start := time.Now()
	for i := 1; i <= b.N; i++ {
		if _, err := s.Add("bench:stream", benchPayload); err != nil {
			b.Fatal(err)
		}
		if i%syncEvery == 0 {
			if err := s.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkAddSync: entries of 200 bytes Added and committed (a Sync every
// 1000 bounds the memory), synchronous=NORMAL.
func BenchmarkAddSync(b *testing.B) { benchAdd(b, Options{}, 1000) }

// BenchmarkAddSyncFull: the same with FullSync (an fsync per batch).
func BenchmarkAddSyncFull(b *testing.B) { benchAdd(b, Options{FullSync: true}, 1000) }

// BenchmarkAddSyncEach: a Sync after every Add, so every commit holds one
// entry: the cost of one transaction.
func BenchmarkAddSyncEach(b *testing.B) { benchAdd(b, Options{}, 1) }

// BenchmarkFlush: spooled entries of 200 bytes XADDed to a local
// redis-server and deleted, pipelines of DefaultFlushBatch.
func BenchmarkFlush(b *testing.B) {
	srv := redistest.Start(b)
	c := client(b, srv.Addr(), nil)
	s := open(b, filepath.Join(b.TempDir(), "spool.db"), Options{MaxBytes: 1 << 40})
	for i := 0; i < b.N; i++ {
		if _, err := s.Add("bench:stream", benchPayload); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Sync(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(benchPayload)))
	b.ResetTimer()
	start := time.Now()
	n, err := s.Flush(context.Background(), c, 0)
	if err != nil || n != b.N {
		b.Fatalf("flushed %d of %d: %v", n, b.N, err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkAdd: the caller's side of Add alone (what the game's thread
// would pay); the Syncs that bound the memory are not timed.
func BenchmarkAdd(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "spool.db"), Options{MaxBytes: 1 << 40})
	b.SetBytes(int64(len(benchPayload)))
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		if _, err := s.Add("bench:stream", benchPayload); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 0 {
			b.StopTimer()
			if err := s.Sync(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
}
