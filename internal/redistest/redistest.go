// Package redistest starts throwaway redis-server processes on loopback
// ports for tests, and stops them when the test ends.
//
// Ports come from a range the kernel never hands out by itself (below the
// ephemeral range, where listen(":0") and outgoing connections take theirs),
// and each is claimed with a lock file for the server's whole life, Restart
// included, so two test processes on one machine never share one. A server
// is ready when it answers on a unix socket only it knows, so a PONG from
// some other process on the same port is never taken for it.
//
// A missing redis-server fails the test (it is never skipped): `make test`
// installs it through scripts/deps.sh.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Ports are claimed in [portLow, portHigh). Redis Cluster's bus port is the
// port + 10000, so it falls in [22000, 32000): the two ranges are disjoint
// and both lie below the default ephemeral range (32768-60999).
const (
	portLow  = 12000
	portHigh = 22000
)

// Server is one redis-server process. Its methods are for the test goroutine.
type Server struct {
	t    testing.TB
	Port int
	Args []string // extra arguments, kept across Restart
	dir  string
	sock string   // the unix socket the readiness check uses
	own  string   // temporary directory of sock, removed by Stop
	lock *os.File // holds the claim on Port until Stop
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs redis-server on a claimed 127.0.0.1 port with persistence off
// and registers its shutdown with t.Cleanup. args are extra redis-server
// options such as "--requirepass", "secret".
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	s, err := Launch(t.TempDir(), args...)
	if err != nil {
		t.Fatalf("redis-server: %v (run scripts/deps.sh, or apt-get install redis-server)", err)
	}
	s.t = t
	t.Cleanup(s.Stop)
	return s
}

// Launch is Start outside a test (the demo, the benchmarks): the server's
// files go in dir, and the caller stops it with Stop.
func Launch(dir string, args ...string) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, err
	}
	s := &Server{Args: args, dir: dir}
	if i := slices.Index(args, "--unixsocket"); i >= 0 && i+1 < len(args) {
		s.sock = args[i+1] // the caller's own socket serves as well
	} else {
		own, err := os.MkdirTemp("", "redistest")
		if err != nil {
			return nil, err
		}
		s.own, s.sock = own, filepath.Join(own, "redis.sock")
	}
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if err = s.claimPort(); err != nil {
			break
		}
		if err = s.start(); err == nil {
			return s, nil
		}
		s.release() // taken by a process outside this package: try another
	}
	s.Stop()
	return nil, fmt.Errorf("did not start: %w", err)
}

// claimPort sets s.Port to a port in [portLow, portHigh) on which it holds
// an exclusive lock. The kernel drops the lock if the process dies, so a
// crashed test leaves no stale claim.
func (s *Server) claimPort() error {
	dir := filepath.Join(os.TempDir(), "redistest-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	first := portLow + rand.IntN(portHigh-portLow)
	for i := 0; i < portHigh-portLow; i++ {
		port := portLow + (first-portLow+i)%(portHigh-portLow)
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue
			}
			return err
		}
		s.Port, s.lock = port, f
		return nil
	}
	return fmt.Errorf("every port in [%d, %d) is claimed", portLow, portHigh)
}

// release gives up the claim on s.Port.
func (s *Server) release() {
	if s.lock != nil {
		s.lock.Close() // closing the last descriptor drops the flock
		s.lock = nil
	}
}

func (s *Server) start() error {
	args := append([]string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--unixsocket", s.sock,
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"),
	}, s.Args...)
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(s.done)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			s.cmd = nil
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("exited at start: %s", lastLines(string(log), 5))
		default:
		}
		// Redis serves no client before it has bound every listener, and
		// exits if it cannot bind its port: an answer on the unix socket
		// means this process is up and owns the port.
		if ping("unix", s.sock) == nil && ping("tcp", s.Addr()) == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Kill()
	return fmt.Errorf("no PONG on port %d within 10s", s.Port)
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the redis:// URL of the server, with no credentials.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// ping sends PING to the server at addr on network.
func ping(network, addr string) error {
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	// Accept -NOAUTH too: the server is up, it just wants a password.
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// Kill stops the server with SIGKILL and waits for it to exit.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// Stop kills the server and gives up its port; persistence is off, so
// there is nothing to flush.
func (s *Server) Stop() {
	s.Kill()
	s.release()
	if s.own != "" {
		_ = os.RemoveAll(s.own)
	}
}

// Restart starts the server again on the same port after Kill; the port
// stays claimed in between. Only for servers made by Start: it fails the
// test when it cannot.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.t.Fatalf("redis-server restart on port %d: %v", s.Port, err)
	}
}

// Pause freezes the server with SIGSTOP; Resume continues it.
func (s *Server) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a server frozen by Pause.
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// StartCluster starts a Redis Cluster of n masters on loopback
// (redis-cli --cluster create) and returns their addresses once every node
// reports cluster_state:ok.
func StartCluster(t testing.TB, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		addrs = append(addrs, Start(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000").Addr())
	}
	if out, err := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...), "--cluster-yes")...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v: %s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		for {
			out, _ := exec.Command("redis-cli", "-h", host, "-p", port, "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redis cluster %v: node %s not ok after 30 s: %s", addrs, a, out)
			}
			time.Sleep(50 * time.Millisecond) // polling the condition
		}
	}
	return addrs
}
