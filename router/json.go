package router

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Kind is the type of a JSON node.
type Kind uint8

// JSON node kinds.
const (
	KindNull Kind = iota
	KindFalse
	KindTrue
	KindNumber
	KindString
	KindArray
	KindObject
)

// Node is one value of a Doc. An Array node is followed by its Len
// elements, an Object node by its Len key/value pairs (each key a String
// node), each element a whole subtree.
type Node struct {
	Kind Kind
	Len  int32   // Array: elements; Object: pairs
	Num  float64 // Number
	Str  string  // String: the decoded bytes (a substring of the payload when unescaped)
}

// Doc is a JSON value parsed off the main thread into a flat tape that the
// main thread turns into Lua tables without re-parsing or allocating per
// node in Go.
type Doc struct {
	Nodes []Node
	// Bytes is the memory the Doc holds beyond its payload: the tape and
	// the strings decoded from escapes (the others share the payload's).
	Bytes int64
}

// nodeSize is the memory of one tape node.
const nodeSize = int64(unsafe.Sizeof(Node{}))

// ErrJSONDepth is returned for JSON nested deeper than the limit.
var ErrJSONDepth = errors.New("nested too deeply")

// ParseJSON parses one JSON value (RFC 8259) with at most maxDepth levels of
// arrays and objects. Strings keep their bytes as sent (invalid UTF-8 is
// not rewritten); \u escapes decode to UTF-8.
func ParseJSON(s string, maxDepth int) (*Doc, error) {
	p := jsonParser{s: s, maxDepth: maxDepth}
	p.nodes = make([]Node, 0, tapeBound(s))
	p.ws()
	if err := p.value(0); err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.s) {
		return nil, p.errorf("unexpected %q after the value", p.s[p.i])
	}
	return &Doc{Nodes: p.nodes, Bytes: int64(cap(p.nodes))*nodeSize + p.decoded}, nil
}

// tapeBound bounds the nodes of s: every node but the first follows a ',',
// ':', '[' or '{' (keys too: after '{' or ','), one allocation, no growth.
// Past a small count, only those outside strings are counted, so that a
// string full of commas cannot reserve a tape many times the payload's
// size (a small over-count costs at most 32 KiB, and Doc.Bytes counts it).
func tapeBound(s string) int {
	n := 1 + strings.Count(s, ",") + strings.Count(s, ":") + strings.Count(s, "[") + strings.Count(s, "{")
	if n <= 1024 {
		return n
	}
	n = 1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', ':', '[', '{':
			n++
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		}
	}
	return n
}

type jsonParser struct {
	s        string
	i        int
	maxDepth int
	nodes    []Node
	decoded  int64 // bytes of strings decoded from escapes
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at byte %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *jsonParser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) error {
	if p.i >= len(p.s) {
		return p.errorf("unexpected end")
	}
	switch c := p.s[p.i]; {
	case c == '{' || c == '[':
		if depth >= p.maxDepth {
			return fmt.Errorf("invalid JSON at byte %d: %w (limit %d)", p.i, ErrJSONDepth, p.maxDepth)
		}
		return p.container(depth, c)
	case c == '"':
		str, err := p.str()
		if err != nil {
			return err
		}
		p.nodes = append(p.nodes, Node{Kind: KindString, Str: str})
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	default:
		for _, lit := range [...]struct {
			text string
			kind Kind
		}{{"null", KindNull}, {"true", KindTrue}, {"false", KindFalse}} {
			if strings.HasPrefix(p.s[p.i:], lit.text) {
				p.i += len(lit.text)
				p.nodes = append(p.nodes, Node{Kind: lit.kind})
				return nil
			}
		}
		return p.errorf("unexpected %q", c)
	}
	return nil
}

func (p *jsonParser) container(depth int, open byte) error {
	kind, closer := KindArray, byte(']')
	if open == '{' {
		kind, closer = KindObject, '}'
	}
	at := len(p.nodes)
	p.nodes = append(p.nodes, Node{Kind: kind})
	p.i++
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == closer {
		p.i++
		return nil
	}
	n := int32(0)
	for {
		if kind == KindObject {
			if p.i >= len(p.s) || p.s[p.i] != '"' {
				return p.errorf("want an object key")
			}
			key, err := p.str()
			if err != nil {
				return err
			}
			p.nodes = append(p.nodes, Node{Kind: KindString, Str: key})
			p.ws()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return p.errorf("want ':' after an object key")
			}
			p.i++
			p.ws()
		}
		if err := p.value(depth + 1); err != nil {
			return err
		}
		n++
		p.ws()
		if p.i >= len(p.s) {
			return p.errorf("unexpected end")
		}
		if p.s[p.i] == closer {
			p.i++
			p.nodes[at].Len = n
			return nil
		}
		if p.s[p.i] != ',' {
			return p.errorf("want ',' or '%c'", closer)
		}
		p.i++
		p.ws()
	}
}

func (p *jsonParser) number() error {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	switch {
	case p.i < len(p.s) && p.s[p.i] == '0':
		p.i++
	case digits() == 0:
		return p.errorf("bad number")
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return p.errorf("bad number")
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return p.errorf("bad number")
		}
	}
	text := p.s[start:p.i]
	if f, ok := smallInt(text); ok {
		p.nodes = append(p.nodes, Node{Kind: KindNumber, Num: f})
		return nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) { // out of range: ±Inf or 0, as Lua's tonumber
		return p.errorf("bad number")
	}
	p.nodes = append(p.nodes, Node{Kind: KindNumber, Num: f})
	return nil
}

// smallInt converts an integer of at most 15 digits exactly, without
// strconv: most numbers in game events are such.
func smallInt(text string) (float64, bool) {
	neg := text[0] == '-'
	if neg {
		text = text[1:]
	}
	if len(text) == 0 || len(text) > 15 {
		return 0, false
	}
	var v int64
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		if v == 0 {
			return math.Copysign(0, -1), true
		}
		v = -v
	}
	return float64(v), true
}

// str parses a string at p.i (the opening quote).
func (p *jsonParser) str() (string, error) {
	p.i++
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return p.s[start : p.i-1], nil
		case c == '\\':
			return p.strEscaped(start)
		case c < 0x20:
			return "", p.errorf("control character in string")
		}
		p.i++
	}
	return "", p.errorf("unterminated string")
}

func (p *jsonParser) strEscaped(start int) (string, error) {
	b := []byte(p.s[start:p.i])
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			p.decoded += int64(len(b))
			return string(b), nil
		case c < 0x20:
			return "", p.errorf("control character in string")
		case c != '\\':
			b = append(b, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.s) {
			break
		}
		e := p.s[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errorf(`bad \u escape`)
			}
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				save := p.i
				if strings.HasPrefix(p.s[p.i:], `\u`) {
					p.i += 2
					if lo, ok := p.hex4(); ok {
						if d := utf16.DecodeRune(r, lo); d != utf8.RuneError {
							r2 = d
						} else {
							p.i = save
						}
					} else {
						p.i = save
					}
				}
				r = r2
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", p.errorf("bad escape \\%c", e)
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *jsonParser) hex4() (rune, bool) {
	if p.i+4 > len(p.s) {
		return 0, false
	}
	v, err := strconv.ParseUint(p.s[p.i:p.i+4], 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(v), true
}
