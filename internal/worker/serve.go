package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/confiture-io/confiture-worker/internal/builtin"
	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/hooks"
)

// ServeEnv runs a worker configured from the YAML file CONFITURE_CONFIG names, if any, then the
// CONFITURE_* environment (ApplyEnv), with the built-in hooks and the plugins of its plugin
// paths, until SIGTERM or SIGINT, logging JSON records at level on stderr; it returns the process's exit code. It is the main of the worker
// processes that the fault suites (this package's tests, internal/chaos) start from their own
// test binaries, and the only reader of CONFITURE_FAULT (package fault): the worker that users
// run (cmd/worker) never injects a fault. readyFile, when set, receives the NATS URL once the
// worker takes requests.
func ServeEnv(readyFile string, level slog.Level, stderr io.Writer) int {
	var cfg Config
	if path := os.Getenv("CONFITURE_CONFIG"); path != "" { // as the worker command reads it
		var err error
		if cfg, err = LoadFile(path); err != nil {
			fmt.Fprintln(stderr, "worker:", err)
			return 2
		}
	}
	if err := ApplyEnv(&cfg, os.Getenv, os.Environ()); err != nil {
		fmt.Fprintln(stderr, "worker:", err)
		return 2
	}
	reg := hooks.NewRegistry()
	if err := builtin.Register(reg); err != nil {
		fmt.Fprintln(stderr, "worker:", err)
		return 2
	}
	var err error
	if cfg.Fault, err = fault.Parse(os.Getenv(fault.Env)); err != nil {
		fmt.Fprintln(stderr, "worker:", err)
		return 2
	}
	cfg.Registry = reg
	cfg.ReadyFile = readyFile
	cfg.Logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	w, err := New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "worker:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := w.Start(ctx); err != nil {
		fmt.Fprintln(stderr, "worker: start:", err)
		return 1
	}
	<-ctx.Done()
	// The shutdown bound, then the hard stop's own (see Stop), with room to spare.
	sctx, cancel := context.WithTimeout(context.Background(), w.cfg.ShutdownTimeout+15*time.Second)
	defer cancel()
	if err := w.Stop(sctx); err != nil {
		fmt.Fprintln(stderr, "worker: stop:", err)
		return 1
	}
	return 0
}
