package api

import (
	"encoding/json"
	"math"
	"sort"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/router"
)

// luaTape builds the tape the C shim makes of a Lua value: maps and slices
// are Lua tables (a slice's keys are the numbers 1..n), nil is nil, an
// invalid value is an invalid(what).
func luaTape(v any) *router.Doc {
	var nodes []router.Node
	var add func(v any)
	add = func(v any) {
		switch x := v.(type) {
		case nil:
			nodes = append(nodes, router.Node{Kind: router.KindNull})
		case bool:
			k := router.KindFalse
			if x {
				k = router.KindTrue
			}
			nodes = append(nodes, router.Node{Kind: k})
		case float64:
			nodes = append(nodes, router.Node{Kind: router.KindNumber, Num: x})
		case int:
			nodes = append(nodes, router.Node{Kind: router.KindNumber, Num: float64(x)})
		case string:
			nodes = append(nodes, router.Node{Kind: router.KindString, Str: x})
		case invalid:
			nodes = append(nodes, router.Node{Kind: KindInvalid, Str: string(x)})
		case []any:
			nodes = append(nodes, router.Node{Kind: router.KindObject, Len: int32(len(x))})
			for i := len(x) - 1; i >= 0; i-- { // lua_next order is not key order
				add(i + 1)
				add(x[i])
			}
		case map[any]any:
			nodes = append(nodes, router.Node{Kind: router.KindObject, Len: int32(len(x))})
			keys := make([]any, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool { return keyString(keys[i]) < keyString(keys[j]) })
			for _, k := range keys {
				add(k)
				add(x[k])
			}
		default:
			panic("luaTape: unsupported value")
		}
	}
	add(v)
	return &router.Doc{Nodes: nodes}
}

type invalid string

func keyString(k any) string {
	b, _ := json.Marshal(k)
	return string(b)
}

func TestEncodeJSON(t *testing.T) {
	for _, c := range []struct {
		name string
		in   any
		want string
	}{
		{"string", "a\x00b\xff", `"a\u0000b\ufffd"`},
		{"valid UTF-8 kept", "é€😀", `"é€😀"`},
		{"truncated UTF-8", "é\xe2\x82", `"é\ufffd\ufffd"`},
		{"escapes", "q\"\\\n\r\t\x01\x7f", `"q\"\\\n\r\t\u0001\u007f"`},
		{"integer", 42, "42"},
		{"fraction", 0.1, "0.1"},
		{"large", 1e21, "1e+21"},
		{"2^53", math.Pow(2, 53), "9007199254740992"},
		{"negative zero", math.Copysign(0, -1), "0"},
		{"bools and nil", []any{true, false}, "[true,false]"},
		{"array in key order", []any{"a", "b", "c"}, `["a","b","c"]`},
		{"empty table is an array", map[any]any{}, "[]"},
		{"object", map[any]any{"a": 1}, `{"a":1}`},
		{"sparse keys make an object", map[any]any{1: "a", 3: "c"}, `{"1":"a","3":"c"}`},
		{"fractional key", map[any]any{1.5: true}, `{"1.5":true}`},
		{"zero key", map[any]any{0: true}, `{"0":true}`},
		{"mixed keys, in the tape's order", map[any]any{1: "a", "n": 2}, `{"n":2,"1":"a"}`},
		{"nested", map[any]any{"pos": map[any]any{"x": 1, "y": 2, "z": 3}, "tags": []any{"a"}},
			`{"pos":{"x":1,"y":2,"z":3},"tags":["a"]}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := EncodeJSON(luaTape(c.in), "payload")
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}

func TestEncodeJSONErrorsNameThePath(t *testing.T) {
	for _, c := range []struct {
		in   any
		want string
	}{
		{map[any]any{"f": invalid("a function")}, "payload.f: cannot encode a function"},
		{[]any{1, map[any]any{"x": math.NaN()}}, "payload[2].x: cannot encode NaN (JSON has no NaN or infinity)"},
		{map[any]any{invalid("a boolean key"): 1}, "payload: cannot encode a boolean key"},
		{map[any]any{3: []any{math.Inf(1)}}, "payload[3][1]: cannot encode +Inf (JSON has no NaN or infinity)"},
		{map[any]any{1: "a", "1": "b"}, `payload: the keys 1 and "1" both become the JSON key "1"`},
	} {
		_, err := EncodeJSON(luaTape(c.in), "payload")
		assert.EqualError(t, err, c.want)
	}
}

// TestEncodeJSONRoundTrip: what Publish encodes, a JSON route decodes to
// the same shape (router.ParseJSON) and encoding/json accepts.
func TestEncodeJSONRoundTrip(t *testing.T) {
	in := map[any]any{"name": "bob", "n": 3.25, "ok": true, "list": []any{1, "two", []any{}}, "obj": map[any]any{"k": "v"}}
	s, err := EncodeJSON(luaTape(in), "payload")
	require.NoError(t, err)
	var std map[string]any
	require.NoError(t, json.Unmarshal([]byte(s), &std))
	assert.Equal(t, map[string]any{"name": "bob", "n": 3.25, "ok": true, "list": []any{1.0, "two", []any{}}, "obj": map[string]any{"k": "v"}}, std)
	doc, err := router.ParseJSON(s, 64)
	require.NoError(t, err)
	assert.Equal(t, router.KindObject, doc.Nodes[0].Kind)
	assert.Equal(t, int32(5), doc.Nodes[0].Len)
}

// FuzzEncodeJSON: any tape of valid UTF-8 strings and finite numbers
// encodes to JSON that encoding/json accepts; nothing panics.
func FuzzEncodeJSON(f *testing.F) {
	f.Add([]byte("\x05\x02\x01a\x03\x02b"))
	f.Add([]byte{6, 0, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, clean := tapeFromBytes(data)
		s, err := EncodeJSON(doc, "payload")
		if err != nil {
			if clean {
				t.Fatalf("clean tape rejected: %v", err)
			}
			return
		}
		if clean && !json.Valid([]byte(s)) {
			t.Fatalf("invalid JSON %q", s)
		}
	})
}

// tapeFromBytes decodes fuzz bytes into a well-formed Lua tape; clean is
// false when it holds something JSON cannot carry.
func tapeFromBytes(data []byte) (*router.Doc, bool) {
	var nodes []router.Node
	clean := true
	i := 0
	next := func() byte {
		if i >= len(data) {
			return 0
		}
		i++
		return data[i-1]
	}
	var value func(depth int)
	value = func(depth int) {
		switch b := next(); b % 7 {
		case 0:
			nodes = append(nodes, router.Node{Kind: router.KindNull})
		case 1:
			nodes = append(nodes, router.Node{Kind: router.KindTrue})
		case 2:
			n := float64(int8(next())) / 4
			if b > 200 {
				n = math.Inf(1)
				clean = false
			}
			nodes = append(nodes, router.Node{Kind: router.KindNumber, Num: n})
		case 3, 4:
			l := int(next() % 8)
			s := string(data[min(i, len(data)):min(i+l, len(data))])
			i += l
			if !utf8.ValidString(s) {
				clean = false
			}
			nodes = append(nodes, router.Node{Kind: router.KindString, Str: s})
		case 5, 6:
			if depth > 8 {
				nodes = append(nodes, router.Node{Kind: router.KindFalse})
				return
			}
			n := int(next() % 5)
			nodes = append(nodes, router.Node{Kind: router.KindObject, Len: int32(n)})
			for k := 0; k < n; k++ {
				if next()%2 == 0 {
					nodes = append(nodes, router.Node{Kind: router.KindNumber, Num: float64(k + 1)})
				} else {
					nodes = append(nodes, router.Node{Kind: router.KindString, Str: string(rune('a' + k))})
				}
				value(depth + 1)
			}
		}
	}
	value(0)
	return &router.Doc{Nodes: nodes}, clean
}

// FuzzEncodeJSONIsValid: whatever bytes a Lua table's strings hold, what
// Publish sends for it is valid JSON that decodes to the same shape.
func FuzzEncodeJSONIsValid(f *testing.F) {
	f.Add("key", "a\x00b\xff", 1.5)
	f.Add("\xc3", "\xe2\x82", math.Copysign(0, -1))
	f.Fuzz(func(t *testing.T, key, val string, num float64) {
		if math.IsNaN(num) || math.IsInf(num, 0) {
			return
		}
		s, err := EncodeJSON(luaTape(map[any]any{key: []any{val, num}}), "payload")
		require.NoError(t, err)
		require.True(t, json.Valid([]byte(s)), "%q", s)
		var v map[string][]any
		require.NoError(t, json.Unmarshal([]byte(s), &v))
		require.Len(t, v, 1)
		for k, list := range v {
			assert.Equal(t, viaEncodingJSON(t, key), k)
			assert.Equal(t, viaEncodingJSON(t, val), list[0])
		}
	})
}

// viaEncodingJSON is s as encoding/json sends it: each byte that is not
// valid UTF-8 replaced by U+FFFD.
func viaEncodingJSON(t *testing.T, s string) string {
	b, err := json.Marshal(s)
	require.NoError(t, err)
	var out string
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}
