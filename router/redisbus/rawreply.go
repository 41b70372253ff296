package redisbus

import (
	"context"
	"errors"
	"strings"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// The read loop's XREADGROUP reply, parsed from its RESP2 bytes
// (redis.RawCmd) rather than through go-redis's generic reply ([]any): that
// boxes every id, field and value in an interface and allocates each as a
// string of its own, about ten allocations an entry, which the garbage
// collector then pays for again. Here a reply costs a handful: the
// fields' strings are slices of the reply's bytes (never written after
// go-redis read them), one []string holds every entry's fields,
// and each id is a string of its own (ids outlive their reply: in the
// in-flight set, the Kept, the duplicate check's window; a field value
// kept beyond the reply's entries, such as the window's keys, must be
// cloned, or it keeps the whole reply in memory).

// errRawReply is a reply readRaw does not parse: an error reply (NOGROUP,
// MOVED, ...), which the caller sends again through the generic path so
// that go-redis types it (and a Cluster follows a redirection): Redis ran
// nothing for a command it answered with an error.
var errRawReply = errors.New("redisbus: an error reply")

// errMalformed is a reply readRaw cannot parse that is no error reply (a
// bug, or a server speaking another dialect): not a reply error, so the
// reader re-reads its pending entries, where this read's entries are.
var errMalformed = errors.New("redisbus: XREADGROUP reply not understood")

// readRaw runs the XREADGROUP in args on c and returns the entries of its
// reply ([[stream, [[id, [f, v, ...]], ...]], ...], in order, all
// streams'), redis.Nil for a BLOCK that timed out, errRawReply for an
// error reply, errMalformed, or the connection's error. (RawCmd, not
// RawWriteToCmd into a buffer sized beforehand: that one's io.CopyN
// allocates a LimitedReader for every string of the reply.)
func readRaw(ctx context.Context, c redis.UniversalClient, args ...any) ([]rawEntry, error) {
	cmd := redis.NewRawCmd(ctx, args...)
	if err := c.Process(ctx, cmd); err != nil {
		return nil, err
	}
	return parseReadReply(cmd.Val()) // the reply's own bytes: its strings live on in the entries
}

// parseReadReply parses an XREADGROUP reply's bytes (see readRaw). The
// strings it returns share raw's memory: raw must never be written again.
func parseReadReply(raw []byte) ([]rawEntry, error) {
	if len(raw) == 0 {
		return nil, errMalformed
	}
	p := resp{s: unsafe.String(unsafe.SliceData(raw), len(raw))}
	switch p.s[0] {
	case '-':
		return nil, errRawReply
	case '*':
	default:
		return nil, errMalformed
	}
	n := p.header()
	if n < 0 {
		if p.bad {
			return nil, errMalformed
		}
		return nil, redis.Nil
	}
	var out []rawEntry
	var fields []string // every entry's fields, back to back
	var ends []int      // entry i's fields are fields[ends[i-1]:ends[i]], -1: nil
	for range n {
		if p.bad {
			break
		}
		if p.typ() != '*' {
			p.skip()
			continue
		}
		if m := p.header(); m != 2 {
			for range max(m, 0) {
				if p.bad {
					break
				}
				p.skip()
			}
			continue
		}
		p.skip() // the stream's name
		if p.typ() != '*' {
			p.skip()
			continue
		}
		k := p.header()
		if out == nil && k > 0 {
			out = make([]rawEntry, 0, k)
			ends = make([]int, 0, k)
		}
		for range max(k, 0) {
			if p.bad {
				break
			}
			// as parseEntries: an item that is not [id, fields] is left out
			if p.typ() != '*' {
				p.skip()
				continue
			}
			if m := p.header(); m != 2 {
				for range max(m, 0) {
					p.skip()
				}
				continue
			}
			id := strings.Clone(p.str())
			if p.typ() != '*' {
				p.skip()
				out, ends = append(out, rawEntry{id: id}), append(ends, -1)
				continue
			}
			f := p.header()
			if f < 0 { // deleted from the stream: nil fields
				out, ends = append(out, rawEntry{id: id}), append(ends, -1)
				continue
			}
			if fields == nil { // each string takes 6 bytes at least ("$0\r\n\r\n")
				fields = make([]string, 0, min(max(k*f, f), len(p.s)/6+1))
			}
			for range f {
				if p.bad {
					break
				}
				fields = append(fields, p.str())
			}
			out, ends = append(out, rawEntry{id: id}), append(ends, len(fields))
		}
	}
	if p.bad || p.i != len(p.s) {
		return nil, errMalformed
	}
	from := 0
	for i, end := range ends {
		if end >= 0 {
			out[i].fields = fields[from:end:end]
			from = end
		}
	}
	return out, nil
}

// resp walks RESP2 bytes; bad is set by anything malformed or cut short,
// after which every read returns a zero value.
type resp struct {
	s   string
	i   int
	bad bool
}

// typ is the next element's type byte, 0 at the end.
func (p *resp) typ() byte {
	if p.bad || p.i >= len(p.s) {
		p.bad = true
		return 0
	}
	return p.s[p.i]
}

// line returns the next line's text after its type byte and moves past it.
func (p *resp) line() string {
	if p.bad || p.i >= len(p.s) {
		p.bad = true
		return ""
	}
	for j := p.i + 1; j+1 < len(p.s); j++ {
		if p.s[j] == '\r' && p.s[j+1] == '\n' {
			l := p.s[p.i+1 : j]
			p.i = j + 2
			return l
		}
	}
	p.bad = true
	return ""
}

// header reads an array's or a bulk string's length line: -1 is nil. A
// length past the bytes left is malformed (an array's every element takes
// 3 bytes at least, a bulk string its length), so that no length read
// sizes an allocation or a loop beyond the reply itself, nor overflows an
// int on a 32-bit server.
func (p *resp) header() int {
	l := p.line()
	if l == "-1" {
		return -1
	}
	if l == "" {
		p.bad = true
		return -1
	}
	n, left := 0, len(p.s)-p.i
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c < '0' || c > '9' {
			p.bad = true
			return -1
		}
		if n = n*10 + int(c-'0'); n > left {
			p.bad = true
			return -1
		}
	}
	return n
}

// str reads an element as parseEntries takes it: a bulk or simple
// string's text, "" for anything else (skipped).
func (p *resp) str() string {
	switch p.typ() {
	case '$':
		n := p.header()
		if n < 0 {
			return ""
		}
		if p.i+n+2 > len(p.s) || p.s[p.i+n] != '\r' || p.s[p.i+n+1] != '\n' {
			p.bad = true
			return ""
		}
		s := p.s[p.i : p.i+n]
		p.i += n + 2
		return s
	case '+':
		return p.line()
	default:
		p.skip()
		return ""
	}
}

// skip moves past the next element, nested ones included.
func (p *resp) skip() {
	switch p.typ() {
	case '$':
		p.str()
	case '*':
		for range max(p.header(), 0) {
			if p.bad {
				return
			}
			p.skip()
		}
	case 0:
	default:
		p.line()
	}
}
