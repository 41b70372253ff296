package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// ctl runs realtimectl in process with stdin, in dir (where realtime.toml
// is found) and environment environ.
type ctl struct {
	dir     string
	environ []string
}

type result struct {
	code           int
	stdout, stderr string
}

func (c ctl) run(t *testing.T, ctx context.Context, stdin []byte, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, args, &env{stdin: bytes.NewReader(stdin), stdout: &out, stderr: &errb, environ: c.environ, dir: c.dir})
	return result{code, out.String(), errb.String()}
}

// newCtl writes toml as realtime.toml in a fresh directory.
func newCtl(t *testing.T, toml string) ctl {
	t.Helper()
	dir := t.TempDir()
	if toml != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "realtime.toml"), []byte(toml), 0o600))
	}
	return ctl{dir: dir, environ: []string{"PATH=" + os.Getenv("PATH")}}
}

func client(t *testing.T, srv *redistest.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const planTOML = `
[server]
id = "ttt-1"

[redis]
url = "redis://ops:hunter2@127.0.0.1:6399/0"
max_subscriptions = 3

[[routes]]
name = "players"
pattern = "player:*"
exclude = ["player:debug:*"]
handler = "OnPlayer"
decode = "json"
rate = "200/s"

[[routes]]
name = "admin"
channel = "chat:admin"
handler = "hook:AdminChat"

[[routes]]
name = "shop-buy"
pattern = "shop:buy:*"
handler = "OnShop"

[[routes]]
name = "shop-sell"
pattern = "shop:sell:*"
handler = "OnShop"
rate = "10/m"
burst = 5

[[routes]]
name = "cmds"
stream = "admin:commands"
handler = "OnCmd"
decode = "json"

[[routes]]
name = "jobs"
stream = "jobs"
group = "workers"
handler = "OnJob"
max_deliveries = 2
`

// TestCheckPrintsPlan: check prints the routes and the subscriptions the
// module makes (four routes over max_subscriptions = 3: the two shop
// routes share one covering pattern), and the streams of the stream routes
// (one in the server's own group, one in a shared group), without the
// password.
func TestCheckPrintsPlan(t *testing.T) {
	c := newCtl(t, planTOML)
	res := c.run(t, ctxFor(t), nil, "check")
	require.Equal(t, 0, res.code, res.stderr)
	golden, err := os.ReadFile("testdata/check.golden")
	require.NoError(t, err)
	want := strings.ReplaceAll(string(golden), "{{DIR}}", c.dir)
	assert.Equal(t, want, res.stdout)
	assert.NotContains(t, res.stdout+res.stderr, "hunter2")
}

// TestCheckFileArgument: check FILE reads that file, not realtime.toml.
func TestCheckFileArgument(t *testing.T) {
	c := newCtl(t, "[queue]\nmax_events = 0\n")
	other := filepath.Join(c.dir, "other.toml")
	require.NoError(t, os.WriteFile(other, []byte("[server]\nid = \"other\"\n"), 0o600))
	res := c.run(t, ctxFor(t), nil, "check", other)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "server:    other\n")
	assert.Contains(t, res.stdout, "local mode")

	res = c.run(t, ctxFor(t), nil, "check")
	assert.Equal(t, 1, res.code)
	assert.Contains(t, res.stderr, "queue.max_events: 0 must be at least 1")
}

// TestCheckErrors: every problem on its own line naming file and key, exit
// status 1, no secret anywhere.
func TestCheckErrors(t *testing.T) {
	c := newCtl(t, `
[redis]
url = "redis://ops:s3cret-pw@127.0.0.1:99999/0"

[metrics]
heartbeat = "1ms"

[[routes]]
pattern = "player:[ab"
handler = "OnPlayer"
ratee = "5/s"
`)
	res := c.run(t, ctxFor(t), nil, "check")
	assert.Equal(t, 1, res.code)
	assert.Empty(t, res.stdout)
	lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
	require.Len(t, lines, 5, res.stderr)
	p := filepath.Join(c.dir, "realtime.toml")
	assert.Equal(t, p+`: metrics.heartbeat: "1ms" is out of range (want 100ms to 1h, or "0s" for no heartbeat)`, lines[0])
	assert.Contains(t, lines[1], p+`: redis.url: "redis://ops:***@127.0.0.1:99999/0": port "99999" is not a TCP port`)
	assert.Contains(t, lines[2], "routes[0].pattern")
	assert.Contains(t, lines[3], `routes[0].ratee: unknown key (did you mean "rate"?)`)
	assert.Equal(t, "4 problems: the module would not load this configuration", lines[4])
	assert.NotContains(t, res.stderr, "s3cret-pw")
}

// TestCheckEnvironment: REDIS_* and .env count as they do for the module.
func TestCheckEnvironment(t *testing.T) {
	c := newCtl(t, "[server]\nid = \"x\"\n")
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, ".env"), []byte("REDIS_HOST=10.0.0.9\nREDIS_PASSWORD=envsecret\n"), 0o600))
	c.environ = append(c.environ, "REDIS_PORT=6380")
	res := c.run(t, ctxFor(t), nil, "check")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "redis:     redis://10.0.0.9:6380/0 (redis mode)")
	assert.Contains(t, res.stdout, ".env:      "+filepath.Join(c.dir, ".env"))
	assert.NotContains(t, res.stdout, "envsecret")
}

func redisTOML(srv *redistest.Server, extra string) string {
	return "[server]\nid = \"ctl-test\"\n[redis]\nurl = \"" + srv.URL() + "\"\n" + extra
}

// TestPubBinaryStdin: pub sends standard input byte for byte (NUL, invalid
// UTF-8, the trailing newline), and an argument as it is.
func TestPubBinaryStdin(t *testing.T) {
	srv := redistest.Start(t)
	c := newCtl(t, redisTOML(srv, ""))
	ctx := ctxFor(t)
	sub := client(t, srv).Subscribe(ctx, "bin:1")
	defer sub.Close()
	_, err := sub.Receive(ctx)
	require.NoError(t, err)

	payload := []byte("a\x00b\xff\xfe{\"x\":1}\n")
	res := c.run(t, ctx, payload, "pub", "bin:1", "-")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, "published 13 bytes to bin:1 (1 subscribers)\n", res.stdout)
	msg, err := sub.ReceiveMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, string(payload), msg.Payload)

	res = c.run(t, ctx, []byte("ignored"), "pub", "bin:1", "hello world")
	require.Equal(t, 0, res.code, res.stderr)
	msg, err = sub.ReceiveMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, "hello world", msg.Payload)

	res = c.run(t, ctx, []byte("from stdin"), "pub", "bin:1")
	require.Equal(t, 0, res.code, res.stderr)
	msg, err = sub.ReceiveMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, "from stdin", msg.Payload)
}

// tailRun starts realtimectl tail in the background and waits until it has
// subscribed (Redis counts its pattern).
func tailRun(t *testing.T, c ctl, rc *redis.Client, args ...string) <-chan result {
	t.Helper()
	ctx := ctxFor(t)
	before, err := rc.PubSubNumPat(ctx).Result()
	require.NoError(t, err)
	done := make(chan result, 1)
	go func() { done <- c.run(t, ctx, nil, args...) }()
	for {
		n, err := rc.PubSubNumPat(ctx).Result()
		require.NoError(t, err)
		if n > before {
			return done
		}
		select {
		case r := <-done:
			t.Fatalf("tail ended before subscribing: %+v", r)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestTail: one line per message (time, channel, payload), raw bytes
// escaped, only the channels matching the pattern.
func TestTail(t *testing.T) {
	srv := redistest.Start(t)
	rc := client(t, srv)
	c := newCtl(t, redisTOML(srv, ""))
	done := tailRun(t, c, rc, "tail", "t:*", "--count", "3")
	ctx := ctxFor(t)
	for _, m := range [][2]string{{"other", "skipped"}, {"t:1", "plain text"}, {"t:2", "a\x00b\xff\nc\\"}, {"t:\x01", `{"k":[1,2]}`}} {
		require.NoError(t, rc.Publish(ctx, m[0], m[1]).Err())
	}
	res := <-done
	require.Equal(t, 0, res.code, res.stderr)
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	require.Len(t, lines, 3, res.stdout)
	want := []string{`t:1 plain text`, `t:2 a\x00b\xff\nc\`, `t:\x01 {"k":[1,2]}`}
	for i, l := range lines {
		assert.Regexp(t, `^\d\d:\d\d:\d\d\.\d\d\d `, l)
		assert.Equal(t, want[i], l[13:])
	}
}

// TestTailJSON: --json pretty-prints JSON payloads, and leaves others as
// one escaped line.
func TestTailJSON(t *testing.T) {
	srv := redistest.Start(t)
	rc := client(t, srv)
	c := newCtl(t, redisTOML(srv, ""))
	done := tailRun(t, c, rc, "tail", "--json", "-n", "2", "j:*")
	ctx := ctxFor(t)
	require.NoError(t, rc.Publish(ctx, "j:1", `{"a":1,"b":["x"]}`).Err())
	require.NoError(t, rc.Publish(ctx, "j:2", "not {json").Err())
	res := <-done
	require.Equal(t, 0, res.code, res.stderr)
	out := res.stdout
	assert.Regexp(t, `^\d\d:\d\d:\d\d\.\d\d\d j:1 \{\n    "a": 1,\n    "b": \[\n      "x"\n    \]\n  \}\n\d\d:\d\d:\d\d\.\d\d\d j:2 not \{json\n$`, out)
}

// TestTailRoute: --route follows a config route: its pattern minus its
// excludes.
func TestTailRoute(t *testing.T) {
	srv := redistest.Start(t)
	rc := client(t, srv)
	c := newCtl(t, redisTOML(srv, `
[[routes]]
name = "players"
pattern = "player:*"
exclude = ["player:debug:*"]
handler = "OnPlayer"
`))
	done := tailRun(t, c, rc, "tail", "--route", "players", "-n", "2")
	ctx := ctxFor(t)
	for _, ch := range []string{"player:debug:1", "player:join", "chat:x", "player:debug:2", "player:leave"} {
		require.NoError(t, rc.Publish(ctx, ch, "p").Err())
	}
	res := <-done
	require.Equal(t, 0, res.code, res.stderr)
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	require.Len(t, lines, 2)
	assert.Equal(t, "player:join p", lines[0][13:])
	assert.Equal(t, "player:leave p", lines[1][13:])
	assert.Contains(t, res.stderr, `following route "players": player:*`)

	res = c.run(t, ctx, nil, "tail", "--route", "nope")
	assert.Equal(t, 1, res.code)
	assert.Equal(t, `realtimectl: no route "nope" in `+filepath.Join(c.dir, "realtime.toml")+"\n", res.stderr)
}

// TestErrors: one line on standard error, exit status 1, never the
// password: a wrong password, Redis down, local mode, a broken config,
// bad arguments.
func TestErrors(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "right-pw")
	ctx := ctxFor(t)
	wrong := newCtl(t, "[redis]\nurl = \"redis://default:wrong-pw@"+srv.Addr()+"\"\n")
	down := newCtl(t, "[redis]\nhost = \"127.0.0.1\"\nport = 1\nconnect_timeout = \"1s\"\n")
	down.environ = append(down.environ, "REDIS_PASSWORD=env-pw")
	local := newCtl(t, "")
	broken := newCtl(t, "[redis]\nurl = \"redis://u:zz-pw@h:0\"\n[queue]\nmax_events = -1\n")
	for _, tc := range []struct {
		name string
		c    ctl
		args []string
		want string
	}{
		{"wrong password", wrong, []string{"pub", "x", "y"}, "realtimectl: redis redis://default:***@" + srv.Addr() + ": WRONGPASS"},
		{"redis down", down, []string{"tail", "x"}, "realtimectl: redis redis://127.0.0.1:1/0: dial tcp 127.0.0.1:1: connect: connection refused"},
		{"local mode", local, []string{"pub", "x", "y"}, "realtimectl: no Redis configured"},
		{"broken config", broken, []string{"pub", "x", "y"}, "realtimectl: config: "},
		{"no pattern", local, []string{"tail"}, "realtimectl: tail needs a PATTERN or --route NAME"},
		{"too many", local, []string{"pub", "a", "b", "c"}, "realtimectl: accepts between 1 and 2 arg(s), received 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.c.run(t, ctx, nil, tc.args...)
			assert.Equal(t, 1, res.code)
			assert.Empty(t, res.stdout)
			assert.True(t, strings.HasPrefix(res.stderr, tc.want), "got %q, want it to start with %q", res.stderr, tc.want)
			assert.Equal(t, 1, strings.Count(res.stderr, "\n"), "one line: %q", res.stderr)
			for _, secret := range []string{"right-pw", "wrong-pw", "env-pw", "zz-pw"} {
				assert.NotContains(t, res.stderr, secret)
			}
		})
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain: ünïcode ✓": "plain: ünïcode ✓",
		"a\x00\n\t\r\x7f":  `a\x00\n\t\r\x7f`,
		"\xff\xc3":         `\xff\xc3`,
		`back\slash \"q\"`: `back\slash \"q\"`,
		"sep\u2028":        `sep\u2028`,
	} {
		assert.Equal(t, want, string(escape([]byte(in))), "%q", in)
	}
}
