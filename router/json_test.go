package router

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// toAny converts a Doc back to what encoding/json would produce.
func toAny(nodes []Node, i int) (any, int) {
	n := nodes[i]
	i++
	switch n.Kind {
	case KindNull:
		return nil, i
	case KindFalse:
		return false, i
	case KindTrue:
		return true, i
	case KindNumber:
		return n.Num, i
	case KindString:
		return n.Str, i
	case KindArray:
		out := []any{}
		for k := int32(0); k < n.Len; k++ {
			var v any
			v, i = toAny(nodes, i)
			out = append(out, v)
		}
		return out, i
	}
	out := map[string]any{}
	for k := int32(0); k < n.Len; k++ {
		key := nodes[i].Str
		var v any
		v, i = toAny(nodes, i+1)
		out[key] = v // the last duplicate wins, as in encoding/json and Lua tables
	}
	return out, i
}

func TestParseJSON(t *testing.T) {
	for _, in := range []string{
		`null`, `true`, ` false `, `0`, `-1.5e3`, `"a\"b\\c\/\n\u00e9\ud83d\ude00"`, `[]`, `{}`,
		`{"a":[1,2,{"b":null}],"c":"d"}`, `[1,[2,[3]]]`, `{"k":1,"k":2}`, `"\ud800"`, `1e400`,
	} {
		doc, err := ParseJSON(in, 64)
		require.NoError(t, err, in)
		got, next := toAny(doc.Nodes, 0)
		assert.Equal(t, len(doc.Nodes), next, in)
		var want any
		if in == `1e400` {
			want = math.Inf(1)
		} else {
			require.NoError(t, json.Unmarshal([]byte(in), &want), in)
		}
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{``, `{`, `[1,]`, `{"a" 1}`, `01`, `1.`, `-`, `"abc`, "\"a\x01\"", `tru`, `1 2`, `{"a":1,}`, `"\x"`, `"\u12"`} {
		_, err := ParseJSON(in, 64)
		assert.Error(t, err, "%q", in)
	}
	_, err := ParseJSON(strings.Repeat("[", 10)+strings.Repeat("]", 10), 9)
	assert.ErrorIs(t, err, ErrJSONDepth)
	_, err = ParseJSON(strings.Repeat("[", 10)+strings.Repeat("]", 10), 10)
	assert.NoError(t, err)
}

func TestParseJSONKeepsBytes(t *testing.T) {
	doc, err := ParseJSON("\"caf\xe9\"", 8) // not UTF-8: kept as sent
	require.NoError(t, err)
	assert.Equal(t, "caf\xe9", doc.Nodes[0].Str)
}

// FuzzParseJSON compares ParseJSON with encoding/json on valid UTF-8 input.
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5,-3e2,true,false,null,"x\u00e9"]}`, `[[[]]]`, `"\ud83d\ude00"`, `{"":{}}`, `1`, `[1,]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		doc, err := ParseJSON(in, 1000)
		if !utf8.ValidString(in) {
			return
		}
		var want any
		jerr := json.Unmarshal([]byte(in), &want)
		if (err == nil) != (jerr == nil) {
			if err == nil && strings.Contains(jerr.Error(), "cannot unmarshal number") {
				return // out of float64 range: we give ±Inf like Lua
			}
			t.Fatalf("%q: ours %v, encoding/json %v", in, err, jerr)
		}
		if err != nil {
			return
		}
		got, _ := toAny(doc.Nodes, 0)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: ours %s, encoding/json %s", in, fmt.Sprint(got), fmt.Sprint(want))
		}
	})
}

func BenchmarkParseJSON(b *testing.B) {
	payload := `{"victim":"STEAM_0:1:1","attacker":"STEAM_0:1:2","weapon":"weapon_crowbar","ts":1700000000000,"server":"ttt-1","pos":{"x":1.5,"y":2,"z":-3},"hs":true,"dmg":100,"team":2,"round":7}`
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseJSON(payload, 64); err != nil {
			b.Fatal(err)
		}
	}
}
