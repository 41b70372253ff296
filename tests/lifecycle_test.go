package tests

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestRedisRestart kills redis-server while events flow and restarts it on
// the same port (tests/lua/restart.lua).
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := NewServer(t, luajit64, redisConfig(srv, ""))
	r := s.Start("restart.lua", 66, 60*time.Second)
	r.WaitLine(t, "phase:kill", 10*time.Second)
	srv.Kill()
	r.WaitLine(t, "phase:restart", 10*time.Second)
	srv.Restart()
	out := r.Wait(t)
	assert.Contains(t, out, "restart: ok")
}

// publishLoop publishes to the channels, round robin, at about perSecond
// until stop is closed or limit messages were sent.
func publishLoop(t *testing.T, srv *redistest.Server, perSecond, limit int, channels ...string) (stop func() int) {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	done := make(chan struct{})
	var wg sync.WaitGroup
	sent := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for sent < limit {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			p := c.Pipeline()
			for i := 0; i < perSecond/100 && sent < limit; i++ {
				p.Publish(context.Background(), channels[sent%len(channels)], strconv.Itoa(sent))
				sent++
			}
			_, _ = p.Exec(context.Background())
		}
	}()
	var once sync.Once
	stop = func() int {
		once.Do(func() { close(done); wg.Wait(); c.Close() })
		return sent
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestMapChanges changes map 200 times with traffic flowing: no crash, the
// registry, goroutines and RSS stay flat, and no event is lost across a
// change (tests/lua/mapchange.lua).
func TestMapChanges(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := NewServer(t, luajit64, redisConfig(srv, "[[routes]]\nname = \"named\"\nchannel = \"traffic:named\"\nhandler = \"OnNamed\"\n"))
	stop := publishLoop(t, srv, 2000, 400_000, "traffic:x", "traffic:named")
	out := s.Start("mapchange.lua", 200, 120*time.Second, "MAPS="+mapsEnv()).Wait(t)
	sent := stop()
	assert.Contains(t, out, "mapchange: ok")
	t.Logf("%d messages published during the run", sent)
	for _, line := range splitLines(out) {
		if len(line) > 5 && line[:5] == "maps " {
			t.Log(line)
		}
	}
}

// mapsEnv is the map count of TestMapChanges: 200, or $TEST_MAPS for a
// longer leak hunt.
func mapsEnv() string {
	if n := os.Getenv("TEST_MAPS"); n != "" {
		return n
	}
	return "200"
}
