package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func pubCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "pub CHANNEL [PAYLOAD|-]",
		Short: "Publish one message (the payload from the argument, or standard input)",
		Long: `pub publishes one message on CHANNEL. The payload is the second argument; without
one, or with "-", it is all of standard input, byte for byte (NUL bytes and a
trailing newline included). It prints how many subscribers Redis delivered it to.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			payload, err := payloadArg(e, args)
			if err != nil {
				return err
			}
			_, c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			n, err := c.Publish(cmd.Context(), args[0], payload).Result()
			if err != nil {
				return fmt.Errorf("publish to %q: %w", args[0], err)
			}
			fmt.Fprintf(e.stdout, "published %d bytes to %s (%d subscribers)\n", len(payload), escape([]byte(args[0])), n)
			return nil
		},
	}
}
