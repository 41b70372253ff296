package spool

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// modelEntry is what the model remembers of an entry.
type modelEntry struct {
	seq             int64
	stream, payload string
}

// model is the spool as a slice: what it must hold, in order.
type model struct {
	entries []modelEntry
	nextSeq int64 // never goes back, whatever is deleted or reopened
	bytes   int64
	added   uint64 // since the last open
	dropped uint64
	flushed uint64
}

func (m *model) size(e modelEntry) int64 {
	return int64(len(e.stream)+len(e.payload)) + EntryOverhead
}

// testSeed is $SPOOL_SEED, or a random seed.
func testSeed() uint64 {
	if s := os.Getenv("SPOOL_SEED"); s != "" {
		seed, _ := strconv.ParseUint(s, 10, 64)
		return seed
	}
	return rand.Uint64()
}

// TestModel runs random Add, Sync, Peek, Delete and reopen against a tiny
// spool and checks each step against the model. SPOOL_SEED=n replays a
// seed; SPOOL_STEPS=n changes the length.
func TestModel(t *testing.T) {
	seed := testSeed()
	steps := 2000
	if s := os.Getenv("SPOOL_STEPS"); s != "" {
		steps, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d (SPOOL_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	const maxBytes = 1500
	path := filepath.Join(t.TempDir(), "spool.db")
	opts := Options{ServerID: "m", MaxBytes: maxBytes}
	s, err := Open(path, opts)
	require.NoError(t, err)
	defer func() { _ = s.Close() }()
	m := model{}
	s.mu.Lock()
	m.nextSeq = s.nextSeq // a new file starts from the clock
	s.mu.Unlock()
	synced := true // everything Added is committed (so Peek sees it all)
	var trace []string
	fail := func(format string, args ...any) {
		t.Helper()
		n := len(trace)
		t.Fatalf("seed %d, step %d: %s\nlast steps:\n%v", seed, n, fmt.Sprintf(format, args...), trace[max(0, n-12):])
	}
	streams := []string{"a", "bb", "stream:c"}
	for step := 0; step < steps; step++ {
		switch op := rng.IntN(100); {
		case op < 55: // Add
			e := modelEntry{stream: streams[rng.IntN(len(streams))]}
			b := make([]byte, rng.IntN(120))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			e.payload = string(b)
			trace = append(trace, fmt.Sprintf("Add(%q, %d bytes)", e.stream, len(b)))
			id, err := s.Add(e.stream, b)
			if m.bytes+m.size(e) > maxBytes {
				if err != ErrFull {
					fail("Add over max_bytes: err %v, want ErrFull", err)
				}
				m.dropped++
				break
			}
			if err != nil {
				fail("Add: %v", err)
			}
			e.seq = m.nextSeq
			m.nextSeq++
			if want := fmt.Sprintf("m-%d", e.seq); id != want {
				fail("Add returned id %s, want %s", id, want)
			}
			m.entries = append(m.entries, e)
			m.bytes += m.size(e)
			m.added++
			synced = false
		case op < 65:
			trace = append(trace, "Sync")
			if err := s.Sync(); err != nil {
				fail("Sync: %v", err)
			}
			synced = true
		case op < 85:
			n := rng.IntN(20)
			trace = append(trace, fmt.Sprintf("Peek(%d)", n))
			got, err := s.Peek(n)
			if err != nil {
				fail("Peek: %v", err)
			}
			if len(got) > n || len(got) > len(m.entries) {
				fail("Peek(%d) returned %d entries, %d held", n, len(got), len(m.entries))
			}
			if synced && len(got) != min(n, len(m.entries)) {
				fail("Peek(%d) after Sync returned %d entries, %d held", n, len(got), len(m.entries))
			}
			for i, g := range got {
				w := m.entries[i]
				if g.Seq != w.seq || g.Stream != w.stream || string(g.Payload) != w.payload || g.ID != fmt.Sprintf("m-%d", w.seq) {
					fail("Peek entry %d: got seq %d %q, want seq %d %q", i, g.Seq, g.Stream, w.seq, w.stream)
				}
			}
			if synced && len(got) > 0 && !s.Stats().Oldest.Equal(got[0].At) {
				fail("Stats.Oldest %v, oldest entry's At %v", s.Stats().Oldest, got[0].At)
			}
		case op < 95:
			// Delete applies to committed entries, as after a Peek.
			if err := s.Sync(); err != nil {
				fail("Sync: %v", err)
			}
			synced = true
			upto := m.nextSeq - 1 - int64(rng.IntN(8))
			if len(m.entries) > 0 && rng.IntN(2) == 0 {
				upto = m.entries[rng.IntN(len(m.entries))].seq
			}
			trace = append(trace, fmt.Sprintf("Delete(%d)", upto))
			if err := s.Delete(upto); err != nil {
				fail("Delete: %v", err)
			}
			for len(m.entries) > 0 && m.entries[0].seq <= upto {
				m.bytes -= m.size(m.entries[0])
				m.entries = m.entries[1:]
				m.flushed++
			}
		default:
			trace = append(trace, "reopen")
			if err := s.Close(); err != nil {
				fail("Close: %v", err)
			}
			if s, err = Open(path, opts); err != nil {
				fail("Open: %v", err)
			}
			m.added, m.dropped, m.flushed = 0, 0, 0
			s.mu.Lock()
			if s.nextSeq < m.nextSeq {
				fail("reopened with next sequence %d, below %d", s.nextSeq, m.nextSeq)
			}
			m.nextSeq = s.nextSeq
			s.mu.Unlock()
			synced = true
		}
		st := s.Stats()
		if st.Depth != int64(len(m.entries)) || st.Bytes != m.bytes || st.Added != m.added ||
			st.DroppedFull != m.dropped || st.Flushed != m.flushed || st.Oldest.IsZero() != (len(m.entries) == 0) {
			fail("Stats %+v, model depth %d bytes %d added %d dropped %d flushed %d",
				st, len(m.entries), m.bytes, m.added, m.dropped, m.flushed)
		}
	}
}
