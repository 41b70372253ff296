package main

import (
	"bufio"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestWebTailSlotsBackAfterRedisRestart: the live tails that end because
// Redis went away give their slots back, so that once Redis is back the
// pages' reconnecting tails are followed again instead of refused (429).
func TestWebTailSlotsBackAfterRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	hs := webTest(t, srv)
	ctx := ctxFor(t)
	ended := make(chan error, maxTails)
	for range maxTails {
		req, err := http.NewRequestWithContext(ctx, "GET", hs.URL+"/api/tail?pattern=chan*", nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		rd := bufio.NewReader(resp.Body)
		line, err := rd.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, ": subscribed\n", line)
		go func() {
			_, err := io.Copy(io.Discard, rd) // until the tail ends
			_ = resp.Body.Close()
			ended <- err
		}()
	}
	srv.Restart()
	for range maxTails {
		<-ended
	}
	req, err := http.NewRequestWithContext(ctx, "GET", hs.URL+"/api/tail?pattern=chan*", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "a tail refused once Redis was back")
}
