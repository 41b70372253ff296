package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/gmodserver"
	"github.com/gmod-realtime/realtime/internal/redistest"
)

// exampleChecks run each example of examples/: its addon and realtime.toml
// in the test host against a real redis-server, driven by the commands of
// its README's "Try it" block, checked against what the README promises
// (the chat lines of its ```text blocks, the shapes of its ```json blocks).
var exampleChecks = map[string]func(t *testing.T, ex *example){
	"cross-server-chat": checkCrossServerChat,
	"kill-feed":         checkKillFeed,
	"discord-relay":     checkDiscordRelay,
	"server-status":     checkServerStatus,
	"admin-commands":    checkAdminCommands,
}

// TestExamples runs every example; an example directory without a check
// here fails.
func TestExamples(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(repo, "examples", "*", "README.md"))
	require.NoError(t, err)
	var names []string
	for _, d := range dirs {
		names = append(names, filepath.Base(filepath.Dir(d)))
	}
	require.NotEmpty(t, names, "examples/*/README.md")
	for _, name := range names {
		if exampleChecks[name] == nil {
			t.Errorf("examples/%s has no check in exampleChecks (tests/examples_test.go): every example must run in make test", name)
		}
	}
	for name, check := range exampleChecks {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.Contains(t, names, name, "examples/%s/README.md", name)
			check(t, loadExample(t, name))
		})
	}
}

// example is one examples/<name> directory, its README read, and a Redis.
type example struct {
	name     string
	dir      string
	commands []string          // the Try it block's commands
	chat     []string          // the lines of its ```text blocks
	shapes   map[string]string // channel -> the JSON example after "`channel`:"
	srv      *redistest.Server
	rdb      *redis.Client
	tails    []*exec.Cmd
	tailOut  []*syncBuffer
}

func loadExample(t *testing.T, name string) *example {
	t.Helper()
	ex := &example{name: name, dir: filepath.Join("examples", name), shapes: map[string]string{}}
	readme := filepath.Join(ex.dir, "README.md")
	lines := docLines(t, readme)
	try := slices.Index(lines, "## Try it")
	require.GreaterOrEqual(t, try, 0, "%s has a \"## Try it\" section", readme)
	for _, b := range fencedBlocks(t, readme, "sh") {
		if b.line > try {
			for _, line := range strings.Split(b.text, "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
					ex.commands = append(ex.commands, line)
				}
			}
			break
		}
	}
	require.NotEmpty(t, ex.commands, "%s: a ```sh block of commands under \"## Try it\"", readme)
	for _, b := range fencedBlocks(t, readme, "text") {
		ex.chat = append(ex.chat, splitLines(b.text)...)
	}
	channel := regexp.MustCompile("`([^`]+)`:$")
	for _, b := range fencedBlocks(t, readme, "json") {
		i := b.line - 3 // the line before the fence
		for i > 0 && strings.TrimSpace(lines[i]) == "" {
			i--
		}
		m := channel.FindStringSubmatch(strings.TrimSpace(lines[i]))
		require.NotNil(t, m, "%s:%d: a ```json block follows a line \"`channel`:\"", readme, b.line)
		ex.shapes[m[1]] = strings.TrimSpace(b.text)
	}
	ex.srv = redistest.Start(t)
	ex.rdb = redis.NewClient(&redis.Options{Addr: ex.srv.Addr(), Protocol: 2})
	t.Cleanup(func() { ex.rdb.Close() })
	return ex
}

// server lays out a GMod server with the example's realtime.toml (edit
// changes it first) and addon, and starts the driver script
// tests/lua/<script> in the host, its Redis given by REDIS_URL.
func (ex *example) server(t *testing.T, script string, edit func(string) string, env ...string) *Run {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(filepath.Join(repo, ex.dir, "lua"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(filepath.Join(repo, ex.dir), path)
			files[rel] = filepath.Join(ex.dir, rel)
		}
		return err
	})
	require.NoError(t, err)
	require.NotEmpty(t, files, "%s/lua holds the addon", ex.dir)
	gs, err := gmodserver.New(repo, t.TempDir(), luajit64, files)
	require.NoError(t, err)
	toml, err := os.ReadFile(filepath.Join(repo, ex.dir, "realtime.toml"))
	require.NoError(t, err)
	text := string(toml)
	if edit != nil {
		text = edit(text)
	}
	require.NoError(t, gs.WriteConfig(text))
	s := &Server{Server: gs, t: t}
	env = append(env, "REDIS_URL="+ex.srv.URL(), "TEST_REDIS_PORT="+strconv.Itoa(ex.srv.Port))
	return s.Start(script, 66, 60*time.Second, env...)
}

// startTails starts the README's `realtimectl tail` commands and waits
// until Redis has their subscriptions, so that they see everything the
// servers publish from then on.
func (ex *example) startTails(t *testing.T) {
	t.Helper()
	for _, c := range ex.commands {
		if !strings.HasPrefix(c, "realtimectl tail ") {
			continue
		}
		cmd := ex.command(t, c)
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		ex.tails = append(ex.tails, cmd)
		ex.tailOut = append(ex.tailOut, out)
	}
	waitFor(t, "the realtimectl tail subscriptions", func() bool {
		n, err := ex.rdb.Do(context.Background(), "PUBSUB", "NUMPAT").Int()
		return err == nil && n >= len(ex.tails)
	})
}

// runCommands runs the README's other commands, in order, each once Redis
// has subscribers (the servers' routes) for the channel it publishes to.
func (ex *example) runCommands(t *testing.T, servers int) {
	t.Helper()
	publish := regexp.MustCompile(`^redis-cli PUBLISH (\S+) `)
	for _, c := range ex.commands {
		if strings.HasPrefix(c, "realtimectl tail ") {
			continue
		}
		if m := publish.FindStringSubmatch(c); m != nil {
			waitFor(t, "the servers' subscriptions to "+m[1], func() bool {
				res, err := ex.rdb.PubSubNumSub(context.Background(), m[1]).Result()
				return err == nil && res[m[1]] >= int64(servers)
			})
		}
		out, err := ex.command(t, c).CombinedOutput()
		require.NoError(t, err, "%s: %s", c, out)
	}
}

// command is a README command line, run against the test's Redis:
// redis-cli with its port, realtimectl with REDIS_URL. The line is split
// as a shell splits it (quotes), without a shell, so that a kill stops the
// command itself.
func (ex *example) command(t *testing.T, line string) *exec.Cmd {
	t.Helper()
	args := shellWords(t, line)
	switch args[0] {
	case "redis-cli":
		args = append([]string{"redis-cli", "-p", strconv.Itoa(ex.srv.Port)}, args[1:]...)
	case "realtimectl":
		// build/, also under make sanitize (whose module and host are in
		// build/sanitize): it is plain Go, built once.
		args[0] = filepath.Join(repo, "build", "realtimectl")
	default:
		t.Fatalf("%s/README.md: the Try it block runs redis-cli and realtimectl only, not %q", ex.dir, line)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = t.TempDir() // no realtime.toml: realtimectl reads REDIS_URL
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + cmd.Dir, "REDIS_URL=" + ex.srv.URL()}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// shellWords splits a command line into words as sh does for the quoting
// the READMEs use: 'single', "double" (with \" inside) and plain words.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			require.GreaterOrEqual(t, end, 0, "an unclosed ' in %q", line)
			w.WriteString(line[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				w.WriteByte(line[i])
			}
			require.Less(t, i, len(line), "an unclosed \" in %q", line)
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	require.NotEmpty(t, words, "an empty command")
	return words
}

// tailed waits for the tails to stop (each after its -n messages) and
// returns the messages they printed: channel and payload.
func (ex *example) tailed(t *testing.T) [][2]string {
	t.Helper()
	var msgs [][2]string
	for i, cmd := range ex.tails {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			require.NoError(t, err, "realtimectl tail: %s", ex.tailOut[i])
		case <-time.After(30 * time.Second):
			t.Fatalf("realtimectl tail did not get its messages in 30s; it printed:\n%s", ex.tailOut[i])
		}
		for _, line := range splitLines(ex.tailOut[i].String()) {
			f := strings.SplitN(line, " ", 3)
			require.Len(t, f, 3, "a realtimectl tail line: time, channel, payload: %q", line)
			msgs = append(msgs, [2]string{f[1], f[2]})
		}
	}
	return msgs
}

// checkShape: payload has the keys of the README's example for channel
// (its shapes entry, or the one for pattern), with values of the same
// JSON types; it returns the payload decoded.
func (ex *example) checkShape(t *testing.T, channel, shapeKey, payload string) map[string]any {
	t.Helper()
	shape, ok := ex.shapes[shapeKey]
	require.True(t, ok, "%s/README.md documents the JSON of %s", ex.dir, shapeKey)
	var want, got map[string]any
	require.NoError(t, json.Unmarshal([]byte(shape), &want), "%s/README.md: the example of %s", ex.dir, shapeKey)
	require.NoError(t, json.Unmarshal([]byte(payload), &got), "%s: %s", channel, payload)
	assert.ElementsMatch(t, keysOf(want), keysOf(got), "%s: the keys the README documents (left) and the message's (right): %s", channel, payload)
	for k, v := range want {
		if g, ok := got[k]; ok && fmt.Sprintf("%T", g) != fmt.Sprintf("%T", v) {
			t.Errorf("%s: %s is %T (%v), the README shows %T", channel, k, g, g, v)
		}
	}
	return got
}

// syncBuffer is an output buffer a command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func keysOf(m map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func checkCrossServerChat(t *testing.T, ex *example) {
	ex.startTails(t)
	a := ex.server(t, "example_xchat.lua", nil, "EXAMPLE_ROLE=a")
	b := ex.server(t, "example_xchat.lua", func(toml string) string {
		edited := strings.Replace(toml, `id = "server-a"`, `id = "server-b"`, 1)
		require.NotEqual(t, toml, edited, "realtime.toml sets id = \"server-a\"")
		return edited
	}, "EXAMPLE_ROLE=b")
	a.WaitLine(t, "example: ready", 30*time.Second)
	b.WaitLine(t, "example: ready", 30*time.Second)
	ex.runCommands(t, 2)
	outA, outB := a.Wait(t), b.Wait(t)

	require.Len(t, ex.chat, 2, "the README shows server-b's chat")
	for _, line := range ex.chat {
		assert.Contains(t, outB, "chat: "+line+"\n", "server-b's chat")
	}
	assert.Contains(t, outA, "chat: "+ex.chat[0]+"\n", "server-a's chat: the web's line")
	assert.NotContains(t, outA, "chat: [server-a]", "server-a skips its own lines")

	msgs := ex.tailed(t)
	require.Len(t, msgs, 2, "realtimectl tail -n 2: %v", msgs)
	for _, m := range msgs {
		assert.Equal(t, "xchat:messages", m[0])
		ex.checkShape(t, m[0], "xchat:messages", m[1])
	}
	got := ex.checkShape(t, msgs[1][0], "xchat:messages", msgs[1][1])
	assert.Equal(t, map[string]any{"server": "server-a", "name": "alice", "text": "hello from A"}, got,
		"the first line alice sent (the commands and the team chat before it are not relayed)")
}

func checkKillFeed(t *testing.T, ex *example) {
	ex.startTails(t)
	s := ex.server(t, "example_killfeed.lua", nil)
	s.WaitLine(t, "example: ready", 30*time.Second)
	ex.runCommands(t, 1)
	s.Wait(t)

	msgs := ex.tailed(t)
	require.Len(t, msgs, 4, "three deaths and a round end: %v", msgs)
	var kills []map[string]any
	for _, m := range msgs[:3] {
		require.Equal(t, "dashboard:kill", m[0])
		kills = append(kills, ex.checkShape(t, m[0], "dashboard:kill", m[1]))
	}
	assert.Equal(t, []any{"bob", "alice", "weapon_ttt_m16"}, []any{kills[0]["victim"], kills[0]["killer"], kills[0]["weapon"]})
	assert.Equal(t, []any{"carol", "alice", "weapon_ttt_m16"}, []any{kills[1]["victim"], kills[1]["killer"], kills[1]["weapon"]},
		"a shot: the weapon in the killer's hand")
	assert.Equal(t, []any{"dave", "", "worldspawn"}, []any{kills[2]["victim"], kills[2]["killer"], kills[2]["weapon"]},
		"killed by the world: no killer")
	assert.Equal(t, "ttt-1", kills[0]["server"])

	require.Equal(t, "dashboard:round", msgs[3][0])
	round := ex.checkShape(t, msgs[3][0], "dashboard:round", msgs[3][1])
	assert.Equal(t, float64(2), round["winner"])
	assert.Equal(t, []any{map[string]any{"name": "alice", "kills": float64(2)}}, round["kills"])
}

func checkDiscordRelay(t *testing.T, ex *example) {
	ex.startTails(t)
	s := ex.server(t, "example_discord.lua", nil)
	s.WaitLine(t, "example: ready", 30*time.Second)
	ex.runCommands(t, 1)
	out := s.Wait(t)

	require.Len(t, ex.chat, 1, "the README shows the chat line")
	assert.Contains(t, out, "chat: "+ex.chat[0]+"\n")
	msgs := ex.tailed(t)
	require.Len(t, msgs, 1, "realtimectl tail -n 1: %v", msgs)
	assert.Equal(t, "discord:out", msgs[0][0])
	got := ex.checkShape(t, msgs[0][0], "discord:out", msgs[0][1])
	assert.Equal(t, map[string]any{"server": "ttt-1", "name": "alice", "steamid": "STEAM_0:0:5", "text": "gg"}, got,
		"alice's \"gg\"; her \"!rtv\" before it is a command and is not relayed")
	ex.checkShape(t, "discord:in", "discord:in", commandPayload(t, ex, "discord:in"))
}

func checkServerStatus(t *testing.T, ex *example) {
	ex.startTails(t)
	s := ex.server(t, "example_status.lua", nil)
	s.WaitLine(t, "example: ready", 30*time.Second)
	ex.runCommands(t, 1)
	s.Wait(t)

	msgs := ex.tailed(t)
	require.Len(t, msgs, 2, "the report at connect and the answer to the ping: %v", msgs)
	for _, m := range msgs {
		assert.Equal(t, "servers:status:ttt-1", m[0])
		got := ex.checkShape(t, m[0], "servers:status:ttt-1", m[1])
		assert.Equal(t, float64(5), got["players"], "player.GetCount()")
		assert.Equal(t, float64(16), got["max_players"], "game.MaxPlayers()")
	}
}

// commandPayload is the payload the README's redis-cli PUBLISH to channel
// sends: the bot's side of a contract is checked against the README too.
func commandPayload(t *testing.T, ex *example, channel string) string {
	t.Helper()
	for _, c := range ex.commands {
		if rest, ok := strings.CutPrefix(c, "redis-cli PUBLISH "+channel+" "); ok {
			return strings.Trim(rest, "'")
		}
	}
	t.Fatalf("%s/README.md: no redis-cli PUBLISH %s in the Try it block", ex.dir, channel)
	return ""
}

// checkAdminCommands: the server runs once (its consumer group is made)
// and is killed; the README's command is sent while it is down; started
// again, the server handles it: the chat line of the README, and one
// answer on admin:results of the README's shape, for that entry.
func checkAdminCommands(t *testing.T, ex *example) {
	first := ex.server(t, "example_admin.lua", nil, "EXAMPLE_PHASE=first")
	first.WaitLine(t, "example: ready", 30*time.Second)
	waitFor(t, "the server's consumer group", func() bool {
		groups, err := ex.rdb.XInfoGroups(context.Background(), "admin:commands").Result()
		return err == nil && len(groups) == 1 && groups[0].Name == "realtime:ttt-1"
	})
	first.Kill()

	ex.startTails(t)
	ex.runCommands(t, 0)
	entries, err := ex.rdb.XRange(context.Background(), "admin:commands", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1, "the README's command, in the stream")

	s := ex.server(t, "example_admin.lua", nil)
	out := s.Wait(t)
	for _, line := range ex.chat {
		assert.Contains(t, out, "chat: "+line, "the README's chat line")
	}
	msgs := ex.tailed(t)
	require.Len(t, msgs, 1, "one answer: %v", msgs)
	got := ex.checkShape(t, msgs[0][0], "admin:results", msgs[0][1])
	assert.Equal(t, entries[0].ID, got["id"], "the answer names the entry")
	assert.Equal(t, true, got["ok"])
	pending, err := ex.rdb.XPending(context.Background(), "admin:commands", "realtime:ttt-1").Result()
	require.NoError(t, err)
	assert.Zero(t, pending.Count, "the command is acknowledged")
}
