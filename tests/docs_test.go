package tests

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
)

// The documentation is checked against the code: these tests fail, naming
// what is missing, when the docs and the code drift apart.

// TestDocsAPIFunctions: every name the module registers on the realtime
// table has a "### realtime.Name" heading in docs/API.md, and every such
// heading names something the module registers.
func TestDocsAPIFunctions(t *testing.T) {
	t.Parallel()
	out := NewServer(t, luajit64, "").RunScript("docs_api.lua")
	registered := map[string]string{} // name -> Lua type
	for _, line := range splitLines(out) {
		if rest, ok := strings.CutPrefix(line, "api: "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			if !strings.HasPrefix(name, "_") { // the glue's own state (realtime._glue)
				registered[name] = typ
			}
		}
	}
	require.NotEmpty(t, registered, "docs_api.lua listed nothing:\n%s", out)

	documented := map[string]int{} // name -> line in docs/API.md
	heading := regexp.MustCompile(`realtime\.([A-Za-z_][A-Za-z0-9_]*)`)
	for i, line := range docLines(t, "docs/API.md") {
		if strings.HasPrefix(line, "### ") {
			for _, m := range heading.FindAllStringSubmatch(line, -1) {
				if _, seen := documented[m[1]]; !seen {
					documented[m[1]] = i + 1
				}
			}
		}
	}
	for _, name := range sortedKeys(registered) {
		if _, ok := documented[name]; !ok {
			t.Errorf("realtime.%s (a %s) is registered by the module, but docs/API.md has no \"### realtime.%s\" heading", name, registered[name], name)
		}
	}
	for _, name := range sortedKeys(documented) {
		if _, ok := registered[name]; !ok {
			t.Errorf("docs/API.md:%d documents realtime.%s, which the module does not register", documented[name], name)
		}
	}
}

// TestDocsConfigKeys: every key of the config struct (its koanf tags) is a
// row of docs/CONFIG.md, and every row is a key; each REDIS_* variable is
// on the row of the key it sets (config.EnvVars), and no other.
func TestDocsConfigKeys(t *testing.T) {
	t.Parallel()
	keys := configKeys(reflect.TypeFor[config.Config](), "")
	envOf := map[string][]string{} // key -> variables
	for name, key := range config.EnvVars {
		envOf[key] = append(envOf[key], name)
	}

	row := regexp.MustCompile("^\\| `([a-z_]+(?:\\[\\])?\\.[a-z_]+)` \\|")
	envVar := regexp.MustCompile(`\bREDIS_[A-Z_]+\b`)
	documented := map[string]int{}
	for i, line := range docLines(t, "docs/CONFIG.md") {
		for _, v := range envVar.FindAllString(line, -1) {
			if _, ok := config.EnvVars[v]; !ok {
				t.Errorf("docs/CONFIG.md:%d names %s, which the module does not read (config.EnvVars)", i+1, v)
			}
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		key := m[1]
		if prev, dup := documented[key]; dup {
			t.Errorf("docs/CONFIG.md:%d documents %s again (first on line %d)", i+1, key, prev)
		}
		documented[key] = i + 1
		want := envOf[key]
		got := envVar.FindAllString(line, -1)
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(want, got) {
			t.Errorf("docs/CONFIG.md:%d: the row of %s names the variables %v; the module reads %v for it", i+1, key, got, want)
		}
	}
	for _, key := range keys {
		if _, ok := documented[key]; !ok {
			t.Errorf("config key %s (config/types.go) has no row \"| `%s` |\" in docs/CONFIG.md", key, key)
		}
	}
	for _, key := range sortedKeys(documented) {
		if !slices.Contains(keys, key) {
			t.Errorf("docs/CONFIG.md:%d documents %s, which is not a key of the config struct", documented[key], key)
		}
	}
}

// TestDocsTOMLBlocks: every ```toml block of docs/ and the README, and
// every example's realtime.toml, loads without an error.
func TestDocsTOMLBlocks(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	require.NoError(t, err)
	files = append(files, filepath.Join(repo, "README.md"))
	blocks := 0
	for _, f := range files {
		rel, _ := filepath.Rel(repo, f)
		for _, b := range fencedBlocks(t, rel, "toml") {
			blocks++
			if _, err := config.Parse(fmt.Sprintf("%s:%d", rel, b.line), []byte(b.text)); err != nil {
				t.Errorf("%s:%d: this toml block does not load:\n%v", rel, b.line, err)
			}
		}
	}
	require.Greater(t, blocks, 1, "toml blocks found in the docs")
	examples, err := filepath.Glob(filepath.Join(repo, "examples", "*", "realtime.toml"))
	require.NoError(t, err)
	require.NotEmpty(t, examples)
	for _, f := range examples {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		rel, _ := filepath.Rel(repo, f)
		if _, err := config.Parse(rel, data); err != nil {
			t.Errorf("%s does not load:\n%v", rel, err)
		}
	}
}

// TestDocsLinks: every relative link of the README, docs/ and examples/
// names a file of the repository, and its #anchor a heading of that file.
func TestDocsLinks(t *testing.T) {
	t.Parallel()
	var files []string
	for _, pattern := range []string{"README.md", "docs/*.md", "examples/README.md", "examples/*/README.md"} {
		m, err := filepath.Glob(filepath.Join(repo, pattern))
		require.NoError(t, err)
		files = append(files, m...)
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, f := range files {
		rel, _ := filepath.Rel(repo, f)
		for i, line := range docLines(t, rel) {
			for _, m := range link.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") {
					continue
				}
				path, anchor, _ := strings.Cut(target, "#")
				file := f
				if path != "" {
					file = filepath.Join(filepath.Dir(f), path)
				}
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s:%d: the link %s names no file of the repository", rel, i+1, target)
					continue
				}
				if anchor != "" && !slices.Contains(anchors(t, file), anchor) {
					t.Errorf("%s:%d: the link %s names no heading of %s", rel, i+1, target, filepath.Base(file))
				}
			}
		}
	}
}

// anchors are the ids GitHub gives a markdown file's headings.
func anchors(t *testing.T, file string) []string {
	t.Helper()
	rel, _ := filepath.Rel(repo, file)
	var out []string
	for _, line := range docLines(t, rel) {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		var b strings.Builder
		for _, r := range h {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		out = append(out, b.String())
	}
	return out
}

// configKeys walks a config struct's koanf tags: "redis.url", and
// "routes[].name" for the fields of a list of tables.
func configKeys(typ reflect.Type, prefix string) []string {
	var keys []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" || tag == "-" {
			continue
		}
		switch {
		case f.Type.Kind() == reflect.Struct && !f.Type.Implements(textUnmarshaler) && !reflect.PointerTo(f.Type).Implements(textUnmarshaler):
			keys = append(keys, configKeys(f.Type, prefix+tag+".")...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			keys = append(keys, configKeys(f.Type.Elem(), prefix+tag+"[].")...)
		default:
			keys = append(keys, prefix+tag)
		}
	}
	return keys
}

var textUnmarshaler = reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()

// TestDocsQuotedMessages: every line that docs/TROUBLESHOOTING.md quotes
// in a ```text block, and every error docs/API.md lists as a bullet (a
// code span of words), holds a message from a string literal of the
// module's Go, C or Lua source, printf verbs standing for the variable
// parts: one literal of at least minQuoted constant characters, or one
// that starts the line after the prefix the module puts before its lines.
func TestDocsQuotedMessages(t *testing.T) {
	t.Parallel()
	lits, raw := sourceLiterals(t)
	for _, p := range linePrefixes {
		require.Contains(t, raw, p, "the sources no longer write the line prefix %q", p)
	}
	check := func(file string, line int, quote string) {
		if n := quotedCover(lits, quote); n < minQuoted {
			t.Errorf("%s:%d quotes a message that no Go, C or Lua source of the module produces (the closest string literal covers %d of its characters, want %d):\n\t%s",
				file, line, n, minQuoted, quote)
		}
		// "bad argument #2 to 'On' (...)" is the shim's format for every
		// argument error: what is in the parentheses must be a message too.
		if m := argError.FindStringSubmatch(quote); m != nil {
			if n := quotedCover(lits, m[1]); n < minArgQuoted {
				t.Errorf("%s:%d quotes an argument error whose reason no Go, C or Lua source of the module produces (the closest string literal covers %d of its characters, want %d):\n\t%s",
					file, line, n, minArgQuoted, m[1])
			}
		}
	}
	quoted := 0
	for _, b := range fencedBlocks(t, "docs/TROUBLESHOOTING.md", "text") {
		for j, line := range strings.Split(b.text, "\n") {
			if strings.TrimSpace(line) != "" {
				check("docs/TROUBLESHOOTING.md", b.line+j, line)
				quoted++
			}
		}
	}
	require.Greater(t, quoted, 20, "docs/TROUBLESHOOTING.md quotes messages in ```text blocks")

	bullet := regexp.MustCompile("^- `([^`]{20,})`")
	for i, line := range docLines(t, "docs/API.md") {
		if m := bullet.FindStringSubmatch(line); m != nil && strings.Contains(m[1], " ") {
			check("docs/API.md", i+1, m[1])
		}
	}
}

// minQuoted is how many characters of a quoted line one literal of the
// source must give: the rest are the variable parts (names, numbers,
// Redis's and the system's own words).
const minQuoted = 15

// argError is the shim's argument error; minArgQuoted is how many
// characters of its reason one literal must give.
var argError = regexp.MustCompile(`^bad argument #\d+ to '[A-Za-z]+' \((.*)\)$`)

const minArgQuoted = 10

// linePrefixes are what the module puts before a message: its log lines
// (module/bridge.go) and realtimectl's errors (cmd/realtimectl/main.go).
var linePrefixes = []string{"[realtime] ", "realtimectl: "}

// literal is one string literal of the source as a pattern: its constant
// pieces, between which printf verbs stand for anything.
type literal struct {
	pieces  []string
	longest string
	re      *regexp.Regexp
}

var printfVerb = regexp.MustCompile(`%[-+# 0]*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|z|j|t|L)?[a-zA-Z]`)

func newLiteral(s string) *literal {
	s = strings.Trim(s, "\n")
	var pieces []string
	for _, p := range printfVerb.Split(s, -1) {
		if p = strings.ReplaceAll(p, "%%", "%"); p != "" {
			pieces = append(pieces, p)
		}
	}
	l := &literal{pieces: pieces}
	var re strings.Builder
	for i, p := range pieces {
		if i > 0 {
			re.WriteString("(?s:.*?)")
		}
		re.WriteString(regexp.QuoteMeta(p))
		if len(p) > len(l.longest) {
			l.longest = p
		}
	}
	l.re = regexp.MustCompile(re.String())
	return l
}

func (l *literal) size() int {
	n := 0
	for _, p := range l.pieces {
		n += len(p)
	}
	return n
}

// quotedCover is the most characters of line that one literal gives: one
// matching anywhere in it, or, after a line prefix, one matching at the
// start of the rest (then the prefix counts too).
func quotedCover(lits []*literal, line string) int {
	best := 0
	for _, l := range lits {
		if n := l.size(); n > best && strings.Contains(line, l.longest) && l.re.MatchString(line) {
			best = n
		}
	}
	for _, p := range linePrefixes {
		rest, ok := strings.CutPrefix(line, p)
		if !ok {
			continue
		}
		for _, l := range lits {
			if n := len(p) + l.size(); n > best && strings.HasPrefix(rest, l.pieces[0]) {
				if loc := l.re.FindStringIndex(rest); loc != nil && loc[0] == 0 {
					best = n
				}
			}
		}
	}
	return best
}

// sourceLiterals reads the string literals of the module's sources (Go
// outside tests, the C shim, the Lua glue): as patterns (those of 8
// constant characters or more), and as written.
func sourceLiterals(t *testing.T) ([]*literal, []string) {
	t.Helper()
	var raw []string
	err := filepath.WalkDir(repo, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, path)
		if d.IsDir() {
			switch rel {
			case "build", "tests", "examples", ".git", "internal":
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go"):
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						raw = append(raw, s)
					}
				}
				return true
			})
		case strings.HasSuffix(path, ".c") || strings.HasSuffix(path, ".h"):
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			raw = append(raw, cStrings(string(data), true)...)
		case strings.HasSuffix(path, ".lua"):
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			raw = append(raw, cStrings(string(data), false)...)
		}
		return nil
	})
	require.NoError(t, err)
	var lits []*literal
	for _, s := range raw {
		if l := newLiteral(s); l.size() >= 8 {
			lits = append(lits, l)
		}
	}
	require.Greater(t, len(lits), 100, "string literals found in the sources")
	return lits, raw
}

// cStrings returns the string literals of C source (adjacent literals
// joined, as the compiler joins them) or of Lua source ('...' too), outside
// comments.
func cStrings(src string, isC bool) []string {
	var out []string
	joinNext := false
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case isC && strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return out
			}
			i += end + 4
			continue
		case isC && strings.HasPrefix(src[i:], "//"), !isC && strings.HasPrefix(src[i:], "--"):
			end := strings.IndexByte(src[i:], '\n')
			if end < 0 {
				return out
			}
			i += end
			continue
		case c == '"' || (!isC && c == '\''):
			var b strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != c && src[j] != '\n'; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
					switch src[j] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					default:
						b.WriteByte(src[j])
					}
					continue
				}
				b.WriteByte(src[j])
			}
			if isC && joinNext && len(out) > 0 {
				out[len(out)-1] += b.String()
			} else {
				out = append(out, b.String())
			}
			joinNext = true
			i = j + 1
			continue
		case isC && c == '\'': // a character constant
			end := strings.IndexByte(src[i+1:], '\'')
			if end >= 0 && end <= 4 {
				i += end + 2
				joinNext = false
				continue
			}
		}
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			joinNext = false
		}
		i++
	}
	return out
}

// TestDocsLuaBlocks: every ```lua block of the README, docs/ and the
// examples' READMEs compiles (luajit -bl).
func TestDocsLuaBlocks(t *testing.T) {
	t.Parallel()
	luajit, err := exec.LookPath("luajit")
	require.NoError(t, err, "luajit compiles the docs' Lua blocks: install it (make deps)")
	files := []string{"README.md"}
	for _, pattern := range []string{"docs/*.md", "examples/*/README.md"} {
		m, err := filepath.Glob(filepath.Join(repo, pattern))
		require.NoError(t, err)
		for _, f := range m {
			rel, _ := filepath.Rel(repo, f)
			files = append(files, rel)
		}
	}
	dir := t.TempDir()
	blocks := 0
	for _, file := range files {
		for _, b := range fencedBlocks(t, file, "lua") {
			blocks++
			src := filepath.Join(dir, fmt.Sprintf("block%d.lua", blocks))
			require.NoError(t, os.WriteFile(src, []byte(b.text), 0o644))
			if out, err := exec.Command(luajit, "-bl", src).CombinedOutput(); err != nil {
				msg := strings.ReplaceAll(strings.TrimSpace(string(out)), src, "block")
				t.Errorf("%s:%d: this lua block does not compile (%v): %s", file, b.line, err, msg)
			}
		}
	}
	require.Greater(t, blocks, 20, "lua blocks found in the docs")
}

// block is a fenced code block: its text and the line of its first line.
type block struct {
	text string
	line int
}

// fencedBlocks returns the ```lang blocks of a file of the repository.
func fencedBlocks(t *testing.T, file, lang string) []block {
	t.Helper()
	var out []block
	var cur *block
	var lines []string
	for i, line := range docLines(t, file) {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && trimmed == "```"+lang:
			cur = &block{line: i + 2}
			lines = nil
		case cur != nil && trimmed == "```":
			cur.text = strings.Join(lines, "\n") + "\n"
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			lines = append(lines, line)
		}
	}
	require.Nil(t, cur, "%s: a ```%s block is not closed", file, lang)
	return out
}

func docLines(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(repo, file))
	require.NoError(t, err)
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	require.NoError(t, sc.Err())
	return lines
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
