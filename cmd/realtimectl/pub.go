package main

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

func pubCmd(e *env) *cobra.Command {
	return sendCmd(e, "pub CHANNEL [PAYLOAD|-]",
		"Publish one message (the payload from the argument, or standard input)",
		`pub publishes one message on CHANNEL. The payload is the second argument; without
one, or with "-", it is all of standard input, byte for byte (NUL bytes and a
trailing newline included). It prints how many subscribers Redis delivered it to.`,
		func(ctx context.Context, c redis.UniversalClient, channel string, payload []byte) (string, error) {
			n, err := c.Publish(ctx, channel, payload).Result()
			if err != nil {
				return "", fmt.Errorf("publish to %q: %w", channel, err)
			}
			return fmt.Sprintf("published %d bytes to %s (%d subscribers)", len(payload), escape([]byte(channel)), n), nil
		})
}
