// Command demo is `make demo`: it runs the module in the GMod-like host
// against a throwaway redis-server, with the routes of realtime.toml.example
// and the example addon, publishes a burst with redis-cli, and shows the
// handlers, a rate limit, a live Reload and the stats. Without
// redis-server it runs in local mode and says so.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("demo   | "+format+"\n", args...) }

func run() error {
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	root := filepath.Join(repo, "build", "demo")
	_ = os.RemoveAll(root)
	gm := filepath.Join(root, "garrysmod")
	for _, d := range []string{"lua/bin", "lua/autorun/server", "cfg"} {
		if err := os.MkdirAll(filepath.Join(gm, d), 0o755); err != nil {
			return err
		}
	}
	for src, dst := range map[string]string{
		"build/gmsv_realtime_linux64.dll": "lua/bin/gmsv_realtime_linux64.dll",
		"lua/autorun/server/realtime.lua": "lua/autorun/server/realtime.lua",
		"examples/realtime_example.lua":   "lua/autorun/server/realtime_example.lua",
		"realtime.toml.example":           "cfg/realtime.toml",
	} {
		data, err := os.ReadFile(filepath.Join(repo, src))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(gm, dst), data, 0o644); err != nil {
			return err
		}
		say("installed %-36s -> garrysmod/%s", src, dst)
	}

	port, stop, err := startRedis(root)
	if err != nil {
		say("no Redis (%v): the module runs in local mode", err)
	} else {
		defer stop()
		say("redis-server on 127.0.0.1:%d", port)
		cfg := filepath.Join(gm, "cfg/realtime.toml")
		data, _ := os.ReadFile(cfg)
		data = bytes.Replace(data, []byte("\n[redis]\n"), []byte(fmt.Sprintf("\n[redis]\nurl = \"redis://127.0.0.1:%d\"\n", port)), 1)
		if err := os.WriteFile(cfg, data, 0o644); err != nil {
			return err
		}
	}

	host := exec.Command(filepath.Join(repo, "build/host-luajit"), "-env", filepath.Join(repo, "tests/gmod/env.lua"),
		"-tickrate", "66", "-timeout", "60", "-map", "ttt_demo", filepath.Join(repo, "tests/demo/demo.lua"))
	host.Dir = root
	host.Env = []string{"PATH=" + os.Getenv("PATH")}
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
			f, err := os.OpenFile(filepath.Join(gm, "cfg/realtime.toml"), os.O_APPEND|os.O_WRONLY, 0)
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
		default:
			fmt.Println("server | " + line)
		}
	}
	if err := host.Wait(); err != nil {
		return fmt.Errorf("the server failed: %v", err)
	}
	say("the server directory is in %s", root)
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

// startRedis runs a throwaway redis-server on a free loopback port.
func startRedis(dir string) (int, func(), error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return 0, nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
			c.Close()
			return port, stop, nil
		}
	}
	stop()
	return 0, nil, fmt.Errorf("redis-server did not start")
}
