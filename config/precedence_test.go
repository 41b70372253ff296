package config

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// precedenceRows are the rows of docs/CONFIG.md's precedence table, in its
// order (a rule may have several rows); TestPrecedenceTable checks each,
// and TestDocumentedPrecedenceTable that docs/CONFIG.md has exactly these rules.
// The sources, lowest first: realtime.toml, .env, the environment,
// realtime.Config (over).
var precedenceRows = []struct {
	rule    string // the docs/CONFIG.md row's first column
	toml    string // [redis] lines of realtime.toml
	dotenv  string
	environ []string
	over    map[string]any
	// want is the outcome: "url=...", "addrs=...", "fields: key=value ..."
	// (the Redis settings named, "" for unset), "error: ..." (a part of
	// the message) or "warning: ..." (a part of a warning, then "; " and
	// one of the others).
	want string
}{
	{rule: "without a `url`, each of `host`, `port`, `username`, `password`, `db` and `tls` comes from the highest source that sets it",
		toml: `host = "file-host"` + "\nport = 7001\ndb = 1\ntls = true", dotenv: "REDIS_HOST=dotenv-host\nREDIS_PASSWORD=dotenv-pw\n",
		environ: []string{"REDIS_HOST=env-host", "REDIS_DB=2"}, over: map[string]any{"redis.port": int64(7003)},
		want: "fields: url= host=env-host port=7003 password=dotenv-pw db=2 tls=true"},
	{rule: "a `url` replaces the `host`/`port`/`addrs`/`master_name` of the sources below it",
		toml: `host = "file-host"` + "\nport = 7001", environ: []string{"REDIS_URL=redis://env-host:7005/3"},
		want: "url=redis://env-host:7005/3"},
	{rule: "a `url` replaces the `host`/`port`/`addrs`/`master_name` of the sources below it",
		toml: `addrs = ["s1:26379", "s2:26379"]` + "\n" + `master_name = "mymaster"`, environ: []string{"REDIS_URL=redis://env-host:6379/0"},
		want: "fields: url=redis://env-host:6379/0 addrs= master_name="},
	{rule: "`host` or `port` above a `url` replace that part of it; its scheme (TLS), user, password and db stay",
		toml: `url = "rediss://:pw@prod:6380/2"`, environ: []string{"REDIS_HOST=prod2"},
		want: "url=rediss://:pw@prod2:6380/2"},
	{rule: "`host` or `port` above a `url` replace that part of it; its scheme (TLS), user, password and db stay",
		toml: `url = "rediss://:pw@prod:6380/2"`, dotenv: "REDIS_PORT=6390\n",
		want: "url=rediss://:pw@prod:6390/2"},
	{rule: "`host` or `port` above or beside a `unix://` URL, or `tls = true` above it, are an error",
		toml: `url = "unix:///run/redis.sock"`, environ: []string{"REDIS_HOST=h"},
		want: "error: environment: REDIS_HOST: cannot change the unix:// URL"},
	{rule: "`host` or `port` above or beside a `unix://` URL, or `tls = true` above it, are an error",
		toml: `url = "unix:///run/redis.sock"`, environ: []string{"REDIS_TLS=true"},
		want: "error: environment: REDIS_TLS: cannot turn on TLS for the unix:// URL"},
	{rule: "`username`, `password`, `db` or `tls` above a `url` replace that part of it",
		toml: `url = "redis://game:old@h:6379/1"`, environ: []string{"REDIS_PASSWORD=new", "REDIS_DB=4", "REDIS_USERNAME=bot", "REDIS_TLS=true"},
		want: "url=rediss://bot:new@h:6379/4"},
	{rule: "`username`, `password`, `db` or `tls` above a `url` replace that part of it",
		toml: `url = "unix://:old@/run/redis.sock?db=1"`, environ: []string{"REDIS_PASSWORD=new", "REDIS_DB=4"},
		want: "url=unix://:new@/run/redis.sock?db=4"},
	{rule: "`username`, `password` or `db` below or beside a `url` fill in what the URL leaves out, and only that",
		toml: `password = "filepw"` + "\ndb = 5", environ: []string{"REDIS_URL=redis://h:6379"},
		want: "url=redis://:filepw@h:6379/5"},
	{rule: "`username`, `password` or `db` below or beside a `url` fill in what the URL leaves out, and only that",
		toml: `password = "filepw"` + "\ndb = 5\ntls = false", environ: []string{"REDIS_URL=redis://:envpw@h:6379/1"},
		want: "url=redis://:envpw@h:6379/1"},
	{rule: "`username`, `password` or `db` below or beside a `url` fill in what the URL leaves out, and only that",
		toml: `url = "redis://h:6379"` + "\n" + `password = "pw"` + "\ndb = 5",
		want: "url=redis://:pw@h:6379/5"},
	{rule: "`username`, `password` or `db` below or beside a `url` fill in what the URL leaves out, and only that",
		toml: `password = "filepw"` + "\ndb = 5", environ: []string{"REDIS_URL=unix:///run/redis.sock"},
		want: "url=unix://:filepw@/run/redis.sock?db=5"},
	{rule: "`tls = true` below a plain `redis://` URL is an error: TLS is never dropped silently",
		toml: `tls = true`, environ: []string{"REDIS_URL=redis://:envpw@h:6379/1"},
		want: "error: environment: REDIS_URL: \"redis://:***@h:6379/1\" is plain text (redis://), but redis.tls = true (from "},
	{rule: "`tls = true` below a plain `redis://` URL is an error: TLS is never dropped silently",
		toml: `tls = true`, environ: []string{"REDIS_URL=rediss://h:6379/1"},
		want: "url=rediss://h:6379/1"},
	{rule: "a `url` and a field in the same source that disagree are an error",
		toml: `url = "redis://h:6379/1"` + "\ndb = 2",
		want: "error: contradicts redis.db = 2"},
	{rule: "`addrs` (Cluster, Sentinel) replace the `url`, `host` and `port` of the sources below them",
		toml: `url = "redis://h:6379"`, over: map[string]any{"redis.addrs": []any{"a:1", "b:2"}},
		want: "addrs=a:1,b:2"},
	{rule: "`addrs` (Cluster, Sentinel) replace the `url`, `host` and `port` of the sources below them",
		toml: `host = "file-host"` + "\nport = 7001", over: map[string]any{"redis.addrs": []any{"a:1", "b:2"}},
		want: "fields: addrs=a:1,b:2 url= host="},
	{rule: "`host` or `port` above or beside `addrs` are an error",
		toml: `addrs = ["a:7000", "b:7000"]`, environ: []string{"REDIS_HOST=env-host"},
		want: "error: environment: REDIS_HOST: is set, and so is redis.addrs (from "},
	{rule: "`addrs` with `master_name` are Sentinel, whose master takes `username`, `password`, `db` and `tls` as above; without `master_name`, Cluster (db 0 only)",
		toml: `addrs = ["s1:26379", "s2:26379"]` + "\n" + `master_name = "mymaster"` + "\n" + `password = "filepw"`, environ: []string{"REDIS_PASSWORD=envpw", "REDIS_DB=3"},
		want: "fields: master_name=mymaster addrs=s1:26379,s2:26379 password=envpw db=3 url="},
	{rule: "`addrs` with `master_name` are Sentinel, whose master takes `username`, `password`, `db` and `tls` as above; without `master_name`, Cluster (db 0 only)",
		toml: `addrs = ["a:7000", "b:7000"]`, environ: []string{"REDIS_DB=3"},
		want: "error: Redis Cluster has only database 0"},
	{rule: "TLS is on for a `rediss://` URL or `tls = true`, and only then; `tls_ca_file` or `tls_server_name` while it is off are an error",
		toml: `url = "redis://h:6379"` + "\n" + `tls_server_name = "h"`,
		want: "error: redis.tls_server_name: is set but TLS is off"},
	{rule: "`REDIS_PORT=tcp://host:port` (a Kubernetes service link) is ignored, with a warning",
		toml: `url = "redis://h:6379"`, environ: []string{"REDIS_PORT=tcp://10.0.0.11:6379"},
		want: "warning: REDIS_PORT ignored; url=redis://h:6379"},
	{rule: "an empty variable counts as unset",
		toml: `url = "redis://h:6379"`, environ: []string{"REDIS_HOST=", "REDIS_PASSWORD="},
		want: "url=redis://h:6379"},
	{rule: "`realtime.Config` from Lua is above every other source",
		toml: `url = "rediss://:pw@prod:6380/2"`, environ: []string{"REDIS_HOST=env-host"}, over: map[string]any{"redis.host": "lua-host"},
		want: "url=rediss://:pw@lua-host:6380/2"},
}

// redisField reads one Redis setting by its config key, for want's
// "fields:" form.
func redisField(r *Redis, key string) string {
	switch key {
	case "url":
		return r.URL
	case "host":
		return r.Host
	case "port":
		return strconv.Itoa(r.Port)
	case "username":
		return r.Username
	case "password":
		return r.Password
	case "db":
		return strconv.Itoa(r.DB)
	case "tls":
		return strconv.FormatBool(r.TLS)
	case "addrs":
		return strings.Join(r.Addrs, ",")
	case "master_name":
		return r.MasterName
	}
	panic("no Redis setting " + key)
}

func TestPrecedenceTable(t *testing.T) {
	for i, row := range precedenceRows {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			files := map[string]string{"realtime.toml": "[redis]\n" + row.toml + "\n"}
			if row.dotenv != "" {
				files[".env"] = row.dotenv
			}
			cfg, err := load(t, files, row.environ, row.over)
			want := row.want
			if msg, ok := strings.CutPrefix(want, "error: "); ok {
				require.Error(t, err, row.rule)
				assert.Contains(t, err.Error(), msg, row.rule)
				return
			}
			require.NoError(t, err, row.rule)
			if w, rest, ok := strings.Cut(strings.TrimPrefix(want, "warning: "), "; "); ok && strings.HasPrefix(want, "warning: ") {
				require.Len(t, cfg.Warnings, 1, row.rule)
				assert.Contains(t, cfg.Warnings[0], w, row.rule)
				assert.Contains(t, cfg.String(), "warning: ", "the warning reaches the startup log line")
				want = rest
			} else {
				assert.Empty(t, cfg.Warnings, row.rule)
			}
			switch {
			case strings.HasPrefix(want, "url="):
				assert.Equal(t, strings.TrimPrefix(want, "url="), cfg.Redis.URL, row.rule)
			case strings.HasPrefix(want, "addrs="):
				assert.Equal(t, strings.TrimPrefix(want, "addrs="), strings.Join(cfg.Redis.Addrs, ","), row.rule)
				assert.Empty(t, cfg.Redis.URL, row.rule)
			case strings.HasPrefix(want, "fields: "):
				for _, kv := range strings.Fields(strings.TrimPrefix(want, "fields: ")) {
					k, v, _ := strings.Cut(kv, "=")
					assert.Equal(t, v, redisField(&cfg.Redis, k), "%s: redis.%s", row.rule, k)
				}
			default:
				t.Fatalf("bad want %q", want)
			}
		})
	}
}

// TestDocumentedPrecedenceTable: docs/CONFIG.md's table lists exactly the
// rules tested above, in the same order.
func TestDocumentedPrecedenceTable(t *testing.T) {
	b, err := os.ReadFile("../docs/CONFIG.md")
	require.NoError(t, err)
	data := string(b)
	start := strings.Index(data, "| rule | example |")
	require.GreaterOrEqual(t, start, 0, "docs/CONFIG.md has the precedence table")
	var got []string
	for _, line := range strings.Split(data[start:], "\n")[2:] {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "| ") {
			break
		}
		got = append(got, strings.TrimSpace(strings.Split(line, " | ")[0][2:]))
	}
	var want []string
	for _, row := range precedenceRows {
		if len(want) == 0 || want[len(want)-1] != row.rule {
			want = append(want, row.rule)
		}
	}
	assert.Equal(t, want, got)
}

// redisSettings is what one source says about Redis: a URL, or fields.
type redisSettings struct {
	url                bool
	scheme, host, pass string // the URL's parts, or the fields ("" unset)
	port, db           int    // 0: unset (a URL without port or db)
	tls                *bool
}

// resolved is where the module connects, as the reference model says.
type resolved struct {
	tls        bool
	host, pass string
	port, db   int
}

// model resolves the four sources (file, .env, environment, Config{},
// lowest first) by docs/CONFIG.md's rules.
func model(src [4]*redisSettings) resolved {
	lu := -1
	for i, s := range src {
		if s != nil && s.url {
			lu = i
		}
	}
	var r resolved
	r.port = 6379
	start := 0
	if lu >= 0 {
		u := src[lu]
		r = resolved{tls: u.scheme == "rediss", host: u.host, pass: u.pass, port: u.port, db: u.db}
		if r.port == 0 {
			r.port = 6379
		}
		for i := 0; i < lu; i++ { // below: fill in the password and db the URL leaves out
			if s := src[i]; s != nil && !s.url {
				if s.pass != "" && u.pass == "" {
					r.pass = s.pass
				}
				if s.db != 0 && u.db == 0 {
					r.db = s.db
				}
			}
		}
		start = lu + 1
	} else {
		r.host = "127.0.0.1"
	}
	for i := start; i < 4; i++ { // above the URL (or all, without one): later wins
		s := src[i]
		if s == nil || s.url {
			continue
		}
		if s.host != "" {
			r.host = s.host
		}
		if s.port != 0 {
			r.port = s.port
		}
		if s.pass != "" {
			r.pass = s.pass
		}
		if s.db != 0 {
			r.db = s.db
		}
		if s.tls != nil {
			r.tls = *s.tls
		}
	}
	return r
}

// droppedTLS reports whether the sources hold the error docs/CONFIG.md
// names: tls = true (the highest tls set) below a redis:// URL.
func droppedTLS(src [4]*redisSettings) bool {
	lu, lt := -1, -1
	for i, s := range src {
		switch {
		case s == nil:
		case s.url:
			lu = i
		case s.tls != nil:
			lt = i
		}
	}
	return lu >= 0 && lt >= 0 && lt < lu && *src[lt].tls && src[lu].scheme == "redis"
}

func randomSettings(rng *rand.Rand) *redisSettings {
	if rng.IntN(3) == 0 {
		return nil
	}
	pick := func(vals ...string) string { return vals[rng.IntN(len(vals))] }
	s := &redisSettings{url: rng.IntN(2) == 0}
	if s.url {
		s.scheme, s.host = pick("redis", "rediss"), pick("u1", "u2")
		s.pass = pick("", "up1", "up2")
		s.port = []int{0, 6380, 7000}[rng.IntN(3)]
		s.db = rng.IntN(3)
		return s
	}
	s.host, s.pass = pick("", "h1", "h2"), pick("", "p1", "p2")
	s.port = []int{0, 6390, 7001}[rng.IntN(3)]
	s.db = rng.IntN(3)
	if rng.IntN(2) == 0 {
		b := rng.IntN(2) == 0
		s.tls = &b
	}
	return s
}

func (s *redisSettings) urlString() string {
	u := s.scheme + "://"
	if s.pass != "" {
		u += ":" + s.pass + "@"
	}
	u += s.host
	if s.port != 0 {
		u += fmt.Sprintf(":%d", s.port)
	}
	if s.db != 0 {
		u += fmt.Sprintf("/%d", s.db)
	}
	return u
}

// values returns the source's settings by config key.
func (s *redisSettings) values() map[string]string {
	m := map[string]string{}
	if s.url {
		m["url"] = s.urlString()
		return m
	}
	if s.host != "" {
		m["host"] = s.host
	}
	if s.port != 0 {
		m["port"] = fmt.Sprint(s.port)
	}
	if s.pass != "" {
		m["password"] = s.pass
	}
	if s.db != 0 {
		m["db"] = fmt.Sprint(s.db)
	}
	if s.tls != nil {
		m["tls"] = fmt.Sprint(*s.tls)
	}
	return m
}

// TestPrecedenceProperty: random combinations of file, .env, environment
// and realtime.Config settings (a URL or fields, in each) end where the
// reference model says.
func TestPrecedenceProperty(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for round := 0; round < 300; round++ {
		var src [4]*redisSettings
		for i := range src {
			src[i] = randomSettings(rng)
			if src[i] != nil && len(src[i].values()) == 0 {
				src[i] = nil // sets nothing: the same as absent (the model took it for Redis's defaults)
			}
		}
		files := map[string]string{}
		var environ []string
		over := map[string]any{}
		var desc []string
		for i, s := range src {
			if s == nil {
				desc = append(desc, "-")
				continue
			}
			vals := s.values()
			desc = append(desc, fmt.Sprint(vals))
			for k, v := range vals {
				switch i {
				case 0:
					if k == "port" || k == "db" || k == "tls" {
						files["realtime.toml"] += fmt.Sprintf("%s = %s\n", k, v)
					} else {
						files["realtime.toml"] += fmt.Sprintf("%s = %q\n", k, v)
					}
				case 1:
					files[".env"] += "REDIS_" + strings.ToUpper(k) + "=" + v + "\n"
				case 2:
					environ = append(environ, "REDIS_"+strings.ToUpper(k)+"="+v)
				case 3:
					over["redis."+k] = v
				}
			}
		}
		if f, ok := files["realtime.toml"]; ok {
			files["realtime.toml"] = "[redis]\n" + f
		}
		cfg, err := load(t, files, environ, over)
		if droppedTLS(src) {
			require.ErrorContains(t, err, "is plain text (redis://), but redis.tls = true", "seed %d round %d: %v", seed, round, desc)
			continue
		}
		require.NoError(t, err, "seed %d round %d: %v", seed, round, desc)
		if src[0] == nil && src[1] == nil && src[2] == nil && src[3] == nil {
			continue
		}
		assert.Equal(t, model(src), connectsTo(t, &cfg.Redis), "seed %d round %d: file, .env, environment, Config{}: %v", seed, round, desc)
	}
}

// connectsTo reads where a validated config connects.
func connectsTo(t *testing.T, r *Redis) resolved {
	if r.URL == "" {
		return resolved{tls: r.TLS, host: r.Host, pass: r.Password, port: r.Port, db: r.DB}
	}
	u, err := url.Parse(r.URL)
	require.NoError(t, err)
	res := resolved{tls: u.Scheme == "rediss", host: u.Hostname(), port: 6379}
	if p := u.Port(); p != "" {
		res.port, _ = strconv.Atoi(p)
	}
	res.pass, _ = u.User.Password()
	if res.pass == "" {
		res.pass = r.Password // filled in by the client (see redisbus.NewClient)
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		res.db, _ = strconv.Atoi(db)
	}
	return res
}
