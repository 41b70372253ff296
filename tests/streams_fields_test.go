package tests

import (
	"encoding/hex"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestStreamFieldsBytes: a decode = "fields" route hands Lua every field
// name and value byte for byte (invalid UTF-8, NUL bytes), as every
// payload is.
func TestStreamFieldsBytes(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	// start = "0": "ready" is only "connected", and the route's group may be
	// made after the entries are added ("$" would skip them)
	s := NewServer(t, luajit64, redisConfig(srv, "[[routes]]\nname = \"cmds\"\nstream = \"cmds\"\nhandler = \"OnCmd\"\ndecode = \"fields\"\nstart = \"0\"\n"))
	r := s.Start("streams_fields.lua", 66, 60*time.Second)
	r.WaitLine(t, "fields: ready", 30*time.Second)
	id := xadd(t, rc, "a\xff", "\x00\xfe\x80z", "b", "plain")
	xadd(t, rc, "stop", "1")
	out := r.Wait(t)
	h := hex.EncodeToString
	require.Contains(t, out, "fields "+id+" ", out)
	assert.Contains(t, out, "fields "+id+" "+h([]byte("a\xff"))+"="+h([]byte("\x00\xfe\x80z"))+" "+h([]byte("b"))+"="+h([]byte("plain"))+"\n")
}
