// Package config defines the module's configuration and loads it with koanf
// from, later winning: built-in defaults < realtime.toml < .env < the process
// environment < overrides from Lua's realtime.Config.
//
// Every problem is reported at once, each naming where the value came from
// (file, environment variable or realtime.Config), the key and the value:
//
//	realtime.toml: routes[2].rate: "100/x" is not a rate (want N/s, N/m or N/h)
//
// Secrets (passwords, URL userinfo) never appear in errors or in String.
// A loaded *Config is not modified afterwards and is safe to share between
// goroutines.
package config

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Config is the whole configuration. The zero value is not useful: start
// from Default or Load.
type Config struct {
	Server   Server   `koanf:"server"`
	Redis    Redis    `koanf:"redis"`
	Queue    Queue    `koanf:"queue"`
	Dispatch Dispatch `koanf:"dispatch"`
	Log      Log      `koanf:"log"`
	Events   Events   `koanf:"events"`
	Streams  Streams  `koanf:"streams"`
	Spool    Spool    `koanf:"spool"`
	Metrics  Metrics  `koanf:"metrics"`
	Routes   []Route  `koanf:"routes"`

	// File is the TOML file that was loaded, "" when none was found.
	File string `koanf:"-"`
	// EnvFile is the .env file that was loaded, "" when none was found.
	EnvFile string `koanf:"-"`
	// Warnings are what Load ignored and why, for the log (String includes
	// them).
	Warnings []string `koanf:"-"`
}

// Server identifies this game server in published events.
type Server struct {
	// ID goes into the "server" field of every game event.
	// Default: the machine's hostname.
	ID string `koanf:"id"`
	// IDFromHost: no source set ID, it is the hostname.
	IDFromHost bool `koanf:"-"`
}

// Redis says where Redis is and how to talk to it. With no address at all
// (no url, host, port or addrs from any source) the module runs in local
// mode on an in-process bus.
type Redis struct {
	// URL is redis://[user:pass@]host[:port][/db], rediss:// for TLS, or
	// unix:///path/to/socket[?db=N]. Default: none.
	URL string `koanf:"url"`
	// Host of a single Redis server. Default: "127.0.0.1" when any other
	// Redis setting is given.
	Host string `koanf:"host"`
	// Port of a single Redis server. Default: 6379.
	Port int `koanf:"port"`
	// Username for Redis 6 ACLs. Default: none.
	Username string `koanf:"username"`
	// Password (AUTH). Default: none. Never logged.
	Password string `koanf:"password"`
	// DB is the database number; pub/sub ignores it, Cluster needs 0. Default: 0.
	DB int `koanf:"db"`
	// TLS turns on TLS (as rediss:// does). Default: false.
	TLS bool `koanf:"tls"`
	// TLSCAFile is a PEM file of CAs to trust instead of the system's;
	// it needs TLS on (rediss:// or tls = true). Default: none.
	TLSCAFile string `koanf:"tls_ca_file"`
	// TLSServerName overrides the name checked in the server's certificate.
	// Default: the host.
	TLSServerName string `koanf:"tls_server_name"`
	// Addrs lists host:port of Cluster nodes, or of Sentinels when MasterName
	// is set. Default: none (a single server).
	Addrs []string `koanf:"addrs"`
	// MasterName is the Sentinel master name. Default: none (no Sentinel).
	MasterName string `koanf:"master_name"`
	// SentinelPassword authenticates to the Sentinels. Default: none. Never logged.
	SentinelPassword string `koanf:"sentinel_password"`
	// ConnectTimeout bounds one connection attempt. Default: 5s.
	ConnectTimeout Duration `koanf:"connect_timeout"`
	// ReadTimeout and WriteTimeout bound one command. Default: 3s each.
	ReadTimeout  Duration `koanf:"read_timeout"`
	WriteTimeout Duration `koanf:"write_timeout"`
	// ReconnectMin and ReconnectMax bound the exponential backoff (with
	// jitter) between reconnect attempts. Default: 250ms and 30s.
	ReconnectMin Duration `koanf:"reconnect_min"`
	ReconnectMax Duration `koanf:"reconnect_max"`
	// OutboxEvents and OutboxBytes bound the publish outbox; Publish fails
	// when it is full. Default: 10000 events, 8MiB.
	OutboxEvents int  `koanf:"outbox_events"`
	OutboxBytes  Size `koanf:"outbox_bytes"`
	// MaxSubscriptions bounds the SUBSCRIBE + PSUBSCRIBE set: past it, routes
	// are covered by fewer, wider patterns and filtered locally (Redis
	// spends time on every PUBLISH for every pattern). Default: 64.
	MaxSubscriptions int `koanf:"max_subscriptions"`
}

// Queue bounds the events waiting for the game's main thread.
type Queue struct {
	// MaxEvents is the most events waiting. Default: 10000.
	MaxEvents int `koanf:"max_events"`
	// MaxBytes is the most payload bytes waiting. Default: 8MiB.
	MaxBytes Size `koanf:"max_bytes"`
	// Overflow is what a full queue drops: "drop_oldest" or "drop_newest".
	// Default: "drop_oldest".
	Overflow string `koanf:"overflow"`
	// MaxPayload is the largest payload accepted; larger ones are dropped
	// and counted. Default: 1MiB.
	MaxPayload Size `koanf:"max_payload"`
	// JSONMaxDepth is the deepest nesting a JSON route decodes. Default: 64.
	JSONMaxDepth int `koanf:"json_max_depth"`
}

// Dispatch bounds the main thread's work per frame.
type Dispatch struct {
	// Budget is the main-thread time ProcessEvents may spend per frame.
	// Default: 2ms.
	Budget Duration `koanf:"budget"`
	// MaxPerFrame is the most events dispatched per frame; 0 (the default):
	// no count limit, the budget decides.
	MaxPerFrame int `koanf:"max_per_frame"`
}

// Log controls the module's own log lines.
type Log struct {
	// Level is "debug", "info", "warn" or "error". Default: "info".
	Level string `koanf:"level"`
	// Rate limits repeated log lines (drops, handler errors). Default: "10/s".
	Rate Rate `koanf:"rate"`
}

// Events configures the built-in game events (realtime.PlayerDeath, ...).
type Events struct {
	// Prefix goes before every game-event channel ("ttt1:" gives
	// "ttt1:player:death"). Default: none.
	Prefix string `koanf:"prefix"`
	// Auto publishes game events from GMod hooks (PlayerSpawn, PlayerDeath,
	// PlayerSay, PostEntityTakeDamage, round hooks). Default: false.
	Auto bool `koanf:"auto"`
	// ChatSkipPrefixes: chat lines starting with one of these are commands
	// ("!login hunter2", "/vote"), never published by Auto. An empty list
	// publishes every line. Default: ["!", "/"].
	ChatSkipPrefixes []string `koanf:"chat_skip_prefixes"`
	// Stream sends game events as stream entries (XADD through the durable
	// path of realtime.Append, spooled while Redis is down) to streams
	// named like the channels they would be published to. Default: false.
	Stream bool `koanf:"stream"`
}

// Streams configures the entries this server adds to streams
// (realtime.Append, game events with events.stream, dead letters).
type Streams struct {
	// MaxLen trims each stream to about this many entries at every XADD
	// (MAXLEN ~). Default: 0, no trimming. Not with Retention.
	MaxLen int `koanf:"max_len"`
	// Retention trims entries older than this at every XADD (MINID ~
	// now-retention, now by Redis's clock). Default: 0, no trimming. Not
	// with MaxLen.
	Retention Duration `koanf:"retention"`
}

// Spool configures the disk spool of durable sends, used while Redis is
// unreachable or the outbox is full.
type Spool struct {
	// Path of the SQLite file, relative to the game's folder (the
	// process's working directory); "" turns the spool off.
	// Default: "data/realtime/spool.db".
	Path string `koanf:"path"`
	// MaxBytes bounds the spooled entries; past it appends fail and are
	// counted. Default: "64MiB".
	MaxBytes Size `koanf:"max_bytes"`
}

// Route sends the events of matching channels to a Lua handler.
type Route struct {
	// Name identifies the route in stats, logs and reloads.
	// Default: its pattern or channel.
	Name string `koanf:"name"`
	// Channel is one exact channel (SUBSCRIBE). Set Channel or Pattern.
	Channel string `koanf:"channel"`
	// Pattern is a Redis glob (PSUBSCRIBE): *, ?, [abc], [^a], [a-z], \x.
	Pattern string `koanf:"pattern"`
	// Exclude lists Redis globs of channels the route skips. Default: none.
	Exclude []string `koanf:"exclude"`
	// Handler is a realtime.Handler name, or "hook:Name" for hook.Run.
	Handler string `koanf:"handler"`
	// Decode is "raw" (the payload string) or "json" (a Lua table).
	// Default: "raw".
	Decode string `koanf:"decode"`
	// Rate is a token-bucket limit such as "200/s", "50/m", "1000/h" or
	// "unlimited"; events over it are dropped and counted. Default: "unlimited".
	Rate Rate `koanf:"rate"`
	// Burst is the bucket size. Default: the rate's events per second,
	// rounded up, at least 1.
	Burst int `koanf:"burst"`

	// Stream is a Redis Stream read with a consumer group, instead of a
	// channel or pattern: each entry is acknowledged once its handler
	// returned, and comes back after an error, a crash, a reconnect or a
	// map change (at-least-once). Default: none.
	Stream string `koanf:"stream"`
	// Group is the stream's consumer group; "{server}" is replaced by
	// server.id. Default: "realtime:{server}", one group per server, so
	// every server sees every entry. A name shared by several servers
	// makes a work queue: each entry is handled by one of them.
	Group string `koanf:"group"`
	// Start is where a new group starts reading: "$" (entries added from
	// now on) or "0" (every entry the stream holds). Default: "$".
	Start string `koanf:"start"`
	// MaxDeliveries is how often an entry is delivered before it is copied
	// to "<stream>:dead" and acknowledged. Default: 5.
	MaxDeliveries int `koanf:"max_deliveries"`
	// ClaimAfter: entries another consumer of the group has left pending
	// this long are taken over (a server that died). Default: 60s.
	ClaimAfter Duration `koanf:"claim_after"`
}

// ServerPlaceholder in Route.Group stands for server.id.
const ServerPlaceholder = "{server}"

// DefaultGroup is Route.Group's default.
const DefaultGroup = "realtime:" + ServerPlaceholder

// HostGroupWarning returns a warning when stream route r (where names it)
// reads with a per-server group while server.id is the hostname, else "".
func (c *Config) HostGroupWarning(where string, r *Route) string {
	if c.Local() || !c.Server.IDFromHost || r.Stream == "" || !strings.Contains(r.Group, ServerPlaceholder) {
		return ""
	}
	return fmt.Sprintf("server.id is not set, so it is this machine's hostname %q, and %s reads stream %q with the group %q: "+
		"under a new hostname (a recreated container, a moved server) it makes a new group, which starts at %q and leaves the old group's pending entries behind; set server.id",
		c.Server.ID, where, r.Stream, r.GroupName(c.Server.ID), r.Start)
}

// GroupName is the route's consumer group with {server} replaced.
func (r *Route) GroupName(serverID string) string {
	return strings.ReplaceAll(r.Group, ServerPlaceholder, serverID)
}

// DefaultSpoolPath is spool.path's default.
const DefaultSpoolPath = "data/realtime/spool.db"

// Default returns the built-in defaults: local mode, no routes.
func Default() *Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "gmod-server"
	}
	return &Config{
		Server: Server{ID: host, IDFromHost: true},
		Redis: Redis{
			Port:             6379,
			ConnectTimeout:   Duration(5 * time.Second),
			ReadTimeout:      Duration(3 * time.Second),
			WriteTimeout:     Duration(3 * time.Second),
			ReconnectMin:     Duration(250 * time.Millisecond),
			ReconnectMax:     Duration(30 * time.Second),
			OutboxEvents:     10000,
			OutboxBytes:      8 * MiB,
			MaxSubscriptions: 64,
		},
		Queue: Queue{
			MaxEvents:    10000,
			MaxBytes:     8 * MiB,
			Overflow:     OverflowDropOldest,
			MaxPayload:   1 * MiB,
			JSONMaxDepth: 64,
		},
		Dispatch: Dispatch{Budget: Duration(2 * time.Millisecond), MaxPerFrame: 0},
		Log:      Log{Level: "info", Rate: Rate{PerSecond: 10}},
		Events:   Events{ChatSkipPrefixes: []string{"!", "/"}},
		Spool:    Spool{Path: DefaultSpoolPath, MaxBytes: 64 * MiB},
		Metrics:  defaultMetrics(),
	}
}

// Overflow policies of Queue.Overflow.
const (
	OverflowDropOldest = "drop_oldest"
	OverflowDropNewest = "drop_newest"
)

// Decode modes of Route.Decode.
const (
	DecodeRaw  = "raw"
	DecodeJSON = "json"
	// DecodeFields (stream routes): the entry's fields as a Lua table.
	DecodeFields = "fields"
)

// HookPrefix marks a Route.Handler that calls hook.Run instead of a named
// handler.
const HookPrefix = "hook:"

// Local reports whether no Redis is configured, so the in-process bus is
// used.
func (c *Config) Local() bool {
	return c.Redis.URL == "" && c.Redis.Host == "" && len(c.Redis.Addrs) == 0
}

// Mode is "local", "redis", "sentinel" or "cluster".
func (c *Config) Mode() string {
	switch {
	case c.Local():
		return "local"
	case c.Redis.MasterName != "":
		return "sentinel"
	case len(c.Redis.Addrs) > 0:
		return "cluster"
	}
	return "redis"
}

// TLSOn reports whether the connection uses TLS: a rediss:// URL, or
// tls = true without a URL.
func (r *Redis) TLSOn() bool {
	if r.URL != "" {
		return strings.HasPrefix(strings.ToLower(r.URL), "rediss://")
	}
	return r.TLS
}

// Target describes where Redis is, without secrets, for logs.
func (r *Redis) Target() string {
	switch {
	case r.URL != "":
		return RedactURL(r.URL)
	case r.MasterName != "":
		return fmt.Sprintf("sentinel %s via %s", r.MasterName, strings.Join(r.Addrs, ","))
	case len(r.Addrs) > 0:
		return "cluster " + strings.Join(r.Addrs, ",")
	case r.Host == "":
		return "local"
	}
	scheme := "redis"
	if r.TLS {
		scheme = "rediss"
	}
	return fmt.Sprintf("%s://%s:%d/%d", scheme, r.Host, r.Port, r.DB)
}

// String summarises the configuration for a log line, without secrets.
func (c *Config) String() string {
	file := c.File
	if file == "" {
		file = "(no file)"
	}
	s := fmt.Sprintf("config %s: server %q, %s, %d routes, queue %d events/%s %s, budget %s",
		file, c.Server.ID, c.Redis.Target(), len(c.Routes), c.Queue.MaxEvents, c.Queue.MaxBytes,
		c.Queue.Overflow, c.Dispatch.Budget)
	for _, w := range c.Warnings {
		s += "; warning: " + w
	}
	return s
}

// RedactURL replaces the password in a Redis URL with "***": everything
// between the first ':' after "://" and the last '@', read from the raw
// text rather than a parsed URL, so that a password holding '#', '/' or
// '?' (which url.Parse takes for a fragment, a path or a query) is hidden
// too. The username stays, for diagnosis, unless it stands alone (then it
// may be a password missing its ':'). Without an '@', a port that is
// not a number may be a password (the host left out): it is hidden too.
func RedactURL(raw string) string {
	return redactQuery(redactUserinfo(raw))
}

// redactQuery hides the values of query options whose names suggest a
// secret (password=, auth_token=: forms other clients read).
func redactQuery(raw string) string {
	q := strings.IndexByte(raw, '?')
	if q < 0 {
		return raw
	}
	end := len(raw)
	if h := strings.IndexByte(raw[q:], '#'); h >= 0 {
		end = q + h
	}
	pairs := strings.Split(raw[q+1:end], "&")
	for i, p := range pairs {
		name, _, hasValue := strings.Cut(p, "=")
		lower := strings.ToLower(name)
		if hasValue && (strings.Contains(lower, "pass") || strings.Contains(lower, "secret") ||
			strings.Contains(lower, "token") || strings.Contains(lower, "auth") || strings.Contains(lower, "pwd")) {
			pairs[i] = name + "=***"
		}
	}
	return raw[:q+1] + strings.Join(pairs, "&") + raw[end:]
}

func redactUserinfo(raw string) string {
	i, j := strings.Index(raw, "://"), strings.LastIndex(raw, "@")
	if i < 0 && j >= 0 {
		// A typo around "://" ("redis:/user:pw@host"): whatever comes
		// before the '@' may be credentials.
		return "***" + raw[j:]
	}
	if i >= 0 && j < i+3 {
		// No '@': a password may still be there, read as a port by a URL
		// missing its host ("redis://default:pw"). A port that is not a
		// number is hidden, with whatever follows it.
		auth := raw[i+3:]
		if e := strings.IndexAny(auth, "/?#"); e >= 0 {
			auth = auth[:e]
		}
		k := strings.LastIndexByte(auth, ':')
		if k < 0 || k < strings.LastIndexByte(auth, ']') {
			return raw
		}
		if port := auth[k+1:]; strings.Trim(port, "0123456789") != "" {
			return raw[:i+3+k+1] + "***"
		}
		return raw
	}
	if i < 0 {
		return raw
	}
	user := raw[i+3 : j]
	k := strings.IndexByte(user, ':')
	if user != "" && (k < 0 || strings.IndexByte(user[:k], '@') >= 0) {
		// A lone name: Redis needs a password with a user name, so this
		// is most likely a password written without its ':'. An '@'
		// before the first ':' ends a lone name too (the ':' and the
		// last '@' coming later: "u@host:6379/0#@").
		return raw[:i+3] + "***" + raw[j:]
	}
	if k < 0 {
		return raw
	}
	return raw[:i+3] + user[:k] + ":***" + raw[j:]
}

// RouteName is the name a route is known by: Name, else its pattern or
// channel.
func (r *Route) RouteName() string {
	switch {
	case r.Name != "":
		return r.Name
	case r.Pattern != "":
		return r.Pattern
	case r.Stream != "":
		return r.Stream
	}
	return r.Channel
}
