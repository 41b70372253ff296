package pattern

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// redisMatch is a direct port of Redis 7's stringmatchlen (util.c, nocase
// off): the reference the translated matcher is checked against. C `char` is
// signed, so range bounds compare as int8.
func redisMatch(pattern, str string) bool {
	skip := false
	return redisMatchImpl([]byte(pattern), []byte(str), &skip, 0)
}

func redisMatchImpl(p, s []byte, skipLonger *bool, nesting int) bool {
	if nesting > 1000 {
		return false
	}
	at := func(b []byte, i int) byte { // sds strings are NUL-terminated
		if i < len(b) {
			return b[i]
		}
		return 0
	}
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 0 && at(p, 1) == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for len(s) > 0 {
				if redisMatchImpl(p[1:], s, skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
				s = s[1:]
			}
			*skipLonger = true
			return false
		case '?':
			s = s[1:]
		case '[':
			p = p[1:]
			not := at(p, 0) == '^'
			if not {
				p = p[1:]
			}
			match := false
		class:
			for {
				switch {
				case at(p, 0) == '\\' && len(p) >= 2:
					p = p[1:]
					if p[0] == s[0] {
						match = true
					}
				case at(p, 0) == ']':
					break class
				case len(p) == 0:
					// Unterminated: Redis steps back onto the last byte so
					// that the p++ after the switch ends the pattern.
					p = []byte{0}
					break class
				case len(p) >= 3 && p[1] == '-':
					start, end, c := int(int8(p[0])), int(int8(p[2])), int(int8(s[0]))
					if start > end {
						start, end = end, start
					}
					p = p[2:]
					if c >= start && c <= end {
						match = true
					}
				case p[0] == s[0]:
					match = true
				}
				p = p[1:]
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			s = s[1:]
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if p[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		p = p[1:]
		if len(s) == 0 {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		nomatch []string
	}{
		{"player:*", []string{"player:", "player:spawn", "player:a:b"}, []string{"player", "xplayer:1", ""}},
		{"*", []string{"a", "player:spawn", "\x00"}, []string{""}},
		{"a*", []string{"a", "ab"}, []string{"", "b"}},
		{"h?llo", []string{"hello", "hallo", "h\xffllo"}, []string{"hllo", "heello", "h\xc3\xa9llo"}},
		{"h[ae]llo", []string{"hello", "hallo"}, []string{"hillo"}},
		{"h[^e]llo", []string{"hallo", "hbllo"}, []string{"hello"}},
		{"h[a-b]llo", []string{"hallo", "hbllo"}, []string{"hcllo"}},
		{"[a-c0-9x]", []string{"a", "c", "5", "x"}, []string{"d", "y", "-"}},
		{"[z-a]", []string{"a", "m", "z"}, []string{"A"}},
		{`\*`, []string{"*"}, []string{"a"}},
		{`a\?b`, []string{"a?b"}, []string{"axb"}},
		{`[\]]`, []string{"]"}, []string{`\`}},
		{`[\a-z]`, []string{"a", "-", "z"}, []string{"m"}},
		{"{a,b}", []string{"{a,b}"}, []string{"a", "b"}},
		{"[a-]]", []string{"]", "^", "a"}, []string{"b", "-"}},
		{"caf\xc3\xa9:*", []string{"caf\xc3\xa9:x"}, []string{"cafe:x", "caf\xc3:x"}},
		{"[\x01-\xff]", []string{"\x00", "\x01", "\xff"}, []string{"\x02", "a", "\xfe"}}, // signed char
		{"a**b", []string{"ab", "axxb"}, []string{"a"}},
		{"*a*b*", []string{"ab", "xaybz"}, []string{"ba"}},
		{"[^]", []string{"x"}, []string{""}},
	}
	for _, tt := range tests {
		p, err := Compile(tt.pattern)
		require.NoError(t, err, tt.pattern)
		for _, ch := range tt.match {
			assert.True(t, p.Match(ch), "%q should match %q", tt.pattern, ch)
			assert.True(t, redisMatch(tt.pattern, ch), "reference: %q should match %q", tt.pattern, ch)
		}
		for _, ch := range tt.nomatch {
			assert.False(t, p.Match(ch), "%q should not match %q", tt.pattern, ch)
			assert.False(t, redisMatch(tt.pattern, ch), "reference: %q should not match %q", tt.pattern, ch)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := map[string]string{
		"":                      "empty pattern",
		"a[bc":                  "unterminated character class",
		"[a-]":                  "unterminated character class",
		`abc\`:                  "trailing backslash",
		"x[]":                   "matches no byte",
		"[^\x00-\x7f\x80-\xff]": "matches no byte",
	}
	for src, want := range tests {
		_, err := Compile(src)
		require.Error(t, err, "%q", src)
		assert.Contains(t, err.Error(), want, "%q", src)
		var se *SyntaxError
		assert.ErrorAs(t, err, &se)
	}
}

func TestLiteralAndPrefix(t *testing.T) {
	p := MustCompile(`chat\:msg`)
	assert.True(t, p.IsLiteral())
	assert.Equal(t, "chat:msg", p.Literal())
	assert.True(t, p.Match("chat:msg"))

	p = MustCompile("player:[ab]*")
	assert.False(t, p.IsLiteral())
	assert.Equal(t, "player:", p.Prefix())

	for _, ch := range []string{"a*b", `x\y`, "[q]", "plain"} {
		q := MustCompile(Quote(ch))
		assert.True(t, q.IsLiteral(), ch)
		assert.True(t, q.Match(ch), ch)
		assert.True(t, redisMatch(Quote(ch), ch), ch)
	}
}

// FuzzMatch checks the translated matcher against the stringmatchlen port
// for every pattern Compile accepts.
func FuzzMatch(f *testing.F) {
	seeds := [][2]string{
		{"player:*", "player:spawn"}, {"h[^e]llo", "hallo"}, {"[a-c0-9]*", "b7"},
		{`\[x]`, "[x]"}, {"[\x01-\xff]", "\x80"}, {"*?*", "ab"}, {"a[b-]]c", "a]c"},
		{"{a,b}*", "{a,b}"}, {"caf\xc3\xa9", "caf\xc3\xa9"}, {"[^a-z]?", "\xff\xfe"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, ch string) {
		if len(pat) > 64 || len(ch) > 64 {
			return
		}
		p, err := Compile(pat)
		if err != nil {
			return
		}
		if got, want := p.Match(ch), redisMatch(pat, ch); got != want {
			t.Fatalf("pattern %q channel %q: Match=%v, Redis=%v", pat, ch, got, want)
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	cases := []struct{ pattern, channel string }{
		{"player:*", "player:spawn"},
		{"player:*", "chat:message"},
		{"chat:message", "chat:message"},
		{"h[a-z0-9]llo:*:x", "hello:abc:x"},
		{"caf\xc3\xa9:*", "caf\xc3\xa9:1"},
	}
	for _, c := range cases {
		p := MustCompile(c.pattern)
		b.Run(c.pattern+"~"+c.channel, func(b *testing.B) {
			for b.Loop() {
				p.Match(c.channel)
			}
		})
	}
}
