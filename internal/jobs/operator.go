package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// Operator actions on a run: pause, resume, fail, and retry from the failed phase. Each is one
// transition of the run state machine, written with its event in one queue-database
// transaction. River UI's actions map onto the same transitions: cancelling a phase job fails
// the run (a batched hook's job: pauses it), and retrying the job that failed or paused a run
// resumes it (see begin). The command-line and NATS surfaces of these actions are thin layers
// over these functions.

// ErrRunState is returned (wrapped in a *StateError) when a run's state does not allow an
// action: pausing a run that is not running, resuming one that is not paused, ...
var ErrRunState = errors.New("the run's state does not allow this")

// StateError says which action a run's state refused.
type StateError struct {
	Run string
	// Rollout is set instead of Run when the action was on a rollout.
	Rollout string
	Action  string
	Status  string
	// Allowed lists the statuses the action accepts.
	Allowed []string
}

func (e *StateError) Error() string {
	if e.Rollout != "" {
		return fmt.Sprintf("cannot %s rollout %s: it is %s (%s needs %v)", e.Action, e.Rollout, e.Status, e.Action, e.Allowed)
	}
	return fmt.Sprintf("cannot %s run %s: it is %s (%s needs %v)", e.Action, e.Run, e.Status, e.Action, e.Allowed)
}

func (e *StateError) Unwrap() error { return ErrRunState }

// operate runs an action on a run in one transaction, with the run locked.
func (p *Pipeline) operate(ctx context.Context, runID, action string, allowed []string, fn func(tx pgx.Tx, rc *runContext) error) error {
	if p.client == nil {
		return errors.New("jobs: no River client (SetClient was not called)")
	}
	return p.inTx(ctx, func(tx pgx.Tx) error {
		row, err := p.lockRun(ctx, tx, runID)
		if err != nil {
			return err
		}
		if !contains(allowed, row.Status) {
			return &StateError{Run: runID, Action: action, Status: row.Status, Allowed: allowed}
		}
		rc, err := p.newRunContext(row)
		if err != nil {
			return err
		}
		return fn(tx, rc)
	})
}

// Pause stops a running run at its step: a phase that is running finishes (a batched hook stops
// after its current batch, keeping its checkpoint) and the run waits there, holding its
// target, until Resume or Fail.
func (p *Pipeline) Pause(ctx context.Context, runID, reason string) error {
	return p.operate(ctx, runID, "pause", []string{runstore.RunRunning}, func(tx pgx.Tx, rc *runContext) error {
		step := rc.row.Step()
		if rc.row.JobID != 0 && p.holdsBatched(rc, step) {
			// Cancel the job: a running batched hook stops after its batch and records the
			// pause itself (or finds it recorded); a waiting job never starts.
			if _, err := p.client.JobCancelTx(ctx, tx, rc.row.JobID); err != nil {
				return fmt.Errorf("cancel job %d: %w", rc.row.JobID, err)
			}
		}
		ev := p.stepEvent(rc, contract.KindRunPaused, step, rc.row.Attempt, "operator")
		ev.Message = "by an operator, at " + describeStep(step) + reasonSuffix(reason) + "; resume or fail it"
		return p.pause(ctx, tx, rc, runstore.Guard{Statuses: []string{runstore.RunRunning}, Step: step, AnyJob: true}, 0, true, ev)
	})
}

// Resume sets a paused run going again at its step.
func (p *Pipeline) Resume(ctx context.Context, runID, reason string) error {
	return p.operate(ctx, runID, "resume", []string{runstore.RunPaused}, func(tx pgx.Tx, rc *runContext) error {
		_, err := p.resume(ctx, tx, p.client, rc, runstore.Guard{Statuses: []string{runstore.RunPaused}, Step: rc.row.Step(), AnyJob: true},
			0, "by an operator"+reasonSuffix(reason))
		return err
	})
}

// Fail fails a queued, running or paused run: a run at a phase goes to its migration's on_error
// hooks like any failed phase (a running phase is cancelled), and otherwise ends failed.
func (p *Pipeline) Fail(ctx context.Context, runID, reason string) error {
	var sum contract.RunSummary
	if rc, err := p.loadRun(ctx, runID); err == nil {
		sum = p.summaryOrWhy(ctx, rc, p.cfg.Logger.With("run", runID)) // read outside the transaction
	}
	return p.operate(ctx, runID, "fail", []string{runstore.RunQueued, runstore.RunRunning, runstore.RunPaused}, func(tx pgx.Tx, rc *runContext) error {
		step := rc.row.Step()
		msg := "failed by an operator" + reasonSuffix(reason)
		f := failure{Error: contract.EventError{Code: contract.CodeCancelled, Message: msg}}
		if rc.row.JobID != 0 {
			alive, err := p.jobAlive(ctx, tx, rc.row.JobID)
			if err != nil {
				return err
			}
			if alive {
				// The job stops; whatever it then reports finds the run moved on.
				if _, err := p.client.JobCancelTx(ctx, tx, rc.row.JobID); err != nil {
					return fmt.Errorf("cancel job %d: %w", rc.row.JobID, err)
				}
			}
		}
		g := runstore.Guard{Statuses: []string{rc.row.Status}, Step: step, AnyJob: true}
		return p.failStopped(ctx, tx, rc, g, f, rc.row.JobID, sum, "operator")
	})
}

// Retry queues a failed run again: once its target is free it plans again and resumes the
// migration it failed in from its first phase not done; what its failed phases committed is
// not repeated.
func (p *Pipeline) Retry(ctx context.Context, runID, reason string) error {
	return p.operate(ctx, runID, "retry", []string{runstore.RunFailed}, func(tx pgx.Tx, rc *runContext) error {
		return p.retryRun(ctx, tx, p.client, rc, "by an operator"+reasonSuffix(reason)+": the run plans again and resumes from its failed phase")
	})
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + outbox.Truncate(reason, 1000)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
