package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/knadh/koanf/parsers/dotenv"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDotEnvSyntaxErrorNamesTheLineNotTheValues: a .env that godotenv
// refuses is reported by file, line and problem, and no value of the file
// (a password, another program's token) reaches the error.
func TestDotEnvSyntaxErrorNamesTheLineNotTheValues(t *testing.T) {
	for _, tc := range []struct{ name, env, want string }{
		{"another program's variable", "REDIS_HOST=h\nOTHER-APP_KEY=tok3nSecret\nREDIS_PASSWORD=hunter2pw\n",
			".env:2: syntax error: a variable name may hold only letters, digits, _ and . (found the character '-')"},
		{"unterminated quote", "REDIS_HOST=h\n\nREDIS_PASSWORD=\"hunter2pw\nREDIS_DB=1\n",
			".env:3: syntax error: the value's opening quote has no closing quote"},
		{"no =", "# comment\nREDIS_PASSWORD=hunter2pw\nhunter3pw\nREDIS_DB=1\n",
			".env:3: syntax error: a line with no = (want NAME=value)"},
		{"quote in a name", "REDIS_PASSWORD=hunter2pw\nexport A\"hunter3pw\"=1\n",
			".env:2: syntax error: a quote in a variable name (want NAME=value; quotes go around the value)"},
		{"CRLF lines", "REDIS_PASSWORD=hunter2pw\r\nA B-hunter3pw=1\r\n",
			".env:2: syntax error: a variable name may hold only letters, digits, _ and . (found the character '-')"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, map[string]string{".env": tc.env}, nil, nil)
			require.Error(t, err)
			msg := err.Error()
			assert.True(t, strings.HasSuffix(msg, tc.want), "got %q, want it to end in %q", msg, tc.want)
			for _, secret := range []string{"tok3nSecret", "hunter2pw", "hunter3pw"} {
				assert.NotContains(t, msg, secret)
			}
		})
	}
}

// secretTokens returns the words (6 or more letters and digits, with at
// least one of each) that input holds only inside secret values: for a
// .env, the value of every variable but the non-secret REDIS_HOST,
// REDIS_PORT, REDIS_DB, REDIS_TLS and REDIS_USERNAME, and of REDIS_URL
// only its user:password part. A word that is also written elsewhere (a
// name, a host), or is part of something written elsewhere (the password
// aAa0aa of redis://:aAa0aa@aAa0aa0), is not counted as a secret: the
// error may quote that.
// seps are the characters that end a line's name (the first one wins).
func secretTokens(lines []string, seps string, secretPart func(name, value string) (secret, public string)) []string {
	word := regexp.MustCompile(`[A-Za-z0-9]{6,}`)
	isToken := func(w string) bool {
		return strings.ContainsAny(w, "0123456789") && strings.ToUpper(w) != strings.ToLower(w)
	}
	secret, public := map[string]bool{}, []string{}
	for _, line := range lines {
		i := strings.IndexAny(line, seps)
		if i < 0 {
			public = append(public, line)
			continue
		}
		name, value := line[:i], line[i+1:]
		s, p := secretPart(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), "export ")), value)
		public = append(public, name, p)
		for _, w := range word.FindAllString(s, -1) {
			if isToken(w) {
				secret[w] = true
			}
		}
	}
	var out []string
	for w := range secret {
		if !slices.ContainsFunc(public, func(p string) bool { return strings.Contains(p, w) }) {
			out = append(out, w)
		}
	}
	return out
}

// splitURL returns a URL's password (what lies between the first ':'
// after "://" and the last '@') and the rest.
func splitURL(v string) (secret, public string) {
	i, j := strings.Index(v, "://"), strings.LastIndex(v, "@")
	if i < 0 || j < i+3 {
		return "", v
	}
	user := v[i+3 : j]
	k := strings.IndexByte(user, ':')
	if k < 0 {
		return "", v
	}
	return user[k+1:], v[:i+3] + user[:k] + v[j:]
}

// dotEnvLines returns a .env's statements as NAME=value lines for
// secretTokens: as godotenv reads them when it can (a quoted value may run
// over several lines, and a line of it such as `:0A0000"` is no statement
// of its own), else the file's lines (its syntax errors quote no value).
func dotEnvLines(data []byte) []string {
	vars, err := dotenv.Parser().Unmarshal(data)
	if err != nil {
		return strings.Split(strings.ReplaceAll(string(data), "\r", "\n"), "\n")
	}
	lines := make([]string, 0, len(vars))
	for name, v := range vars {
		lines = append(lines, name+"="+v.(string))
	}
	return lines
}

// FuzzDotEnvErrorsHideSecrets: whatever a .env holds, no error Load
// reports quotes a secret from it (see secretTokens).
func FuzzDotEnvErrorsHideSecrets(f *testing.F) {
	f.Add([]byte("REDIS_HOST=h\nOTHER-APP_KEY=tok3nSecret\nREDIS_PASSWORD=hunter2pw\n"))
	f.Add([]byte("REDIS_PASSWORD=\"hunter2pw\nREDIS_DB=1\n"))
	f.Add([]byte("REDIS_URL=redis://user:hunter2pw@host:1/2\nREDIS_PORT=x\n"))
	f.Add([]byte("REDIS_URL=redis://:hunter2pw@host:1/2\nREDIS_PASSWORD=other9pw\n"))
	f.Add([]byte("export REDIS_PASWORD='hunter2pw'\nREDIS_DB=-1\nREDIS_TLS=maybe\n"))
	f.Add([]byte("REDIS_URL=\"rediss://u:hunter2pw@[::1:6379/x\"\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, ".env"), data, 0o600))
		_, err := Load(Options{Dir: dir, Environ: []string{}})
		if err == nil {
			return
		}
		msg := strings.ReplaceAll(err.Error(), dir, "DIR")
		for _, s := range secretTokens(dotEnvLines(data), "=:", func(name, value string) (string, string) {
			switch name {
			case "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_TLS", "REDIS_USERNAME":
				return "", value
			case "REDIS_URL":
				return splitURL(value)
			}
			return value, ""
		}) {
			if strings.Contains(msg, s) {
				t.Fatalf("the error quotes %q from the .env:\n%s", s, msg)
			}
		}
	})
}

// tomlLines returns a TOML file's keys as key=value lines for
// secretTokens, each under the last part of its dotted name (a value in
// an array under its array's): as the TOML parser reads them when it can
// (a multi-line string may hold a line such as `password = 0A0000x"""`,
// which is no key of its own), else the file's lines.
func tomlLines(data []byte) []string {
	doc, err := toml.Parser().Unmarshal(data)
	if err != nil {
		return strings.Split(strings.ReplaceAll(string(data), "\r", "\n"), "\n")
	}
	var lines []string
	var walk func(name string, v any)
	walk = func(name string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(k, e)
			}
		case []any:
			for _, e := range v {
				walk(name, e)
			}
		default:
			lines = append(lines, name+"="+fmt.Sprint(v))
		}
	}
	walk("", doc)
	return lines
}

// FuzzTOMLErrorsHideSecrets: whatever a realtime.toml holds, no error
// quotes its password, sentinel_password or a URL's user:password.
func FuzzTOMLErrorsHideSecrets(f *testing.F) {
	f.Add([]byte("[redis]\nurl = \"redis://u:hunter2pw@h:1/2\"\npassword = \"other9pw\"\n"))
	f.Add([]byte("[redis]\nurl = \"redis://u:hunter2pw@h:x/2\"\n"))
	f.Add([]byte("[redis]\nurl = \"ftp://u:hunter2pw@h/\"\nport = 0\n"))
	f.Add([]byte("[redis]\npassword = \"hunter2pw\nport = 1\n"))
	f.Add([]byte("[redis]\npassword = 5\nsentinel_password = \"hunter2pw\"\nmaster_name = \"m\"\n"))
	f.Add([]byte("[redis]\nurl = \"redis://:hunter2pw@h:1/2\"\npassword = \"hunter3pw\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse("fuzz.toml", data)
		if err == nil {
			return
		}
		msg := err.Error()
		for _, s := range secretTokens(tomlLines(data), "=", func(name, value string) (string, string) {
			switch name {
			case "password", "sentinel_password":
				return value, ""
			case "url":
				return splitURL(value)
			}
			return "", value
		}) {
			if strings.Contains(msg, s) {
				t.Fatalf("the error quotes %q from the TOML:\n%s", s, msg)
			}
		}
	})
}

// TestTOMLSyntaxErrorHidesTheToken: an unquoted password that the TOML
// parser takes for a number it cannot read is not quoted back (strconv's
// error, which the parser's wraps, did): the error says where and what.
func TestTOMLSyntaxErrorHidesTheToken(t *testing.T) {
	for _, tc := range []struct{ toml, token, want string }{
		{"password=E00000", "E00000", "fuzz.toml:1:10: TOML syntax error: toml: unable to parse float: invalid syntax"},
		{"[redis]\npassword = 99999999999999999999999", "99999999999999999999999",
			"fuzz.toml:2:12: TOML syntax error: toml: couldn't parse decimal number: value out of range"},
		{"[redis]\npassword = 0o7777777777777777777777771", "7777777777777777777777771",
			"fuzz.toml:2:12: TOML syntax error: toml: couldn't parse octal number: value out of range"},
	} {
		_, err := Parse("fuzz.toml", []byte(tc.toml))
		require.Error(t, err, tc.toml)
		assert.Equal(t, tc.want, err.Error(), tc.toml)
		assert.NotContains(t, err.Error(), tc.token)
	}
}

// TestRedactURLHidesOddPasswords: a password that url.Parse would read as
// a fragment, path or query is hidden too.
func TestRedactURLHidesOddPasswords(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://u:pa#ss@h:1/0": "redis://u:***@h:1/0",
		"redis://u:p/a?s@h:1":   "redis://u:***@h:1",
		"rediss://:pw@h":        "rediss://:***@h",
		"redis://user@h:1/2":    "redis://***@h:1/2", // a lone name may be a password missing its ':'

		"redis://h:1/2":           "redis://h:1/2",
		"redis://u:a@b@c@h:6379/": "redis://u:***@h:6379/",
	} {
		assert.Equal(t, want, RedactURL(raw), raw)
	}
}
