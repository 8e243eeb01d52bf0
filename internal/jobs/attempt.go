package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/transient"
)

// attempt is one execution of the job of a run's step. begin counts it on the run, the step's
// worker does the step's work, and conclude maps how it ended to exactly one transition of the
// run, the way River's job executor maps a job's result to exactly one job state.
type attempt struct {
	p      *Pipeline
	job    *rivertype.JobRow
	client *river.Client[pgx.Tx]
	// completeJob completes the job in a transaction (river.JobCompleteTx for its args type).
	completeJob func(ctx context.Context, tx pgx.Tx) error
	step        Step
	rc          *runContext
	// n is the attempt's number at its step: the attempts begun there, less those that did not
	// count (transient trouble, a stopping worker, a slice of a batched hook that made progress).
	n int
	// fetched is when River handed the job to this attempt: with n, it tells the attempt's
	// events apart from those of an earlier attempt that did not count (see key).
	fetched time.Time
	log     *slog.Logger
	// res is what the step's work did, for the events of whatever outcome.
	res *phaseResult
	// succeed records the step's success (the transition to what follows it).
	succeed func(ctx context.Context, tx pgx.Tx) error
	// summary is what the run's final event says of the target, read before a transition that
	// may end the run.
	summary contract.RunSummary
	// cancelled says the job was cancelled while it ran (River UI, an operator's pause).
	cancelled bool
	// moved says the job is at another step than the one it was inserted for: a job of a ddl
	// step that went on with the next migrations (phaseWorker.Work).
	moved bool
	// nothingToDo says planning found nothing to do: its success ends the run.
	nothingToDo bool
}

// guard is the guard of the transition that records how the attempt ended: the run is at the
// attempt's step with this job, running, or paused meanwhile (a phase that runs when an
// operator pauses the run finishes, and its outcome is recorded). The outcome of a cancelled
// job is recorded only while the run runs: an operator's pause, which cancels the job of a
// batched hook, has paused it already, and it stays paused as the operator left it.
// fault calls the pipeline's fault function, if it has one, at point of this attempt.
func (a *attempt) fault(ctx context.Context, point string) error {
	return a.p.cfg.Fault.At(ctx, point, fault.Where{Run: a.rc.row.ID, Version: a.step.Version, Phase: a.step.Phase, Attempt: a.n})
}

func (a *attempt) guard() runstore.Guard {
	if a.cancelled {
		return runstore.Guard{Statuses: []string{runstore.RunRunning}, Step: a.step, Job: a.job.ID}
	}
	return live(a.step, a.job.ID)
}

// key identifies the attempt in the ids of its events (phase.started, hook.started,
// hook.failed, phase.retrying): an attempt after one that did not count has the same number,
// and its events are other facts, which de-duplication must not drop.
func (a *attempt) key() string {
	return fmt.Sprintf("%d.%d", a.n, a.fetched.UnixNano())
}

// mayEndRun reports whether the step's success may end the run (its final event then carries
// the summary).
func (a *attempt) mayEndRun() bool {
	switch {
	case a.step == planStep:
		return a.nothingToDo
	case a.step == dryRunStep, a.step.Phase == contract.PhaseOnError:
		return true
	case a.rc.row.Plan == nil:
		return false
	}
	_, _, runDone := NextStep(a.rc.row.Direction, a.rc.row.Plan, a.step, a.rc.works)
	return runDone
}

// phaseResult is what a step's work did.
type phaseResult struct {
	hooks    []hookOutcome
	duration time.Duration
	rows     int64
	message  string
	// failedHook names the hook that failed, if a hook did.
	failedHook string
	// progressed says a batched hook committed at least one batch in this attempt.
	progressed bool
}

// hookOutcome is one hook's result, from the executor or, for a hook committed earlier, from
// the ledger.
type hookOutcome struct {
	name string
	// kind is the hook type (sql, assert, a plugin's name); empty when read back from the
	// ledger, which records only the declared name.
	kind     string
	duration time.Duration
	rows     int64
	message  string
	err      error
	// earlier says the hook committed in an earlier attempt or run and did not run now.
	earlier bool
	// committed says the hook's work is committed on the target (earlier, or in a segment of
	// this attempt that committed).
	committed bool
}

// errRunGone is returned (as a cancelled job) for a job whose run no longer exists.
var errRunGone = errors.New("the run no longer exists")

// begin starts an attempt of job, the job of step of run: when the job is the run's live job,
// it counts the attempt and records startEvents (built once the run is read) in one queue
// transaction, and returns the attempt. Otherwise the job's handling ends here (done): a job
// that paused or failed the run and that an operator retried resumes the run; a job of a run
// paused while it waited lets go of the run; any other job is stale.
func (p *Pipeline) begin(ctx context.Context, job *rivertype.JobRow, runID string, step Step,
	completeJob func(context.Context, pgx.Tx) error,
	startEvents func(a *attempt) []contract.Event,
) (a *attempt, done bool, err error) {
	a = &attempt{p: p, job: job, client: river.ClientFromContext[pgx.Tx](ctx), completeJob: completeJob, step: step}
	if job.AttemptedAt != nil {
		a.fetched = *job.AttemptedAt
	}
	if ok, err := p.beginExpected(ctx, a, runID, startEvents); ok || err != nil {
		if err != nil {
			return nil, true, fmt.Errorf("begin attempt of %s: %w", describeStep(step), err)
		}
		return a, false, nil
	}
	err = p.inTx(ctx, func(tx pgx.Tx) error {
		// The common case first, in one round trip: the run's live job counts its attempt.
		// Start events report nothing a crash could make wrong: they commit without waiting
		// for the WAL flush (only a crash of PostgreSQL itself loses them, with the attempt's
		// count, which then does not count).
		// The job of a ddl step may have moved its run on to later migrations' ddl (a chain of
		// migrations without hooks, see phaseWorker.Work): tried again, it goes on where the
		// run is.
		row, err := p.cfg.Store.StartAttempt(ctx, tx, runID, step, job.ID, step.Phase == contract.PhaseDDL)
		if err == nil {
			a.step, a.moved = row.Step(), row.Step() != step
		}
		if errors.Is(err, runstore.ErrGuard) {
			row, done, err = p.notLive(ctx, tx, a, runID)
			if err != nil || done {
				return err
			}
		} else if err != nil {
			return err
		}
		if a.rc, err = p.newRunContext(row); err != nil {
			return err
		}
		a.n = row.Attempt
		a.log = p.attemptLog(row, a.n, job.ID)
		return p.record(ctx, tx, startEvents(a)...)
	})
	switch {
	case errors.Is(err, errStale):
		return nil, true, nil
	case errors.Is(err, runstore.ErrRunNotFound):
		return nil, true, river.JobCancel(fmt.Errorf("run %s: %w", runID, errRunGone))
	case err != nil && transient.Is(err):
		// The queue database is failing: the job waits and tries again, and as the attempt has
		// not counted, neither does River's (a snooze), which stays equal to the run's.
		wait := p.backoff(2)
		p.cfg.Logger.Warn("could not begin an attempt: the queue database is failing; trying again", "run", runID,
			"step", describeStep(step), "error", err.Error(), "retry_in", wait.String())
		return nil, true, river.JobSnooze(wait)
	case err != nil:
		return nil, true, fmt.Errorf("begin attempt of %s: %w", describeStep(step), err)
	}
	return a, done, nil
}

// beginExpected begins attempt a the short way, when this process's last advance of the run
// inserted a's job (the common case): from the run row that advance left, it builds the start
// events and counts the attempt with them in one statement, guarded by what the events were
// built from (the run at a's step with a's job, its epoch, the attempts counted). ok false
// when the run is not as expected: begin then reads it and decides as for any job.
func (p *Pipeline) beginExpected(ctx context.Context, a *attempt, runID string, startEvents func(a *attempt) []contract.Event) (ok bool, err error) {
	exp := p.runs.expected(runID, a.job.ID)
	if exp == nil || exp.Step() != a.step || exp.Status != runstore.RunRunning {
		return false, nil
	}
	rc, err := p.newRunContext(exp)
	if err != nil {
		return false, nil
	}
	a.rc, a.n = rc, exp.Attempt+1
	a.log = p.attemptLog(exp, a.n, a.job.ID)
	ids, subjects, payloads, err := outbox.Encode(startEvents(a))
	if err != nil {
		return false, err
	}
	row, err := p.cfg.Store.StartAttemptExpected(ctx, p.cfg.Store.Pool, runID,
		runstore.Expected{Step: a.step, Job: a.job.ID, Epoch: exp.Epoch, Attempts: exp.Attempt}, ids, subjects, payloads)
	if errors.Is(err, runstore.ErrGuard) {
		a.rc, a.n, a.log = nil, 0, nil
		return false, nil
	}
	if err != nil {
		return false, err
	}
	rc.row, rc.ref = row, refOf(row)
	return true, nil
}

// attemptLog is the logger of attempt n of job at run's step.
func (p *Pipeline) attemptLog(row *runstore.Run, n int, job int64) *slog.Logger {
	return p.cfg.Logger.With("run", row.ID, "request_id", row.RequestID, "target", row.Target, "attempt", n, "job_id", job)
}

// notLive decides, in tx, what becomes of a job that is not its run's live job. It returns the
// run with this attempt counted when the job resumes the run and goes on; done when the job's
// handling is over (it let go of a paused run, or retried a failed one); errStale when the job
// has nothing to do with the run's state (the run moved on).
func (p *Pipeline) notLive(ctx context.Context, tx pgx.Tx, a *attempt, runID string) (*runstore.Run, bool, error) {
	job, step := a.job, a.step
	// What follows changes the run's state: its commit waits for the WAL flush after all.
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = on`); err != nil {
		return nil, false, err
	}
	row, err := p.lockRun(ctx, tx, runID)
	if err != nil {
		return nil, false, err
	}
	rc, err := p.newRunContext(row)
	if err != nil {
		return nil, false, err
	}
	switch {
	case row.Status == runstore.RunPaused && row.Step() == step && row.StoppedByJob == job.ID:
		// The job whose cancellation paused the run, retried (River UI): it resumes the run
		// and goes on in this very job.
		if _, err := p.resume(ctx, tx, a.client, rc, runstore.Guard{Statuses: []string{runstore.RunPaused}, Step: step, AnyJob: true},
			job.ID, fmt.Sprintf("job %d, which paused the run, was retried (River UI)", job.ID)); err != nil {
			return nil, false, err
		}
		row, err := p.cfg.Store.StartAttempt(ctx, tx, runID, step, job.ID, false)
		if err != nil {
			return nil, false, err
		}
		_, err = tx.Exec(ctx, `SET LOCAL synchronous_commit = on`) // StartAttempt turned it off
		return row, false, err
	case row.Status == runstore.RunPaused && row.JobID == job.ID:
		// Paused while this job waited: it lets go of the run; resuming gives the run a new job.
		if err := p.apply(ctx, tx, row.ID, runstore.Guard{Statuses: []string{runstore.RunPaused}, Step: row.Step(), Job: job.ID},
			runstore.Change{ClearJob: true}); err != nil {
			return nil, false, err
		}
		return nil, true, a.completeJob(ctx, tx)
	case row.Status == runstore.RunFailed && row.StoppedByJob == job.ID:
		// The job that failed the run, retried (River UI): the run is retried.
		if err := p.retryRun(ctx, tx, a.client, rc, fmt.Sprintf("job %d, which failed the run, was retried (River UI): the run plans again and resumes from its failed phase", job.ID)); err != nil {
			return nil, false, err
		}
		return nil, true, a.completeJob(ctx, tx)
	}
	return nil, false, errStale
}

// outcome is how an attempt ended. Each maps to exactly one transition in conclude.
type outcome int

const (
	// outCompleted: the step's work is done and committed.
	outCompleted outcome = iota
	// outSlice: a batched hook committed progress and has more to do: the job snoozes and the
	// next slice goes on from the checkpoint. The attempt does not count.
	outSlice
	// outPaused: an operator cancelled the job while its batched hook ran: the run waits, with
	// the hook's checkpoint, until the job is retried or the run resumed.
	outPaused
	// outCancelled: an operator cancelled the job: the run fails.
	outCancelled
	// outInterrupted: the worker is stopping: the job goes back to the queue for any worker.
	// The attempt does not count.
	outInterrupted
	// outTransient: transient trouble within the outage tolerance: tried again after a back-off.
	// The attempt does not count.
	outTransient
	// outRetry: the attempt failed and may succeed if tried again; attempts remain.
	outRetry
	// outFailed: the step failed for good.
	outFailed
)

// classify says how the attempt ended, from the error of its work and its context.
func (a *attempt) classify(ctx context.Context, err error) outcome {
	sliceEnded := errors.Is(err, errSliceEnded)
	switch {
	case err == nil:
		return outCompleted
	case errors.Is(context.Cause(ctx), river.ErrJobCancelledRemotely):
		a.cancelled = true
		if sliceEnded {
			return outPaused
		}
		return outCancelled
	case errors.Is(ctx.Err(), context.Canceled):
		// River cancels a job's context only for a remote cancel (above) or a stop.
		return outInterrupted
	case sliceEnded && a.res.progressed:
		return outSlice
	case sliceEnded:
		// A slice that committed nothing (its batches keep timing out, or the job's time ran
		// out first) is a failed attempt: otherwise it would snooze for ever.
		return a.retryOrFail(errNoProgress)
	case ctx.Err() == nil && hooks.Retryable(err) && transient.Is(err) && a.withinTolerance():
		// (An error a hook marked permanent stays permanent, whatever it wraps.)
		return outTransient
	}
	return a.retryOrFail(err)
}

func (a *attempt) retryOrFail(err error) outcome {
	if a.step.Phase != contract.PhaseOnError && hooks.Retryable(err) && a.n < a.p.cfg.MaxAttempts {
		return outRetry
	}
	return outFailed
}

// errNoProgress is the failure of a batched hook's slice that committed no batch.
var errNoProgress = errors.New("the batched hook committed no batch in its slice (each batch timed out, or the slice's time ran out first)")

// withinTolerance reports whether transient trouble at the step began less than the outage
// tolerance ago (or begins now).
func (a *attempt) withinTolerance() bool {
	since := a.rc.row.TransientSince
	return since == nil || time.Since(*since) < a.p.cfg.OutageTolerance
}

// transientWait is the back-off of a transient retry: it grows with the outage, from
// RetryBackoff to RetryBackoffMax.
func (a *attempt) transientWait() time.Duration {
	d := a.p.cfg.RetryBackoff
	if since := a.rc.row.TransientSince; since != nil {
		d = max(d, time.Since(*since)/2)
	}
	return jitter(min(d, a.p.cfg.RetryBackoffMax))
}

// conclude records how the attempt ended and returns what River should do with the job. err is
// the error of the step's work (nil: the step is done).
func (a *attempt) conclude(ctx context.Context, err error) error {
	o := a.classify(ctx, err)
	if errors.Is(err, errSliceEnded) && o != outSlice && o != outPaused {
		err = errNoProgress
		if n := len(a.res.hooks); n > 0 && a.res.failedHook == "" {
			a.res.failedHook = a.res.hooks[n-1].name // the batched hook, last to run
		}
	}
	rctx, cancel := recordCtx(ctx) // the outcome may be that the job's context ran out
	defer cancel()
	if o == outFailed || o == outCancelled || (o == outCompleted && a.mayEndRun()) {
		// Read outside the queue transaction: the run's final event lists the target's
		// incomplete migrations as its tracking table shows them. A run that completes waits
		// until it can say (its work is in the ledger: the next attempt only records it); a
		// run that fails says why it cannot.
		sum, serr := a.p.summary(rctx, a.rc)
		if serr != nil && o == outCompleted && transient.Is(serr) && a.withinTolerance() {
			o, err = outTransient, serr
		} else {
			a.summary = withUnread(sum, serr, a.log)
		}
	}
	a.observe(o)
	switch o {
	case outCompleted:
		return a.finish(rctx, "completed", nil, a.succeed)
	case outSlice:
		// The checkpoint committed with the batches; only the count is taken back.
		a.uncount(rctx, false)
		return river.JobSnooze(0)
	case outPaused:
		return a.finish(rctx, "paused", nil, a.paused)
	case outCancelled:
		cause := errors.New("the job was cancelled while it ran (River UI, or an operator)")
		return a.finish(rctx, "failed", cause, func(ctx context.Context, tx pgx.Tx) error {
			return a.failed(ctx, tx, contract.CodeCancelled, cause)
		})
	case outInterrupted:
		a.uncount(rctx, false, a.retryEvents(contract.CodeInterrupted, err,
			"interrupted by a stopping worker; it goes on in any worker (this attempt does not count)")...)
		// Wrapping context.Canceled, River hands the job back without using up an attempt.
		return fmt.Errorf("interrupted: %w", context.Canceled)
	case outTransient:
		wait := a.transientWait()
		a.log.Warn(stepMsg(a.step, "hit transient trouble; will retry"), "error", err.Error(), "retry_in", wait.String())
		a.uncount(rctx, true, a.retryEvents(contract.CodeUnavailable, err,
			fmt.Sprintf("transient trouble; retrying in about %s (this attempt does not count; the worker keeps trying for %s)",
				wait.Round(10*time.Millisecond), a.p.cfg.OutageTolerance))...)
		return river.JobSnooze(wait)
	case outRetry:
		wait := a.p.backoff(a.n)
		a.log.Warn(stepMsg(a.step, "attempt failed; will retry"), "error", err.Error(), "max_attempts", a.p.cfg.MaxAttempts)
		evs := a.retryEvents(errorCode(err, a.step.Phase), err,
			fmt.Sprintf("attempt %d of %d failed; retrying in about %s", a.n, a.p.cfg.MaxAttempts, wait.Round(10*time.Millisecond)))
		if rerr := a.p.inTx(rctx, func(tx pgx.Tx) error {
			aerr := a.p.apply(rctx, tx, a.rc.row.ID, live(a.step, a.job.ID), runstore.Change{
				Transient: "clear", LastError: eventError(errorCode(err, a.step.Phase), err),
			}, evs...)
			return aerr
		}); rerr != nil && !errors.Is(rerr, errStale) {
			a.log.Warn("could not record the failed attempt", "error", rerr.Error())
		}
		if a.moved {
			// River counts its attempts per job, and this job went through other steps'
			// attempts: a snooze, which River does not count, waits the same back-off.
			return river.JobSnooze(wait)
		}
		return err
	}
	code := errorCode(err, a.step.Phase)
	if errors.Is(err, errNoProgress) {
		code = contract.CodeTimeout
	} else if hooks.Retryable(err) && transient.Is(err) {
		code = contract.CodeUnavailable
	}
	return a.finish(rctx, "failed", err, func(ctx context.Context, tx pgx.Tx) error { return a.failed(ctx, tx, code, err) })
}

// stepMsg names a log record about a step: "phase failed", "planning failed", ...
func stepMsg(s Step, what string) string {
	switch s {
	case planStep:
		return "planning " + what
	case dryRunStep:
		return "dry-run " + what
	}
	return "phase " + what
}

// nextRetry is River's NextRetry for the pipeline's jobs: the back-off of the attempt. River's
// attempt number follows the pipeline's own closely (both leave out snoozes and stops), so the
// wait is the one the phase.retrying event announced, give or take its jitter.
func (p *Pipeline) nextRetry(job *rivertype.JobRow) time.Time {
	return time.Now().Add(p.backoff(job.Attempt))
}

// finish runs fn, the transition of an outcome that ends the job's part, and completes the job,
// in one transaction; the job's output (River UI shows it) says how its part ended. A stale
// run (it moved on meanwhile) ends the job without effect. An error of the queue database
// returns to River, which tries the job again: the next attempt finds in the ledger what this
// one committed.
//
// The job ends in the same transaction, even when its step failed (discarded, as River ends a
// job that failed for good) or the run paused (completed): had it ended in River only after the
// transaction, a worker dying in between would leave a running job that River rescues later,
// indistinguishable from an operator's retry of it (which resumes the run).
func (a *attempt) finish(ctx context.Context, outcome string, cause error, fn func(context.Context, pgx.Tx) error) error {
	out := jobOutput{Outcome: outcome, Run: a.rc.row.ID, Step: describeStep(a.step), Attempt: a.n}
	if cause != nil {
		out.Error = cause.Error()
	}
	if err := river.RecordOutput(ctx, out); err != nil {
		a.log.Debug("could not record the job's output", "error", err.Error())
	}
	err := a.p.inTx(ctx, func(tx pgx.Tx) error {
		if err := fn(ctx, tx); err != nil {
			return err
		}
		if outcome == "failed" && !a.cancelled {
			// River UI then shows the job as River's own failures, not as completed.
			return a.discard(ctx, tx, out)
		}
		return a.completeJob(ctx, tx)
	})
	if errors.Is(err, errStale) {
		a.log.Info("the run moved on while this job ran; its outcome is not recorded")
		return nil
	}
	if err != nil {
		return fmt.Errorf("record the outcome of %s: %w", describeStep(a.step), err)
	}
	return nil
}

// discard ends the job, in tx, as River ends a job that failed for good (discarded), with
// out as its output and its error in its errors, as River UI shows them.
func (a *attempt) discard(ctx context.Context, tx pgx.Tx, out jobOutput) error {
	if a.client == nil {
		return errors.New("jobs: no River client")
	}
	meta, err := json.Marshal(map[string]any{"output": out})
	if err != nil {
		return err
	}
	errData, err := json.Marshal(rivertype.AttemptError{At: time.Now().UTC(), Attempt: a.job.Attempt, Error: out.Error})
	if err != nil {
		return err
	}
	now := time.Now()
	p := riverdriver.JobSetStateDiscarded(a.job.ID, now, errData, meta)
	rows, err := a.client.Driver().UnwrapExecutor(tx).JobSetStateIfRunningMany(ctx, &riverdriver.JobSetStateIfRunningManyParams{
		ID: []int64{p.ID}, Attempt: []*int{p.Attempt}, ErrData: [][]byte{p.ErrData}, FinalizedAt: []*time.Time{p.FinalizedAt},
		MetadataDoMerge: []bool{p.MetadataDoMerge}, MetadataUpdates: [][]byte{p.MetadataUpdates}, ScheduledAt: []*time.Time{p.ScheduledAt},
		Schema: a.p.cfg.RiverSchema, State: []rivertype.JobState{p.State},
	})
	if err != nil {
		return fmt.Errorf("discard job %d: %w", a.job.ID, err)
	}
	if len(rows) == 0 {
		return fmt.Errorf("discard job %d: it is not running", a.job.ID)
	}
	return nil
}

// jobOutput is the output a finished job records in River (shown by River UI).
type jobOutput struct {
	// Outcome is how the job's part of the run ended: completed, paused or failed.
	Outcome string `json:"outcome"`
	Run     string `json:"run"`
	Step    string `json:"step"`
	Attempt int    `json:"attempt"`
	Error   string `json:"error,omitempty"`
}

// uncount takes back the attempt's count (it did not count) and records evs, in one
// transaction; transientTrouble marks the start of a row of transient failures. A failure is
// only logged: the attempt then counts.
func (a *attempt) uncount(ctx context.Context, transientTrouble bool, evs ...contract.Event) {
	change := runstore.Change{Attempt: "dec"}
	if transientTrouble {
		change.Transient = "start"
	}
	err := a.p.inTx(ctx, func(tx pgx.Tx) error {
		err := a.p.apply(ctx, tx, a.rc.row.ID, live(a.step, a.job.ID), change, evs...)
		return err
	})
	if err != nil && !errors.Is(err, errStale) {
		a.log.Warn("could not record the attempt's outcome", "error", err.Error())
	}
}

// retryEvents reports an attempt that is tried again: the hooks that failed, and
// phase.retrying (run.retrying for planning and the dry-run).
func (a *attempt) retryEvents(code string, cause error, msg string) []contract.Event {
	evs := a.failedHookEvents()
	kind := contract.KindPhaseRetrying
	if !contract.IsPhase(a.step.Phase) {
		kind = contract.KindRunRetrying
	}
	ev := a.p.stepEvent(a.rc, kind, a.step, a.n, a.key(), code)
	ev.Hook, ev.DurationMS = a.res.failedHook, a.res.duration.Milliseconds()
	ev.Error = eventError(code, cause)
	ev.Error.Retryable = true
	ev.Message = msg
	return append(evs, ev)
}

// failedHookEvents reports the hooks of an attempt that failed: the hooks that failed, and those
// whose work is committed all the same (in a segment of the phase before the failure, or
// earlier). Hooks that succeeded in the transaction that failed were rolled back with it and
// are not reported.
func (a *attempt) failedHookEvents() []contract.Event {
	var evs []contract.Event
	for _, h := range a.res.hooks {
		if h.err != nil || h.committed {
			evs = append(evs, a.hookEvent(h))
		}
	}
	return evs
}

// hookEvent reports a hook that ran (or that the ledger shows committed).
func (a *attempt) hookEvent(h hookOutcome) contract.Event {
	var ev contract.Event
	if h.err == nil {
		ev = a.p.stepEvent(a.rc, contract.KindHookCompleted, a.step, a.n, h.name)
	} else {
		ev = a.p.stepEvent(a.rc, contract.KindHookFailed, a.step, a.n, h.name, a.key())
		ev.Error = eventError(errorCode(h.err, a.step.Phase), h.err)
	}
	ev.Hook, ev.DurationMS, ev.RowsAffected, ev.Message = h.name, h.duration.Milliseconds(), h.rows, h.message
	return ev
}

// failed fails the run at the attempt's step with err: the step's failure events, then the
// migration's on_error hooks or the end of the run (transition failAt).
func (a *attempt) failed(ctx context.Context, tx pgx.Tx, code string, cause error) error {
	if a.step.Phase == contract.PhaseOnError {
		// on_error runs once: whatever stops it, the run ends with its original error.
		return a.onErrorDone(ctx, tx, cause)
	}
	a.log.Error(stepMsg(a.step, "failed"), "error", cause.Error(), "hook", a.res.failedHook)
	ee := eventError(code, cause)
	if code == contract.CodeCancelled {
		ee.Retryable = false
	}
	f := failure{Hook: a.res.failedHook, Error: *ee}
	evs := a.failedHookEvents()
	m, _ := a.rc.migration(a.step.Version)
	if contract.IsPhase(a.step.Phase) && m != nil {
		pf := a.p.stepEvent(a.rc, contract.KindPhaseFailed, a.step, a.n)
		pf.Hook, pf.DurationMS, pf.Error, pf.Message = f.Hook, a.res.duration.Milliseconds(), ee, cause.Error()
		evs = append(evs, pf)
	} else {
		m = nil
	}
	final := a.p.runFailedEvent(a.rc, m, a.step.Phase, f, "", a.summary)
	return a.p.failAt(ctx, tx, a.client, a.rc, a.guard(), a.step, f, a.job.ID, evs, final)
}

// paused pauses the run at the attempt's step: an operator cancelled the job while its
// batched hook ran, which stopped after a committed batch with its checkpoint.
func (a *attempt) paused(ctx context.Context, tx pgx.Tx) error {
	h := hookOutcome{}
	if n := len(a.res.hooks); n > 0 {
		h = a.res.hooks[n-1]
	}
	ev := a.p.stepEvent(a.rc, contract.KindRunPaused, a.step, a.n, "job", fmt.Sprint(a.job.ID))
	ev.Hook, ev.RowsAffected, ev.DurationMS = h.name, h.rows, h.duration.Milliseconds()
	ev.Message = fmt.Sprintf("job %d was cancelled while hook %q ran, after %d row(s); its checkpoint is kept. Retry job %d (River UI) to resume it, or fail the run",
		a.job.ID, h.name, h.rows, a.job.ID)
	a.log.Warn("run paused: its job was cancelled while a batched hook ran", "hook", h.name, "rows_affected", h.rows)
	return a.p.pause(ctx, tx, a.rc, a.guard(), a.job.ID, false, ev)
}

// observe reports the attempt's outcome to the Observer.
func (a *attempt) observe(o outcome) {
	if !contract.IsPhase(a.step.Phase) || a.res == nil {
		return
	}
	switch o {
	case outCompleted:
		a.p.observe(a.step.Phase, "completed", a.res)
	case outRetry, outTransient:
		a.p.observe(a.step.Phase, "retrying", a.res)
		a.p.cfg.Observer.PhaseRetried(a.step.Phase)
	case outFailed, outCancelled:
		a.p.observe(a.step.Phase, "failed", a.res)
	}
}

// observe reports a phase's outcome and its hooks' to the Observer.
func (p *Pipeline) observe(phase, outcome string, res *phaseResult) {
	p.cfg.Observer.PhaseDone(phase, outcome, res.duration)
	for _, h := range res.hooks {
		if h.kind == "" || h.earlier {
			continue
		}
		hookOutcome := "completed"
		if h.err != nil {
			hookOutcome = "failed"
		}
		p.cfg.Observer.HookDone(h.kind, phase, hookOutcome, h.duration)
	}
}

// errorCode classifies a step's error for events.
func errorCode(err error, phase string) string {
	var he *hooks.HookError
	var coded interface{ Code() string }
	switch {
	case errors.As(err, &coded):
		return coded.Code()
	case errors.Is(err, context.DeadlineExceeded):
		return contract.CodeTimeout
	case errors.Is(err, hooks.ErrUnknownHook):
		return contract.CodeUnknownHook
	case errors.Is(err, hooks.ErrInvalidHooks):
		return contract.CodeInvalidHooks
	case errors.As(err, &he) && he.Panic:
		return contract.CodePanic
	case errors.As(err, &he):
		return contract.CodeHookFailed
	case phase == contract.PhaseDDL:
		return contract.CodeSQLError
	}
	return contract.CodeInternal
}

// onErrorDone ends a run whose on_error hooks ran (or could not run): failed, with the original
// error. err is why on_error itself could not run all its hooks, if it could not; a hook's
// failure is taken from the result.
func (a *attempt) onErrorDone(ctx context.Context, tx pgx.Tx, err error) error {
	orig := a.rc.failure()
	m, _ := a.rc.migration(a.step.Version)
	if err == nil && a.res.failedHook != "" {
		for _, h := range a.res.hooks {
			if h.err != nil {
				err = h.err
				break
			}
		}
	}
	extra := ""
	evs := make([]contract.Event, 0, len(a.res.hooks)+2)
	for _, h := range a.res.hooks {
		evs = append(evs, a.hookEvent(h))
	}
	kind := contract.KindPhaseCompleted
	if err != nil {
		kind = contract.KindPhaseFailed
		extra = "on_error also failed: " + err.Error()
		a.log.Error("on_error hooks failed", "error", err.Error(), "original_error", orig.Error.Message)
	}
	pe := a.p.stepEvent(a.rc, kind, a.step, a.n)
	pe.DurationMS, pe.RowsAffected = a.res.duration.Milliseconds(), a.res.rows
	pe.Message = fmt.Sprintf("%d hook(s)", len(a.res.hooks))
	if err != nil {
		pe.Hook, pe.Error, pe.Message = a.res.failedHook, eventError(errorCode(err, a.step.Phase), err), err.Error()
	}
	final := a.p.runFailedEvent(a.rc, m, a.rc.row.FailedPhase, orig, extra, a.summary)
	final.Message += retryHint(a.rc.row.StoppedByJob)
	a.log.Error("run failed", "reason", final.Message)
	return a.p.end(ctx, tx, a.client, a.rc, a.step, a.job.ID, runstore.RunFailed, append(evs, pe, final)...)
}
