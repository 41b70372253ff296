package api

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// maxLogLines bounds the log lines waiting for the main thread (a map
// change, a hibernating server without a pump); the router's log.rate
// keeps the steady flow far below it.
const maxLogLines = 256

// logQueue holds log lines from any goroutine until the main thread prints
// them: only the main thread may call into Lua. Safe for concurrent use.
type logQueue struct {
	mu      sync.Mutex
	lines   []logLine
	lost    int
	counter *atomic.Int64 // lines waiting, read by the C shim
}

type logLine struct{ level, text string }

func (q *logQueue) add(level, text string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.lines) >= maxLogLines {
		if q.lost == 0 {
			q.counter.Add(1) // the note saying how many were lost
		}
		q.lost++
		return
	}
	q.lines = append(q.lines, logLine{level, text})
	q.counter.Add(1)
}

func (q *logQueue) take() (level, text string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.lines) == 0 {
		if q.lost == 0 {
			return "", "", false
		}
		n := q.lost
		q.lost = 0
		q.counter.Add(-1)
		return "warn", fmt.Sprintf("%d log lines were dropped while nothing printed them", n), true
	}
	l := q.lines[0]
	q.lines = q.lines[1:]
	if len(q.lines) == 0 {
		q.lines = nil
	}
	q.counter.Add(-1)
	return l.level, l.text, true
}
