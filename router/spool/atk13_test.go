package spool

import (
	"bytes"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestOddStreamNamesRoundTrip: a stream name with a NUL byte, invalid
// UTF-8 or a long key, and a binary payload, come back from the file as
// they were added (a key is any bytes to Redis).
func TestOddStreamNamesRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	sp, err := Open(path, Options{ServerID: "x"})
	require.NoError(t, err)
	names := []string{"a\x00b", "\xff\xfe", "", string(make([]byte, 4096)), "é\x00\x00"}
	pay := []byte{0, 1, 2, 0xff, 0}
	for _, n := range names {
		_, err := sp.Add(n, pay)
		require.NoError(t, err)
	}
	require.NoError(t, sp.Sync())
	require.NoError(t, sp.Close())
	sp, err = Open(path, Options{ServerID: "x"})
	require.NoError(t, err)
	defer sp.Close()
	es, err := sp.Peek(100)
	require.NoError(t, err)
	require.Len(t, es, len(names))
	for i, e := range es {
		require.Equal(t, []byte(names[i]), []byte(e.Stream), "entry %d", i)
		require.Equal(t, pay, e.Payload)
	}
}

// TestOpenLeavesAForeignFileAlone: spool.path naming a file that is not a
// spool (a text file, another program's SQLite database) is refused and
// the file is left byte for byte as it was, with no -wal or -journal
// left beside it. A SQLite database was switched to WAL mode (a lasting
// change of its file format, header bytes 18-19) before Open found it was
// not a spool.
func TestOpenLeavesAForeignFileAlone(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "server.cfg")
	body := []byte("hostname \"my server\"\nrcon_password secret\n")
	require.NoError(t, os.WriteFile(text, body, 0o644))
	_, err := Open(text, Options{ServerID: "x"})
	require.Error(t, err)
	t.Log(err)
	got, _ := os.ReadFile(text)
	require.True(t, bytes.Equal(body, got), "the text file changed")
	require.NotContains(t, err.Error(), "rcon_password", "the error quotes no content")

	other := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite", other)
	require.NoError(t, err)
	_, err = db.Exec("CREATE TABLE t (x)")
	require.NoError(t, err)
	_, err = db.Exec("PRAGMA application_id = 5")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	before, _ := os.ReadFile(other)
	_, err = Open(other, Options{ServerID: "x"})
	require.Error(t, err)
	t.Log(err)
	after, _ := os.ReadFile(other)
	require.True(t, bytes.Equal(before, after), "the other program's database changed: header bytes 18-19 (journal mode) %x -> %x", before[18:20], after[18:20])
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		t.Log(e.Name())
	}
}

// TestForgetCounts: copies deleted by Forget leave the spool empty and
// count as Flushed (Redis has them), so that Added = Flushed + dropped +
// Depth, and an entry not named stays.
func TestForgetCounts(t *testing.T) {
	sp, err := Open(filepath.Join(t.TempDir(), "spool.db"), Options{ServerID: "x"})
	require.NoError(t, err)
	defer sp.Close()
	var seq Sequence
	seq.Raise(sp.Floor())
	var seqs []int64
	for i := range 5 {
		q := seq.Next()
		seqs = append(seqs, q)
		_, err := sp.AddID(q, "s", []byte{byte(i)}, time.Now())
		require.NoError(t, err)
	}
	require.NoError(t, sp.Forget(seqs[:4])) // waits for the commit itself
	st := sp.Stats()
	require.Equal(t, int64(1), st.Depth)
	require.Equal(t, int64(1+1+EntryOverhead), st.Bytes)
	require.Equal(t, uint64(5), st.Added)
	require.Equal(t, uint64(4), st.Flushed)
	es, err := sp.Peek(10)
	require.NoError(t, err)
	require.Len(t, es, 1)
	require.Equal(t, seqs[4], es[0].Seq)
}

// TestOldestAgeAfterClockStepBack: an entry spooled, then the wall clock
// stepped back an hour (NTP at boot, a VM resumed) or a previous run's
// clock ahead: realtime_spool_oldest_age_seconds, the heartbeat's and
// GetStats' oldest_age_ms were negative (-3600 s).
func TestOldestAgeAfterClockStepBack(t *testing.T) {
	now := time.Now()
	st := Stats{Depth: 1, Oldest: now.Add(time.Hour)}
	require.GreaterOrEqual(t, st.OldestAge(now), time.Duration(0))
}

// TestOpenRefusesANonFilePath: spool.path ":memory:" or a SQLite URI
// ("file::memory:", "file:data/x.db") opened an in-memory database (a
// spool that loses every entry at Close, reported as a spool all the
// same) or a URI, and MkdirAll made a "file:" directory first.
func TestOpenRefusesANonFilePath(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, p := range []string{":memory:", "file::memory:", "file:x.db", "FILE:x.db"} {
		sp, err := Open(p, Options{ServerID: "x"})
		if err == nil {
			sp.Close()
		}
		require.Error(t, err, "%q", p)
	}
	ents, _ := os.ReadDir(".")
	require.Empty(t, ents, "nothing created")
}
