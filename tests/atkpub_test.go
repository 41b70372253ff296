package tests

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestPublishChannelCache runs tests/lua/attack_pubchannel.lua (seed
// printed; replay with PUBCHANNEL_SEED=n): Publish keeps the last channel
// to skip copying it again, and the writer boxes a run of one channel
// once. Channels of one length differing in a byte, collected between
// publishes, publishes from handlers and finalizers: every message reaches
// Redis on its own channel (its payload names it), once, in order.
func TestPublishChannelCache(t *testing.T) {
	for _, h := range hosts(luajit64, lua51, luajit32) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			seed := rand.Uint64() % 1e9
			t.Logf("seed %d", seed)
			srv := redistest.Start(t)
			sub := Subscribe(t, srv, "pc:*")
			s := NewServer(t, h, redisConfig(srv, "[dispatch]\nbudget = \"100ms\"\n"))
			out := s.RunScript("attack_pubchannel.lua", "PUBCHANNEL_SEED="+fmt.Sprint(seed))
			m := regexp.MustCompile(`attack_pubchannel: ok (\d+)`).FindStringSubmatch(out)
			require.NotNil(t, m, out)
			sent, _ := strconv.Atoi(m[1])
			sub.Sync(t)
			sub.mu.Lock()
			msgs := sub.msgs
			sub.mu.Unlock()
			last, n := 0, 0
			for _, msg := range msgs {
				if !strings.HasPrefix(msg.Channel, "pc:") {
					continue
				}
				n++
				ch, rest, ok := strings.Cut(msg.Payload, "|")
				require.True(t, ok, "payload %q", msg.Payload)
				require.Equal(t, msg.Channel, ch, "message %q on channel %q", msg.Payload, msg.Channel)
				num, _, _ := strings.Cut(rest, "|")
				i, err := strconv.Atoi(num)
				require.NoError(t, err)
				require.Greater(t, i, last, "message %d after %d", i, last)
				last = i
			}
			assert.Equal(t, sent, n, "messages at Redis")
		})
	}
}
