package router

import (
	"fmt"
	"sync"
	"testing"

	"github.com/gmod-realtime/realtime/config"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// planBackend follows the plan as a backend does (Start sets it, Update
// applies diffs) and holds Start until released.
type planBackend struct {
	sinkBackend
	mu            sync.Mutex
	want          Plan
	started       bool
	updateEarly   bool
	inStart, free chan struct{}
}

func newPlanBackend() *planBackend {
	return &planBackend{inStart: make(chan struct{}), free: make(chan struct{})}
}

func (b *planBackend) Start(s Sink, p Plan) {
	close(b.inStart)
	<-b.free
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sink, b.want, b.started = s, p, true
}

func (b *planBackend) Update(d PlanDiff) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.updateEarly = b.updateEarly || !b.started
	b.want = b.want.Apply(d)
}

// TestRouteAddedWhileBackendStarts: a route added by another goroutine
// while Attach or Replace is starting the backend reaches it (the backend
// subscribes to it), and the backend never gets an Update before Start.
func TestRouteAddedWhileBackendStarts(t *testing.T) {
	for _, replace := range []bool{false, true} {
		t.Run(fmt.Sprintf("replace=%v", replace), func(t *testing.T) {
			r, err := New(parseConfig(t, "[[routes]]\nname = \"a\"\nchannel = \"a\"\nhandler = \"h\"\n"))
			require.NoError(t, err)
			if replace {
				r.Attach(&sinkBackend{})
			}
			b := newPlanBackend()
			done := make(chan struct{})
			go func() {
				defer close(done)
				if replace {
					r.Replace(b)
				} else {
					r.Attach(b)
				}
			}()
			<-b.inStart
			_, err = r.On(config.Route{Name: "dyn", Channel: "dyn:ch", Handler: "h"})
			require.NoError(t, err)
			close(b.free)
			<-done
			b.mu.Lock()
			defer b.mu.Unlock()
			assert.False(t, b.updateEarly, "Update before Start")
			assert.Contains(t, b.want.Channels, "dyn:ch", "the route added during Start is in the backend's plan")
			assert.Equal(t, r.Plan().Channels, b.want.Channels)
		})
	}
}
