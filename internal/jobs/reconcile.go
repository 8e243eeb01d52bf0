package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// The reconciler owns what no attempt can report: a run whose live job ended without moving it,
// and a job whose worker is gone.
// River cancels a job that waits (River UI's cancel on a scheduled or retryable job) without
// running it, discards a job whose attempts ran out (a worker dying with it again and again),
// and an operator may delete one; a worker that records an outcome may also lose the
// connection to the queue database right then. Every such run would hold its target for ever.
// The reconciler, a River periodic job (so it runs on the leader), moves each: a cancelled job
// fails its run (a batched hook's pauses it, with its checkpoint), a discarded one fails it,
// a missing or completed one gets a new job for the same step (the ledger makes that safe).
// It also admits the next run of any target whose queue has no running run.

// ReconcileArgs is the reconciler's job.
type ReconcileArgs struct{}

// Kind is River's job kind.
func (ReconcileArgs) Kind() string { return "confiture_reconcile" }

type reconcileWorker struct {
	river.WorkerDefaults[ReconcileArgs]
	p *Pipeline
}

func (w *reconcileWorker) Timeout(*river.Job[ReconcileArgs]) time.Duration { return time.Minute }

func (w *reconcileWorker) Work(ctx context.Context, _ *river.Job[ReconcileArgs]) error {
	_, err := w.p.Reconcile(ctx)
	return err
}

// PeriodicJobs returns the reconciler's schedule, for the River client's configuration:
// every ReconcileInterval, and once when a leader is elected.
func (p *Pipeline) PeriodicJobs() []*river.PeriodicJob {
	return []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(p.cfg.ReconcileInterval),
		func() (river.JobArgs, *river.InsertOpts) { return ReconcileArgs{}, p.reconcileInsertOpts() },
		&river.PeriodicJobOpts{ID: ReconcileArgs{}.Kind(), RunOnStart: true})}
}

// reconcileInsertOpts are the insert options of a reconciler job: one per interval at most (a
// new leader's first insert does not add a second one), and none that a stuck one can block.
// Uniqueness by state would also count a running job, and the job of a worker that died
// stays running until River rescues it: for that long, no reconciler would run at all.
func (p *Pipeline) reconcileInsertOpts() *river.InsertOpts {
	return &river.InsertOpts{Queue: p.cfg.Queue, MaxAttempts: 1,
		UniqueOpts: river.UniqueOpts{ByPeriod: max(p.cfg.ReconcileInterval, time.Second)}}
}

// ReconcileReport counts what a reconciler pass did.
type ReconcileReport struct {
	// Rescued counts the jobs of workers gone that were handed back to River (see
	// Config.WorkerLiveness).
	Rescued int
	// Failed, Paused and Requeued count the runs moved whose live job had ended.
	Failed, Paused, Requeued int
	// Admitted counts the targets whose next run was admitted.
	Admitted int
}

// RiverClientIDPrefix starts the River client id of every worker: RiverClientID.
const RiverClientIDPrefix = "confiture-worker:"

// RiverClientID is the River client id of the worker with id workerID (its row in the queue
// database's worker table): the jobs it works carry it in attempted_by, which is how the
// reconciler knows the jobs of a worker that is gone.
func RiverClientID(workerID string) string { return RiverClientIDPrefix + workerID }

// reconcileBatch bounds the runs one pass looks at.
const reconcileBatch = 200

// Reconcile moves every running run whose live job has ended without moving it, and admits the
// next run of every target that has queued runs and none running. A run that moved meanwhile is
// left alone.
func (p *Pipeline) Reconcile(ctx context.Context) (ReconcileReport, error) {
	var rep ReconcileReport
	var errs []error
	rescued, err := p.rescueOrphans(ctx)
	rep.Rescued = rescued
	if err != nil {
		errs = append(errs, err)
	}
	dead, err := p.cfg.Store.DeadRuns(ctx, p.cfg.RiverSchema, reconcileBatch)
	if err != nil {
		return rep, errors.Join(append(errs, err)...)
	}
	for _, d := range dead {
		what, err := p.reconcileRun(ctx, d)
		switch {
		case errors.Is(err, errStale):
		case err != nil:
			errs = append(errs, fmt.Errorf("run %s: %w", d.Run, err))
		case what == runstore.RunFailed:
			rep.Failed++
		case what == runstore.RunPaused:
			rep.Paused++
		default:
			rep.Requeued++
		}
	}
	idle, err := p.cfg.Store.IdleTargets(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, t := range idle {
		if err := p.inTx(ctx, func(tx pgx.Tx) error { return p.admitNext(ctx, tx, p.client, t) }); err != nil {
			errs = append(errs, fmt.Errorf("admit the next run of target %s: %w", t, err))
			continue
		}
		rep.Admitted++
	}
	rollouts, err := p.cfg.Store.DueRollouts(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, id := range rollouts {
		if err := p.inTx(ctx, func(tx pgx.Tx) error { return p.driveRollout(ctx, tx, p.client, id) }); err != nil {
			errs = append(errs, fmt.Errorf("rollout %s: %w", id, err))
		}
	}
	if rep != (ReconcileReport{}) {
		p.cfg.Logger.Info("reconciler moved runs whose job had ended", "rescued", rep.Rescued, "failed", rep.Failed,
			"paused", rep.Paused, "requeued", rep.Requeued, "admitted", rep.Admitted)
	}
	return rep, errors.Join(errs...)
}

// rescueOrphans hands back to River the running jobs of workers that are gone: a worker not seen
// for Config.WorkerLiveness (it died, or lost the queue database) cannot finish them. River's
// own rescuer would take them back too, but only after rescue_after (phase_timeout + 5m by
// default), for as long as the run holds its target. Only a reconciler whose own worker has
// heartbeated steadily for the liveness window does this (Config.SteadySince): after an outage
// of the queue database, live workers look missed until their next heartbeat. A job is made
// available again at once, as
// River's rescuer would make it retryable, or discarded when its attempts are used up, or
// cancelled when someone asked to cancel it; its next attempt reads the ledger, so nothing
// committed is done again, and the target's lock keeps it from overlapping a worker that was
// only slow.
func (p *Pipeline) rescueOrphans(ctx context.Context) (int, error) {
	if p.cfg.WorkerLiveness <= 0 {
		return 0, nil
	}
	if p.cfg.SteadySince != nil {
		if since := p.cfg.SteadySince(); since.IsZero() || time.Since(since) < p.cfg.WorkerLiveness {
			p.cfg.Logger.Debug("not handing back jobs of missed workers: this worker's own heartbeats have not been steady for liveness_window",
				"liveness_window", p.cfg.WorkerLiveness.String())
			return 0, nil
		}
	}
	n := 0
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		orphans, err := p.cfg.Store.OrphanJobs(ctx, tx, p.cfg.RiverSchema, RiverClientIDPrefix, p.cfg.WorkerLiveness, reconcileBatch)
		if err != nil || len(orphans) == 0 {
			return err
		}
		now := time.Now().UTC()
		params := &riverdriver.JobRescueManyParams{Schema: p.cfg.RiverSchema, StuckHorizon: now}
		for _, o := range orphans {
			msg, _ := json.Marshal(rivertype.AttemptError{At: now, Attempt: o.Attempt, Error: fmt.Sprintf(
				"its worker (%s) is gone: not seen for %s; rescued by the reconciler", o.Worker, p.cfg.WorkerLiveness)})
			state, finalized := rivertype.JobStateAvailable, (*time.Time)(nil)
			switch {
			case o.Cancelled:
				state, finalized = rivertype.JobStateCancelled, &now
			case o.Attempt >= o.MaxAttempts:
				state, finalized = rivertype.JobStateDiscarded, &now
			}
			params.ID = append(params.ID, o.ID)
			params.Error = append(params.Error, msg)
			params.FinalizedAt = append(params.FinalizedAt, finalized)
			params.ScheduledAt = append(params.ScheduledAt, now)
			params.State = append(params.State, string(state))
			p.cfg.Logger.Warn("job of a worker that is gone handed back", "job_id", o.ID, "worker", o.Worker, "state", string(state))
		}
		if _, err := riverpgxv5.New(nil).UnwrapExecutor(tx).JobRescueMany(ctx, params); err != nil {
			return fmt.Errorf("rescue the jobs of workers gone: %w", err)
		}
		n = len(orphans)
		return nil
	})
	return n, err
}

// reconcileRun moves one run whose live job ended (d) and returns the status it left it in.
func (p *Pipeline) reconcileRun(ctx context.Context, d runstore.Dead) (string, error) {
	rc, err := p.loadRun(ctx, d.Run)
	if err != nil {
		return "", err
	}
	log := p.cfg.Logger.With("run", rc.row.ID, "request_id", rc.row.RequestID, "target", rc.row.Target, "job_id", d.Job)
	g := runstore.Guard{Statuses: []string{runstore.RunRunning}, Step: d.Step, Job: d.Job}
	step := describeStep(d.Step)
	switch d.JobState {
	case string(rivertype.JobStateCancelled):
		if p.holdsBatched(rc, d.Step) {
			ev := p.stepEvent(rc, contract.KindRunPaused, d.Step, rc.row.Attempt, "job", fmt.Sprint(d.Job))
			ev.Message = fmt.Sprintf("job %d of %s was cancelled while it was not running; its checkpoint is kept. Retry job %d (River UI) to resume it, or fail the run",
				d.Job, step, d.Job)
			log.Warn("run paused: the job of its batched hook was cancelled", "step", step)
			return runstore.RunPaused, p.inTx(ctx, func(tx pgx.Tx) error { return p.pause(ctx, tx, rc, g, d.Job, false, ev) })
		}
		log.Warn("run failed: its job was cancelled", "step", step)
		return runstore.RunFailed, p.failEnded(ctx, rc, g, d, contract.CodeCancelled,
			fmt.Sprintf("job %d of %s was cancelled (River UI, or an operator) while it was not running", d.Job, step))
	case string(rivertype.JobStateDiscarded):
		log.Warn("run failed: River discarded its job", "step", step)
		return runstore.RunFailed, p.failEnded(ctx, rc, g, d, contract.CodeDiscarded,
			fmt.Sprintf("job %d of %s was discarded by River: its attempts ran out (its worker died with it again and again, or it kept failing to record its outcome)", d.Job, step))
	}
	why := fmt.Sprintf("job %d of %s no longer exists; a new job goes on with the step", d.Job, step)
	if d.JobState != "" {
		why = fmt.Sprintf("job %d of %s ended (%s) without moving the run; a new job goes on with the step", d.Job, step, d.JobState)
	}
	log.Warn("run given a new job: its job was lost", "step", step, "job_state", d.JobState)
	return runstore.RunRunning, p.inTx(ctx, func(tx pgx.Tx) error { return p.requeue(ctx, tx, p.client, rc, d.Job, why) })
}

// failEnded fails a run whose job ended (cancelled, discarded) at its step.
func (p *Pipeline) failEnded(ctx context.Context, rc *runContext, g runstore.Guard, d runstore.Dead, code, msg string) error {
	sum := p.summaryOrWhy(ctx, rc, p.cfg.Logger.With("run", rc.row.ID, "request_id", rc.row.RequestID, "target", rc.row.Target))
	f := failure{Error: contract.EventError{Code: code, Message: msg}}
	return p.inTx(ctx, func(tx pgx.Tx) error { return p.failStopped(ctx, tx, rc, g, f, d.Job, sum) })
}

// holdsBatched reports whether step is a phase that holds a batched hook: cancelling its job
// pauses the run instead of failing it.
func (p *Pipeline) holdsBatched(rc *runContext, s Step) bool {
	m, err := rc.migration(s.Version)
	if err != nil || !contract.IsPhase(s.Phase) || s.Phase == contract.PhaseDDL {
		return false
	}
	planned, err := p.cfg.Registry.Plan(s.Phase, m.Hooks)
	return err == nil && slices.ContainsFunc(planned, func(pl hooks.Planned) bool { return isBatched(pl) })
}
