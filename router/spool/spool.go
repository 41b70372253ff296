// Package spool is the disk spool of durable sends: a bounded FIFO of Redis
// Stream entries (stream name + payload) in a SQLite file, written while
// Redis is unreachable or the outbox is full, and flushed to Redis in order
// when it is back. It survives kill -9 of the process.
//
// # Model
//
// Add hands an entry to the spool's writer goroutine and returns at once:
// it never touches the disk, and the mutex it takes is never held across
// disk or network I/O, so the game's main thread may call it. The writer commits
// whatever has accumulated in one transaction (batched), in SQLite's WAL
// mode. Sync waits until every entry Added before it is committed: a
// committed entry survives kill -9 of the process (and, with
// Options.FullSync, a power loss).
//
// Every entry gets a sequence number and an ID "<server id>-<seq>"
// (ParseID splits it). Sequences increase in Add order and across restarts,
// with gaps: Open starts at the larger of the highest sequence the file has
// committed (kept even after its entry is deleted) and the current Unix
// time in microseconds. The file alone guarantees that an ID which may have
// reached Redis (only committed entries are sent) is never handed out
// again; the clock adds the IDs Add returned but a crash kept from the
// disk, and a spool file lost or moved away, unless the clock went back or
// more than a million IDs a second were handed out since the last Open.
//
// Peek reads the oldest committed entries, Delete removes them once Redis
// has them. Flush does both against Redis: pipelined XADDs, oldest first,
// each entry's payload in the field "data" and its ID in the field
// "rt_id", and deletes exactly what Redis acknowledged.
//
// # Bounds and drops
//
// The spool holds at most Options.MaxBytes of entries, counting each as
// len(stream) + len(payload) + EntryOverhead, whether it is still in memory
// or already on disk (the file itself is larger: SQLite's pages and WAL).
// When an entry does not fit, Add refuses it with ErrFull: the newest entry
// is the one dropped, so what is spooled stays an unbroken prefix of what
// was sent, in order, and the consumer sees no hole in the middle. Nothing
// is dropped silently: every drop is counted in Stats and logged
// (rate-limited) through Options.Logf:
//   - DroppedFull: Add refused the entry (ErrFull).
//   - DroppedRefused: Flush sent it and Redis refused it for good
//     (WRONGTYPE, NOPERM: see Refused); it is deleted, not retried forever.
//   - DroppedWrite: it was Added but could not be committed before Close
//     (the disk failed); Close returns that error.
//
// # Duplicates
//
// Delivery is at least once. An entry is sent again, with the same rt_id,
// when the process dies between Redis acknowledging an XADD and the spool
// deleting the entry, and when a connection breaks after Redis executed an
// XADD but before its reply arrived (the rest of the pipeline in flight at
// that moment). A consumer drops a duplicate by its rt_id. Within one
// stream, the entries of one spool arrive in sequence order, so remembering
// the highest sequence seen per stream and server id is enough, provided
// every entry carrying that server id went through this spool.
//
// # The file
//
// One process owns a spool file: it is opened in SQLite's exclusive locking
// mode, so a second Open of the same path (two servers configured with one
// spool path) fails instead of sending each other's entries. A file that is
// not a spool, is corrupt, or cannot be created is an error naming the path.
//
// All methods are safe for concurrent use.
package spool

import (
	"cmp"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
)

// EntryOverhead is what each entry counts against Options.MaxBytes beyond
// its stream name and payload, so that empty payloads are bounded too.
const EntryOverhead = 64

// Defaults of Options.
const (
	DefaultMaxBytes   = 64 << 20 // 64 MiB
	DefaultFlushBatch = 256      // entries per pipeline
	// FlushBatchBytes bounds the entry bytes of one flush pipeline; after
	// a pipeline left unanswered the bound is halved (down to one entry), so that
	// a flush gets through an uplink too slow to carry a full one within
	// the client's write timeout.
	FlushBatchBytes = 1 << 20
	flushOKRun      = 8
)

// applicationID marks a SQLite file as a spool ("rtsp"), schemaVersion its layout.
const (
	applicationID = 0x72747370
	schemaVersion = 1
)

// dropLogEvery is how often a run of drops is logged.
const dropLogEvery = 10 * time.Second

var (
	// ErrFull is returned by Add when the entry would take the spool over
	// Options.MaxBytes; the entry is dropped and counted.
	ErrFull = errors.New("spool: full")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("spool: closed")
)

// Options configure a Spool.
type Options struct {
	// ServerID is the prefix of entry IDs; required (IDs must differ
	// between servers).
	ServerID string
	// MaxBytes bounds the entries held (see the package doc). default: 64 MiB
	MaxBytes int64
	// FullSync makes each commit survive a power loss too (SQLite's
	// synchronous=FULL: an fsync per batch). default: false, a commit
	// survives the death of the process but not of the machine.
	FullSync bool
	// FlushBatch is the number of XADDs Flush pipelines at once. default: 256
	FlushBatch int
	// Logf receives the spool's log lines (drops, write errors). default: none
	Logf func(format string, args ...any)
}

// Entry is one spooled stream entry.
type Entry struct {
	Seq     int64     // position in the spool, increasing across restarts
	ID      string    // "<server id>-<seq>", sent as the field rt_id
	Stream  string    // the stream key
	Payload []byte    // sent as the field data
	At      time.Time // when it was Added (millisecond precision)

	n uint64 // the Add count when it was added, for Sync
}

func (e *Entry) size() int64 { return int64(len(e.Stream)+len(e.Payload)) + EntryOverhead }

// Stats are the spool's figures. Counters count since Open.
type Stats struct {
	Depth  int64     // entries held, in memory or on disk
	Bytes  int64     // their size as counted against MaxBytes
	Oldest time.Time // when the oldest held entry was Added; zero when empty

	Added          uint64 // entries accepted by Add
	Flushed        uint64 // entries Redis acknowledged, then deleted
	DroppedFull    uint64 // refused by Add: over MaxBytes
	DroppedRefused uint64 // refused by Redis for good during Flush, deleted
	DroppedWrite   uint64 // not committed before Close because the disk failed
	WriteErrors    uint64 // failed commits (retried with backoff)
}

// Dropped is the total of the drop counters.
func (st Stats) Dropped() uint64 { return st.DroppedFull + st.DroppedRefused + st.DroppedWrite }

// OldestAge is how long the oldest held entry has waited at now; 0 when
// empty, and when the wall clock is behind the entry's time (stepped back
// since, or a previous run's clock ahead): never negative.
func (st Stats) OldestAge(now time.Time) time.Duration {
	if st.Oldest.IsZero() {
		return 0
	}
	return max(now.Sub(st.Oldest), 0)
}

// Spool is an open spool file. Its zero value is not usable: call Open.
type Spool struct {
	path string
	o    Options
	db   *sql.DB

	mu         sync.Mutex
	cond       *sync.Cond // broadcast when committed, failed or stopped change
	pending    []Entry    // Added, not yet taken by the writer, in seq order
	inflight   []Entry    // taken by the writer, being committed
	nextSeq    int64      // the next sequence Add assigns
	added      uint64     // entries Added (Add and AddID) since Open
	committedN uint64     // every entry with n <= committedN is on disk (or deleted)
	failed     error      // the last commit's error; nil once one succeeds
	closed     bool       // Close was called: Add and friends refuse
	stopped    bool       // the writer has exited
	st         Stats
	drops      uint64    // DroppedFull not yet logged
	dropLog    time.Time // when drops were last logged

	wake chan struct{} // Add -> writer, capacity 1
	dels chan delReq   // Delete -> writer
	quit chan struct{} // closed by Close
	done chan struct{} // closed when the writer exits

	flushMu sync.Mutex // one Flush at a time
	// flushLimit bounds the bytes of one flush pipeline (under flushMu):
	// halved after a pipeline that failed (its write may have timed out
	// on an uplink too slow for it), doubled again after flushOKRun
	// answered in a row, up to FlushBatchBytes. 0: FlushBatchBytes.
	flushLimit int64
	flushOK    int
	// readMu is held by Peek while it reads the file, and taken by Close
	// before it closes it: a read in progress (a local one, never the
	// network) ends first, and the file's lock goes with the connection.
	readMu sync.RWMutex
}

type delReq struct {
	upto             int64
	seqs             []int64 // if set: exactly these (Flush), not all <= upto
	flushed, refused uint64  // what the deleted entries count as
	reply            chan error
}

// Open opens the spool at path, creating the file and its parent
// directories if needed, and starts its writer goroutine. The error names
// the path when the file cannot be created, is not a spool, is corrupt, or
// is held by another process.
func Open(path string, o Options) (*Spool, error) {
	if o.ServerID == "" {
		return nil, fmt.Errorf("spool %s: no server id", path)
	}
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("spool %s: the path may not contain '?'", path)
	}
	if err := CheckPath(path); err != nil {
		return nil, fmt.Errorf("spool %s: %w", path, err)
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.FlushBatch <= 0 {
		o.FlushBatch = DefaultFlushBatch
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("spool %s: %w", path, err)
	}
	syncMode := "NORMAL"
	if o.FullSync {
		syncMode = "FULL"
	}
	// Exclusive locking before WAL: no shared-memory index (nothing to
	// recover in a -shm file after kill -9), and the lock keeps a second
	// process out for as long as this one has the file open.
	// WAL is set by load once the file is known to be a spool (or empty):
	// the mode is a lasting change of the file, not for another program's.
	dsn := path + "?_pragma=locking_mode(EXCLUSIVE)" +
		"&_pragma=synchronous(" + syncMode + ")&_pragma=busy_timeout(1000)" +
		"&_auto_vacuum=incremental&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", path, err)
	}
	// One connection: it holds the exclusive lock, and every statement
	// waits its turn instead of meeting SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	s := &Spool{
		path: path, o: o, db: db,
		wake: make(chan struct{}, 1), dels: make(chan delReq),
		quit: make(chan struct{}), done: make(chan struct{}),
	}
	s.cond = sync.NewCond(&s.mu)
	if err := s.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("spool %s: %w", path, describe(err))
	}
	go s.run()
	return s, nil
}

// CheckPath refuses a path that SQLite does not take for a file name:
// ":memory:" (an in-memory database, lost at Close) and a URI ("file:...").
func CheckPath(path string) error {
	if path == ":memory:" || strings.HasPrefix(strings.ToLower(path), "file:") {
		return errors.New("not a file path (SQLite reads it as an in-memory database or a URI): name a file, or \"\" for no spool")
	}
	return nil
}

// describe adds what a server owner can do about the SQLite errors Open meets.
func describe(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
		return fmt.Errorf("%w (the spool is open elsewhere, by another server or another Open: give each server its own spool path)", err)
	case 11, 26: // SQLITE_CORRUPT, SQLITE_NOTADB
		return fmt.Errorf("%w (the file is damaged or not a spool: move it away to start an empty spool)", err)
	}
	return err
}

// load creates or checks the schema and reads the spool's state.
func (s *Spool) load() error {
	if _, err := checkFile(s.db); err != nil {
		return err
	}
	var mode string
	if err := s.db.QueryRow("PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return err
	}
	tx, err := s.db.Begin() // immediate: takes the write lock now
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	fresh, err := checkFile(tx)
	if err != nil {
		return err
	}
	if fresh {
		for _, q := range []string{
			`CREATE TABLE entries (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, stream TEXT NOT NULL,
				payload BLOB NOT NULL, at INTEGER NOT NULL, size INTEGER NOT NULL)`,
			`CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)`,
			fmt.Sprintf("PRAGMA application_id = %d", applicationID),
			fmt.Sprintf("PRAGMA user_version = %d", schemaVersion),
		} {
			if _, err := tx.Exec(q); err != nil {
				return err
			}
		}
	}
	var last, maxSeq, depth, bytes sql.NullInt64
	if err := tx.QueryRow("SELECT value FROM meta WHERE key = 'last_seq'").Scan(&last); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if err := tx.QueryRow("SELECT max(seq), count(*), sum(size) FROM entries").Scan(&maxSeq, &depth, &bytes); err != nil {
		return err
	}
	var at sql.NullInt64
	if err := tx.QueryRow("SELECT at FROM entries ORDER BY seq LIMIT 1").Scan(&at); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	// A write, so that the exclusive lock is taken here and a second
	// process fails in its Open, not later.
	if _, err := tx.Exec(`INSERT INTO meta (key, value) VALUES ('opens', 1)
		ON CONFLICT (key) DO UPDATE SET value = value + 1`); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// The clock covers what the file cannot: IDs handed out by Add but
	// never committed before a crash, and a file lost or moved away.
	s.nextSeq = max(last.Int64, maxSeq.Int64, time.Now().UnixMicro()) + 1
	s.st.Depth, s.st.Bytes = depth.Int64, bytes.Int64
	if at.Valid {
		s.st.Oldest = time.UnixMilli(at.Int64)
	}
	return nil
}

// checkFile refuses a file that is not a spool (or empty: fresh), read
// through q: before anything is written to it (journal_mode among them),
// and again under the write lock.
func checkFile(q interface {
	QueryRow(string, ...any) *sql.Row
}) (fresh bool, err error) {
	var app, ver int64
	if err := q.QueryRow("PRAGMA application_id").Scan(&app); err != nil {
		return false, err
	}
	if err := q.QueryRow("PRAGMA user_version").Scan(&ver); err != nil {
		return false, err
	}
	switch {
	case app == 0 && ver == 0:
		var tables int
		if err := q.QueryRow("SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
			return false, err
		}
		if tables > 0 {
			return false, errors.New("not a spool: a SQLite database with other tables")
		}
		return true, nil
	case app != applicationID:
		return false, fmt.Errorf("not a spool: SQLite application_id %#x", app)
	case ver != schemaVersion:
		return false, fmt.Errorf("spool format %d, this build knows %d", ver, schemaVersion)
	}
	return false, nil
}

// ParseID splits an entry ID into its server id and sequence number.
func ParseID(id string) (server string, seq int64, ok bool) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil || seq <= 0 {
		return "", 0, false
	}
	return id[:i], seq, true
}

// Add spools an entry for stream and returns its ID. It never waits for
// the disk: the entry is committed by the writer goroutine soon after
// (Sync waits for that). payload is copied. Over MaxBytes it returns
// ErrFull and the entry is dropped and counted.
func (s *Spool) Add(stream string, payload []byte) (string, error) {
	return s.add(0, "", stream, payload, time.Now())
}

// AddID spools an entry whose sequence seq the caller took earlier from a
// Sequence seeded with Floor (so that an ID is never handed out twice), at
// the time at it was sent; otherwise it is Add. The ID is
// "<server id>-<seq>", as Add makes it. Entries may be added out of
// sequence order (a sender hands over older entries it held in memory):
// the spool keeps and flushes them in sequence order, so the caller must
// not add an entry older than one a Flush may already have sent. A copy
// of an entry the file holds (the same seq) is ignored when committed.
func (s *Spool) AddID(seq int64, stream string, payload []byte, at time.Time) (string, error) {
	if seq <= 0 {
		return "", fmt.Errorf("spool %s: sequence %d is not positive", s.path, seq)
	}
	return s.add(seq, "", stream, payload, at)
}

// AddWithID is AddID with the entry's ID given, "<server id>-<seq>" with
// the server id it had when the caller made it (a copy of an entry sent
// before server.id changed keeps its rt_id).
func (s *Spool) AddWithID(id string, seq int64, stream string, payload []byte, at time.Time) (string, error) {
	if seq <= 0 {
		return "", fmt.Errorf("spool %s: sequence %d is not positive", s.path, seq)
	}
	return s.add(seq, id, stream, payload, at)
}

func (s *Spool) add(seq int64, id, stream string, payload []byte, now time.Time) (string, error) {
	// Never nil, even when empty: the column is NOT NULL.
	e := Entry{Stream: stream, Payload: append(make([]byte, 0, len(payload)), payload...), At: time.UnixMilli(now.UnixMilli())}
	size := e.size()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", ErrClosed
	}
	if s.st.Bytes+size > s.o.MaxBytes {
		s.st.DroppedFull++
		s.drops++
		var logged uint64
		if now.Sub(s.dropLog) >= dropLogEvery {
			logged, s.drops, s.dropLog = s.drops, 0, now
		}
		held := s.st.Bytes
		s.mu.Unlock()
		if logged > 0 {
			s.o.Logf("spool %s: full (%d of max_bytes %d bytes held): dropped %d new entries", s.path, held, s.o.MaxBytes, logged)
		}
		return "", ErrFull
	}
	if seq == 0 {
		seq = s.nextSeq
	}
	e.Seq = seq
	s.nextSeq = max(s.nextSeq, seq+1)
	s.added++
	e.n = s.added
	e.ID = cmp.Or(id, s.o.ServerID+"-"+strconv.FormatInt(e.Seq, 10))
	if s.st.Depth == 0 || e.At.Before(s.st.Oldest) {
		s.st.Oldest = e.At
	}
	s.st.Depth++
	s.st.Bytes += size
	s.st.Added++
	s.pending = append(s.pending, e)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return e.ID, nil
}

// Floor is the highest sequence the spool may have handed out or kept:
// a Sequence that feeds AddID starts above it.
func (s *Spool) Floor() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextSeq - 1
}

// Sync waits until every entry Added before the call is committed, and
// returns the writer's error if a commit fails meanwhile (the writer keeps
// the entries and retries).
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	target := s.added
	for s.committedN < target {
		if s.failed != nil {
			return s.failed
		}
		if s.stopped {
			return ErrClosed
		}
		s.cond.Wait()
	}
	return nil
}

// Peek returns up to n of the oldest committed entries, oldest first.
// Entries Added but not yet committed are not included.
func (s *Spool) Peek(n int) ([]Entry, error) {
	s.readMu.RLock()
	defer s.readMu.RUnlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	rows, err := s.db.Query("SELECT seq, id, stream, payload, at FROM entries ORDER BY seq LIMIT ?", n)
	if err != nil {
		return nil, fmt.Errorf("spool %s: read: %w", s.path, err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var at int64
		if err := rows.Scan(&e.Seq, &e.ID, &e.Stream, &e.Payload, &at); err != nil {
			return nil, fmt.Errorf("spool %s: read: %w", s.path, err)
		}
		e.At = time.UnixMilli(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("spool %s: read: %w", s.path, err)
	}
	return out, nil
}

// Delete removes the committed entries with Seq <= upto (those a caller
// has sent to Redis), counting them as Flushed.
func (s *Spool) Delete(upto int64) error {
	return s.delete(delReq{upto: upto})
}

// Forget deletes the entries of sequences seqs, added as copies of
// entries a sender held in memory (AddWithID) which it has since got to
// Redis itself: they are not sent again. It waits until they are
// committed first. They count as Flushed (Redis has them), so that
// Added stays Flushed + dropped + Depth and no counter goes back.
func (s *Spool) Forget(seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	if err := s.Sync(); err != nil {
		return err
	}
	return s.delete(delReq{seqs: slices.Clone(seqs)})
}

func (s *Spool) delete(r delReq) error {
	if s.isClosed() {
		return ErrClosed
	}
	r.reply = make(chan error, 1)
	select {
	case s.dels <- r:
		return <-r.reply
	case <-s.done:
		return ErrClosed
	}
}

// Stats returns the spool's figures. It never touches the disk.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Close commits what was Added, stops the writer and closes the file. It
// waits for that last commit (a local disk write), never for the network.
// If the commit fails, the entries not committed are counted as
// DroppedWrite and the error is returned. Close is idempotent.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	<-s.done
	s.mu.Lock()
	err := s.failed
	s.mu.Unlock()
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if cerr := s.db.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("spool %s: close: %w", s.path, cerr)
	}
	return err
}

func (s *Spool) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// run is the writer goroutine: it owns every write to the file.
func (s *Spool) run() {
	defer close(s.done)
	var retry <-chan time.Time
	delay := time.Duration(0)
	for {
		select {
		case <-s.wake:
			if retry != nil {
				continue // failing: wait for the backoff
			}
		case <-retry:
			retry = nil
		case r := <-s.dels:
			r.reply <- s.applyDelete(r)
			continue
		case <-s.quit:
			if err := s.commitPending(); err != nil {
				s.dropAll(err)
			}
			s.mu.Lock()
			s.stopped = true
			s.cond.Broadcast()
			s.mu.Unlock()
			return
		}
		if err := s.commitPending(); err != nil {
			delay = min(max(2*delay, 100*time.Millisecond), 5*time.Second)
			retry = time.After(delay)
			s.o.Logf("spool %s: write failed, retrying in %v: %v", s.path, delay, err)
		} else {
			delay = 0
		}
	}
}

// commitPending commits the pending entries, batch by batch, until none
// are left. On an error the failed batch goes back in front of pending.
func (s *Spool) commitPending() error {
	for {
		s.mu.Lock()
		batch := s.pending
		s.pending, s.inflight = nil, batch
		s.mu.Unlock()
		if len(batch) == 0 {
			return nil
		}
		dups, dupBytes, err := s.commit(batch)
		s.mu.Lock()
		s.inflight = nil
		if err != nil {
			s.pending = append(batch, s.pending...)
			s.failed = fmt.Errorf("spool %s: write: %w", s.path, err)
			s.st.WriteErrors++
			s.cond.Broadcast()
			s.mu.Unlock()
			return err
		}
		s.committedN = batch[len(batch)-1].n
		// Copies of entries the file holds (AddID of one sequence twice)
		// were ignored: they are not held twice.
		s.st.Depth -= dups
		s.st.Bytes -= dupBytes
		s.st.Added -= uint64(dups)
		s.failed = nil
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// commit writes batch in one transaction; an entry whose sequence the
// file holds already (a copy) is ignored, and counted in dups.
func (s *Spool) commit(batch []Entry) (dups, dupBytes int64, err error) {
	tx, err := s.db.Begin()
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	ins, err := tx.Prepare("INSERT OR IGNORE INTO entries (seq, id, stream, payload, at, size) VALUES (?, ?, ?, ?, ?, ?)")
	if err != nil {
		return 0, 0, err
	}
	var last int64
	for i := range batch {
		e := &batch[i]
		res, err := ins.Exec(e.Seq, e.ID, e.Stream, e.Payload, e.At.UnixMilli(), e.size())
		if err != nil {
			return 0, 0, err
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			dups++
			dupBytes += e.size()
		}
		last = max(last, e.Seq)
	}
	if _, err := tx.Exec(`INSERT INTO meta (key, value) VALUES ('last_seq', ?)
		ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)`, last); err != nil {
		return 0, 0, err
	}
	return dups, dupBytes, tx.Commit()
}

// dropAll counts everything not committed at Close as lost.
func (s *Spool) dropAll(err error) {
	s.mu.Lock()
	lost := append(s.inflight, s.pending...)
	s.pending, s.inflight = nil, nil
	for i := range lost {
		s.st.Depth--
		s.st.Bytes -= lost[i].size()
	}
	s.st.DroppedWrite += uint64(len(lost))
	s.failed = fmt.Errorf("spool %s: write at close: %w (%d entries lost)", s.path, err, len(lost))
	s.mu.Unlock()
	s.o.Logf("spool %s: write at close failed, %d entries lost: %v", s.path, len(lost), err)
}

// applyDelete runs on the writer goroutine, so nothing is committed while
// it reads the new oldest entry.
func (s *Spool) applyDelete(r delReq) error {
	n, bytes, at, err := s.deleteTx(r.upto, r.seqs)
	if err != nil {
		return fmt.Errorf("spool %s: delete: %w", s.path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Depth -= n
	s.st.Bytes -= bytes
	if r.flushed == 0 && r.refused == 0 {
		s.st.Flushed += uint64(n)
	} else {
		s.st.Flushed += r.flushed
		s.st.DroppedRefused += r.refused
	}
	switch {
	case at.Valid:
		s.st.Oldest = time.UnixMilli(at.Int64)
	case len(s.pending) > 0:
		s.st.Oldest = s.pending[0].At
	default:
		s.st.Oldest = time.Time{}
	}
	return nil
}

func (s *Spool) deleteTx(upto int64, seqs []int64) (n, bytes int64, at sql.NullInt64, err error) {
	tx, err := s.db.Begin()
	if err != nil {
		return 0, 0, at, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if seqs != nil {
		// Exactly what Flush sent: an entry committed since its Peek with
		// a lower sequence (AddID) is not deleted unsent.
		// One statement per 500 (SQLite's oldest bound on parameters is
		// 999); one per entry made a flush 2x slower.
		for len(seqs) > 0 {
			chunk := seqs[:min(len(seqs), 500)]
			seqs = seqs[len(chunk):]
			args := make([]any, len(chunk))
			for i, seq := range chunk {
				args[i] = seq
			}
			dn, db, err := deleteRows(tx, "DELETE FROM entries WHERE seq IN (?"+strings.Repeat(",?", len(chunk)-1)+") RETURNING size", args)
			if err != nil {
				return 0, 0, at, err
			}
			n, bytes = n+dn, bytes+db
		}
	} else {
		var sum sql.NullInt64
		if err := tx.QueryRow("SELECT count(*), sum(size) FROM entries WHERE seq <= ?", upto).Scan(&n, &sum); err != nil {
			return 0, 0, at, err
		}
		if n > 0 {
			if _, err := tx.Exec("DELETE FROM entries WHERE seq <= ?", upto); err != nil {
				return 0, 0, at, err
			}
		}
		bytes = sum.Int64
	}
	if err := tx.QueryRow("SELECT at FROM entries ORDER BY seq LIMIT 1").Scan(&at); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, 0, at, err
	}
	if n == 0 {
		return 0, 0, at, nil // nothing deleted: nothing to commit or give back
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, at, err
	}
	if !at.Valid {
		// Empty: give the space back (best effort; a failure here
		// changes nothing the spool relies on).
		_, _ = s.db.Exec("PRAGMA incremental_vacuum")
		_, _ = s.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	}
	return n, bytes, at, nil
}

// Sequence hands out increasing sequence numbers for AddID: the larger of
// one more than the last and the current Unix time in microseconds, so
// that numbers keep increasing across restarts, as the spool's own do.
// Raise it to a spool's Floor when the spool opens. Safe for concurrent use.
type Sequence struct {
	mu   sync.Mutex
	last int64
}

// Next returns the next sequence number.
func (q *Sequence) Next() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.last = max(q.last+1, time.Now().UnixMicro())
	return q.last
}

// Raise makes every later number greater than floor.
func (q *Sequence) Raise(floor int64) {
	q.mu.Lock()
	q.last = max(q.last, floor)
	q.mu.Unlock()
}

// deleteRows runs a DELETE ... RETURNING size and counts the rows and
// bytes it removed.
func deleteRows(tx *sql.Tx, query string, args []any) (n, bytes int64, err error) {
	rows, err := tx.Query(query, args...)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var size int64
		if err := rows.Scan(&size); err != nil {
			return 0, 0, err
		}
		n++
		bytes += size
	}
	return n, bytes, rows.Err()
}
