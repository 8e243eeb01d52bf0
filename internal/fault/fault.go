// Package fault names the points of the worker where the tests that break things for real
// inject failures, and reads the rules those tests give a worker process.
//
// The worker calls its Config.Fault, a Func, at each point. The daemon that users run leaves it
// nil: nothing in cmd/worker reads CONFITURE_FAULT, and Parse (with its SIGKILL) is not linked
// into it. Tests set it in two ways: in-process, a Func of their own that fails, blocks or
// counts at a point; for a worker run as a child process (the fault suite and the fault
// campaign re-execute the test binary through worker.ServeEnv), the rules of CONFITURE_FAULT,
// which ServeEnv parses with Parse.
//
// CONFITURE_FAULT holds one or more rules separated by ',':
//
//	<point>=kill[@<n>]        SIGKILL the process the n-th time the point is reached (default 1)
//	<point>=sleep:<dur>[@<n>] pause there for dur (a Go duration) the n-th time
package fault

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Env is the environment variable from which worker.ServeEnv, and only it, reads the rules.
const Env = "CONFITURE_FAULT"

// The points the worker calls.
const (
	// IntakeAfterCommit: the run is recorded in the queue database, the request not yet
	// acknowledged on NATS.
	IntakeAfterCommit = "intake.after_commit"
	// PhaseBeforeCommit: a phase's work is done in its target transaction, not committed.
	PhaseBeforeCommit = "phase.before_commit"
	// PhaseAfterCommit: the target transaction committed, the queue transaction that records
	// it not begun.
	PhaseAfterCommit = "phase.after_commit"
	// NonTxStatementDone: a DDL statement that cannot run in a transaction block has run, its
	// checkpoint is not recorded.
	NonTxStatementDone = "ddl.after_nontx_statement"
	// OutboxAfterPublish: JetStream has stored a batch of events, the outbox has not marked
	// them published.
	OutboxAfterPublish = "outbox.after_publish"
	// BackfillAfterBatch: a backfill batch and its checkpoint committed.
	BackfillAfterBatch = "backfill.after_batch"
)

// Points lists every point, in the order of a run.
var Points = []string{IntakeAfterCommit, PhaseBeforeCommit, NonTxStatementDone, PhaseAfterCommit,
	BackfillAfterBatch, OutboxAfterPublish}

// Where says what reached a point: the run, and for a phase its migration's version, the phase
// and the attempt. Fields that do not apply are zero.
type Where struct {
	Run     string
	Version string
	Phase   string
	Attempt int
}

// Func is called at each point with the context of the work there. An error it returns fails
// that work as an error at that point would: the phase attempt, the relay's batch, the
// request's handling.
type Func func(ctx context.Context, point string, at Where) error

// At calls f, if it is set.
func (f Func) At(ctx context.Context, point string, at Where) error {
	if f == nil {
		return nil
	}
	return f(ctx, point, at)
}

type rule struct {
	kill  bool
	sleep time.Duration
	nth   int64
	seen  atomic.Int64
}

// Parse returns the Func that carries out spec's rules (the format of CONFITURE_FAULT), or nil
// for an empty spec. Each rule counts the times its point is reached in this process.
func Parse(spec string) (Func, error) {
	rules := map[string]*rule{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		point, action, ok := strings.Cut(part, "=")
		if !ok || !slices.Contains(Points, point) {
			return nil, fmt.Errorf("%s: %q: want <point>=kill[@n] or <point>=sleep:<duration>[@n], point one of %s",
				Env, part, strings.Join(Points, ", "))
		}
		r := &rule{nth: 1}
		if a, n, ok := strings.Cut(action, "@"); ok {
			nth, err := strconv.ParseInt(n, 10, 64)
			if err != nil || nth < 1 {
				return nil, fmt.Errorf("%s: %q: @n must be a positive integer", Env, part)
			}
			action, r.nth = a, nth
		}
		switch {
		case action == "kill":
			r.kill = true
		case strings.HasPrefix(action, "sleep:"):
			d, err := time.ParseDuration(strings.TrimPrefix(action, "sleep:"))
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %w", Env, part, err)
			}
			r.sleep = d
		default:
			return nil, fmt.Errorf("%s: %q: unknown action %q", Env, part, action)
		}
		rules[point] = r
	}
	if len(rules) == 0 {
		return nil, nil
	}
	return func(_ context.Context, point string, _ Where) error {
		r := rules[point]
		if r == nil || r.seen.Add(1) != r.nth {
			return nil
		}
		if r.sleep > 0 {
			time.Sleep(r.sleep)
		}
		if r.kill {
			fmt.Fprintf(os.Stderr, "fault: SIGKILL at %s\n", point)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
		return nil
	}, nil
}
