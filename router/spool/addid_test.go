package spool

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestAddIDOutOfOrder: entries handed over late with older sequences (a
// sender's memory moved to disk) are kept and peeked in sequence order,
// Sync covers them, and a reopened spool hands out sequences above every
// one it held.
func TestAddIDOutOfOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := open(t, path, Options{ServerID: "srv"})
	var q Sequence
	q.Raise(s.Floor())
	a, b, c := q.Next(), q.Next(), q.Next()
	if !(s.Floor() < a && a < b && b < c) {
		t.Fatalf("sequence %d %d %d not above floor %d and increasing", a, b, c, s.Floor())
	}
	for _, seq := range []int64{c, a, b} {
		if _, err := s.AddID(seq, "st", []byte{byte(seq % 251)}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	got, err := s.Peek(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Seq != a || got[1].Seq != b || got[2].Seq != c {
		t.Fatalf("peeked %+v, want seqs %d %d %d", got, a, b, c)
	}
	if got[0].ID != "srv-"+strconv.FormatInt(a, 10) {
		t.Fatalf("id %q", got[0].ID)
	}
	// A copy of a held entry is ignored, and not counted twice.
	if _, err := s.AddID(b, "st", []byte{1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Depth != 3 || st.Added != 3 {
		t.Fatalf("after a copy: depth %d, added %d; want 3, 3", st.Depth, st.Added)
	}
	if got, _ := s.Peek(10); len(got) != 3 || got[1].Payload[0] != byte(b%251) {
		t.Fatalf("after a copy: %+v", got)
	}
	if _, err := s.AddID(0, "st", nil, time.Now()); err == nil {
		t.Fatal("AddID(0) accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, path, Options{ServerID: "srv"})
	if s2.Floor() < c {
		t.Fatalf("reopened floor %d below the highest held sequence %d", s2.Floor(), c)
	}
	id, err := s2.Add("st", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, seq, _ := ParseID(id); seq <= c {
		t.Fatalf("Add after reopen gave seq %d, not above %d", seq, c)
	}
	if st := s2.Stats(); st.Depth != 4 {
		t.Fatalf("depth %d, want 4", st.Depth)
	}
}

// TestFlushDeleteSparesAnEntryPeekedPast: Flush deletes exactly the
// entries it sent. One committed after the Peek with an older sequence
// (AddID: a sender's memory moved to disk), and one above the batch, stay
// on disk and in the figures; more than one statement's worth (500) of
// entries go in one delete.
func TestFlushDeleteSparesAnEntryPeekedPast(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "spool.db"), Options{ServerID: "srv"})
	var q Sequence
	q.Raise(s.Floor())
	late := q.Next() // taken first, added last
	var sent []int64
	for range 1200 {
		seq := q.Next()
		if _, err := s.AddID(seq, "st", []byte("0123456789"), time.Now()); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, seq)
	}
	above := sent[len(sent)-1]
	sent = sent[:len(sent)-1]
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddID(late, "st", []byte("late"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.delete(delReq{upto: sent[len(sent)-1], seqs: sent, flushed: uint64(len(sent))}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Peek(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Seq != late || got[1].Seq != above {
		t.Fatalf("left %+v, want seqs %d (late) and %d (above)", got, late, above)
	}
	want := int64(len("st")+len("late")+EntryOverhead) + int64(len("st")+len("0123456789")+EntryOverhead)
	if st := s.Stats(); st.Depth != 2 || st.Bytes != want || st.Flushed != uint64(len(sent)) {
		t.Fatalf("figures %+v, want depth 2, bytes %d, flushed %d", st, want, len(sent))
	}
}
