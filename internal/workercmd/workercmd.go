// Package workercmd is the worker's command line: flags, CONFITURE_* variables and an optional
// YAML file become a worker.Config; the daemon runs until SIGTERM or SIGINT (a second signal
// stops waiting for running phases). `worker hooks list` shows the hooks the worker can run and
// `worker hooks describe NAME` one of them in detail.
package workercmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/confiture-io/confiture-worker/internal/buildinfo"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/logging"
	"github.com/confiture-io/confiture-worker/internal/natsauth"
	"github.com/confiture-io/confiture-worker/internal/worker"
)

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
)

type options struct {
	configFile      string
	natsURL         string
	databaseURL     string
	dataDir         string
	targets         []string
	concurrency     int
	logFormat       string
	logLevel        string
	readyFile       string
	httpAddr        string
	httpCredentials string
	natsPort        int
	shutdown        time.Duration
	// nats holds the NATS security flags (no password or token: those come from the
	// environment or a file, never the command line).
	nats natsauth.Options
	// compiled are the compiled-in hook definitions, added after the built-in ones.
	compiled []hooks.Definition
}

// Main runs the worker command with args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	return MainWithHooks(args, stdout, stderr, nil)
}

// MainWithHooks is Main for a worker with compiled-in hooks (worker.Config.Hooks): the daemon
// runs them and `worker hooks list` shows them. A definition that cannot be registered (a name
// clash, for one) is left out and reported like any other hook that failed to load.
func MainWithHooks(args []string, stdout, stderr io.Writer, defs []hooks.Definition) int {
	o := options{compiled: defs}
	root := &cobra.Command{
		Use:     "worker",
		Version: buildinfo.String(),
		Short:   "Run PostgreSQL migrations and their hooks as durable jobs",
		Long: `worker takes migration requests from NATS (confiture.requests.<target>), runs each hook
phase of each migration as a retryable River job on PostgreSQL, and publishes every step as an
event (confiture.events.<target>.<run>.<kind>).

With no NATS URL it starts an embedded NATS server with JetStream; with no database URL it uses
$DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres, which is also the "default" target.

A NATS server given by URL may require credentials and TLS: --nats-creds, --nats-nkey,
--nats-user (password from CONFITURE_NATS_PASSWORD or --nats-password-file), a token
(CONFITURE_NATS_TOKEN or --nats-token-file), --nats-ca, --nats-cert and --nats-key. The worker
does not start when the server refuses them. See docs/SECURITY.md.

Configuration, lowest precedence first: the YAML file (--config or CONFITURE_CONFIG),
CONFITURE_* environment variables, then flags.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          subcommandArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &o, stderr)
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&o.configFile, "config", os.Getenv("CONFITURE_CONFIG"), "YAML configuration file (CONFITURE_CONFIG)")
	f.StringVar(&o.natsURL, "nats-url", "", "NATS server URL; empty starts an embedded server (CONFITURE_NATS_URL)")
	f.StringVar(&o.databaseURL, "database-url", "", "queue database URL (CONFITURE_DATABASE_URL, then DATABASE_URL)")
	f.StringVar(&o.dataDir, "data-dir", "", "directory for the embedded NATS server's data (CONFITURE_DATA_DIR; default ./.confiture)")
	f.StringArrayVar(&o.targets, "target", nil, "target as NAME=DSN; repeatable (CONFITURE_TARGET_<NAME>)")
	f.IntVar(&o.concurrency, "concurrency", 0, "phases run at once by this worker (CONFITURE_CONCURRENCY; default 10)")
	f.StringVar(&o.logFormat, "log-format", "auto", "console log format: auto (text on a terminal, else JSON), text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "console log level: debug, info, warn or error")
	f.StringVar(&o.readyFile, "ready-file", "", "write the NATS URL to this file once taking requests")
	f.IntVar(&o.natsPort, "embedded-nats-port", 0, "client port of the embedded NATS server (default 4222, or a free port if taken; -1 always free)")
	f.StringVar(&o.httpAddr, "http-addr", "", "address of /metrics, /healthz, /readyz and /riverui/ (CONFITURE_HTTP_ADDR; default 127.0.0.1:9090, or a free port if taken; \"off\" disables)")
	f.StringVar(&o.httpCredentials, "http-credentials-file", "", "the HTTP server's bearer tokens and users, each a viewer or an operator (CONFITURE_HTTP_CREDENTIALS_FILE; needed beyond loopback, see docs/SECURITY.md)")
	f.DurationVar(&o.shutdown, "shutdown-timeout", 0, "how long running phases may finish after SIGTERM (default 30s)")
	f.StringVar(&o.nats.Creds, "nats-creds", "", "NATS credentials file (user JWT and seed) (CONFITURE_NATS_CREDS)")
	f.StringVar(&o.nats.NKey, "nats-nkey", "", "NATS NKey user seed file (CONFITURE_NATS_NKEY)")
	f.StringVar(&o.nats.User, "nats-user", "", "NATS user; its password from CONFITURE_NATS_PASSWORD or --nats-password-file (CONFITURE_NATS_USER)")
	f.StringVar(&o.nats.PasswordFile, "nats-password-file", "", "file holding the NATS user's password (CONFITURE_NATS_PASSWORD_FILE)")
	f.StringVar(&o.nats.TokenFile, "nats-token-file", "", "file holding a NATS token; or CONFITURE_NATS_TOKEN (CONFITURE_NATS_TOKEN_FILE)")
	f.StringVar(&o.nats.CA, "nats-ca", "", "PEM file of the CA that signed the NATS server's certificate; turns TLS on (CONFITURE_NATS_CA)")
	f.StringVar(&o.nats.Cert, "nats-cert", "", "PEM client certificate for NATS TLS, with --nats-key (CONFITURE_NATS_CERT)")
	f.StringVar(&o.nats.Key, "nats-key", "", "PEM private key of --nats-cert (CONFITURE_NATS_KEY)")
	f.BoolVar(&o.nats.TLS, "nats-tls", false, "require TLS to NATS, verified against the system's CAs unless --nats-ca (CONFITURE_NATS_TLS)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(hooksCommand(&o, stdout), runsCommand(&o, stdout, stderr), targetsCommand(&o, stdout), healthcheckCommand(&o, stdout))
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "worker:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return ExitUsage
		}
		return ExitFailed
	}
	return ExitOK
}

// usageError is an error in how the command was called: exit code ExitUsage.
type usageError struct{ error }

// usageArgs makes what check refuses a usage error.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// subcommandArgs is the Args of a command that has subcommands and takes no arguments of its
// own: a mistyped subcommand is a usage error that suggests the right one.
func subcommandArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's own default, which SuggestionsFor does not apply
	}
	if near := cmd.SuggestionsFor(args[0]); len(near) > 0 {
		return usageError{fmt.Errorf("%s; did you mean %q?", msg, near[0])}
	}
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return usageError{fmt.Errorf("%s; its commands: %s", msg, strings.Join(names, ", "))}
}

// group returns a command whose work is done by its subcommands: run on its own, it shows its
// help; with a mistyped subcommand, it says so.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = subcommandArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	return cmd
}

// config builds the worker configuration from the file, the environment and the flags.
func (o *options) config(logger *slog.Logger) (worker.Config, error) {
	var cfg worker.Config
	if o.configFile != "" {
		c, err := worker.LoadFile(o.configFile)
		if err != nil {
			return cfg, usageError{err}
		}
		cfg = c
	}
	if err := worker.ApplyEnv(&cfg, os.Getenv, os.Environ()); err != nil {
		return cfg, usageError{err}
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.NATSURL, o.natsURL)
	set(&cfg.DatabaseURL, o.databaseURL)
	set(&cfg.DataDir, o.dataDir)
	set(&cfg.ReadyFile, o.readyFile)
	set(&cfg.HTTPAddr, o.httpAddr)
	set(&cfg.HTTPCredentialsFile, o.httpCredentials)
	if o.concurrency != 0 {
		cfg.Concurrency = o.concurrency
	}
	if o.natsPort != 0 {
		cfg.EmbeddedNATSPort = o.natsPort
	}
	if o.shutdown != 0 {
		cfg.ShutdownTimeout = o.shutdown
	}
	cfg.NATS = cfg.NATS.Merge(o.nats)
	for _, t := range o.targets {
		name, dsn, ok := strings.Cut(t, "=")
		if !ok || !contract.ValidTargetName(name) {
			// Never echo the value: it may be a connection string.
			return cfg, usageError{errors.New("--target: want NAME=DSN, NAME of letters, digits, '_' and '-'")}
		}
		if err := worker.SetTarget(&cfg, name, dsn); err != nil {
			return cfg, usageError{err}
		}
	}
	cfg.Logger = logger
	cfg.Hooks = append(cfg.Hooks, o.compiled...)
	return cfg, nil
}

// logging builds the log sinks from the configuration's log section, with --log-format and
// --log-level (when given) applied to the console sink.
func (o *options) logging(c logging.Config, stderr io.Writer, formatSet, levelSet bool) (*logging.Logging, error) {
	if formatSet {
		c.Console.Format = o.logFormat
	}
	if levelSet {
		c.Console.Level = o.logLevel
	}
	terminal := false
	if f, ok := stderr.(*os.File); ok {
		terminal = term.IsTerminal(int(f.Fd()))
	}
	lg, err := logging.New(c, stderr, terminal)
	if err != nil {
		msg := err.Error()
		msg = strings.ReplaceAll(msg, "log.console.format", "--log-format (log.console.format)")
		msg = strings.ReplaceAll(msg, "log.console.level", "--log-level (log.console.level)")
		return nil, usageError{errors.New(msg)}
	}
	return lg, nil
}

func run(cmd *cobra.Command, o *options, stderr io.Writer) error {
	cfg, err := o.config(nil)
	if err != nil {
		return err
	}
	lg, err := o.logging(cfg.Log, stderr, cmd.Flags().Changed("log-format"), cmd.Flags().Changed("log-level"))
	if err != nil {
		return err
	}
	defer lg.Close() //nolint:errcheck // the file sink's close error has nowhere left to go
	logger := lg.Logger
	cfg.Logger, cfg.LogSink = logger, lg
	w, err := worker.New(cfg)
	if err != nil {
		return usageError{err}
	}
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)

	startCtx, startCancel := context.WithTimeout(ctx, 2*time.Minute)
	err = w.Start(startCtx)
	startCancel()
	if err != nil {
		return err
	}
	sig := <-signals
	logger.Info("signal received; shutting down (send it again to stop waiting for running phases)", "signal", sig.String())
	stopCtx, stopCancel := context.WithCancel(context.Background())
	defer stopCancel()
	go func() {
		<-signals
		logger.Warn("second signal: cancelling running phases now")
		stopCancel()
	}()
	return w.Stop(stopCtx)
}
