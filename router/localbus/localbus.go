// Package localbus is the in-process router.Backend: the embedded default
// when no Redis is configured. Publish hands the message to a goroutine that
// delivers it back to the router, so realtime.On and realtime.Publish work
// on one server with no Redis, with the same asynchronous behaviour.
package localbus

import (
	"errors"
	"sync"

	"github.com/gmod-realtime/realtime/router"
)

// ErrFull is returned by Publish when the outbox is full.
var ErrFull = errors.New("localbus: outbox full")

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("localbus: closed")

type message struct{ channel, payload string }

// Bus is an in-process backend. Safe for concurrent use.
type Bus struct {
	outbox    chan message
	done      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
}

// New returns a bus whose outbox holds at most capacity messages.
func New(capacity int) *Bus {
	return &Bus{
		outbox:  make(chan message, max(capacity, 1)),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

// Start reports StatusLocal and starts delivering published messages to sink.
// The plan is not needed: every message goes to the router, which matches.
func (b *Bus) Start(sink router.Sink, _ router.Plan) {
	sink.SetStatus(router.StatusLocal, "")
	go func() {
		defer close(b.stopped)
		for {
			select {
			case m := <-b.outbox:
				sink.Deliver(m.channel, m.payload)
			case <-b.done:
				return
			}
		}
	}()
}

// Update does nothing: the local bus has no subscriptions.
func (b *Bus) Update(router.PlanDiff) {}

// Publish queues a message for delivery; it never blocks.
func (b *Bus) Publish(channel, payload string) error {
	select {
	case <-b.done:
		return ErrClosed
	default:
	}
	select {
	case b.outbox <- message{channel, payload}:
		return nil
	default:
		return ErrFull
	}
}

// ErrNoStreams is returned by Append: streams need Redis.
var ErrNoStreams = errors.New("localbus: streams need Redis (local mode has no streams)")

// Append is not supported in local mode.
func (b *Bus) Append(stream, payload string) (string, error) { return "", ErrNoStreams }

// Close stops the delivering goroutine; queued messages are discarded.
// It is idempotent.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() { close(b.done) })
	return nil
}

// Wait blocks until the goroutine started by Start has exited; for tests.
func (b *Bus) Wait() { <-b.stopped }
