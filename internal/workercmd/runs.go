package workercmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/worker"
)

// runsCommand is `worker runs pause|resume|fail|retry RUN`: the operator actions, run against
// the queue database of the worker configuration (file, environment, flags) like the daemon's.
func runsCommand(o *options, stdout, stderr io.Writer) *cobra.Command {
	runsCmd := group(&cobra.Command{
		Use:   "runs",
		Short: "Act on a run: pause, resume, fail, or retry from its failed phase",
		Long: `The operator actions on a run, recorded in the queue database with their event (the workers'
relays publish it). RUN is a run id, or TARGET:REQUEST_ID. The worker configuration (--config,
CONFITURE_*, --database-url, --target) is read as the daemon reads it: failing a run reads its
target's tracking table for the run's final event.

  pause    a running run stops at its step and holds its target: a running batched backfill
           stops after its batch; any other running phase finishes, and the run waits before
           the next one
  resume   a paused run goes on at its step
  fail     a queued, running or paused run fails: a run at a phase runs its migration's
           on_error hooks (a running phase is cancelled), then ends failed
  retry    a failed run is queued again: it plans again and resumes from its failed phase,
           without repeating what committed`,
	})
	var reason string
	action := func(name, done string, act func(*worker.Operator, context.Context, string, string) error) *cobra.Command {
		return &cobra.Command{
			Use:   name + " RUN",
			Short: strings.ToUpper(name[:1]) + name[1:] + " a run",
			Args:  usageArgs(cobra.ExactArgs(1)),
			RunE: func(cmd *cobra.Command, args []string) error {
				run, err := runArg(args[0])
				if err != nil {
					return usageError{err}
				}
				cfg, err := o.config(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
				defer cancel()
				op, err := worker.OpenOperator(ctx, cfg)
				if err != nil {
					return err
				}
				defer op.Close()
				if err := act(op, ctx, run, reason); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "run %s %s\n", run, done)
				return nil
			},
		}
	}
	cmds := []*cobra.Command{
		action("pause", "paused", (*worker.Operator).Pause),
		action("resume", "resumed", (*worker.Operator).Resume),
		action("fail", "failed (a run at a phase runs its on_error hooks first)", (*worker.Operator).Fail),
		action("retry", "queued again: it resumes from its failed phase", (*worker.Operator).Retry),
	}
	for _, c := range cmds {
		c.Flags().StringVar(&reason, "reason", "", "why, for the run's event")
		runsCmd.AddCommand(c)
	}
	return runsCmd
}

// runArg reads RUN: a run id, or TARGET:REQUEST_ID.
func runArg(arg string) (string, error) {
	if id, err := uuid.Parse(arg); err == nil {
		return id.String(), nil
	}
	target, request, ok := strings.Cut(arg, ":")
	if !ok || !contract.ValidTargetName(target) || request == "" {
		return "", errors.New("RUN: want a run id (a UUID) or TARGET:REQUEST_ID")
	}
	return contract.RunID(target, request), nil
}
