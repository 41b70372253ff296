package redisbus

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestBackoffSchedule: docs/ARCHITECTURE.md "Reconnect: exponential backoff with jitter":
// the wait before the n-th attempt in a row doubles from reconnect_min up
// to reconnect_max, and each wait is drawn at random from the upper half
// of its step, so servers that lost the same Redis do not all come back at
// once. The schedule is computed, not timed.
func TestBackoffSchedule(t *testing.T) {
	cfg, err := config.Parse("test.toml", []byte("[redis]\nhost = \"127.0.0.1\"\nreconnect_min = \"100ms\"\nreconnect_max = \"1s\"\n"))
	require.NoError(t, err)
	b, err := New(cfg.Redis)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.client.Close() })

	check := func(steps map[int]time.Duration) {
		t.Helper()
		for n, step := range steps {
			seen := map[time.Duration]bool{}
			lo, hi := step, time.Duration(0)
			for range 200 {
				d := b.backoff(n)
				require.GreaterOrEqual(t, d, step/2, "attempt %d: at least half its step", n)
				require.LessOrEqual(t, d, step, "attempt %d: at most its step", n)
				seen[d] = true
				lo, hi = min(lo, d), max(hi, d)
			}
			// 200 uniform draws over [step/2, step]: all in one quarter
			// has a probability of 2^-199.
			assert.Greater(t, len(seen), 100, "attempt %d: jittered", n)
			assert.Less(t, lo, step*3/4, "attempt %d: draws in the lower quarter", n)
			assert.Greater(t, hi, step*3/4, "attempt %d: draws in the upper quarter", n)
		}
	}
	ms := time.Millisecond
	check(map[int]time.Duration{0: 100 * ms, 1: 200 * ms, 2: 400 * ms, 3: 800 * ms, 4: time.Second, 5: time.Second, 1000: time.Second})

	// Reload changes the backoff on the live connection (Reconfigure).
	cfg2, err := config.Parse("test.toml", []byte("[redis]\nhost = \"127.0.0.1\"\nreconnect_min = \"1s\"\nreconnect_max = \"3s\"\n"))
	require.NoError(t, err)
	require.True(t, b.Reconfigure(cfg2.Redis), "the backoff changes without a new connection")
	check(map[int]time.Duration{0: time.Second, 1: 2 * time.Second, 2: 3 * time.Second, 40: 3 * time.Second})
}

// shortTempDir is a directory for unix sockets, whose paths are limited to
// about 100 bytes (t.TempDir() can be longer).
func shortTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "rt")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// TestUnixSocket: docs/CONFIG.md "url = unix:///path.sock": the bus
// subscribes, receives and publishes over a unix socket, and comes back
// over it after Redis restarts.
func TestUnixSocket(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "redis.sock")
	srv := redistest.Start(t, "--unixsocket", sock, "--unixsocketperm", "700")
	h := startHarness(t, fmt.Sprintf("[redis]\nurl = \"unix://%s\"\nread_timeout = \"300ms\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\n%s", sock, routes))
	assert.Equal(t, "unix://"+sock, h.bus.cfg.Target())
	h.waitStatus("connected")
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: sock, Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()

	// The bus's subscriber is a unix-socket client, not a TCP one.
	var subscriber, clients string
	require.Eventually(t, func() bool {
		clients = c.ClientList(ctx).Val()
		for _, line := range strings.Split(clients, "\n") {
			if strings.Contains(line, " sub=1 psub=2 ") { // the routes: player:spawn; player:*, *:spawn
				subscriber = line
			}
		}
		return subscriber != ""
	}, 10*time.Second, 5*time.Millisecond, "a subscribed client in:\n%s", clients)
	assert.Contains(t, subscriber, "addr="+sock, "the subscription is on the socket")

	h.publish(c, "player:death", "over the socket", 1)
	assert.Equal(t, []string{"players<-player:death=over the socket"}, h.msgs)

	sub := c.Subscribe(ctx, "out")
	t.Cleanup(func() { _ = sub.Close() })
	_, err := sub.Receive(ctx)
	require.NoError(t, err)
	require.NoError(t, h.r.Publish("out", "from the bus"))
	m, err := sub.ReceiveMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, "from the bus", m.Payload)

	srv.Kill()
	h.waitStatus("disconnected")
	srv.Restart()
	h.waitStatus("connected")
	h.publish(c, "player:death", "after the restart", 2)
	assert.Equal(t, "players<-player:death=after the restart", h.msgs[1])
}

// TestOutboxBytesBound: docs/ARCHITECTURE.md "a bounded outbox (10,000 messages / 8 MiB
// by default) ... past the bound Publish returns false, err": the byte
// bound holds on its own, far below the message bound, and frees up once
// Redis is back and the outbox is flushed.
func TestOutboxBytesBound(t *testing.T) {
	srv := redistest.Start(t)
	h := newHarness(t, srv, "[[routes]]\nname = \"log\"\nchannel = \"log\"\nhandler = \"h\"\n", `outbox_bytes = "100B"`)
	h.waitStatus("connected")
	srv.Kill()
	h.waitStatus("disconnected")

	fifty := strings.Repeat("x", 47) // with the channel name "log": 50 bytes
	require.NoError(t, h.r.Publish("log", fifty))
	require.NoError(t, h.r.Publish("log", fifty))
	assert.ErrorIs(t, h.r.Publish("log", "y"), ErrOutboxFull, "101 bytes")
	assert.ErrorIs(t, h.r.Publish("log", ""), ErrOutboxFull, "the channel name counts too")
	assert.Equal(t, 2, h.bus.OutboxLen())
	assert.Equal(t, uint64(2), h.r.Stats.PublishFails.Load(), "refused publishes are counted")

	srv.Restart()
	h.waitFor("the outbox flushed", 20*time.Second, func() bool { return len(h.msgs) == 2 && h.bus.OutboxLen() == 0 })
	require.NoError(t, h.r.Publish("log", fifty), "room again")
	h.waitFor("the third message", 10*time.Second, func() bool { return len(h.msgs) == 3 })
	assert.Equal(t, []string{"log<-log=" + fifty, "log<-log=" + fifty, "log<-log=" + fifty}, h.msgs)
}

// sentinel is a redis-server --sentinel process.
type sentinel struct {
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// claimPort takes a port the way internal/redistest does (a lock file in
// the same directory, held for the process's life), so the sentinel never
// shares a port with a test server of any process.
func claimPort(t *testing.T) int {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "redistest-ports")
	require.NoError(t, os.MkdirAll(dir, 0o777))
	for port := 12000 + int(time.Now().UnixNano()%10000); ; port = 12000 + (port-12000+7919)%10000 {
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
		require.NoError(t, err)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			require.True(t, errors.Is(err, syscall.EWOULDBLOCK), "flock: %v", err)
			continue
		}
		t.Cleanup(func() { f.Close() })
		return port
	}
}

// startSentinel runs a Sentinel that monitors the master at masterPort as
// "mymaster", with a quorum of 1 and a short down-after, so that a killed
// master is failed over in seconds.
func startSentinel(t *testing.T, masterPort int) *sentinel {
	t.Helper()
	dir := t.TempDir()
	for attempt := 0; ; attempt++ {
		s := &sentinel{port: claimPort(t), done: make(chan struct{})}
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", attempt))
		require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %s
logfile %s
sentinel monitor mymaster 127.0.0.1 %d 1
sentinel down-after-milliseconds mymaster 300
sentinel failover-timeout mymaster 5000
`, s.port, dir, filepath.Join(dir, "sentinel.log"), masterPort)), 0o644))
		s.cmd = exec.Command("redis-server", conf, "--sentinel")
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		require.NoError(t, s.cmd.Start())
		go func() { _ = s.cmd.Wait(); close(s.done) }()
		t.Cleanup(func() { _ = s.cmd.Process.Kill(); <-s.done })
		if s.ready() {
			return s
		}
		_ = s.cmd.Process.Kill()
		<-s.done
		log, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
		require.Less(t, attempt, 5, "redis-server --sentinel did not start:\n%s", log)
	}
}

// ready waits for the sentinel's PONG, or its exit.
func (s *sentinel) ready() bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", s.addr(), time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte("PING\r\n"))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func (s *sentinel) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// TestSentinelFailover: docs/CONFIG.md "Sentinel: addrs of the Sentinels plus
// master_name": the bus finds the master through a Sentinel, and when the
// master dies and the Sentinel promotes its replica, the bus follows the
// new master: it reconnects there, subscribes again, and publishes there.
func TestSentinelFailover(t *testing.T) {
	ctx := context.Background()
	master := redistest.Start(t)
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	rc := client(t, replica)
	require.Eventually(t, func() bool {
		info, _ := rc.Info(ctx, "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	}, 20*time.Second, 10*time.Millisecond, "the replica syncs")

	s := startSentinel(t, master.Port)
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.addr(), Protocol: 2})
	t.Cleanup(func() { _ = sc.Close() })
	// The Sentinel learns of the replica from the master; it can only
	// promote a replica it knows.
	require.Eventually(t, func() bool {
		replicas, err := sc.Replicas(ctx, "mymaster").Result()
		if err != nil {
			return false
		}
		for _, r := range replicas {
			if r["port"] == strconv.Itoa(replica.Port) && r["flags"] == "slave" && r["master-link-status"] == "ok" {
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "the Sentinel knows the replica")

	h := startHarness(t, fmt.Sprintf("[redis]\naddrs = [%q]\nmaster_name = \"mymaster\"\nread_timeout = \"300ms\"\nreconnect_min = \"50ms\"\nreconnect_max = \"300ms\"\n%s", s.addr(), routes))
	assert.Equal(t, "sentinel mymaster via "+s.addr(), h.bus.cfg.Target())
	h.waitStatus("connected")
	mc := client(t, master)
	h.publish(mc, "player:death", "on the first master", 1)

	master.Kill()
	h.waitStatus("disconnected")
	require.Eventually(t, func() bool {
		addr, err := sc.GetMasterAddrByName(ctx, "mymaster").Result()
		return err == nil && addr[1] == strconv.Itoa(replica.Port)
	}, 60*time.Second, 20*time.Millisecond, "the Sentinel promotes the replica")
	h.waitStatus("connected")

	// Events published on the new master arrive...
	n := len(h.msgs)
	h.publish(rc, "player:death", "on the new master", n+1)
	assert.Equal(t, "players<-player:death=on the new master", h.msgs[n])
	// ... and the bus publishes there.
	sub := rc.Subscribe(ctx, "out")
	t.Cleanup(func() { _ = sub.Close() })
	_, err := sub.Receive(ctx)
	require.NoError(t, err)
	require.NoError(t, h.r.Publish("out", "to the new master"))
	m, err := sub.ReceiveMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, "to the new master", m.Payload)
}
