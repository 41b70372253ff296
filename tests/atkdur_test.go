package tests

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestAppendHostileArguments: odd streams and payloads from Lua end as an
// rt_id or an error, never a crash; the entries Append accepted arrive
// byte for byte.
func TestAppendHostileArguments(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	s := NewServer(t, luajit64, redisConfig(srv, ""))
	out := s.RunScript("atkdur_append.lua")
	require.Contains(t, out, "atk: done")
	require.Contains(t, out, "nul stream: test-1-")
	require.Contains(t, out, "big: true nil")
	require.Contains(t, out, "cycle: false bad argument #2 to 'Append' (payload.self: cannot encode a table that contains itself")
	require.Contains(t, out, "num: test-1-")
	ctx := context.Background()
	xs, err := rc.XRange(ctx, "a\x00b", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, xs, 1)
	require.Equal(t, "nul", xs[0].Values["data"])
	xs, err = rc.XRange(ctx, "big", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, xs, 1)
	require.Equal(t, strings.Repeat("x", 8<<20), xs[0].Values["data"])
}
