package redisbus

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// faults is what a faultProxy does to one connection.
type faults struct {
	// cutDown/cutUp reset the connection once this many bytes went from
	// the server to the client / the client to the server (0: never).
	cutDown, cutUp int64
	// split delivers each reply from the server in pieces of up to this
	// many bytes, flushed one by one (0: whole).
	split int
	// dupSubscribe sends each subscribe confirmation twice, as a PubSub
	// that re-established its connection behind its owner's back does.
	dupSubscribe bool
	// stallAfter stops forwarding server replies for stall after this many
	// replies (stall 0: never).
	stallAfter int
	stall      time.Duration
}

// faultProxy forwards TCP connections from a loopback port to a Redis
// server, doing to the n-th connection (0-based) what plan(n) says. It
// reads the server's side as RESP frames, so a fault can act on whole
// replies.
type faultProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	plan   func(n int) faults

	mu     sync.Mutex
	n      int
	conns  []net.Conn
	healed bool
	resets []func() // of the connections with faults
	all    []func() // of every connection
	wg     sync.WaitGroup
}

// cut resets every connection open now.
func (p *faultProxy) cut() {
	p.mu.Lock()
	all := p.all
	p.all = nil
	p.mu.Unlock()
	for _, reset := range all {
		reset()
	}
}

// heal ends the faults: connections that have some are reset, and new
// ones get none.
func (p *faultProxy) heal() {
	p.mu.Lock()
	p.healed = true
	resets := p.resets
	p.resets = nil
	p.mu.Unlock()
	for _, reset := range resets {
		reset()
	}
}

func startProxy(t *testing.T, target string, plan func(n int) faults) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, ln: ln, target: target, plan: plan}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

// Conns is how many connections the proxy accepted.
func (p *faultProxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *faultProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		reset := sync.OnceFunc(func() {
			if tc, ok := client.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = client.Close()
			_ = server.Close()
		})
		p.mu.Lock()
		var f faults
		if !p.healed {
			f = p.plan(p.n)
		}
		if f != (faults{}) {
			p.resets = append(p.resets, reset)
		}
		p.all = append(p.all, reset)
		p.n++
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); defer reset(); p.up(client, server, f) }()
		go func() { defer p.wg.Done(); defer reset(); p.down(server, client, f) }()
	}
}

// up copies the client's commands to the server.
func (p *faultProxy) up(client, server net.Conn, f faults) {
	if f.cutUp <= 0 {
		_, _ = io.Copy(server, client)
		return
	}
	_, _ = io.CopyN(server, client, f.cutUp)
}

// down copies the server's replies to the client, frame by frame.
func (p *faultProxy) down(server, client net.Conn, f faults) {
	rd := bufio.NewReader(server)
	var sent int64
	for replies := 0; ; replies++ {
		frame, err := readFrame(rd)
		if err != nil {
			return
		}
		if f.stall > 0 && replies == f.stallAfter {
			time.Sleep(f.stall)
		}
		out := frame
		if f.dupSubscribe && isSubscribeReply(frame) {
			out = append(append([]byte(nil), frame...), frame...)
		}
		for len(out) > 0 {
			n := len(out)
			if f.split > 0 {
				n = min(n, f.split)
			}
			if f.cutDown > 0 && sent+int64(n) >= f.cutDown {
				_, _ = client.Write(out[:f.cutDown-sent])
				return
			}
			if _, err := client.Write(out[:n]); err != nil {
				return
			}
			sent += int64(n)
			out = out[n:]
		}
	}
}

func isSubscribeReply(frame []byte) bool {
	const prefix = "*3\r\n$9\r\nsubscribe\r\n"
	return len(frame) > len(prefix) && string(frame[:len(prefix)]) == prefix
}

// readFrame reads one RESP2 value and returns its bytes.
func readFrame(rd *bufio.Reader) ([]byte, error) {
	line, err := rd.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 {
		return nil, errors.New("short RESP line")
	}
	switch line[0] {
	case '+', '-', ':':
		return line, nil
	case '$':
		n, err := strconv.Atoi(string(line[1 : len(line)-2]))
		if err != nil || n < 0 {
			return line, err
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(rd, body); err != nil {
			return nil, err
		}
		return append(line, body...), nil
	case '*':
		n, err := strconv.Atoi(string(line[1 : len(line)-2]))
		if err != nil {
			return nil, err
		}
		for i := 0; i < n; i++ {
			sub, err := readFrame(rd)
			if err != nil {
				return nil, err
			}
			line = append(line, sub...)
		}
		return line, nil
	}
	return nil, fmt.Errorf("unknown RESP type %q", line[0])
}
