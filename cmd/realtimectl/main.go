// Command realtimectl is the operator's tool for gmsv_realtime: it reads
// the same realtime.toml, .env and REDIS_* environment as the module
// (through package config) and checks a configuration, publishes, follows
// channels live and lists the servers' heartbeats.
//
// Errors are one line on standard error and a non-zero exit status;
// passwords never appear in them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/router/redisbus"
)

// version is set by the Makefile (-X main.version=...).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

// env is what a command reads and writes: the process's in main, buffers
// in tests.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	environ        []string // nil: os.Environ()
	dir            string   // "": the working directory

	configFile string // --config
	cfg        *config.Config
}

// exitError carries an exit status with a message already printed (check's
// list of problems).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run executes one command line and returns the exit status.
func run(ctx context.Context, args []string, e *env) int {
	redis.SetLogger(quietLogger{}) // its pool's retries would add lines to the one error line
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil || errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(e.stderr, "realtimectl: "+e.redact(oneLine(err.Error())))
	return 1
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "realtimectl",
		Short: "Check, publish, follow and watch gmsv_realtime servers through Redis",
		Long: `realtimectl operates gmsv_realtime servers. It reads the module's own
configuration: --config, else $REALTIME_CONFIG, else garrysmod/cfg/realtime.toml,
else ./realtime.toml; then the .env beside it and the REDIS_* environment.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&e.configFile, "config", "c", "", "the realtime.toml to read (default: found as the module finds it)")
	root.AddCommand(checkCmd(e), pubCmd(e), tailCmd(e), serversCmd(e), webCmd(e), appendCmd(e), streamsCmd(e))
	return root
}

// load reads the configuration as the module does. Its problems are
// returned as one line.
func (e *env) load(file string) (*config.Config, error) {
	if file == "" {
		file = e.configFile
	}
	cfg, err := config.Load(config.Options{File: file, Dir: e.dir, Environ: e.environ})
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) && len(es) > 1 {
			return nil, fmt.Errorf("config: %s (and %d more problems: run realtimectl check)", es[0], len(es)-1)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	e.cfg = cfg
	return cfg, nil
}

// client connects to the configured Redis; local mode is an error, since
// the in-process bus of a server cannot be reached from outside.
func (e *env) client(ctx context.Context) (*config.Config, redis.UniversalClient, error) {
	cfg, err := e.load("")
	if err != nil {
		return nil, nil, err
	}
	if cfg.Local() {
		return nil, nil, errors.New("no Redis configured (the module would run in local mode): set [redis] url in realtime.toml, REDIS_URL, or pass --config")
	}
	c, err := redisbus.NewClient(cfg.Redis)
	if err != nil {
		return nil, nil, err
	}
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, nil, fmt.Errorf("redis %s: %w", cfg.Redis.Target(), err)
	}
	return cfg, c, nil
}

// redact hides the configured passwords and URL credentials in s.
func (e *env) redact(s string) string {
	if e.cfg != nil {
		for _, p := range []string{e.cfg.Redis.Password, e.cfg.Redis.SentinelPassword} {
			if len(p) >= 1 {
				s = strings.ReplaceAll(s, p, "***")
			}
		}
		if e.cfg.Redis.URL != "" {
			s = strings.ReplaceAll(s, e.cfg.Redis.URL, config.RedactURL(e.cfg.Redis.URL))
		}
	}
	fields := strings.Fields(s)
	for _, f := range fields {
		if strings.Contains(f, "://") && strings.Contains(f, "@") {
			s = strings.ReplaceAll(s, f, config.RedactURL(f))
		}
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
