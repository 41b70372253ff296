package api

import (
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
	if _, err := e.value(0, &keyPath{root: root}); err != nil {
		return "", err
	}
	return string(e.out), nil
}

// encodeObjectWith encodes a tape whose root is a table with string keys,
// adding the pairs of extra after its own (the game events' ts and server).
func encodeObjectWith(doc *router.Doc, root string, extra func([]byte) []byte) (string, error) {
	e := encoder{nodes: doc.Nodes}
	if _, err := e.value(0, &keyPath{root: root}); err != nil {
		return "", err
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
func (e *encoder) value(i int, path *keyPath) (int, error) {
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
			return 0, fmt.Errorf("%s: cannot encode %v (JSON has no NaN or infinity)", path, n.Num)
		}
		e.out = appendNumber(e.out, n.Num)
	case router.KindString:
		e.out = appendString(e.out, n.Str)
	case router.KindObject:
		return e.table(i, path)
	case KindInvalid:
		return 0, fmt.Errorf("%s: cannot encode %s", path, n.Str)
	default:
		return 0, fmt.Errorf("%s: unexpected node kind %d", path, n.Kind)
	}
	return i + 1, nil
}

func (e *encoder) table(i int, path *keyPath) (int, error) {
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
			return 0, fmt.Errorf("%s: cannot encode %s", path, k.Str)
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
			if _, err := e.value(pr.val, &keyPath{parent: path, index: p + 1}); err != nil {
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
				return 0, fmt.Errorf("%s: the keys %s and %q both become the JSON key %q", path, key, key, key)
			}
			seen[key] = true
		}
		e.out = appendString(e.out, key)
		e.out = append(e.out, ':')
		if _, err := e.value(pr.val, &keyPath{parent: path, key: &e.nodes[pr.key]}); err != nil {
			return 0, err
		}
	}
	e.out = append(e.out, '}')
	return j, nil
}

// keyPath names a value in errors ("payload.players[2].cb"). It is written
// out only when an error needs it: building it for every value would cost
// time quadratic in the keys' length.
type keyPath struct {
	parent *keyPath
	root   string       // the root's name, when parent is nil
	index  int          // an array element, from 1; 0 when key is set
	key    *router.Node // a table key, String or Number
}

func (p *keyPath) String() string {
	if p.parent == nil {
		return p.root
	}
	switch {
	case p.key == nil:
		return p.parent.String() + "[" + strconv.Itoa(p.index) + "]"
	case p.key.Kind == router.KindNumber:
		return p.parent.String() + "[" + string(appendNumber(nil, p.key.Num)) + "]"
	default:
		return p.parent.String() + "." + p.key.Str
	}
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
