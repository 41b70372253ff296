// Command demo is `make demo`: it runs the module in the GMod-like host
// against a throwaway redis-server, with the routes of realtime.toml.example
// and the example addon, publishes a burst with redis-cli, and shows the
// handlers, a rate limit, a live Reload and the stats. Then, the server
// stopped, it sends an admin command to a stream with realtimectl append
// and starts the server again, which handles it: durable delivery. Without
// redis-server it runs in local mode and says so.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gmod-realtime/realtime/internal/gmodserver"
	"github.com/gmod-realtime/realtime/internal/redistest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("demo   | "+format+"\n", args...) }

func run() error {
	repo, err := gmodserver.Repo()
	if err != nil {
		return err
	}
	root := filepath.Join(repo, "build", "demo")
	_ = os.RemoveAll(root)
	srv, err := gmodserver.New(repo, root, gmodserver.LuaJIT64, map[string]string{
		"lua/autorun/server/realtime_example.lua": "examples/realtime_example.lua",
		"lua/autorun/server/admin_commands.lua":   "examples/admin-commands/lua/autorun/server/admin_commands.lua",
		"cfg/realtime.toml":                       "realtime.toml.example",
	})
	if err != nil {
		return err
	}
	say("server directory %s: the module in garrysmod/lua/bin, lua/autorun/server/realtime.lua,", root)
	say("  the example addons examples/realtime_example.lua and examples/admin-commands, and realtime.toml.example")
	say("  as garrysmod/cfg/realtime.toml, with the admin-commands stream route of examples/admin-commands added")
	say("  and server.id = \"ttt-1\" (a server reading streams names itself: its group is realtime:ttt-1)")

	port := 0
	redis, err := redistest.Launch(root)
	if err != nil {
		say("no Redis (%v): the module runs in local mode", err)
	} else {
		defer redis.Stop()
		port = redis.Port
		say("redis-server on %s", redis.Addr())
		data, _ := os.ReadFile(srv.ConfigPath())
		data = bytes.Replace(data, []byte("\n[redis]\n"), []byte(fmt.Sprintf("\n[redis]\nurl = %q\n", redis.URL())), 1)
		// a server reading streams names itself: its group is realtime:ttt-1 under any hostname
		data = bytes.Replace(data, []byte("\n[server]\n"), []byte("\n[server]\nid = \"ttt-1\"\n"), 1)
		data = bytes.Replace(data, []byte("\n[metrics]\n"), []byte("\n[metrics]\nheartbeat = \"1s\"\n"), 1)
		data = append(data, adminRoute...)
		if err := srv.WriteConfig(string(data)); err != nil {
			return err
		}
	}

	host := srv.Command(filepath.Join(repo, "tests/demo/demo.lua"), 66, time.Minute)
	host.Args = append(host.Args[:len(host.Args)-1], "-map", "ttt_demo", host.Args[len(host.Args)-1])
	out, err := host.StdoutPipe()
	if err != nil {
		return err
	}
	host.Stderr = host.Stdout
	say("starting the server: build/host-luajit on map ttt_demo, 66 ticks/s")
	if err := host.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		switch line {
		case "demo:burst":
			say("redis-cli: publishing 1000 player:join events (JSON), 5 on player:debug:x (excluded) and 1 on chat:admin")
			var b bytes.Buffer
			for i := 1; i <= 1000; i++ {
				resp(&b, "PUBLISH", "player:join", fmt.Sprintf(`{"name":"player%d","score":%d}`, i, i*10))
			}
			for i := 0; i < 5; i++ {
				resp(&b, "PUBLISH", "player:debug:x", "{}")
			}
			resp(&b, "PUBLISH", "chat:admin", "hello from the web panel")
			if err := redisCLI(port, &b); err != nil {
				return err
			}
		case "demo:reload":
			say("adding a route to garrysmod/cfg/realtime.toml: news:* -> OnNews")
			f, err := os.OpenFile(srv.ConfigPath(), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, _ = f.WriteString("\n[[routes]]\nname = \"news\"\npattern = \"news:*\"\nhandler = \"OnNews\"\n")
			f.Close()
		case "demo:news":
			say("redis-cli: PUBLISH news:today ...")
			var b bytes.Buffer
			resp(&b, "PUBLISH", "news:today", "routes change without reconnecting")
			if err := redisCLI(port, &b); err != nil {
				return err
			}
		case "demo:ops":
			if err := ops(repo, srv.ConfigPath(), port); err != nil {
				return err
			}
		default:
			fmt.Println("server | " + line)
		}
	}
	if err := host.Wait(); err != nil {
		return fmt.Errorf("the server failed: %v", err)
	}
	if port != 0 {
		if err := durable(repo, srv); err != nil {
			return err
		}
	} else {
		say("(no Redis: the durable delivery part, a command sent while the server is down, needs redis-server)")
	}
	say("the server directory is in %s", root)
	return nil
}

// adminRoute is the stream route of examples/admin-commands/realtime.toml.
const adminRoute = `
[[routes]]
name = "admin-commands"
stream = "admin:commands"
handler = "OnAdminCommand"
decode = "json"
max_deliveries = 3
`

// durable shows durable delivery: with the server stopped, a command is
// appended to the admin:commands stream (realtimectl append), waits there
// (realtimectl streams), and the server handles it when it starts again.
func durable(repo string, srv *gmodserver.Server) error {
	ctl := func(args ...string) error {
		cmd := exec.Command(filepath.Join(repo, "build", "realtimectl"), args...)
		cmd.Env = append(os.Environ(), "REALTIME_CONFIG="+srv.ConfigPath())
		out, err := cmd.CombinedOutput()
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			fmt.Println("realtimectl | " + l)
		}
		if err != nil {
			return fmt.Errorf("realtimectl %s: %v", args[0], err)
		}
		return nil
	}
	fmt.Println()
	say("durable delivery: the server is stopped now. A web panel sends an admin command to the stream")
	say("  admin:commands (a stream route, not a channel, so it is kept for the server):")
	say(`realtimectl append admin:commands '{"cmd":"say","text":"restart in 5 minutes"}'`)
	if err := ctl("append", "admin:commands", `{"cmd":"say","text":"restart in 5 minutes"}`); err != nil {
		return err
	}
	say("realtimectl streams   (the command waits: not yet read by the server's group realtime:<server id>)")
	if err := ctl("streams"); err != nil {
		return err
	}
	say("starting the server again")
	host := srv.Command(filepath.Join(srv.Repo, "tests/demo/durable.lua"), 66, time.Minute)
	host.Args = append(host.Args[:len(host.Args)-1], "-map", "ttt_demo", host.Args[len(host.Args)-1])
	out, err := host.CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fmt.Println("server | " + l)
	}
	if err != nil {
		return fmt.Errorf("the server failed: %v", err)
	}
	say("realtimectl streams   (handled and acknowledged: nothing pending)")
	if err := ctl("streams"); err != nil {
		return err
	}
	say("the command sent while the server was down was handled when it came back")
	return nil
}

// resp appends one command in the Redis protocol, for redis-cli --pipe.
func resp(b *bytes.Buffer, args ...string) {
	fmt.Fprintf(b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(b, "$%d\r\n%s\r\n", len(a), a)
	}
}

func redisCLI(port int, in *bytes.Buffer) error {
	cmd := exec.Command("redis-cli", "-p", strconv.Itoa(port), "--pipe")
	cmd.Stdin = in
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli: %v: %s", err, out)
	}
	return nil
}

// ops shows realtimectl on the running server's config: a tail of
// player:* while redis-cli publishes three events, then the servers'
// heartbeats; then it tells the server to finish.
func ops(repo, config string, port int) error {
	ctl := func(args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(repo, "build", "realtimectl"), args...)
		cmd.Env = append(os.Environ(), "REALTIME_CONFIG="+config)
		return cmd
	}
	patterns := func() string {
		out, _ := exec.Command("redis-cli", "-p", strconv.Itoa(port), "PUBSUB", "NUMPAT").Output()
		return string(bytes.TrimSpace(out))
	}
	before := patterns()
	say("realtimectl tail -n 3 'player:*'   (reads the server's realtime.toml through REALTIME_CONFIG)")
	tail := ctl("tail", "-n", "3", "player:*")
	var out bytes.Buffer
	tail.Stdout, tail.Stderr = &out, &out
	if err := tail.Start(); err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); patterns() == before && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	var b bytes.Buffer
	resp(&b, "PUBLISH", "player:join", `{"name":"Alice","team":2}`)
	resp(&b, "PUBLISH", "player:join", `{"name":"Bob","team":1}`)
	resp(&b, "PUBLISH", "player:debug:dump", "raw bytes \x00\xff\n") // excluded from the route, seen by tail
	if err := redisCLI(port, &b); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- tail.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("realtimectl tail: %v: %s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		_ = tail.Process.Kill()
		return fmt.Errorf("realtimectl tail: no messages: %s", out.String())
	}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		fmt.Println("realtimectl | " + l)
	}
	say("realtimectl servers")
	servers, err := ctl("servers").CombinedOutput()
	if err != nil {
		return fmt.Errorf("realtimectl servers: %v: %s", err, servers)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(servers)), "\n") {
		fmt.Println("realtimectl | " + l)
	}
	b.Reset()
	resp(&b, "PUBLISH", "demo:ops-done", "")
	return redisCLI(port, &b)
}
