package redisbus

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// busyInstead is a command whose reply is an error reply BUSY, as Redis
// gives every command while a script runs past busy-reply-threshold: sent
// in place of one command of a pipeline, it makes that one command (and
// only it) "not now".
var busyInstead = []string{"eval", "return redis.error_reply('BUSY injected by the test')", "0"}

// editProxy forwards TCP connections to target, passing each command a
// client sends (its arguments) to edit first: a non-nil result is sent to
// the server in its place. One command stands for one, so the replies
// stay in order.
func editProxy(t *testing.T, target string, edit func(args []string) []string) string {
	return pipeProxy(t, target, func(cl, sv net.Conn) {
		go func() { _, _ = io.Copy(cl, sv); _ = cl.Close() }()
		defer sv.Close()
		rd := bufio.NewReader(cl)
		for {
			args, err := readArgs(rd)
			if err != nil {
				return
			}
			if e := edit(args); e != nil {
				args = e
			}
			var b strings.Builder
			fmt.Fprintf(&b, "*%d\r\n", len(args))
			for _, a := range args {
				fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
			}
			if _, err := io.WriteString(sv, b.String()); err != nil {
				return
			}
		}
	})
}

// readArgs reads one command (a RESP array of bulk strings).
func readArgs(rd *bufio.Reader) ([]string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[0] != '*' {
		return nil, fmt.Errorf("not a command: %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return nil, err
	}
	args := make([]string, n)
	for i := range args {
		h, err := rd.ReadString('\n')
		if err != nil {
			return nil, err
		}
		l, err := strconv.Atoi(strings.TrimSpace(h[1:]))
		if err != nil {
			return nil, err
		}
		b := make([]byte, l+2)
		if _, err := io.ReadFull(rd, b); err != nil {
			return nil, err
		}
		args[i] = string(b[:l])
	}
	return args, nil
}

// TestStreamSeedDuringBusy: the reader's first read of the stream's last
// entries (XREVRANGE, which fills the duplicate check's window) answered
// BUSY was taken for a refusal (an ACL without XREVRANGE): the window
// stayed empty for the reader's life, so a copy the spool sent again after
// a crash was handed out a second time.
func TestStreamSeedDuringBusy(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	xadd(t, c, "s", "rt_id", "a", "n", "first") // handled before this reader started
	var revs, reads atomic.Int32
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		switch strings.ToLower(args[0]) {
		case "xrevrange":
			if revs.Add(1) == 1 {
				return busyInstead
			}
		case "xreadgroup":
			reads.Add(1)
		}
		return nil
	})
	sink := newChanSink(16)
	r := startReader(t, addr, "srv1", []StreamSpec{{Stream: "s", Group: "g", Start: "$"}}, sink, StreamOptions{})
	waitUntil(t, "the reader reading new entries", 10*time.Second, func() bool { return reads.Load() > 0 })
	xadd(t, c, "s", "rt_id", "a", "n", "copy")
	xadd(t, c, "s", "rt_id", "b", "n", "next")
	e := recv(t, sink, 10*time.Second)
	assert.Equal(t, []string{"rt_id", "b", "n", "next"}, e.Fields, "the copy was handed out")
	assert.Equal(t, uint64(1), r.Stats()["s"].Duplicates)
	require.GreaterOrEqual(t, revs.Load(), int32(1))
}
