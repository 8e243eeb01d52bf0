// Package fault injects failures at named points of the worker, for the tests that break things
// for real: the fault-tolerance suite runs the worker as a child process with
// CONFITURE_FAULT set, and the worker kills itself (SIGKILL), pauses or fails at the point
// named there. Without the variable every point is a single atomic load.
//
// CONFITURE_FAULT holds one or more rules separated by ',':
//
//	<point>=kill[@<n>]        SIGKILL this process the n-th time the point is reached (default 1)
//	<point>=sleep:<dur>[@<n>] pause there for dur (a Go duration) the n-th time
//
// Points: intake.after_commit (the run is recorded in the queue database, the request not yet
// acknowledged on NATS), phase.before_commit (a phase's work is done in its target transaction,
// not committed), phase.after_commit (the target transaction committed, the queue transaction
// that records it not begun), outbox.after_publish (JetStream has stored a batch of events, the
// outbox has not marked them published), backfill.after_batch (a backfill batch and its
// checkpoint committed).
package fault

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Env is the environment variable that holds the rules.
const Env = "CONFITURE_FAULT"

// The points the worker calls.
const (
	IntakeAfterCommit  = "intake.after_commit"
	PhaseBeforeCommit  = "phase.before_commit"
	PhaseAfterCommit   = "phase.after_commit"
	OutboxAfterPublish = "outbox.after_publish"
	BackfillAfterBatch = "backfill.after_batch"
)

var points = []string{IntakeAfterCommit, PhaseBeforeCommit, PhaseAfterCommit, OutboxAfterPublish, BackfillAfterBatch}

type rule struct {
	kill  bool
	sleep time.Duration
	nth   int64
	seen  atomic.Int64
}

var (
	active atomic.Bool
	mu     sync.Mutex
	rules  map[string]*rule
)

func init() {
	if err := Set(os.Getenv(Env)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", Env, err)
		os.Exit(2)
	}
}

// Set replaces the rules with spec (the format of CONFITURE_FAULT); empty clears them.
func Set(spec string) error {
	parsed := map[string]*rule{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		point, action, ok := strings.Cut(part, "=")
		if !ok || !known(point) {
			return fmt.Errorf("%q: want <point>=kill[@n] or <point>=sleep:<duration>[@n], point one of %s", part, strings.Join(points, ", "))
		}
		r := &rule{nth: 1}
		if a, n, ok := strings.Cut(action, "@"); ok {
			nth, err := strconv.ParseInt(n, 10, 64)
			if err != nil || nth < 1 {
				return fmt.Errorf("%q: @n must be a positive integer", part)
			}
			action, r.nth = a, nth
		}
		switch {
		case action == "kill":
			r.kill = true
		case strings.HasPrefix(action, "sleep:"):
			d, err := time.ParseDuration(strings.TrimPrefix(action, "sleep:"))
			if err != nil {
				return fmt.Errorf("%q: %w", part, err)
			}
			r.sleep = d
		default:
			return fmt.Errorf("%q: unknown action %q", part, action)
		}
		parsed[point] = r
	}
	mu.Lock()
	rules = parsed
	mu.Unlock()
	active.Store(len(parsed) > 0)
	return nil
}

func known(point string) bool {
	for _, p := range points {
		if p == point {
			return true
		}
	}
	return false
}

// At is called by the worker at point; it does what a rule says, if one does.
func At(point string) {
	if !active.Load() {
		return
	}
	mu.Lock()
	r := rules[point]
	mu.Unlock()
	if r == nil || r.seen.Add(1) != r.nth {
		return
	}
	if r.sleep > 0 {
		time.Sleep(r.sleep)
	}
	if r.kill {
		fmt.Fprintf(os.Stderr, "fault: SIGKILL at %s\n", point)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
