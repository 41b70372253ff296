package spool

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Field names of a flushed entry.
const (
	FieldData = "data"  // the payload
	FieldID   = "rt_id" // the entry's ID, for the consumer's duplicate check
)

// transient are the error replies that say "not now" rather than "never":
// Flush stops at them and keeps the entry.
var transient = []string{
	"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY",
	"NOREPLICAS", "OOM", "MISCONF", "NOAUTH", "WRONGPASS", "EXECABORT",
	"MOVED", "ASK", "ERR max number of clients reached",
}

// Refused reports whether err is Redis refusing a command for good (an
// error reply other than the transient ones: WRONGTYPE, NOPERM, ERR ...),
// as opposed to a connection error or a reply that asks to try again later.
func Refused(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) || errors.Is(err, redis.Nil) {
		return false
	}
	msg := re.Error()
	for _, p := range transient {
		if strings.HasPrefix(msg, p) && (len(msg) == len(p) || msg[len(p)] == ' ') {
			return false
		}
	}
	return true
}

// Flush sends the spooled entries to Redis, oldest first, Options.FlushBatch
// per pipeline and at most FlushBatchBytes (halved after a pipeline left
// unanswered, doubled again after 8 answered in a row): each an XADD to its stream (MAXLEN ~ maxLen when maxLen >
// 0) with the fields "data" (payload) and "rt_id" (ID). It deletes the
// entries Redis acknowledged and those it refused for good (see Refused;
// counted as DroppedRefused and logged), and stops at the first other error
// (connection lost, LOADING, OOM ...), which it returns, leaving that entry
// and the later ones spooled. It drains entries Added while it runs too,
// and returns nil once the spool is empty. n counts the entries Redis
// acknowledged.
//
// The client should not retry on its own (go-redis MaxRetries: -1): a
// pipeline sent again after a lost connection duplicates the entries Redis
// had already taken. Flushes are serialized.
func (s *Spool) Flush(ctx context.Context, client redis.UniversalClient, maxLen int64) (n int, err error) {
	return s.FlushWith(ctx, client, func(*Entry) (int64, string) { return maxLen, "" })
}

// FlushWith is Flush with the trimming of each XADD chosen by trim: MAXLEN
// ~ maxLen when maxLen > 0, else MINID ~ minID when minID != "" (entries
// older than a retention), else none.
func (s *Spool) FlushWith(ctx context.Context, client redis.UniversalClient, trim func(e *Entry) (maxLen int64, minID string)) (n int, err error) {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		// Everything Added so far on disk first, so that the batch is the
		// oldest of all (AddID may add older entries late).
		if err := s.Sync(); err != nil {
			return n, err
		}
		batch, err := s.Peek(s.o.FlushBatch)
		if err != nil {
			return n, err
		}
		if len(batch) == 0 {
			s.mu.Lock()
			more := len(s.pending) > 0 || len(s.inflight) > 0
			s.mu.Unlock()
			if !more {
				return n, nil
			}
			if err := s.Sync(); err != nil {
				return n, err
			}
			continue
		}
		if s.flushLimit <= 0 {
			s.flushLimit = FlushBatchBytes
		}
		var bytes int64
		for i := range batch {
			if bytes += batch[i].size(); bytes > s.flushLimit && i > 0 {
				batch = batch[:i]
				break
			}
		}
		cmds, _ := client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range batch {
				e := &batch[i]
				maxLen, minID := trim(e)
				if maxLen > 0 {
					minID = ""
				}
				p.XAdd(ctx, &redis.XAddArgs{
					Stream: e.Stream, MaxLen: maxLen, MinID: minID, Approx: maxLen > 0 || minID != "",
					Values: []any{FieldData, e.Payload, FieldID, e.ID},
				})
			}
			return nil
		})
		var upto int64
		var sent []int64
		var acked, refused uint64
		var stop, firstRefusal error
		for i, e := range batch {
			var cerr error
			if i < len(cmds) {
				cerr = cmds[i].Err()
			} else {
				cerr = errors.New("no reply")
			}
			if cerr == nil {
				upto, acked = e.Seq, acked+1
				sent = append(sent, e.Seq)
				continue
			}
			if Refused(cerr) {
				upto, refused = e.Seq, refused+1
				sent = append(sent, e.Seq)
				if firstRefusal == nil {
					firstRefusal = fmt.Errorf("stream %q, entry %s: %w", e.Stream, e.ID, cerr)
				}
				continue
			}
			stop = cerr
			break
		}
		var reply redis.Error
		if stop != nil && !errors.As(stop, &reply) {
			// Not answered (a reply such as LOADING is: its bytes got
			// through): its write may have timed out on a slow uplink,
			// and a smaller pipeline gets through where this one never
			// would (sent again whole, it would add copies of its first
			// entries at every try, and the spool would never empty).
			s.flushLimit, s.flushOK = max(s.flushLimit/2, 1), 0
		} else if stop == nil {
			if s.flushOK++; s.flushOK >= flushOKRun {
				s.flushLimit, s.flushOK = min(s.flushLimit*2, FlushBatchBytes), 0
			}
		}
		if refused > 0 {
			s.o.Logf("spool %s: Redis refused %d entries, dropped (first: %v)", s.path, refused, firstRefusal)
		}
		if upto > 0 {
			// Not ctx: what Redis took must be deleted even if the
			// caller is giving up.
			if err := s.delete(delReq{upto: upto, seqs: sent, flushed: acked, refused: refused}); err != nil {
				return n, err
			}
			n += int(acked)
		}
		if stop != nil {
			return n, fmt.Errorf("spool %s: flush: %w", s.path, stop)
		}
	}
}
