package spool

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(killChild(path))
	}
	os.Exit(m.Run())
}

// logLines collects what a spool logs.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func open(t testing.TB, path string, o Options) *Spool {
	t.Helper()
	if o.ServerID == "" {
		o.ServerID = "srv1"
	}
	s, err := Open(path, o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func add(t testing.TB, s *Spool, stream, payload string) string {
	t.Helper()
	id, err := s.Add(stream, []byte(payload))
	require.NoError(t, err)
	return id
}

func peekAll(t testing.TB, s *Spool) []Entry {
	t.Helper()
	require.NoError(t, s.Sync())
	es, err := s.Peek(1 << 30)
	require.NoError(t, err)
	return es
}

func TestOrderAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "realtime", "spool.db")
	type sent struct{ id, stream, payload string }
	var want []sent
	for round := 0; round < 3; round++ {
		s := open(t, path, Options{})
		for i := 0; i < 40; i++ {
			stream := fmt.Sprintf("s%d", i%3)
			payload := fmt.Sprintf("round %d entry %d \x00 bytes", round, i)
			want = append(want, sent{add(t, s, stream, payload), stream, payload})
		}
		require.NoError(t, s.Close())
	}
	s := open(t, path, Options{})
	got := peekAll(t, s)
	require.Len(t, got, len(want))
	for i, e := range got {
		assert.Equal(t, want[i].id, e.ID, "entry %d", i)
		assert.Equal(t, fmt.Sprintf("srv1-%d", e.Seq), e.ID)
		assert.Equal(t, want[i].stream, e.Stream)
		assert.Equal(t, want[i].payload, string(e.Payload))
		if i > 0 {
			assert.Greater(t, e.Seq, got[i-1].Seq)
		}
	}
	st := s.Stats()
	assert.EqualValues(t, len(want), st.Depth)
	assert.False(t, st.Oldest.IsZero())

	// Emptied, the spool still remembers where its sequence was: an ID
	// that reached Redis is never handed out again.
	last := got[len(got)-1].Seq
	require.NoError(t, s.Delete(last))
	assert.Equal(t, Stats{Flushed: uint64(len(want))}, s.Stats())
	require.NoError(t, s.Close())
	s = open(t, path, Options{})
	_, seq, ok := ParseID(add(t, s, "s0", "after"))
	require.True(t, ok)
	assert.Greater(t, seq, last)
	last = seq

	// A lost spool file does not send the sequence back: a new file starts
	// from the clock.
	require.NoError(t, s.Close())
	require.NoError(t, os.Remove(path))
	s = open(t, path, Options{})
	_, seq, ok = ParseID(add(t, s, "s0", "new file"))
	require.True(t, ok)
	assert.Greater(t, seq, last)
}

func TestParseID(t *testing.T) {
	for _, c := range []struct {
		id     string
		server string
		seq    int64
		ok     bool
	}{
		{"srv1-42", "srv1", 42, true},
		{"ttt-1-1795788812458373", "ttt-1", 1795788812458373, true},
		{"-7", "", 7, true},
		{"srv1", "", 0, false},
		{"srv1-", "", 0, false},
		{"srv1-x", "", 0, false},
		{"srv1--3", "srv1-", 3, true},
	} {
		server, seq, ok := ParseID(c.id)
		assert.Equal(t, c.ok, ok, c.id)
		if c.ok {
			assert.Equal(t, c.server, server, c.id)
			assert.Equal(t, c.seq, seq, c.id)
		}
	}
}

func TestMaxBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	var log logLines
	const max = 10 * (EntryOverhead + 2 + 30) // ten entries of stream "s1" and 30 bytes
	s := open(t, path, Options{MaxBytes: max, Logf: log.logf})
	payload := strings.Repeat("x", 30)
	var ids []string
	for i := 0; i < 10; i++ {
		ids = append(ids, add(t, s, "s1", payload))
	}
	for i := 0; i < 5; i++ {
		_, err := s.Add("s1", []byte(payload))
		require.ErrorIs(t, err, ErrFull)
	}
	st := s.Stats()
	assert.EqualValues(t, 10, st.Depth)
	assert.EqualValues(t, max, st.Bytes)
	assert.EqualValues(t, 10, st.Added)
	assert.EqualValues(t, 5, st.DroppedFull)
	assert.EqualValues(t, 5, st.Dropped())
	// The newest entries are the ones dropped: what is held is the first ten.
	got := peekAll(t, s)
	require.Len(t, got, 10)
	for i := range got {
		assert.Equal(t, ids[i], got[i].ID)
	}
	// The first drop of a run is logged, not every one.
	assert.Contains(t, log.String(), "dropped 1 new entries")
	assert.Equal(t, 1, strings.Count(log.String(), "dropped"))

	// An entry that fits exactly still goes in once space is freed.
	require.NoError(t, s.Delete(got[0].Seq))
	add(t, s, "s1", payload)
	_, err := s.Add("s1", nil)
	require.ErrorIs(t, err, ErrFull)

	// The bound holds across a restart: the held bytes are read back.
	require.NoError(t, s.Close())
	s = open(t, path, Options{MaxBytes: max})
	assert.EqualValues(t, max, s.Stats().Bytes)
	_, err = s.Add("s1", nil)
	require.ErrorIs(t, err, ErrFull)
	assert.EqualValues(t, 1, s.Stats().DroppedFull)
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()

	garbage := filepath.Join(dir, "garbage.db")
	require.NoError(t, os.WriteFile(garbage, bytes.Repeat([]byte("not sqlite "), 1000), 0o644))
	_, err := Open(garbage, Options{ServerID: "a"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), garbage)
	assert.Contains(t, err.Error(), "not a database")

	notDir := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(notDir, nil, 0o644))
	under := filepath.Join(notDir, "spool.db")
	_, err = Open(under, Options{ServerID: "a"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), under)

	other := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite", other)
	require.NoError(t, err)
	_, err = db.Exec("CREATE TABLE users (name TEXT)")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	_, err = Open(other, Options{ServerID: "a"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), other)
	assert.Contains(t, err.Error(), "not a spool")

	_, err = Open(filepath.Join(dir, "x.db"), Options{})
	assert.ErrorContains(t, err, "no server id")

	// One spool, one owner: a second Open fails while the first is open.
	path := filepath.Join(dir, "spool.db")
	s := open(t, path, Options{})
	add(t, s, "s", "p")
	require.NoError(t, s.Sync())
	_, err = Open(path, Options{ServerID: "b"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), path)
	assert.Contains(t, err.Error(), "open elsewhere")
	require.NoError(t, s.Close())
	s = open(t, path, Options{})
	assert.Len(t, peekAll(t, s), 1)
}

func TestClosed(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
	add(t, s, "s", "p")
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err := s.Add("s", nil)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = s.Peek(1)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, s.Delete(1), ErrClosed)
	assert.NoError(t, s.Sync(), "everything Added was committed by Close")
}

func TestOldest(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
	assert.True(t, s.Stats().Oldest.IsZero())
	assert.Zero(t, s.Stats().OldestAge(time.Now()))
	before := time.Now().Add(-time.Millisecond)
	add(t, s, "s", "1")
	first := s.Stats().Oldest
	assert.False(t, first.Before(before.Truncate(time.Millisecond)))
	for first.Equal(time.UnixMilli(time.Now().UnixMilli())) {
		time.Sleep(time.Millisecond) // the next entry must carry a later millisecond
	}
	add(t, s, "s", "2")
	assert.Equal(t, first, s.Stats().Oldest)
	got := peekAll(t, s)
	require.NoError(t, s.Delete(got[0].Seq))
	assert.Equal(t, got[1].At, s.Stats().Oldest)
	assert.True(t, got[1].At.After(first))
	require.NoError(t, s.Delete(got[1].Seq))
	assert.True(t, s.Stats().Oldest.IsZero())
}

// TestConcurrentAdd: Adds from several goroutines while another reads and
// deletes; every ID is distinct and everything ends up committed or deleted.
func TestConcurrentAdd(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
	const writers, each = 4, 500
	ids := make(chan string, writers*each)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				id, err := s.Add(fmt.Sprintf("w%d", w), []byte(fmt.Sprint(i)))
				if err != nil {
					t.Error(err)
					return
				}
				ids <- id
			}
		}()
	}
	stop := make(chan struct{})
	deleted := make(chan int)
	go func() {
		n := 0
		for {
			es, err := s.Peek(50)
			if err != nil {
				t.Error(err)
				break
			}
			if len(es) > 0 {
				if err := s.Delete(es[len(es)-1].Seq); err != nil {
					t.Error(err)
					break
				}
				n += len(es)
			}
			select {
			case <-stop:
				deleted <- n
				return
			default:
			}
		}
		deleted <- n
	}()
	wg.Wait()
	close(stop)
	n := <-deleted
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		assert.False(t, seen[id], "duplicate id %s", id)
		seen[id] = true
	}
	rest := peekAll(t, s)
	assert.Equal(t, writers*each, n+len(rest))
	st := s.Stats()
	assert.EqualValues(t, len(rest), st.Depth)
	assert.EqualValues(t, n, st.Flushed)
	// Per stream, the entries left are in Add order.
	last := map[string]int{}
	for _, e := range rest {
		var i int
		fmt.Sscan(string(e.Payload), &i)
		if prev, ok := last[e.Stream]; ok {
			assert.Greater(t, i, prev)
		}
		last[e.Stream] = i
	}
}

// TestWriteFailure: when commits fail, Sync says so, the writer retries,
// and what is still uncommitted at Close is counted as lost and reported:
// nothing goes silently. (The database is closed under the writer to make
// every write fail.)
func TestWriteFailure(t *testing.T) {
	var log logLines
	s := open(t, filepath.Join(t.TempDir(), "spool.db"), Options{Logf: log.logf})
	add(t, s, "s", "1")
	add(t, s, "s", "2")
	require.NoError(t, s.Sync())
	require.NoError(t, s.db.Close())
	add(t, s, "s", "3")
	add(t, s, "s", "4")
	err := s.Sync()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "write")
	st := s.Stats()
	assert.EqualValues(t, 4, st.Depth, "the uncommitted entries are still held")
	assert.GreaterOrEqual(t, st.WriteErrors, uint64(1))
	// logged by the writer after it woke Sync's caller
	assert.Eventually(t, func() bool { return strings.Contains(log.String(), "write failed, retrying") }, 10*time.Second, time.Millisecond, "log: %s", log.String())

	err = s.Close()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "2 entries lost")
	st = s.Stats()
	assert.EqualValues(t, 2, st.DroppedWrite)
	assert.EqualValues(t, 2, st.Dropped())
	assert.EqualValues(t, 2, st.Depth)
	assert.Contains(t, log.String(), "2 entries lost")
}
