// Package gmodserver lays out a Garry's Mod server directory (garrysmod/lua/bin,
// autorun, cfg) around the built module and runs the GMod-like host of
// tests/host in it. The end-to-end tests, the demo and the benchmarks share
// it.
package gmodserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Host is one way of running the module: a host binary in build/ and the
// module file GMod would load on that branch.
type Host struct {
	Name   string
	Binary string
	Module string   // file name in build/ and garrysmod/lua/bin
	Prefix []string // command in front of the binary (qemu)
	Env    []string
	// FrameOrder is the host's -frame-order: "" runs a frame as GMod does
	// (Think, then the timers), "timers-first" the timers before Think.
	FrameOrder string
}

// TimersFirst is h running the timers before Think in each frame: code that
// must not depend on GMod's frame order runs on both.
func (h Host) TimersFirst() Host {
	h.Name += "-timers-first"
	h.FrameOrder = "timers-first"
	return h
}

// The hosts `make hosts` builds.
var (
	LuaJIT64 = Host{Name: "luajit64", Binary: "host-luajit", Module: "gmsv_realtime_linux64.dll"}
	// 32-bit under qemu-user: this kernel cannot run i386 binaries, and the
	// Go runtime needs async preemption off under qemu.
	LuaJIT32 = Host{Name: "luajit32", Binary: "host-luajit32", Module: "gmsv_realtime_linux.dll",
		Prefix: []string{"qemu-i386", "-L", "/"}, Env: []string{"GODEBUG=asyncpreemptoff=1"}}
	Lua51 = Host{Name: "lua51", Binary: "host-lua51", Module: "gmsv_realtime_linux64.dll"}
)

// Repo finds the repository root: the nearest directory above the working
// directory with a go.mod.
func Repo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// BuildDir is where the module and hosts are: $REALTIME_BUILD_DIR (the
// sanitizer build of `make sanitize`), else repo/build.
func BuildDir(repo string) string {
	if d := os.Getenv("REALTIME_BUILD_DIR"); d != "" {
		return d
	}
	return filepath.Join(repo, "build")
}

// Server is a server directory: Root holds garrysmod/.
type Server struct {
	Repo, Root string
	Host       Host
}

// New lays out root/garrysmod for h: the module (a link to build/), the
// glue in lua/autorun/server, and files (path under garrysmod -> source path
// in the repository) copied in.
func New(repo, root string, h Host, files map[string]string) (*Server, error) {
	gm := filepath.Join(root, "garrysmod")
	for _, d := range []string{"lua/bin", "lua/autorun/server", "cfg"} {
		if err := os.MkdirAll(filepath.Join(gm, d), 0o755); err != nil {
			return nil, err
		}
	}
	module := filepath.Join(BuildDir(repo), h.Module)
	if _, err := os.Stat(module); err != nil {
		return nil, fmt.Errorf("%s: build it with make module-all", module)
	}
	if err := os.Symlink(module, filepath.Join(gm, "lua/bin", h.Module)); err != nil {
		return nil, err
	}
	all := map[string]string{"lua/autorun/server/realtime.lua": "lua/autorun/server/realtime.lua"}
	for dst, src := range files {
		all[dst] = src
	}
	for dst, src := range all {
		data, err := os.ReadFile(filepath.Join(repo, src))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(gm, dst), data, 0o644); err != nil {
			return nil, err
		}
	}
	return &Server{Repo: repo, Root: root, Host: h}, nil
}

// ConfigPath is garrysmod/cfg/realtime.toml.
func (s *Server) ConfigPath() string { return filepath.Join(s.Root, "garrysmod/cfg/realtime.toml") }

// WriteConfig replaces garrysmod/cfg/realtime.toml.
func (s *Server) WriteConfig(toml string) error {
	return os.WriteFile(s.ConfigPath(), []byte(toml), 0o644)
}

// Command is the host running script (a path) at tickrate ticks per second
// (0: as fast as it can), failing after timeout. The environment is only
// PATH, HOME, the sanitizers' options and env: the developer's REDIS_*
// must not leak in.
func (s *Server) Command(script string, tickrate int, timeout time.Duration, env ...string) *exec.Cmd {
	args := append(append([]string{}, s.Host.Prefix...), filepath.Join(BuildDir(s.Repo), s.Host.Binary),
		"-env", filepath.Join(s.Repo, "tests/gmod/env.lua"),
		"-tickrate", fmt.Sprint(tickrate), "-timeout", fmt.Sprint(timeout.Seconds()))
	if s.Host.FrameOrder != "" {
		args = append(args, "-frame-order", s.Host.FrameOrder)
	}
	args = append(args, script)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = s.Root
	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.Root}
	for _, k := range []string{"ASAN_OPTIONS", "UBSAN_OPTIONS"} {
		if v, ok := os.LookupEnv(k); ok {
			base = append(base, k+"="+v)
		}
	}
	cmd.Env = append(append(base, s.Host.Env...), env...)
	return cmd
}

// Process is a running host. Its output (stdout and stderr) is kept whole
// for Output and also sent, line by line, to Lines; a line is left out of
// Lines, never out of Output, when 4,096 are waiting unread.
type Process struct {
	Cmd   *exec.Cmd
	Lines chan string
	done  chan struct{}
	err   error
	mu    sync.Mutex
	out   strings.Builder
}

// Start runs script in the host (see Command).
func (s *Server) Start(script string, tickrate int, timeout time.Duration, env ...string) (*Process, error) {
	cmd := s.Command(script, tickrate, timeout, env...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &Process{Cmd: cmd, Lines: make(chan string, 4096), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			p.mu.Unlock()
			select {
			case p.Lines <- line:
			default:
			}
		}
		_, _ = io.Copy(io.Discard, pr)
		close(p.done)
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
	}()
	return p, nil
}

// Done is closed once the host has exited and all its output was read.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the host exited (nil: status 0); valid once Done is closed.
func (p *Process) Err() error { return p.err }

// Output is everything the host printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitLine returns the next line from Lines that starts with prefix; it
// fails when the host exits first or after timeout.
func (p *Process) WaitLine(prefix string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case line := <-p.Lines:
			if strings.HasPrefix(line, prefix) {
				return line, nil
			}
		case <-p.done:
			return "", fmt.Errorf("host exited (%v) before printing %q:\n%s", p.err, prefix, p.Output())
		case <-deadline:
			return "", fmt.Errorf("no line %q after %s:\n%s", prefix, timeout, p.Output())
		}
	}
}

// Kill stops the host and waits until its output is read.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}
