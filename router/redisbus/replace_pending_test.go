package redisbus

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
)

// blackhole accepts TCP connections and never answers.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// TestRouteAddedWhileAReplaceConnects (found by an attacker of issue 12):
// while a Reload's new connection is still connecting, the old one
// delivers; a route added then (realtime.On, or a Reload of the routes)
// was subscribed on the new connection only, whose messages are not used
// yet, so the route got nothing from the old one until the new one took
// over: its events were lost for as long as connecting took.
func TestRouteAddedWhileAReplaceConnects(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	h := newHarness(t, srv, "[[routes]]\nname = \"own\"\nchannel = \"own\"\nhandler = \"h\"\n")
	h.waitSubscribed()
	// The new settings point at a server that never answers: the new
	// connection stays connecting for the whole test.
	next, err := New(redisConfig(t, fmt.Sprintf("[redis]\nurl = \"redis://%s\"\nread_timeout = \"30s\"\nconnect_timeout = \"30s\"\n", blackhole(t))))
	require.NoError(t, err)
	h.bus.HandOver(next)
	h.r.Replace(next)
	_, err = h.r.On(config.Route{Name: "late", Channel: "late:x", Handler: "H"})
	require.NoError(t, err)
	h.waitFor("the late route's event", 8*time.Second, func() bool {
		c.Publish(ctx, "late:x", "1")
		return slicesContains(h.msgs, "late<-late:x=1")
	})
	require.Equal(t, []string{"connecting", "connected"}, h.statuses, "the old connection stays in use")
}
