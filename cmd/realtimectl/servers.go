package main

import "github.com/spf13/cobra"

func serversCmd(e *env) *cobra.Command {
	return &cobra.Command{Use: "servers", Hidden: true, RunE: func(*cobra.Command, []string) error { return nil }}
}
