package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/knadh/koanf/parsers/dotenv"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
	gotoml "github.com/pelletier/go-toml/v2"
)

// Options says where Load looks. The zero value reads the process
// environment and searches the default places.
type Options struct {
	// File is the TOML file to load. Default: $REALTIME_CONFIG, else
	// garrysmod/cfg/realtime.toml, else ./realtime.toml, else none.
	File string
	// Dir is the directory relative paths are resolved in. Default: the
	// working directory.
	Dir string
	// Environ replaces os.Environ() (KEY=value lines), for tests.
	Environ []string
	// Overrides are the values realtime.Config passed from Lua, by dotted
	// key ("redis.host"); they win over every other source.
	Overrides map[string]any
}

// SourceOverrides names values that came from Options.Overrides.
const SourceOverrides = "realtime.Config"

// SourceEnv names values that came from the process environment.
const SourceEnv = "environment"

// EnvVars maps the environment (and .env) variables to config keys.
var EnvVars = map[string]string{
	"REDIS_URL":      "redis.url",
	"REDIS_HOST":     "redis.host",
	"REDIS_PORT":     "redis.port",
	"REDIS_PASSWORD": "redis.password",
	"REDIS_USERNAME": "redis.username",
	"REDIS_DB":       "redis.db",
	"REDIS_TLS":      "redis.tls",
}

// DefaultFiles are searched, in order, when neither Options.File nor
// $REALTIME_CONFIG names a file.
var DefaultFiles = []string{"garrysmod/cfg/realtime.toml", "realtime.toml"}

// origin records where a key's value came from, for error messages.
type origin struct {
	source string // file path, "environment" or "realtime.Config"
	name   string // the name the user wrote: "REDIS_PORT", or "" for the key path
	level  int    // the source's rank: a higher one wins
}

// The sources' ranks, lowest first.
const (
	levelFile = iota + 1
	levelDotEnv
	levelEnv
	levelOverrides
)

// loader merges the layers and remembers each key's origin.
type loader struct {
	k        *koanf.Koanf
	origins  map[string]origin
	errs     Errors
	warnings []string
}

// Load reads and validates the configuration. The error, if any, is an
// Errors listing every problem found.
func Load(opts Options) (*Config, error) {
	environ := opts.Environ
	if environ == nil {
		environ = os.Environ()
	}
	dir := opts.Dir
	if dir == "" {
		dir, _ = os.Getwd()
	}
	l := &loader{k: koanf.New("."), origins: map[string]origin{}}
	cfg := Default()

	path, err := findFile(opts.File, dir, environ)
	if err != nil {
		return nil, Errors{err}
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, Errors{&FieldError{Source: path, Msg: readError(err)}}
		}
		cfg.File = path
		l.loadTOML(path, data)
	}
	if envPath := findEnvFile(path, dir); envPath != "" {
		cfg.EnvFile = envPath
		l.loadDotEnv(envPath)
	}
	l.loadEnv(environ)
	if len(opts.Overrides) > 0 {
		l.loadOverrides(opts.Overrides)
	}
	return l.finish(cfg)
}

// finish decodes and validates the merged layers.
func (l *loader) finish(cfg *Config) (*Config, error) {
	l.decode(cfg)
	l.validate(cfg)
	cfg.Warnings = l.warnings
	if len(l.errs) > 0 {
		l.errs.sort()
		return nil, l.errs
	}
	return cfg, nil
}

// Parse loads a configuration from TOML bytes alone (no .env, no
// environment), naming them name in errors.
func Parse(name string, data []byte) (*Config, error) {
	l := &loader{k: koanf.New("."), origins: map[string]origin{}}
	cfg := Default()
	cfg.File = name
	l.loadTOML(name, data)
	return l.finish(cfg)
}

func findFile(explicit, dir string, environ []string) (string, *FieldError) {
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if explicit != "" {
		if _, err := os.Stat(abs(explicit)); err != nil {
			return "", &FieldError{Source: explicit, Msg: readError(err)}
		}
		return abs(explicit), nil
	}
	if v, ok := lookupEnv(environ, "REALTIME_CONFIG"); ok && v != "" {
		if _, err := os.Stat(abs(v)); err != nil {
			return "", &FieldError{Source: SourceEnv, Key: "REALTIME_CONFIG", Msg: fmt.Sprintf("%q: %s", v, readError(err))}
		}
		return abs(v), nil
	}
	for _, p := range DefaultFiles {
		if st, err := os.Stat(abs(p)); err == nil && !st.IsDir() {
			return abs(p), nil
		}
	}
	return "", nil
}

// findEnvFile returns the .env beside the TOML file, else the one in dir.
func findEnvFile(tomlPath, dir string) string {
	var candidates []string
	if tomlPath != "" {
		candidates = append(candidates, filepath.Join(filepath.Dir(tomlPath), ".env"))
	}
	candidates = append(candidates, filepath.Join(dir, ".env"))
	for _, p := range candidates {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

func readError(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "file not found"
	case errors.Is(err, os.ErrPermission):
		return "permission denied"
	}
	return err.Error()
}

func lookupEnv(environ []string, name string) (string, bool) {
	for i := len(environ) - 1; i >= 0; i-- { // the last one wins, as in a shell
		if k, v, ok := strings.Cut(environ[i], "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

func (l *loader) loadTOML(path string, data []byte) {
	layer := koanf.New(".")
	if err := layer.Load(rawbytes.Provider(data), toml.Parser()); err != nil {
		var de *gotoml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			l.errs = append(l.errs, &FieldError{Source: fmt.Sprintf("%s:%d:%d", path, row, col), Msg: "TOML syntax error: " + unquoteToken(de.Error())})
		} else {
			l.errs = append(l.errs, &FieldError{Source: path, Msg: "TOML syntax error: " + unquoteToken(err.Error())})
		}
		return
	}
	names := map[string]string{}
	for _, key := range layer.Keys() {
		names[key] = ""
	}
	l.merge(layer, path, levelFile, names)
}

// strconvToken is what a strconv error quotes of its input. go-toml wraps
// them: `password = E00000` (unquoted) gave "unable to parse float:
// strconv.ParseFloat: parsing "E00000": invalid syntax", the password.
var strconvToken = regexp.MustCompile(`strconv\.\w+: parsing "(?:[^"\\]|\\.)*": `)

// unquoteToken removes from a TOML parser's message the token it quotes
// (the error's position says where it is).
func unquoteToken(msg string) string {
	return strconvToken.ReplaceAllString(msg, "")
}

// loadDotEnv reads REDIS_* variables from a .env file (quotes, comments and
// `export` lines as in a shell). Other variables are left to other programs;
// an unknown REDIS_* one is probably a typo and is an error.
func (l *loader) loadDotEnv(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		l.errs = append(l.errs, &FieldError{Source: path, Msg: readError(err)})
		return
	}
	raw := koanf.New(".")
	if err := raw.Load(rawbytes.Provider(data), dotenv.Parser()); err != nil {
		// godotenv's message quotes the rest of the file or the broken
		// value: secrets. Say where and what, in our own words.
		line, problem := dotenvProblem(data)
		if problem == "" {
			problem = "not a NAME=value file"
		}
		src := path
		if line > 0 {
			src = fmt.Sprintf("%s:%d", path, line)
		}
		l.errs = append(l.errs, &FieldError{Source: src, Msg: "syntax error: " + problem})
		return
	}
	layer, names := koanf.New("."), map[string]string{}
	for name, v := range raw.All() {
		s, _ := v.(string)
		key, known := EnvVars[name]
		switch {
		case !strings.HasPrefix(name, "REDIS_") || s == "":
		case l.serviceLink(path, name, s):
		case !known:
			l.errs = append(l.errs, &FieldError{Source: path, Key: name, Msg: "unknown variable" + suggest(name, envNames())})
		default:
			_ = layer.Set(key, s)
			names[key] = name
		}
	}
	l.merge(layer, path, levelDotEnv, names)
}

// serviceLink reports (and warns about) a REDIS_PORT of the form
// tcp://host:port: Kubernetes (and Docker links) set it for a service named
// redis, whichever Redis the configuration names. It is ignored.
func (l *loader) serviceLink(source, name, v string) bool {
	if name != "REDIS_PORT" || !strings.HasPrefix(v, "tcp://") {
		return false
	}
	l.warnings = append(l.warnings, fmt.Sprintf("%s: REDIS_PORT ignored: it holds a service address (tcp://host:port, as Kubernetes sets for a service named redis), not a port; to use that service set REDIS_URL, or REDIS_HOST and a numeric REDIS_PORT", source))
	return true
}

// loadEnv reads the REDIS_* variables of the process environment. Unknown
// ones are ignored: they may belong to other programs.
func (l *loader) loadEnv(environ []string) {
	names := map[string]string{}
	layer := koanf.New(".")
	err := layer.Load(env.Provider(".", env.Opt{
		Prefix:      "REDIS_",
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, v string) (string, any) {
			key, ok := EnvVars[name]
			if !ok || v == "" || l.serviceLink(SourceEnv, name, v) {
				return "", nil
			}
			names[key] = name
			return key, v
		},
	}), nil)
	if err != nil {
		l.errs = append(l.errs, &FieldError{Source: SourceEnv, Msg: err.Error()})
		return
	}
	l.merge(layer, SourceEnv, levelEnv, names)
}

func (l *loader) loadOverrides(over map[string]any) {
	layer := koanf.New(".")
	if err := layer.Load(confmap.Provider(over, "."), nil); err != nil {
		l.errs = append(l.errs, &FieldError{Source: SourceOverrides, Msg: err.Error()})
		return
	}
	names := map[string]string{}
	for _, key := range layer.Keys() {
		names[key] = strings.TrimPrefix(key, "redis.")
	}
	l.merge(layer, SourceOverrides, levelOverrides, names)
}

// urlReplaces are the keys a source that sets the URL replaces in the
// sources below it: where Redis is, Sentinel included, so REDIS_URL in the
// environment simply wins over host = ... or a Sentinel set up in the
// file. addrsReplaces are those that addrs (Cluster, Sentinel) replace
// below them. A host, port, username, password, db or tls above a URL
// changes that part of the URL and keeps the others (see resolveURL); a
// host or port beside or above addrs is an error (see validateRedis).
var (
	urlReplaces   = []string{"redis.host", "redis.port", "redis.addrs", "redis.master_name", "redis.sentinel_password"}
	addrsReplaces = []string{"redis.url", "redis.host", "redis.port"}
)

func (l *loader) merge(layer *koanf.Koanf, source string, level int, names map[string]string) {
	if layer.Exists("redis.url") {
		for _, k := range urlReplaces {
			l.forget(k)
		}
	}
	if layer.Exists("redis.addrs") {
		for _, k := range addrsReplaces {
			l.forget(k)
		}
	}
	_ = l.k.Merge(layer)
	for key, name := range names {
		l.origins[key] = origin{source: source, name: name, level: level}
	}
}

func (l *loader) forget(key string) {
	l.k.Delete(key)
	delete(l.origins, key)
}

// where returns the origin of a key path such as "routes[2].rate" or
// "redis.port": that of its longest recorded prefix.
func (l *loader) where(path string) origin {
	flat := stripIndexes(path)
	for p := flat; p != ""; {
		if o, ok := l.origins[p]; ok {
			return o
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	for key, o := range l.origins { // a table the user wrote: the origin of a key inside it
		if strings.HasPrefix(key, flat+".") {
			return o
		}
	}
	return origin{}
}

func (l *loader) set(path string) bool {
	_, ok := l.origins[path]
	return ok
}

func stripIndexes(path string) string {
	var b strings.Builder
	depth := 0
	for _, r := range path {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// fail records a problem with the value at path.
func (l *loader) fail(path, format string, args ...any) {
	o := l.where(path)
	key := path
	if o.name != "" {
		key = o.name
	}
	l.errs = append(l.errs, &FieldError{Source: o.source, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func envNames() []string {
	names := make([]string, 0, len(EnvVars))
	for n := range EnvVars {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
