package api

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/gmod-realtime/realtime/router"
)

// A Lua value crosses from the C shim to Go as a tape of router.Nodes, as
// JSON does the other way, with two differences: a Lua table is always a
// KindObject node followed by its Len key/value pairs (keys are String or
// Number nodes, in lua_next order), and a value that JSON cannot carry is a
// KindInvalid node whose Str says what it was ("a function").
const KindInvalid router.Kind = 100

// EncodeJSON encodes a Lua value tape as JSON the way GMod's
// util.TableToJSON shapes it: a table whose keys are exactly 1..n is an
// array (an empty table is []), any other table an object with number keys
// written as strings; a table with both 1 and "1" as keys is an error.
// Numbers that are integers print without a fraction. Strings are JSON
// strings: '"', '\\' and control bytes are escaped, and a byte that is not
// valid UTF-8 becomes U+FFFD, as encoding/json does (a payload given as a
// Lua string is published byte for byte; this is only for tables).
// root names the value in errors ("payload.players[2]: cannot encode a
// function").
func EncodeJSON(doc *router.Doc, root string) (string, error) {
	e := encoder{nodes: doc.Nodes}
	if len(doc.Nodes) == 0 {
		return "null", nil
	}
	if _, err := e.value(0); err != nil {
		return "", e.named(err, root)
	}
	return string(e.out), nil
}

// encodeObjectWith encodes a tape whose root is a table with string keys,
// adding the pairs of extra after its own (the game events' ts and server).
func encodeObjectWith(doc *router.Doc, root string, extra func([]byte) []byte) (string, error) {
	e := encoder{nodes: doc.Nodes}
	if _, err := e.value(0); err != nil {
		return "", e.named(err, root)
	}
	e.out = e.out[:len(e.out)-1] // reopen the object
	if len(e.out) > 1 {
		e.out = append(e.out, ',')
	}
	e.out = append(extra(e.out), '}')
	return string(e.out), nil
}

type encoder struct {
	nodes []router.Node
	out   []byte
}

// skip returns the index after the subtree at i.
func (e *encoder) skip(i int) int {
	n := e.nodes[i]
	i++
	if n.Kind == router.KindObject {
		for range 2 * int(n.Len) {
			i = e.skip(i)
		}
	}
	return i
}

// value encodes the subtree at i and returns the index after it.
func (e *encoder) value(i int) (int, error) {
	n := e.nodes[i]
	switch n.Kind {
	case router.KindNull:
		e.out = append(e.out, "null"...)
	case router.KindFalse:
		e.out = append(e.out, "false"...)
	case router.KindTrue:
		e.out = append(e.out, "true"...)
	case router.KindNumber:
		if math.IsNaN(n.Num) || math.IsInf(n.Num, 0) {
			return 0, e.fail(i, "cannot encode %v (JSON has no NaN or infinity)", n.Num)
		}
		e.out = appendNumber(e.out, n.Num)
	case router.KindString:
		e.out = appendString(e.out, n.Str)
	case router.KindObject:
		return e.table(i)
	case KindInvalid:
		return 0, e.fail(i, "cannot encode %s", n.Str)
	default:
		return 0, e.fail(i, "unexpected node kind %d", n.Kind)
	}
	return i + 1, nil
}

func (e *encoder) table(i int) (int, error) {
	count := int(e.nodes[i].Len)
	// One pass to find the pairs and decide array or object.
	type pair struct{ key, val int }
	pairs := make([]pair, count)
	array, numKeys, strKeys := true, false, false
	j := i + 1
	for p := range pairs {
		pairs[p] = pair{key: j, val: j + 1}
		k := e.nodes[j]
		if k.Kind == KindInvalid {
			return 0, e.fail(i, "cannot encode %s", k.Str)
		}
		if k.Kind != router.KindNumber || k.Num != math.Trunc(k.Num) || k.Num < 1 || k.Num > float64(count) {
			array = false
		}
		numKeys = numKeys || k.Kind == router.KindNumber
		strKeys = strKeys || k.Kind == router.KindString
		j = e.skip(j + 1)
	}
	if array {
		// Keys are distinct integers in 1..count, so they are exactly 1..count.
		slices.SortFunc(pairs, func(a, b pair) int { return int(e.nodes[a.key].Num - e.nodes[b.key].Num) })
		e.out = append(e.out, '[')
		for p, pr := range pairs {
			if p > 0 {
				e.out = append(e.out, ',')
			}
			if _, err := e.value(pr.val); err != nil {
				return 0, err
			}
		}
		e.out = append(e.out, ']')
		return j, nil
	}
	var seen map[string]bool
	if numKeys && strKeys { // 1 and "1" would both be "1"
		seen = make(map[string]bool, count)
	}
	e.out = append(e.out, '{')
	for p, pr := range pairs {
		if p > 0 {
			e.out = append(e.out, ',')
		}
		k := e.nodes[pr.key]
		var key string
		if k.Kind == router.KindNumber {
			key = string(appendNumber(nil, k.Num))
		} else {
			key = k.Str
		}
		if seen != nil {
			if seen[key] {
				return 0, e.fail(i, "the keys %s and %q both become the JSON key %q", key, key, key)
			}
			seen[key] = true
		}
		e.out = appendString(e.out, key)
		e.out = append(e.out, ':')
		if _, err := e.value(pr.val); err != nil {
			return 0, err
		}
	}
	e.out = append(e.out, '}')
	return j, nil
}

// encodeError is an error at a node of the tape. Its path ("payload.x[2]")
// is found only when there is an error: building a path for every value
// costs an allocation each, and time quadratic in long keys.
type encodeError struct {
	at  int
	msg string
}

func (err *encodeError) Error() string { return err.msg }

func (e *encoder) fail(at int, format string, args ...any) error {
	return &encodeError{at: at, msg: fmt.Sprintf(format, args...)}
}

// named puts the path of an encodeError's node, from root, before it.
func (e *encoder) named(err error, root string) error {
	var ee *encodeError
	if !errors.As(err, &ee) {
		return err
	}
	path, _ := e.path(0, ee.at, root)
	return fmt.Errorf("%s: %s", path, ee.msg)
}

// path returns the name of the value at node target, in the subtree at i
// named name: a table's keys are named by the table.
func (e *encoder) path(i, target int, name string) (string, bool) {
	if i == target {
		return name, true
	}
	n := e.nodes[i]
	if n.Kind != router.KindObject {
		return "", false
	}
	j := i + 1
	for range int(n.Len) {
		if j == target {
			return name, true
		}
		next := e.skip(j + 1)
		if target > j && target < next {
			return e.path(j+1, target, childPath(name, e.nodes[j]))
		}
		j = next
	}
	return "", false
}

func childPath(path string, key router.Node) string {
	if key.Kind == router.KindNumber {
		return path + "[" + string(appendNumber(nil, key.Num)) + "]"
	}
	return path + "." + key.Str
}

func appendNumber(b []byte, f float64) []byte {
	if f == math.Trunc(f) && math.Abs(f) <= 1<<53 {
		return strconv.AppendInt(b, int64(f), 10)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				start = i + 1
			} else {
				i += size - 1
			}
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// docBuilder builds a JSON-shaped Doc (arrays and objects with string keys)
// for the C shim to turn into Lua tables: GetStats, Reload's summary.
type docBuilder struct{ nodes []router.Node }

// open starts an array or object and returns its index for close.
func (b *docBuilder) open(kind router.Kind) int {
	b.nodes = append(b.nodes, router.Node{Kind: kind})
	return len(b.nodes) - 1
}

// close sets the element (array) or pair (object) count of the container
// opened at i.
func (b *docBuilder) close(i, n int) { b.nodes[i].Len = int32(n) }

func (b *docBuilder) str(s string) {
	b.nodes = append(b.nodes, router.Node{Kind: router.KindString, Str: s})
}

func (b *docBuilder) num(f float64) {
	b.nodes = append(b.nodes, router.Node{Kind: router.KindNumber, Num: f})
}

func (b *docBuilder) boolean(v bool) {
	k := router.KindFalse
	if v {
		k = router.KindTrue
	}
	b.nodes = append(b.nodes, router.Node{Kind: k})
}

// strs adds an array of strings.
func (b *docBuilder) strs(list []string) {
	i := b.open(router.KindArray)
	for _, s := range list {
		b.str(s)
	}
	b.close(i, len(list))
}

// fields adds an object of key/number pairs, in order.
func (b *docBuilder) counts(kv ...any) {
	i := b.open(router.KindObject)
	for j := 0; j < len(kv); j += 2 {
		b.str(kv[j].(string))
		switch v := kv[j+1].(type) {
		case uint64:
			b.num(float64(v))
		case int:
			b.num(float64(v))
		case int64:
			b.num(float64(v))
		case float64:
			b.num(v)
		case string:
			b.str(v)
		}
	}
	b.close(i, len(kv)/2)
}

func (b *docBuilder) doc() *router.Doc { return &router.Doc{Nodes: b.nodes} }
