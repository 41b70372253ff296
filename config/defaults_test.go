package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exampleOption is a commented-out "# key = value" line of
// realtime.toml.example: an option shown with its default. What follows the
// value ("# comment") is a TOML comment, so the line parses as it is.
var exampleOption = regexp.MustCompile(`^# ([a-z_]+) = (.*)$`)

// exampleNotDefaults are the commented options whose value is an example of
// what to write, not the default; the comment beside each says so.
var exampleNotDefaults = map[string]string{
	"server.id":   `"<hostname>": a placeholder (the default, the hostname, is checked below)`,
	"redis.url":   "an example address; no url is the default (local mode)",
	"redis.addrs": "example Cluster nodes; none is the default",
}

// TestExampleDefaultsAreTheCodes: docs/CONFIG.md says realtime.toml.example "lists
// every option with its default". Uncommenting every option line of the
// example (but the three that are examples) must give exactly Default():
// a default changed in the code and not in the example, or the other way
// round, fails here.
func TestExampleDefaultsAreTheCodes(t *testing.T) {
	data, err := os.ReadFile("../realtime.toml.example")
	require.NoError(t, err)

	var doc strings.Builder
	section := ""
	var shown []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "[[") {
			break // the routes are examples; their defaults are checked below
		}
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			doc.WriteString(line + "\n")
			continue
		}
		m := exampleOption.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		key := section + "." + m[1]
		if _, ok := exampleNotDefaults[key]; ok {
			continue
		}
		shown = append(shown, key)
		doc.WriteString(m[1] + " = " + m[2] + "\n")
	}
	// Every scalar option of the sections is shown with a value (the
	// TestExampleFile check only asks that the key is mentioned).
	for _, key := range []string{
		"redis.host", "redis.port", "redis.username", "redis.password", "redis.db", "redis.tls",
		"redis.tls_ca_file", "redis.tls_server_name", "redis.master_name", "redis.sentinel_password",
		"redis.connect_timeout", "redis.read_timeout", "redis.write_timeout", "redis.reconnect_min",
		"redis.reconnect_max", "redis.outbox_events", "redis.outbox_bytes", "redis.max_subscriptions",
		"queue.max_events", "queue.max_bytes", "queue.overflow", "queue.max_payload", "queue.json_max_depth",
		"dispatch.budget", "dispatch.max_per_frame", "log.level", "log.rate",
		"events.prefix", "events.auto", "events.chat_skip_prefixes",
	} {
		assert.Contains(t, shown, key, "realtime.toml.example shows no default for %s", key)
	}

	got, err := Parse("uncommented example", []byte(doc.String()))
	require.NoError(t, err, "the uncommented example:\n%s", doc.String())
	want := Default()
	// "host = "127.0.0.1"  # default when any Redis setting is given": the
	// uncommented port and timeouts are such settings.
	want.Redis.Host = "127.0.0.1"
	assert.Equal(t, "10/s", got.Log.Rate.String())
	assert.Equal(t, want.Log.Rate.PerSecond, got.Log.Rate.PerSecond, "log.rate")
	got.Log.Rate, want.Log.Rate = Rate{}, Rate{}
	got.File = ""
	assert.Equal(t, want, got, "realtime.toml.example's defaults against Default()")

	host, err := os.Hostname()
	require.NoError(t, err)
	assert.Equal(t, host, Default().Server.ID, `server.id: "<hostname>"`)
	assert.True(t, Default().Local(), "no url and no addrs by default: local mode")
	assert.Empty(t, Default().Redis.Addrs)
}

// TestExampleRouteDefaults: the defaults the example states beside its
// first route's keys.
func TestExampleRouteDefaults(t *testing.T) {
	cfg, err := Parse("realtime.toml", []byte("[[routes]]\npattern = \"player:*\"\nhandler = \"H\"\n[[routes]]\nchannel = \"chat:admin\"\nhandler = \"H\"\nrate = \"200/s\"\n[[routes]]\nchannel = \"slow\"\nhandler = \"H\"\nrate = \"1/h\"\n"))
	require.NoError(t, err)
	r := cfg.Routes[0]
	assert.Equal(t, "player:*", r.Name, "name: default: the pattern or channel")
	assert.Equal(t, "chat:admin", cfg.Routes[1].Name, "name: default: the pattern or channel")
	assert.Empty(t, r.Exclude, "exclude: default: none")
	assert.Equal(t, DecodeRaw, r.Decode, `decode: "raw" (default)`)
	assert.True(t, r.Rate.Unlimited(), `rate: default "unlimited"`)
	assert.Equal(t, "unlimited", r.Rate.String())
	assert.Equal(t, 200, cfg.Routes[1].Burst, "burst: default: one second of the rate")
	assert.Equal(t, 1, cfg.Routes[2].Burst, "burst: at least 1")

	cfg, err = Parse("realtime.toml", []byte("[server]\nid = \"ttt-1\"\n[[routes]]\nstream = \"admin:commands\"\nhandler = \"H\"\n"))
	require.NoError(t, err)
	s := cfg.Routes[0]
	assert.Equal(t, "admin:commands", s.Name, "name: default: the stream")
	assert.Equal(t, DecodeRaw, s.Decode, `decode: "raw" (default)`)
	assert.Equal(t, "realtime:{server}", s.Group, "group: default")
	assert.Equal(t, "realtime:ttt-1", s.GroupName(cfg.Server.ID), "{server} is server.id")
	assert.Equal(t, "$", s.Start, "start: default")
	assert.Equal(t, 5, s.MaxDeliveries, "max_deliveries: default")
	assert.Equal(t, Duration(60*time.Second), s.ClaimAfter, "claim_after: default")
}
