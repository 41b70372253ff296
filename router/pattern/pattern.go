// Package pattern compiles Redis PSUBSCRIBE glob patterns into matchers that
// agree with Redis byte for byte.
//
// Redis matches with stringmatchlen (util.c): byte-wise `*`, `?`, classes
// `[abc]`, `[^a]`, `[a-z0-9]` with any number of ranges (a reversed range is
// swapped; its bounds compare as C `char`, which is signed on the platforms
// Redis runs on), `\x` escapes inside and outside classes, and `{`, `,`, `}` as
// plain literals. github.com/gobwas/glob speaks another dialect (`[!a]`, one
// range per class, `{a,b}` alternation, per-rune `?`), so Compile parses the
// Redis form and emits an equivalent gobwas pattern over a one-rune-per-byte
// (Latin-1) view of the bytes.
//
// Patterns Redis accepts but treats oddly are rejected with a *SyntaxError, so
// a route never silently matches nothing: an empty pattern, an unterminated
// class, a trailing lone backslash and a class that no byte can satisfy.
package pattern

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/gobwas/glob"
)

// SyntaxError describes a pattern that Compile rejects.
type SyntaxError struct {
	Pattern string
	Offset  int // byte offset of the problem in Pattern
	Reason  string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("pattern %q: %s (at byte %d)", e.Pattern, e.Reason, e.Offset)
}

// Pattern is a compiled Redis glob. It is immutable and safe for concurrent
// use.
type Pattern struct {
	src     string
	literal bool // no wildcard: Match is a string comparison
	prefix  string
	m       *glob.Pattern
}

// Compile parses a Redis glob pattern.
func Compile(src string) (*Pattern, error) {
	toks, err := parse(src)
	if err != nil {
		return nil, err
	}
	if n := nestedStars(toks); n > MaxNestedStars {
		return nil, &SyntaxError{Pattern: src, Reason: fmt.Sprintf("%d * wildcards before the last: Redis stops matching past %d, so the route would get nothing", n, MaxNestedStars)}
	}
	p := &Pattern{src: src, literal: true}
	var g strings.Builder
	for _, t := range toks {
		switch t.kind {
		case tokByte:
			writeLiteral(&g, t.b)
		case tokAny:
			p.literal = false
			g.WriteByte('?')
		case tokStar:
			p.literal = false
			g.WriteByte('*')
		case tokClass:
			p.literal = false
			writeClass(&g, &t.set)
		}
	}
	p.prefix = literalPrefix(toks)
	if p.literal {
		return p, nil
	}
	m, err := glob.Compile(g.String())
	if err != nil {
		// A bug in the translation, not in the user's pattern.
		return nil, &SyntaxError{Pattern: src, Reason: "internal translation error: " + err.Error()}
	}
	p.m = m
	return p, nil
}

// MaxNestedStars is how many `*` (runs of them count once) Redis's
// stringmatchlen follows before the last one: past it, it gives up and
// reports no match (a guard against abusive patterns since Redis 7).
const MaxNestedStars = 1000

// nestedStars counts the `*` Redis recurses on: all but a final one, which
// matches at once.
func nestedStars(toks []token) int {
	n := 0
	for _, t := range toks {
		if t.kind == tokStar {
			n++
		}
	}
	if len(toks) > 0 && toks[len(toks)-1].kind == tokStar {
		n--
	}
	return n
}

// MustCompile is Compile that panics on error; for tests and constants.
func MustCompile(src string) *Pattern {
	p, err := Compile(src)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the pattern as written.
func (p *Pattern) String() string { return p.src }

// IsLiteral reports whether the pattern has no wildcard, so it matches exactly
// one channel: Literal().
func (p *Pattern) IsLiteral() bool { return p.literal }

// Literal returns the channel a literal pattern matches (escapes resolved).
// For other patterns it returns the literal prefix.
func (p *Pattern) Literal() string { return p.prefix }

// Prefix returns the bytes every matching channel starts with.
func (p *Pattern) Prefix() string { return p.prefix }

// Match reports whether Redis would deliver a PUBLISH to channel to a
// PSUBSCRIBE of this pattern.
func (p *Pattern) Match(channel string) bool {
	if p.literal {
		return channel == p.prefix
	}
	if channel == "" || !strings.HasPrefix(channel, p.prefix) {
		return false // Redis: no non-empty pattern matches the empty channel
	}
	return p.m.Match(latin1(channel))
}

// latin1 re-encodes s so that every byte is one rune; ASCII is unchanged and
// costs nothing.
func latin1(s string) string {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s)+(len(s)-i))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		b = utf8.AppendRune(b, rune(s[i]))
	}
	return string(b)
}

func writeLiteral(g *strings.Builder, b byte) {
	if b < utf8.RuneSelf && !isAlnum(b) {
		g.WriteByte('\\')
		g.WriteByte(b)
		return
	}
	g.WriteRune(rune(b))
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// writeClass emits a byte set as the narrowest gobwas form: a literal, `?`, a
// single range, or an enumerated list. gobwas reads a range's bounds raw (no
// escapes) and takes a leading `!` as negation; a list takes escapes, and a
// `-` after its first rune would turn it into a range, so `-` goes last.
func writeClass(g *strings.Builder, s *byteSet) {
	n := s.count()
	if n == 256 {
		g.WriteByte('?')
		return
	}
	lo, hi, contiguous := s.span()
	if n == 1 {
		writeLiteral(g, lo)
		return
	}
	g.WriteByte('[')
	if contiguous && lo != '!' {
		g.WriteRune(rune(lo))
		g.WriteByte('-')
		g.WriteRune(rune(hi))
	} else {
		for c := 0; c < 256; c++ {
			if c != '-' && s.has(byte(c)) {
				writeLiteral(g, byte(c))
			}
		}
		if s.has('-') {
			g.WriteString(`\-`)
		}
	}
	g.WriteByte(']')
}

func literalPrefix(toks []token) string {
	var b []byte
	for _, t := range toks {
		if t.kind != tokByte {
			break
		}
		b = append(b, t.b)
	}
	return string(b)
}

type tokKind uint8

const (
	tokByte tokKind = iota
	tokAny
	tokStar
	tokClass
)

type token struct {
	kind tokKind
	b    byte
	set  byteSet
}

type byteSet [4]uint64

func (s *byteSet) add(c byte)      { s[c>>6] |= 1 << (c & 63) }
func (s *byteSet) has(c byte) bool { return s[c>>6]&(1<<(c&63)) != 0 }
func (s *byteSet) invert()         { s[0], s[1], s[2], s[3] = ^s[0], ^s[1], ^s[2], ^s[3] }
func (s *byteSet) addSigned(lo, hi int) {
	for c := lo; c <= hi; c++ {
		s.add(byte(int8(c)))
	}
}

func (s *byteSet) count() int {
	n := 0
	for c := 0; c < 256; c++ {
		if s.has(byte(c)) {
			n++
		}
	}
	return n
}

// span returns the lowest and highest member and whether every byte between
// them is a member.
func (s *byteSet) span() (lo, hi byte, contiguous bool) {
	first, last := -1, -1
	for c := 0; c < 256; c++ {
		if s.has(byte(c)) {
			if first < 0 {
				first = c
			}
			last = c
		}
	}
	for c := first; c <= last; c++ {
		if !s.has(byte(c)) {
			return byte(first), byte(last), false
		}
	}
	return byte(first), byte(last), true
}

// parse mirrors stringmatchlen's walk over the pattern, so that every accepted
// pattern means what it means to Redis.
func parse(p string) ([]token, error) {
	if p == "" {
		return nil, &SyntaxError{Pattern: p, Reason: "empty pattern"}
	}
	var toks []token
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '*':
			if n := len(toks); n > 0 && toks[n-1].kind == tokStar {
				continue // `**` is `*`
			}
			toks = append(toks, token{kind: tokStar})
		case '?':
			toks = append(toks, token{kind: tokAny})
		case '\\':
			if i+1 == len(p) {
				return nil, &SyntaxError{Pattern: p, Offset: i, Reason: `trailing backslash (write \\ for a literal backslash)`}
			}
			i++
			toks = append(toks, token{kind: tokByte, b: p[i]})
		case '[':
			start := i
			t := token{kind: tokClass}
			i++
			not := i < len(p) && p[i] == '^'
			if not {
				i++
			}
			closed := false
			for ; i < len(p); i++ {
				c := p[i]
				if c == '\\' && len(p)-i >= 2 {
					i++
					t.set.add(p[i])
				} else if c == ']' {
					closed = true
					break
				} else if len(p)-i >= 3 && p[i+1] == '-' {
					lo, hi := int(int8(c)), int(int8(p[i+2])) // C char is signed
					if lo > hi {
						lo, hi = hi, lo
					}
					t.set.addSigned(lo, hi)
					i += 2
				} else {
					t.set.add(c)
				}
			}
			if !closed {
				return nil, &SyntaxError{Pattern: p, Offset: start, Reason: "unterminated character class (missing ])"}
			}
			if not {
				t.set.invert()
			}
			if t.set.count() == 0 {
				return nil, &SyntaxError{Pattern: p, Offset: start, Reason: "character class matches no byte, so the pattern can never match"}
			}
			if t.set.count() == 1 {
				lo, _, _ := t.set.span()
				t = token{kind: tokByte, b: lo}
			}
			toks = append(toks, t)
		default:
			toks = append(toks, token{kind: tokByte, b: p[i]})
		}
	}
	return toks, nil
}

// Quote returns a pattern that matches exactly the channel s.
func Quote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
