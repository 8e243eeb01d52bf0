package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// The run state machine. Every change of a run's state is one of the transitions below. Each
// runs inside the caller's queue-database transaction: it checks that the run is where the
// caller found it (its guard; otherwise errStale, and the caller rolls back), changes the run
// row, records the events that report the change, and inserts the River job of the run's next
// step. A job whose part is over completes itself in the same transaction (attempt.finish), so
// a run's state, its events and its jobs never disagree, whatever crashes when.
//
//	queued ─admit─▶ running(plan) ─planned─▶ running(step) ─advance─▶ running(next step) … ─complete─▶ completed
//	                      │                     │   │
//	                      └─failAt──────────────┴───┴─failAt─▶ running(on_error) ─▶ failed, or failed at once
//	running(step) ─pause─▶ paused ─resume─▶ running(step)
//	running(step) whose job ended without moving it ─requeue (reconciler)─▶ running(step) with a new job
//	failed ─retry (operator)─▶ queued: the run plans again and resumes from its failed phase

// Step is one position in a run: a phase of a migration; the zero Step is planning.
type Step = runstore.Step

// planStep is where a run is while it is planned; dryRunStep while its dry-run runs.
var (
	planStep   = Step{}
	dryRunStep = Step{Phase: "dry_run"}
)

// errStale is returned by a transition whose run is not where its caller found it: the job
// that asked is stale (the run moved on, was paused, failed or was taken over) and ends
// without effect.
var errStale = errors.New("stale job: the run has moved on")

// apply makes change to run under guard g and records evs, the events that report it, in tx, in
// one round trip. A guard that does not hold is errStale.
func (p *Pipeline) apply(ctx context.Context, tx pgx.Tx, run string, g runstore.Guard, c runstore.Change, evs ...contract.Event) error {
	err := p.cfg.Store.Apply(ctx, tx, run, g, c, func(b *pgx.Batch) error {
		return outbox.Queue(b, p.cfg.Store.Schema(), true, evs...)
	})
	if errors.Is(err, runstore.ErrGuard) {
		return errStale
	}
	return err
}

// record inserts events in tx.
func (p *Pipeline) record(ctx context.Context, tx pgx.Tx, evs ...contract.Event) error {
	return outbox.Insert(ctx, tx, p.cfg.Store.Schema(), evs...)
}

// jobArgs returns the River job of step of the run: what the job needs (the run and the step),
// and what River UI shows of it (the target, the request, the migration and its hooks).
func jobArgs(rc *runContext, s Step) river.JobArgs {
	switch s {
	case planStep:
		return RunStartArgs{RunID: rc.row.ID, Target: rc.row.Target, RequestID: rc.row.RequestID}
	case dryRunStep:
		return DryRunArgs{RunID: rc.row.ID, Target: rc.row.Target, RequestID: rc.row.RequestID}
	}
	args := PhaseArgs{RunID: rc.row.ID, Version: s.Version, Phase: s.Phase, Target: rc.row.Target}
	if m, err := rc.migration(s.Version); err == nil {
		args.Migration = m.ID()
		for _, h := range m.Hooks {
			if h.Phase == s.Phase {
				args.Hooks = append(args.Hooks, h.Name)
			}
		}
	}
	return args
}

// insertJob inserts the job of step of the run in tx and returns its id.
func (p *Pipeline) insertJob(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], rc *runContext, s Step) (int64, error) {
	if client == nil {
		return 0, errors.New("jobs: no River client")
	}
	res, err := client.InsertTx(ctx, tx, jobArgs(rc, s), &river.InsertOpts{Queue: p.cfg.Queue, MaxAttempts: p.cfg.riverMaxAttempts()})
	if err != nil {
		return 0, fmt.Errorf("insert job of %s: %w", describeStep(s), err)
	}
	return res.Job.ID, nil
}

// admitNext starts the oldest queued run of target if the target has no running or paused run.
func (p *Pipeline) admitNext(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], targetName string) error {
	row, err := p.cfg.Store.AdmitNext(ctx, tx, targetName)
	if err != nil || row == nil {
		return err
	}
	rc, decodeErr := p.newRunContext(row)
	if decodeErr != nil { // its planning fails, saying why
		rc = &runContext{row: row, ref: refOf(row)}
	}
	job, err := p.insertJob(ctx, tx, client, rc, planStep)
	if err != nil {
		return err
	}
	if err := p.cfg.Store.Apply(ctx, tx, row.ID, runstore.Guard{Statuses: []string{runstore.RunRunning}, AnyStep: true, AnyJob: true},
		runstore.Change{Job: job, SetJob: true}, nil); err != nil {
		return err
	}
	// Its planning most often starts in this process (see advance).
	if decodeErr == nil {
		row.JobID = job
		p.runs.expect(*row)
	}
	return nil
}

// lockRun reads run, locked for the rest of tx.
func (p *Pipeline) lockRun(ctx context.Context, tx pgx.Tx, id string) (*runstore.Run, error) {
	return p.cfg.Store.GetRunForUpdate(ctx, tx, id)
}

// live is the guard of a transition made by job, the live job of a run at step: the run may
// have been paused meanwhile (a running phase finishes, and its outcome is recorded).
func live(step Step, job int64) runstore.Guard {
	return runstore.Guard{Statuses: []string{runstore.RunRunning, runstore.RunPaused}, Step: step, Job: job}
}

// advance moves a run whose job at from succeeded to step to, with its job (and records the
// run's plan, when plan is set: the planning step's success). A run paused meanwhile moves to
// step to and waits there without a job (the job inserted for it finds the run paused when it
// starts, and ends without effect).
func (p *Pipeline) advance(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], rc *runContext, from Step, job int64, to Step, plan runstore.Plan, evs ...contract.Event) error {
	next, err := p.insertJob(ctx, tx, client, rc, to)
	if err != nil {
		return err
	}
	if err := p.apply(ctx, tx, rc.row.ID, live(from, job), runstore.Change{
		Step: &to, Attempt: "reset", Transient: "clear", Plan: plan, Job: next, SetJob: true, OnlyIfRunning: true,
	}, evs...); err != nil {
		return err
	}
	// The next job most often starts in this process, and finds the run as this leaves it
	// (unless tx rolls back, or the run was paused meanwhile: begin then finds it otherwise).
	row := *rc.row
	row.StepVersion, row.StepPhase, row.JobID, row.Attempt, row.TransientSince = to.Version, to.Phase, next, 0, nil
	if plan != nil {
		row.Plan = plan
	}
	p.runs.expect(row)
	return nil
}

// end ends a run whose job at from did its last step (the run's last phase, its on_error hooks,
// planning with nothing to do, its dry-run) with status, and admits the target's next run.
func (p *Pipeline) end(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], rc *runContext, from Step, job int64, status string, evs ...contract.Event) error {
	return p.endRun(ctx, tx, client, rc, live(from, job), runstore.Change{Status: status}, evs...)
}

// endRun ends a run under g with change (its status, and what else the end records) and evs,
// its final event among them, and admits the target's next run.
func (p *Pipeline) endRun(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], rc *runContext, g runstore.Guard, change runstore.Change, evs ...contract.Event) error {
	change.ClearJob, change.Finished, change.Transient = true, true, "clear"
	if err := p.apply(ctx, tx, rc.row.ID, g, change, evs...); err != nil {
		return err
	}
	p.ended(rc, change.Status)
	if rc.row.Rollout != "" {
		// The rollout's lock before the target's admission lock (see rollout.go).
		var final *contract.Event
		for i := range evs {
			if evs[i].Kind == contract.KindRunFailed || evs[i].Kind == contract.KindRunCompleted {
				final = &evs[i]
			}
		}
		if err := p.rolloutRunEnded(ctx, tx, client, rc.row, change.Status, final); err != nil {
			return err
		}
	}
	return p.admitNext(ctx, tx, client, rc.row.Target)
}

// failure is what a run records about the failure that ends it, for run.failed.
type failure struct {
	Hook  string              `json:"hook,omitempty"`
	Error contract.EventError `json:"error"`
}

// failAt fails a run at step, which job (0: none) had: the run goes to the on_error hooks of
// the step's migration when it has some (and the step is not on_error itself), and otherwise
// ends failed, admitting the target's next run. evs report the failure so far; failAt adds
// migration.failed and, when the run ends now, final (its run.failed). stoppedBy is the job
// that retrying (River UI) resumes the run from.
func (p *Pipeline) failAt(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], rc *runContext, g runstore.Guard, at Step, f failure, stoppedBy int64, evs []contract.Event, final contract.Event) error {
	fail := &runstore.Failure{Version: at.Version, Phase: at.Phase, Error: f}
	change := runstore.Change{Failure: fail, StoppedByJob: stoppedBy, Transient: "clear"}
	m, _ := rc.migration(at.Version)
	if m != nil && at.Phase != contract.PhaseOnError {
		mf := outbox.New(rc.ref, contract.KindMigrationFailed, m.Version)
		setMigration(&mf, m)
		mf.Phase, mf.Hook, mf.Error = at.Phase, f.Hook, &f.Error
		evs = append(evs, mf)
	}
	if m != nil && at.Phase != contract.PhaseOnError && hasHooks(m, contract.PhaseOnError) {
		onError := Step{Version: m.Version, Phase: contract.PhaseOnError}
		job, err := p.insertJob(ctx, tx, client, rc, onError)
		if err != nil {
			return err
		}
		change.Status, change.Step, change.Job, change.SetJob, change.Attempt = runstore.RunRunning, &onError, job, true, "reset"
		err = p.apply(ctx, tx, rc.row.ID, g, change, evs...)
		return err
	}
	change.Status = runstore.RunFailed
	final.Message += retryHint(stoppedBy)
	p.cfg.Logger.Error("run failed", "run", rc.row.ID, "request_id", rc.row.RequestID, "target", rc.row.Target, "reason", final.Message)
	return p.endRun(ctx, tx, client, rc, g, change, append(evs, final)...)
}

// failStopped fails a run whose step was stopped from outside its job (the job cancelled or
// discarded, an operator's fail), with f and the summary sum for its final event; stoppedBy is
// the job that stopped (0: none), idParts tell its phase.failed apart. At a phase, the phase
// fails like any other (failAt: its migration's on_error hooks, or the end); in on_error, the
// run ends with its original failure, f added; elsewhere (queued, planning, its dry-run) it ends.
func (p *Pipeline) failStopped(ctx context.Context, tx pgx.Tx, rc *runContext, g runstore.Guard, f failure, stoppedBy int64, sum contract.RunSummary, idParts ...string) error {
	step := rc.row.Step()
	m, _ := rc.migration(step.Version)
	switch {
	case rc.row.Status == runstore.RunQueued:
		final := p.runFailedEvent(rc, nil, "", f, "", sum)
		final.Message = "the run failed before it started: " + f.Error.Message + incompleteNote(sum)
		return p.failAt(ctx, tx, p.client, rc, g, step, f, stoppedBy, nil, final)
	case !contract.IsPhase(step.Phase) || m == nil:
		return p.failAt(ctx, tx, p.client, rc, g, step, f, stoppedBy, nil, p.runFailedEvent(rc, nil, step.Phase, f, "", sum))
	case step.Phase == contract.PhaseOnError:
		// Its on_error hooks were running: the run ends with the failure that started them.
		final := p.runFailedEvent(rc, m, rc.row.FailedPhase, rc.failure(), "on_error was stopped: "+f.Error.Message, sum)
		final.Message += retryHint(rc.row.StoppedByJob)
		p.cfg.Logger.Error("run failed", "run", rc.row.ID, "request_id", rc.row.RequestID, "target", rc.row.Target, "reason", final.Message)
		return p.endRun(ctx, tx, p.client, rc, g, runstore.Change{Status: runstore.RunFailed}, final)
	}
	pf := p.stepEvent(rc, contract.KindPhaseFailed, step, rc.row.Attempt, idParts...)
	pf.Error, pf.Message = &f.Error, f.Error.Message
	return p.failAt(ctx, tx, p.client, rc, g, step, f, stoppedBy, []contract.Event{pf}, p.runFailedEvent(rc, m, step.Phase, f, "", sum))
}

// pause stops a run at its step until it is resumed: the run keeps its target. stoppedBy is
// the job whose cancellation paused it (0: an operator's pause), which retrying resumes it.
// keepJob leaves the run's live job in place (an operator paused it while the job runs: its
// outcome is still recorded).
func (p *Pipeline) pause(ctx context.Context, tx pgx.Tx, rc *runContext, g runstore.Guard, stoppedBy int64, keepJob bool, evs ...contract.Event) error {
	change := runstore.Change{Status: runstore.RunPaused, Paused: true, StoppedByJob: stoppedBy, ClearJob: !keepJob, Transient: "clear"}
	err := p.apply(ctx, tx, rc.row.ID, g, change, evs...)
	return err
}

// resume sets a paused run going again at its step: in job, when a job resumes it (the job it
// was paused by, retried), else in its live job if it still has one, else in a new one.
func (p *Pipeline) resume(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], rc *runContext, g runstore.Guard, in int64, why string) (int64, error) {
	job := in
	if job == 0 && rc.row.JobID != 0 {
		alive, err := p.jobAlive(ctx, tx, rc.row.JobID)
		if err != nil {
			return 0, err
		}
		if alive {
			job = rc.row.JobID
		}
	}
	if job == 0 {
		var err error
		if job, err = p.insertJob(ctx, tx, client, rc, rc.row.Step()); err != nil {
			return 0, err
		}
	}
	// The event belongs to the epoch the resume ends (rc.ref's): its id is new each time.
	ev := p.stepEvent(rc, contract.KindRunResumed, rc.row.Step(), 0)
	ev.Message = why
	err := p.apply(ctx, tx, rc.row.ID, g, runstore.Change{
		Status: runstore.RunRunning, Job: job, SetJob: true, ClearStopped: true, NextEpoch: true, Transient: "clear",
	}, ev)
	return job, err
}

// retryRun queues a failed run again: once its target is free it plans again, and resumes the
// migration it failed in from its first phase not done.
func (p *Pipeline) retryRun(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], rc *runContext, why string) error {
	ev := outbox.New(rc.ref, contract.KindRunRetried)
	ev.Message = why
	if err := p.apply(ctx, tx, rc.row.ID, runstore.Guard{Statuses: []string{runstore.RunFailed}, AnyStep: true, AnyJob: true},
		runstore.Change{Status: runstore.RunQueued, Requeue: true, ClearJob: true, ClearStopped: true, NextEpoch: true,
			Attempt: "reset", Transient: "clear"}, ev); err != nil {
		return err
	}
	if rc.row.Rollout != "" {
		if err := p.rolloutRunRetried(ctx, tx, rc.row); err != nil {
			return err
		}
	}
	return p.admitNext(ctx, tx, client, rc.row.Target)
}

// requeue gives a running run whose live job ended without moving it (deleted, or completed
// outside the pipeline) a new job for its step.
func (p *Pipeline) requeue(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], rc *runContext, dead int64, why string) error {
	step := rc.row.Step()
	job, err := p.insertJob(ctx, tx, client, rc, step)
	if err != nil {
		return err
	}
	ev := p.stepEvent(rc, contract.KindRunResumed, step, 0, "requeued", fmt.Sprint(dead))
	ev.Message = why
	err = p.apply(ctx, tx, rc.row.ID, runstore.Guard{Statuses: []string{runstore.RunRunning}, Step: step, Job: dead},
		runstore.Change{Job: job, SetJob: true, NextEpoch: true}, ev)
	return err
}

// jobAlive reports whether job is still to be worked or being worked, and not on its way out: a
// running job asked to cancel (an operator's pause cancels the job of a batched hook) is not
// alive, so a resume gives the run a new job and the cancelled one's outcome finds the run
// moved on.
func (p *Pipeline) jobAlive(ctx context.Context, tx pgx.Tx, job int64) (bool, error) {
	var alive bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+pgx.Identifier{p.cfg.RiverSchema}.Sanitize()+`.river_job
		WHERE id = $1 AND state NOT IN ('completed', 'cancelled', 'discarded') AND NOT metadata ? 'cancel_attempted_at')`, job).Scan(&alive)
	return alive, err
}

// ended is called when a run reaches an end state in a transaction (which may still roll
// back: the observer counts are best-effort).
func (p *Pipeline) ended(rc *runContext, status string) {
	p.runs.drop(rc.row.ID)
	p.cfg.Observer.RunFinished(status)
}

// stepEvent returns an event of kind about step of a run (a migration's phase, or the run as a
// whole at planning and dry-run).
func (p *Pipeline) stepEvent(rc *runContext, kind string, s Step, attempt int, idParts ...string) contract.Event {
	ev := outbox.New(rc.ref, kind, append([]string{s.Version, s.Phase}, idParts...)...)
	if m, err := rc.migration(s.Version); err == nil && s.Version != "" {
		setMigration(&ev, m)
		if contract.IsPhase(s.Phase) {
			ev.Phase = s.Phase
		}
	}
	ev.Attempt = attempt
	return ev
}

// runFailedEvent is the run.failed of a run that failed at phase of m (nil: not in a migration).
func (p *Pipeline) runFailedEvent(rc *runContext, m *contract.Migration, phase string, f failure, extra string, summary contract.RunSummary) contract.Event {
	ev := outbox.New(rc.ref, contract.KindRunFailed)
	ev.Error = &f.Error
	where := describeStep(Step{Phase: phase})
	if m != nil {
		setMigration(&ev, m)
		ev.Phase, ev.Hook = phase, f.Hook
		where = phase
		if f.Hook != "" {
			where = fmt.Sprintf("hook %q in %s", f.Hook, phase)
		}
		ev.Message = fmt.Sprintf("migration %s failed at %s: %s", m.ID(), where, f.Error.Message)
	} else {
		ev.Message = fmt.Sprintf("%s failed: %s", where, f.Error.Message)
	}
	if extra != "" {
		ev.Message += "; " + extra
	}
	ev.Message += incompleteNote(summary)
	ev.Data = mustJSON(summary)
	ev.DurationMS = time.Since(rc.row.CreatedAt).Milliseconds()
	return ev
}

// retryHint says how to retry a failed run whose job (stoppedBy) failed it.
func retryHint(stoppedBy int64) string {
	if stoppedBy == 0 {
		return ""
	}
	return fmt.Sprintf("; to retry the run from its failed phase, retry job %d (River UI)", stoppedBy)
}

// incompleteNote says which migrations a run leaves incomplete.
func incompleteNote(s contract.RunSummary) string {
	if s.Unread != "" {
		return "; whether it leaves migrations incomplete is unknown: " + s.Unread
	}
	if len(s.Incomplete) == 0 {
		return ""
	}
	out := "; left incomplete (the next request that includes them resumes them):"
	for i, m := range s.Incomplete {
		if i > 0 {
			out += ","
		}
		out += fmt.Sprintf(" %s_%s after %s", m.Version, m.Name, m.Phase)
	}
	return out
}

// describeStep names a step for messages.
func describeStep(s Step) string {
	switch s {
	case planStep:
		return "planning"
	case dryRunStep:
		return "the dry-run"
	}
	if s.Version == "" {
		return s.Phase
	}
	return s.Version + "/" + s.Phase
}

func setMigration(ev *contract.Event, m *contract.Migration) {
	ev.Migration, ev.Version = m.ID(), m.Version
}

func hasHooks(m *contract.Migration, phase string) bool {
	for _, h := range m.Hooks {
		if h.Phase == phase {
			return true
		}
	}
	return false
}
