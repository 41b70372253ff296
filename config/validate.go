package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gmod-realtime/realtime/router/pattern"
)

// validate checks ranges and cross-field rules, filling derived defaults
// (Redis host, route names and bursts).
func (l *loader) validate(c *Config) {
	if l.set("server.id") {
		c.Server.IDFromHost = false
	}
	if strings.TrimSpace(c.Server.ID) == "" {
		l.fail("server.id", "must not be empty")
	}
	l.validateRedis(c)
	l.validateQueue(c)
	l.validateMetrics(c)
	if c.Streams.MaxLen < 0 {
		l.fail("streams.max_len", "%d must not be negative (0: no trimming)", c.Streams.MaxLen)
	}
	if c.Streams.Retention < 0 {
		l.fail("streams.retention", "%q must not be negative (0s: no trimming)", c.Streams.Retention)
	}
	if c.Streams.MaxLen > 0 && c.Streams.Retention > 0 {
		l.fail("streams.retention", "%q is set, and so is streams.max_len (%d): trim by length or by age, not both", c.Streams.Retention, c.Streams.MaxLen)
	}
	if c.Spool.Path != "" && strings.ContainsRune(c.Spool.Path, '?') {
		l.fail("spool.path", "%q: the path may not contain '?'", c.Spool.Path)
	}
	if p := c.Spool.Path; p == ":memory:" || strings.HasPrefix(strings.ToLower(p), "file:") {
		l.fail("spool.path", "%q is not a file path (SQLite reads it as an in-memory database or a URI): name a file, or \"\" for no spool", p)
	}
	if c.Spool.MaxBytes < 1*KiB {
		l.fail("spool.max_bytes", "%q is too small (want at least 1KiB)", c.Spool.MaxBytes)
	}

	if b := c.Dispatch.Budget.D(); b < 10*time.Microsecond || b > 100*time.Millisecond {
		l.fail("dispatch.budget", "%q is out of range (want 10µs to 100ms: the server's frame waits for it)", c.Dispatch.Budget)
	}
	l.atLeast("dispatch.max_per_frame", c.Dispatch.MaxPerFrame, 0)
	l.oneOf("log.level", c.Log.Level, []string{"debug", "info", "warn", "error"})
	for i, p := range c.Events.ChatSkipPrefixes {
		if p == "" {
			l.fail(fmt.Sprintf("events.chat_skip_prefixes[%d]", i), "is empty, which would skip every chat line (use [] to publish every line)")
		}
	}

	names := map[string]int{}
	groups := map[[2]string]int{} // a stream's group is read by one route
	warnedID := false
	for i := range c.Routes {
		r := &c.Routes[i]
		l.validateRoute(fmt.Sprintf("routes[%d]", i), r, names, i)
		if r.Stream == "" {
			continue
		}
		key := [2]string{r.Stream, r.Group}
		if prev, dup := groups[key]; dup {
			l.fail(fmt.Sprintf("routes[%d].group", i), "%q of stream %q is also read by routes[%d]: each entry would reach one of them only (give one route another group)", r.Group, r.Stream, prev)
		} else {
			groups[key] = i
		}
		if w := c.HostGroupWarning(fmt.Sprintf("routes[%d]", i), r); w != "" && !warnedID {
			warnedID = true
			l.warnings = append(l.warnings, w)
		}
	}
}

func (l *loader) validateRedis(c *Config) {
	r := &c.Redis
	anySet := false
	for _, k := range []string{"url", "host", "port", "username", "password", "db", "tls", "addrs", "master_name"} {
		anySet = anySet || l.set("redis."+k)
	}
	if anySet && r.URL == "" && r.Host == "" && len(r.Addrs) == 0 {
		r.Host = "127.0.0.1"
	}
	if r.URL != "" {
		l.resolveURL(r)
		l.validateURL(r)
	}
	if r.Port < 1 || r.Port > 65535 {
		l.fail("redis.port", "%d is not a TCP port (want 1 to 65535)", r.Port)
	}
	l.atLeast("redis.db", r.DB, 0)
	for i, a := range r.Addrs {
		switch _, port, err := net.SplitHostPort(a); {
		case strings.Contains(a, "@"): // a URL's "user:pass@" carried over
			l.fail(fmt.Sprintf("redis.addrs[%d]", i), "%s holds credentials: write host:port, and the user and password in redis.username and redis.password", strconv.Quote(RedactURL(a)))
		case err != nil || port == "":
			l.fail(fmt.Sprintf("redis.addrs[%d]", i), "%q is not host:port", a)
		}
	}
	if strings.Contains(r.Host, "@") {
		l.fail("redis.host", "%s holds credentials: write the host alone, and the user and password in redis.username and redis.password", strconv.Quote(RedactURL(r.Host)))
	}
	if len(r.Addrs) > 0 && r.URL == "" {
		// addrs replaced the host and port below them: these are beside
		// or above, and would name one server where addrs name a Cluster
		// or the Sentinels.
		for _, key := range []string{"redis.host", "redis.port"} {
			if l.set(key) {
				o := l.where("redis.addrs")
				l.fail(key, "is set, and so is redis.addrs (from %s): one server, or a Cluster/Sentinel; remove one (a redis.url replaces addrs)", o.source)
			}
		}
	}
	switch {
	case len(r.Addrs) > 0 && r.URL != "":
		l.fail("redis.addrs", "set redis.url or redis.addrs, not both")
	case r.MasterName != "" && len(r.Addrs) == 0:
		l.fail("redis.master_name", "%q needs redis.addrs, the Sentinels' host:port", r.MasterName)
	case len(r.Addrs) > 0 && r.MasterName == "" && r.DB != 0:
		l.fail("redis.db", "%d: Redis Cluster has only database 0", r.DB)
	}
	// One rule: rediss:// or tls = true turns TLS on, and nothing else does;
	// tls_ca_file and tls_server_name only configure it.
	if !r.TLSOn() {
		for key, v := range map[string]string{"redis.tls_ca_file": r.TLSCAFile, "redis.tls_server_name": r.TLSServerName} {
			if v != "" {
				l.fail(key, "is set but TLS is off: use a rediss:// URL, or tls = true with host/port or addrs")
			}
		}
	}
	if r.TLSCAFile != "" {
		// Read here, as the connection will: a file it cannot use fails
		// Load (a Reload then changes nothing), not the connection.
		pem, err := os.ReadFile(r.TLSCAFile)
		switch {
		case err != nil:
			l.fail("redis.tls_ca_file", "%q: %s", r.TLSCAFile, readError(err))
		case !x509.NewCertPool().AppendCertsFromPEM(pem):
			l.fail("redis.tls_ca_file", "%q: no PEM certificate in it", r.TLSCAFile)
		}
	}
	for key, d := range map[string]Duration{
		"redis.connect_timeout": r.ConnectTimeout, "redis.read_timeout": r.ReadTimeout,
		"redis.write_timeout": r.WriteTimeout, "redis.reconnect_min": r.ReconnectMin,
	} {
		if d <= 0 {
			l.fail(key, "%q must be greater than 0", d)
		}
	}
	if r.ReconnectMax < r.ReconnectMin {
		l.fail("redis.reconnect_max", "%q is less than redis.reconnect_min (%s)", r.ReconnectMax, r.ReconnectMin)
	}
	l.atLeast("redis.outbox_events", r.OutboxEvents, 1)
	l.atLeast("redis.outbox_bytes", int(min(r.OutboxBytes, 1<<40)), 1)
	l.atLeast("redis.max_subscriptions", r.MaxSubscriptions, 1)
}

// resolveURL applies to a redis://, rediss:// or unix:// URL the host,
// port, username, password, db and tls of the sources above the URL's
// (each changes its part and keeps the others: REDIS_HOST does not drop
// the URL's TLS, password or db), and fills in from the sources below it,
// or the URL's own, the username, password and db the URL leaves out. A
// unix:// URL has no host, port or TLS to change: a host or port above or
// beside it, or tls = true above it, is an error. tls = true below a
// redis:// URL is an error too: the URL would silently drop the TLS.
func (l *loader) resolveURL(r *Redis) {
	u, err := url.Parse(r.URL)
	if err != nil || u.Opaque != "" {
		return // validateURL reports it
	}
	unix := u.Scheme == "unix"
	switch {
	case unix && u.Path == "":
		return
	case !unix && ((u.Scheme != "redis" && u.Scheme != "rediss") || u.Hostname() == ""):
		return
	}
	o := l.where("redis.url")
	above := func(key string) bool { return l.set(key) && l.where(key).level > o.level }
	fill := func(key string) bool { return l.set(key) && l.where(key).level <= o.level } // below, or beside it
	changed := false
	host, port := u.Hostname(), u.Port()
	if unix {
		from := o.source
		if o.name != "" {
			from += " " + o.name
		}
		for _, key := range []string{"redis.host", "redis.port"} {
			if l.set(key) && l.where(key).level >= o.level { // above or beside
				l.fail(key, "cannot change the unix:// URL of redis.url (from %s), which has no host or port; set a redis:// URL instead", from)
			}
		}
		if above("redis.tls") && r.TLS {
			l.fail("redis.tls", "cannot turn on TLS for the unix:// URL of redis.url (from %s): a unix socket is not encrypted", from)
		}
	}
	if !unix && above("redis.host") {
		host, changed = r.Host, true
	}
	if !unix && above("redis.port") {
		port, changed = strconv.Itoa(r.Port), true
	}
	if changed {
		u.Host = host
		if port != "" {
			u.Host = net.JoinHostPort(host, port)
		} else if strings.Contains(host, ":") {
			u.Host = "[" + host + "]"
		}
	}
	name := u.User.Username()
	pass, hasPass := u.User.Password()
	userChanged := false
	if above("redis.username") || (fill("redis.username") && name == "") {
		name, userChanged = r.Username, true
	}
	if above("redis.password") || (fill("redis.password") && !hasPass) {
		pass, hasPass, userChanged = r.Password, r.Password != "", true
	}
	if userChanged {
		switch {
		case hasPass:
			u.User = url.UserPassword(name, pass)
		case name != "":
			u.User = url.User(name)
		default:
			u.User = nil
		}
		changed = true
	}
	switch {
	case unix:
		q := u.Query()
		if above("redis.db") || (fill("redis.db") && q.Get("db") == "") {
			q.Set("db", strconv.Itoa(r.DB))
			u.RawQuery, changed = q.Encode(), true
		}
	case above("redis.db") || (fill("redis.db") && strings.Trim(u.Path, "/") == ""):
		u.Path, changed = "/"+strconv.Itoa(r.DB), true
	}
	if !unix && above("redis.tls") {
		u.Scheme, changed = "redis", true
		if r.TLS {
			u.Scheme = "rediss"
		}
	}
	if below := l.set("redis.tls") && l.where("redis.tls").level < o.level; below && r.TLS && u.Scheme == "redis" {
		// The URL would win and drop the TLS the source below asked for:
		// a plain-text connection the owner never chose.
		t := l.where("redis.tls")
		tfrom := t.source
		if t.name != "" {
			tfrom += " " + t.name
		}
		l.fail("redis.url", "%s is plain text (redis://), but redis.tls = true (from %s); use a rediss:// URL, or set redis.tls = false to connect without TLS",
			strconv.Quote(RedactURL(r.URL)), tfrom)
	}
	if changed {
		r.URL = u.String()
	}
}

// urlOptions are the query options of a Redis URL that go-redis's
// ParseURL takes (skip_verify only with rediss://). Any other fails there,
// when the connection is built: here it is a config error instead.
var urlOptions = []string{
	"db", "protocol", "client_name", "max_retries", "min_retry_backoff", "max_retry_backoff",
	"dial_timeout", "read_timeout", "write_timeout", "pool_fifo", "pool_size", "pool_timeout",
	"min_idle_conns", "max_idle_conns", "max_active_conns", "max_concurrent_dials",
	"pipeline_pool_size", "pipeline_read_buffer_size", "pipeline_write_buffer_size",
	"conn_max_idle_time", "idle_timeout", "conn_max_lifetime", "max_conn_age",
	"conn_max_lifetime_jitter", "skip_verify",
}

// validateURL checks the URL and that the separate fields set alongside it
// in the same source say the same thing.
func (l *loader) validateURL(r *Redis) {
	shown := strconv.Quote(RedactURL(r.URL))
	u, err := url.Parse(r.URL)
	if err != nil { // url's message repeats the URL, password and all
		l.fail("redis.url", "%s is not a URL", shown)
		return
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Hostname() == "" {
			l.fail("redis.url", "%s has no host", shown)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				l.fail("redis.url", "%s: port %q is not a TCP port", shown, p)
			}
		}
		if db := strings.Trim(u.Path, "/"); db != "" {
			if n, err := strconv.Atoi(db); err != nil || n < 0 {
				if strings.ContainsAny(db, ":@") || len(db) > 16 {
					// credentials in the wrong place ("redis:///:pw@"): not quoted
					l.fail("redis.url", "%s: the database (the URL's path) is not a number", shown)
				} else {
					l.fail("redis.url", "%s: database %q is not a number", shown, db)
				}
			}
		}
	case "unix":
		if u.Path == "" {
			l.fail("redis.url", "%s has no socket path", shown)
		}
		if db := u.Query().Get("db"); db != "" {
			if n, err := strconv.Atoi(db); err != nil || n < 0 {
				l.fail("redis.url", "%s: database %q is not a number", shown, db)
			}
		}
	default:
		l.fail("redis.url", "%s: scheme %q is not redis://, rediss:// or unix://", shown, u.Scheme)
		return
	}

	for name := range u.Query() {
		switch {
		case name == "skip_verify" && u.Scheme == "rediss":
		case slices.Contains(urlOptions, name) && name != "skip_verify":
		default:
			l.fail("redis.url", "%s: unknown option %q in the URL's query (go-redis takes %s)", shown, name, knownList(urlOptions))
		}
	}

	contradiction := func(key, fieldValue string) {
		o := l.where(key)
		from := o.source
		if o.name != "" {
			from += " " + o.name
		}
		l.fail("redis.url", "%s contradicts %s = %s (from %s); set one or make them agree", shown, key, fieldValue, from)
	}
	level := l.where("redis.url").level
	same := func(key string) bool { return l.set(key) && l.where(key).level == level }
	if same("redis.host") && u.Scheme != "unix" && u.Hostname() != r.Host {
		contradiction("redis.host", strconv.Quote(RedactURL(r.Host)))
	}
	if same("redis.port") && u.Scheme != "unix" {
		port := u.Port()
		if port == "" {
			port = "6379"
		}
		if port != strconv.Itoa(r.Port) {
			contradiction("redis.port", strconv.Itoa(r.Port))
		}
	}
	if name := u.User.Username(); name != "" && same("redis.username") && name != r.Username {
		contradiction("redis.username", strconv.Quote(r.Username))
	}
	if pass, ok := u.User.Password(); ok && same("redis.password") && pass != r.Password {
		contradiction("redis.password", "(secret)")
	}
	db := strings.Trim(u.Path, "/")
	if u.Scheme == "unix" {
		db = u.Query().Get("db")
	}
	if db != "" && same("redis.db") && db != strconv.Itoa(r.DB) {
		contradiction("redis.db", strconv.Itoa(r.DB))
	}
	if same("redis.tls") && (u.Scheme == "rediss") != r.TLS {
		contradiction("redis.tls", strconv.FormatBool(r.TLS))
	}
}

func (l *loader) validateQueue(c *Config) {
	q := &c.Queue
	l.atLeast("queue.max_events", q.MaxEvents, 1)
	if q.MaxBytes < KiB {
		l.fail("queue.max_bytes", "%q is too small (want at least 1KiB)", q.MaxBytes)
	}
	l.oneOf("queue.overflow", q.Overflow, []string{OverflowDropOldest, OverflowDropNewest})
	switch {
	case q.MaxPayload < 1:
		l.fail("queue.max_payload", "%q must be at least 1B", q.MaxPayload)
	case q.MaxPayload > q.MaxBytes:
		l.fail("queue.max_payload", "%q is larger than queue.max_bytes (%s), so such an event could never be queued", q.MaxPayload, q.MaxBytes)
	}
	if q.JSONMaxDepth < 1 || q.JSONMaxDepth > 1000 {
		l.fail("queue.json_max_depth", "%d is out of range (want 1 to 1000)", q.JSONMaxDepth)
	}
}

func (l *loader) validateRoute(path string, r *Route, names map[string]int, i int) {
	switch {
	case r.Stream != "" && (r.Channel != "" || r.Pattern != ""):
		l.fail(path, "set stream, channel or pattern, only one (stream %q, channel %q, pattern %q)", r.Stream, r.Channel, r.Pattern)
	case r.Channel != "" && r.Pattern != "":
		l.fail(path, "set channel or pattern, not both (channel %q, pattern %q)", r.Channel, r.Pattern)
	case r.Channel == "" && r.Pattern == "" && r.Stream == "":
		l.fail(path, `needs channel = "exact:name", pattern = "glob:*" or stream = "stream:key"`)
	case r.Pattern != "":
		l.checkPattern(path+".pattern", r.Pattern)
	}
	l.validateStream(path, r)
	for j, ex := range r.Exclude {
		l.checkPattern(fmt.Sprintf("%s.exclude[%d]", path, j), ex)
	}
	name := r.RouteName()
	if prev, dup := names[name]; dup && name != "" {
		l.fail(path+".name", "%q is also the name of routes[%d]; route names must be unique", name, prev)
	} else if name != "" {
		names[name] = i
	}
	r.Name = name
	h := strings.TrimSpace(r.Handler)
	switch {
	case h == "":
		l.fail(path+".handler", `is missing (want a realtime.Handler name, or "hook:HookName")`)
	case h == HookPrefix:
		l.fail(path+".handler", `%q needs a hook name after "hook:"`, r.Handler)
	case h != r.Handler:
		l.fail(path+".handler", "%q has spaces around the name", r.Handler)
	}
	if r.Decode == "" {
		r.Decode = DecodeRaw
	}
	if r.Stream != "" {
		l.oneOf(path+".decode", r.Decode, []string{DecodeRaw, DecodeJSON, DecodeFields})
	} else {
		l.oneOf(path+".decode", r.Decode, []string{DecodeRaw, DecodeJSON})
	}
	switch {
	case r.Burst < 0:
		l.fail(path+".burst", "%d must not be negative", r.Burst)
	case r.Burst == 0:
		r.Burst = r.Rate.DefaultBurst()
	}
}

// validateStream checks a stream route's own keys, and that a channel or
// pattern route sets none of them; it fills in their defaults.
func (l *loader) validateStream(path string, r *Route) {
	if r.Stream == "" {
		for _, k := range []struct {
			key string
			set bool
		}{{"group", r.Group != ""}, {"start", r.Start != ""}, {"max_deliveries", r.MaxDeliveries != 0}, {"claim_after", r.ClaimAfter != 0}} {
			if k.set {
				l.fail(path+"."+k.key, "is for stream routes only (this route reads a channel or pattern)")
			}
		}
		return
	}
	if len(r.Exclude) > 0 {
		l.fail(path+".exclude", "is for channel and pattern routes only (a stream route reads one stream)")
	}
	if strings.TrimSpace(r.Stream) != r.Stream {
		l.fail(path+".stream", "%q has spaces around the name", r.Stream)
	}
	if r.Group == "" {
		r.Group = DefaultGroup
	} else if strings.TrimSpace(r.Group) != r.Group {
		l.fail(path+".group", "%q has spaces around the name", r.Group)
	}
	switch r.Start {
	case "":
		r.Start = "$"
	case "$", "0":
	default:
		l.fail(path+".start", `%q is not "$" (new entries) or "0" (every entry kept)`, r.Start)
	}
	switch {
	case r.MaxDeliveries == 0:
		r.MaxDeliveries = 5
	case r.MaxDeliveries < 1:
		l.fail(path+".max_deliveries", "%d must be at least 1", r.MaxDeliveries)
	}
	if r.ClaimAfter == 0 {
		r.ClaimAfter = Duration(60 * time.Second)
	} else if r.ClaimAfter < Duration(time.Second) {
		l.fail(path+".claim_after", "%q is too short (want at least 1s: an entry still waiting for its handler would be taken over)", r.ClaimAfter)
	}
}

func (l *loader) checkPattern(path, src string) {
	if _, err := pattern.Compile(src); err != nil {
		var se *pattern.SyntaxError
		if errors.As(err, &se) {
			l.fail(path, "%q: %s (at byte %d)", src, se.Reason, se.Offset)
			return
		}
		l.fail(path, "%s", err)
	}
}

func (l *loader) atLeast(path string, v, lowest int) {
	if v < lowest {
		l.fail(path, "%d must be at least %d", v, lowest)
	}
}

func (l *loader) oneOf(path, v string, allowed []string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	l.fail(path, "%q is not one of %s%s", v, knownList(allowed), suggest(v, allowed))
}

// CheckStreamRoute checks a stream route made outside the file
// (realtime.Stream's options) as the file's stream routes are checked, and
// fills in the defaults. The error, if any, is a *FieldError whose Key is
// the setting ("max_deliveries", "stream").
func CheckStreamRoute(r *Route) error {
	l := &loader{}
	if r.Stream == "" {
		l.fail("stream", "is empty")
	}
	l.validateStream("", r)
	if r.Decode == "" {
		r.Decode = DecodeRaw
	}
	l.oneOf(".decode", r.Decode, []string{DecodeRaw, DecodeJSON, DecodeFields})
	if len(l.errs) == 0 {
		return nil
	}
	e := *l.errs[0]
	e.Key = strings.TrimPrefix(e.Key, ".")
	return &e
}
