package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/queue"
	"github.com/confiture-io/confiture-worker/internal/target"
)

type phaseWorker struct {
	river.WorkerDefaults[PhaseArgs]
	p *Pipeline
}

func (w *phaseWorker) NextRetry(job *river.Job[PhaseArgs]) time.Time {
	return time.Now().Add(w.p.backoff(job.Attempt))
}

func (w *phaseWorker) Timeout(*river.Job[PhaseArgs]) time.Duration { return w.p.cfg.PhaseTimeout }

// hookOutcome is one hook's result, from the executor or, on a retry after a commit, from the
// ledger.
type hookOutcome struct {
	name string
	// kind is the hook type (sql, assert, a plugin's name); empty when read back from the
	// ledger, which records only the declared name.
	kind     string
	duration time.Duration
	rows     int64
	message  string
	err      error
}

// phaseResult is what one phase did.
type phaseResult struct {
	hooks    []hookOutcome
	duration time.Duration
	rows     int64
	message  string
	// failedHook names the hook that failed, if a hook did.
	failedHook string
}

// failure is what a run records about the failure that ends it, for run.failed.
type failure struct {
	Hook  string              `json:"hook,omitempty"`
	Error contract.EventError `json:"error"`
}

func (w *phaseWorker) Work(ctx context.Context, job *river.Job[PhaseArgs]) error {
	p, a := w.p, job.Args
	rc, err := p.runFor(ctx, a, job.Attempt)
	if errors.Is(err, queue.ErrRunNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if !rc.at(a) {
		return nil // stale or duplicate: the run has moved on
	}
	m, err := rc.migration(a.Version)
	if err != nil {
		return river.JobCancel(err)
	}
	// The executor's records carry migration and phase themselves (the logging contract), so
	// they get the logger without them.
	hookLog := p.cfg.Logger.With("run", rc.row.ID, "request_id", rc.row.RequestID, "target", rc.row.Target,
		"version", m.Version, "attempt", job.Attempt, "job_id", job.ID)
	log := hookLog.With("migration", m.ID(), "phase", a.Phase)
	if a.Phase == contract.PhaseOnError {
		return p.runOnError(ctx, job, rc, m, log, hookLog)
	}

	var planned []hooks.Planned
	t, err := p.cfg.Targets.Get(rc.row.Target)
	if err == nil && a.Phase != contract.PhaseDDL {
		planned, err = p.cfg.Registry.Plan(a.Phase, m.Hooks)
	}
	if err != nil {
		return p.failPhase(ctx, job, rc, m, &phaseResult{}, hooks.Permanent(err), log)
	}
	// The start events are recorded while the phase runs; the phase's outcome waits for them.
	started := make(chan error, 1)
	go func() { started <- p.recordStart(ctx, rc, m, a.Phase, job.Attempt, planned) }()
	// So is most of the queue transaction that records the outcome (see prepareSuccessor).
	phaseDone := make(chan struct{})
	succ := p.prepareSuccessor(ctx, job, rc, phaseDone)
	var res *phaseResult
	if a.Phase == contract.PhaseDDL {
		res, err = p.runDDL(ctx, t, rc, m, job.Attempt, log)
	} else {
		res, err = p.runHooks(ctx, t, rc, m, a.Phase, job.Attempt, planned, log, hookLog, hooks.RunOptions{})
	}
	if err == nil {
		fault.At(fault.PhaseAfterCommit)
		if p.cfg.Fault != nil {
			err = p.cfg.Fault("after_target_commit", a, job.Attempt)
		}
	}
	close(phaseDone)
	prepared := <-succ
	if prepared != nil && err != nil {
		_ = prepared.Rollback(context.WithoutCancel(ctx))
		prepared = nil
	}
	if serr := <-started; serr != nil {
		if prepared != nil {
			_ = prepared.Rollback(context.WithoutCancel(ctx))
		}
		// The queue database is failing; whatever the phase did, try again later (a
		// committed phase is found in the ledger then).
		return fmt.Errorf("record phase start: %w", serr)
	}
	switch {
	case errors.Is(err, errSliceEnded) && errors.Is(context.Cause(ctx), river.ErrJobCancelledRemotely):
		// Cancelled by an operator: River ends the job as cancelled whatever it returns, so
		// this is decided here, as late as River decides it.
		return p.pausePhase(ctx, job, rc, m, res, log)
	case errors.Is(err, errSliceEnded):
		// The batched hook's checkpoint is committed; the next slice goes on from it.
		return river.JobSnooze(0)
	case err != nil:
		return p.failPhase(ctx, job, rc, m, res, err, log)
	}
	return p.completePhase(ctx, job, rc, m, res, log, prepared)
}

// errPaused is what a phase job whose batched hook an operator paused ends with.
var errPaused = errors.New("cancelled by an operator")

// pausePhase ends a phase job that an operator cancelled while its batched hook ran: the hook
// stopped after its current batch, with its checkpoint. The run stays at this phase; retrying
// the job (River UI) resumes the hook from the checkpoint.
func (p *Pipeline) pausePhase(ctx context.Context, job *river.Job[PhaseArgs], rc *runContext, m *contract.Migration, res *phaseResult, log *slog.Logger) error {
	ctx, cancel := recordCtx(ctx)
	defer cancel()
	a := job.Args
	h := hookOutcome{}
	if n := len(res.hooks); n > 0 {
		h = res.hooks[n-1]
	}
	ev := p.phaseEvent(rc, m, contract.KindHookFailed, a.Phase, job.Attempt, h.name, "paused", fmt.Sprint(h.rows))
	ev.Hook, ev.RowsAffected, ev.DurationMS = h.name, h.rows, h.duration.Milliseconds()
	ev.Message = fmt.Sprintf("paused by an operator after %d row(s); the checkpoint is kept: retry job %d (River UI) to resume", h.rows, job.ID)
	ev.Error = &contract.EventError{Code: contract.CodeCancelled, Message: "the job was cancelled by an operator", Retryable: true}
	log.Warn("phase paused: its job was cancelled by an operator", "hook", h.name, "rows_affected", h.rows)
	if err := p.inTx(ctx, func(tx pgx.Tx) error { return outbox.Insert(ctx, tx, p.cfg.Store.Schema(), ev) }); err != nil {
		log.Warn("could not record the pause", "error", err.Error())
	}
	return river.JobCancel(errPaused)
}

// successorHold bounds how long a prepared successor transaction waits for its phase.
const successorHold = 100 * time.Millisecond

// prepareSuccessor begins, while the phase runs, the queue transaction that records its success:
// it moves the run to the next step, inserts that step's job and completes this one, leaving
// only the events and the commit for when the phase has committed on the target. The result
// arrives once phaseDone is closed; it is nil when there is nothing prepared: the step ends the
// run (ending a run admits the next one under the target's admission lock, which intake must
// never wait on), the preparation failed, or the phase ran longer than successorHold, after which
// the transaction is rolled back so that no queue transaction stays open during a long phase.
// The caller then records the outcome in a transaction of its own.
func (p *Pipeline) prepareSuccessor(ctx context.Context, job *river.Job[PhaseArgs], rc *runContext, phaseDone <-chan struct{}) <-chan pgx.Tx {
	out := make(chan pgx.Tx, 1)
	a := job.Args
	cur := Step{Version: a.Version, Phase: a.Phase}
	next, _, runDone := NextStep(rc.row.Direction, rc.row.Plan, cur)
	if runDone {
		out <- nil
		return out
	}
	client := river.ClientFromContext[pgx.Tx](ctx)
	go func() {
		tx, err := p.cfg.Store.Pool.Begin(ctx)
		if err != nil {
			out <- nil
			return
		}
		err = p.moveStep(ctx, client, tx, rc, cur, next, "")
		if err == nil {
			_, err = river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		}
		if err == nil {
			select {
			case <-phaseDone:
				out <- tx
				return
			case <-time.After(successorHold):
			}
		}
		_ = tx.Rollback(context.WithoutCancel(ctx))
		out <- nil
	}()
	return out
}

// at reports whether the run is running and at step a.
func (rc *runContext) at(a PhaseArgs) bool {
	return rc.row.Status == queue.RunRunning && rc.row.StepVersion == a.Version && rc.row.StepPhase == a.Phase
}

// recordStart records phase.started and a hook.started for each hook. These report no state
// change, so they commit without waiting for the WAL flush (only a crash of PostgreSQL itself
// could lose them, and the retry that follows records its own), and they do not wake the relay:
// they go out with the phase's outcome, or at the relay's next poll when the phase runs long.
func (p *Pipeline) recordStart(ctx context.Context, rc *runContext, m *contract.Migration, phase string, attempt int, planned []hooks.Planned) error {
	evs := make([]contract.Event, 0, 1+len(planned))
	ps := p.phaseEvent(rc, m, contract.KindPhaseStarted, phase, attempt, fmt.Sprint(attempt))
	if phase != contract.PhaseDDL {
		ps.Message = fmt.Sprintf("%d hook(s)", len(planned))
	}
	evs = append(evs, ps)
	for _, h := range planned {
		ev := p.phaseEvent(rc, m, contract.KindHookStarted, phase, attempt, h.Spec.Name, fmt.Sprint(attempt))
		ev.Hook = h.Spec.Name
		evs = append(evs, ev)
	}
	// One round trip: the batch runs as one implicit transaction.
	batch := &pgx.Batch{}
	batch.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	if err := outbox.Queue(batch, p.cfg.Store.Schema(), false, evs...); err != nil {
		return err
	}
	return p.cfg.Store.Pool.SendBatch(ctx, batch).Close()
}

func (p *Pipeline) phaseEvent(rc *runContext, m *contract.Migration, kind, phase string, attempt int, idParts ...string) contract.Event {
	ev := outbox.New(rc.ref, kind, append([]string{m.Version, phase}, idParts...)...)
	setMigration(&ev, m)
	ev.Phase, ev.Attempt = phase, attempt
	return ev
}

// runHooks runs the hooks of one phase in one target transaction with their ledger rows. If the
// ledger shows the phase committed already (the previous attempt committed, then failed to
// record it in the queue), it returns what the ledger says without running anything.
func (p *Pipeline) runHooks(ctx context.Context, t *target.Target, rc *runContext, m *contract.Migration, phase string, attempt int, planned []hooks.Planned, log, hookLog *slog.Logger, opts hooks.RunOptions) (*phaseResult, error) {
	if len(planned) == 0 {
		return &phaseResult{}, nil
	}
	pool, err := t.Pool(ctx)
	if err != nil {
		return &phaseResult{}, err
	}
	if hasBatched(planned) && !opts.ContinueOnError {
		return p.runSegments(ctx, t, pool, rc, m, phase, attempt, planned, log, hookLog)
	}
	return p.runInTx(ctx, t, pool, rc, m, phase, attempt, attempt == 1, planned, log, hookLog, opts)
}

// runInTx runs planned, the whole phase or a segment of it (see runSegments), in one target
// transaction with their ledger rows. If the ledger shows them committed already, it returns
// what the ledger says without running anything. first says no earlier attempt can have
// recorded anything: the ledger is not read.
func (p *Pipeline) runInTx(ctx context.Context, t *target.Target, pool *pgxpool.Pool, rc *runContext, m *contract.Migration, phase string, attempt int, first bool, planned []hooks.Planned, log, hookLog *slog.Logger, opts hooks.RunOptions) (*phaseResult, error) {
	start := time.Now()
	res := &phaseResult{}
	ph, err := t.BeginPhase(ctx, pool, rc.row.ID, m.Version, phase, first)
	if err != nil {
		return res, err
	}
	tx := ph.Tx
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if done := committedOf(ph.Done, planned); done != nil {
		log.Info("hooks already committed by an earlier attempt; not running them again")
		return fromLedger(done, time.Since(start)), nil
	}
	info := hooks.PhaseInfo{
		TargetDSN: t.DSN(), TargetSchema: t.Schema(),
		Run: rc.row.ID, RequestID: rc.row.RequestID, Target: rc.row.Target,
		Migration: m.ID(), Version: m.Version, Phase: phase, Attempt: attempt,
	}
	exec := hooks.Executor{Logger: hookLog}
	stats := hooks.NewLazyStats(func() (map[string]any, error) { return t.RunStats(ctx, tx, rc.row.ID) })
	outs, runErr := exec.Run(ctx, info, tx, stats, planned, opts)
	rows := make([]target.LedgerRow, 0, len(outs))
	for _, o := range outs {
		ho := hookOutcome{name: o.Name, kind: o.Hook, duration: o.Duration, rows: o.Result.RowsAffected, message: o.Result.Message, err: o.Err}
		res.hooks = append(res.hooks, ho)
		res.rows += ho.rows
		lr := target.LedgerRow{
			Run: rc.row.ID, Version: m.Version, Phase: phase, Hook: o.Name, Status: target.StatusCompleted,
			Attempt: attempt, RowsAffected: o.Result.RowsAffected, DurationMS: o.Duration.Milliseconds(),
			Stats: o.Result.Stats, Message: o.Result.Message,
		}
		if o.Err != nil {
			lr.Status, lr.Error = target.StatusFailed, o.Err.Error()
			if res.failedHook == "" {
				res.failedHook = o.Name
			}
		}
		rows = append(rows, lr)
	}
	res.duration = time.Since(start)
	if runErr != nil && !opts.ContinueOnError {
		_ = tx.Rollback(ctx)
		// Record the failure for operators; the phase's effects were rolled back.
		rctx, cancel := recordCtx(ctx)
		defer cancel()
		if err := t.WriteLedger(rctx, pool, rows[len(rows)-1]); err != nil {
			log.Warn("could not record hook failure in the ledger", "error", err.Error())
		}
		return res, runErr
	}
	if err := t.WriteLedger(ctx, tx, rows...); err != nil {
		return res, err
	}
	fault.At(fault.PhaseBeforeCommit)
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("target %q: commit: %w", t.Name(), err)
	}
	return res, runErr
}

// committedOf returns the completed ledger rows of planned when they show that planned's
// transaction committed (it commits all of their rows or none), and nil otherwise.
func committedOf(rows []target.LedgerRow, planned []hooks.Planned) []target.LedgerRow {
	names := make(map[string]bool, len(planned))
	for _, p := range planned {
		names[p.Spec.Name] = true
	}
	var done []target.LedgerRow
	for _, r := range rows {
		if r.Status == target.StatusCompleted && names[r.Hook] {
			done = append(done, r)
		}
	}
	return done
}

func fromLedger(rows []target.LedgerRow, d time.Duration) *phaseResult {
	res := &phaseResult{duration: d}
	for _, r := range rows {
		if r.Status != target.StatusCompleted {
			continue
		}
		res.hooks = append(res.hooks, hookOutcome{name: r.Hook, duration: time.Duration(r.DurationMS) * time.Millisecond, rows: r.RowsAffected, message: r.Message})
		res.rows += r.RowsAffected
	}
	return res
}

// completePhase records a phase's success and moves the run to its next step, in one queue
// transaction that also completes the job.
func (p *Pipeline) completePhase(ctx context.Context, job *river.Job[PhaseArgs], rc *runContext, m *contract.Migration, res *phaseResult, log *slog.Logger, prepared pgx.Tx) error {
	ctx, cancel := recordCtx(ctx) // the phase committed: record it even if the job's time is up
	defer cancel()
	p.observe(job.Args.Phase, "completed", res)
	a := job.Args
	client := river.ClientFromContext[pgx.Tx](ctx)
	cur := Step{Version: a.Version, Phase: a.Phase}
	evs := p.hookEvents(rc, m, a.Phase, job.Attempt, res)
	pc := p.phaseEvent(rc, m, contract.KindPhaseCompleted, a.Phase, job.Attempt)
	pc.DurationMS, pc.RowsAffected, pc.Message = res.duration.Milliseconds(), res.rows, res.message
	if pc.Message == "" && a.Phase != contract.PhaseDDL {
		pc.Message = fmt.Sprintf("%d hook(s)", len(res.hooks))
	}
	evs = append(evs, pc)

	next, migrationDone, runDone := NextStep(rc.row.Direction, rc.row.Plan, cur)
	if migrationDone {
		mc := outbox.New(rc.ref, contract.KindMigrationCompleted, m.Version)
		setMigration(&mc, m)
		evs = append(evs, mc)
	}
	if prepared != nil {
		// The move and the job's completion are done; add the events and commit.
		if migrationDone {
			nm, err := rc.migration(next.Version)
			if err != nil {
				_ = prepared.Rollback(ctx)
				return err
			}
			ms := outbox.New(rc.ref, contract.KindMigrationStarted, nm.Version)
			setMigration(&ms, nm)
			evs = append(evs, ms)
		}
		if err := outbox.Insert(ctx, prepared, p.cfg.Store.Schema(), evs...); err != nil {
			_ = prepared.Rollback(ctx)
			return err
		}
		return prepared.Commit(ctx)
	}
	return finishJob(ctx, p, job, func(tx pgx.Tx) error {
		if runDone {
			done := outbox.New(rc.ref, contract.KindRunCompleted)
			done.Message = fmt.Sprintf("%s %d migration(s)", pastVerb(rc.row.Direction), len(rc.row.Plan))
			done.DurationMS = time.Since(rc.row.CreatedAt).Milliseconds()
			log.Info("run completed", "migrations", len(rc.row.Plan))
			return p.advance(ctx, client, tx, rc, cur, Step{}, queue.RunCompleted, append(evs, done)...)
		}
		if migrationDone {
			log.Info("migration completed")
			nm, err := rc.migration(next.Version)
			if err != nil {
				return err
			}
			ms := outbox.New(rc.ref, contract.KindMigrationStarted, nm.Version)
			setMigration(&ms, nm)
			evs = append(evs, ms)
		}
		return p.advance(ctx, client, tx, rc, cur, next, "", evs...)
	})
}

// hookEvents returns hook.completed and hook.failed events for res.
func (p *Pipeline) hookEvents(rc *runContext, m *contract.Migration, phase string, attempt int, res *phaseResult) []contract.Event {
	evs := make([]contract.Event, 0, len(res.hooks))
	for _, h := range res.hooks {
		var ev contract.Event
		if h.err == nil {
			ev = p.phaseEvent(rc, m, contract.KindHookCompleted, phase, attempt, h.name)
		} else {
			ev = p.phaseEvent(rc, m, contract.KindHookFailed, phase, attempt, h.name, fmt.Sprint(attempt))
			ev.Error = eventError(errorCode(h.err, phase), h.err)
		}
		ev.Hook, ev.DurationMS, ev.RowsAffected, ev.Message = h.name, h.duration.Milliseconds(), h.rows, h.message
		evs = append(evs, ev)
	}
	return evs
}

// failPhase records a failed attempt. While attempts remain and the error is retryable, it
// records hook.failed and phase.retrying and returns the error for River to retry. Otherwise the
// phase has failed for good: later phases are skipped, and the migration's on_error hooks run
// next (or the run fails at once when it has none).
func (p *Pipeline) failPhase(ctx context.Context, job *river.Job[PhaseArgs], rc *runContext, m *contract.Migration, res *phaseResult, cause error, log *slog.Logger) error {
	ctx, cancel := recordCtx(ctx) // the failure may be that the job's context ran out
	defer cancel()
	a := job.Args
	if res == nil {
		res = &phaseResult{}
	}
	code := errorCode(cause, a.Phase)
	final := !hooks.Retryable(cause) || job.Attempt >= p.cfg.MaxAttempts
	// Hooks that succeeded before the failure were rolled back with it: report the failure only.
	failed := &phaseResult{duration: res.duration}
	for _, h := range res.hooks {
		if h.err != nil {
			failed.hooks = append(failed.hooks, h)
		}
	}
	evs := p.hookEvents(rc, m, a.Phase, job.Attempt, failed)
	if final {
		p.observe(a.Phase, "failed", failed)
	} else {
		p.observe(a.Phase, "retrying", failed)
		p.cfg.Observer.PhaseRetried(a.Phase)
	}
	if !final {
		wait := p.backoff(job.Attempt)
		ev := p.phaseEvent(rc, m, contract.KindPhaseRetrying, a.Phase, job.Attempt, fmt.Sprint(job.Attempt))
		ev.Hook, ev.DurationMS, ev.Error = res.failedHook, res.duration.Milliseconds(), eventError(code, cause)
		ev.Message = fmt.Sprintf("attempt %d of %d failed; retrying in about %s", job.Attempt, p.cfg.MaxAttempts, wait.Round(10*time.Millisecond))
		log.Warn("phase attempt failed; will retry", "error", cause.Error(), "max_attempts", p.cfg.MaxAttempts)
		if err := p.inTx(ctx, func(tx pgx.Tx) error {
			return outbox.Insert(ctx, tx, p.cfg.Store.Schema(), append(evs, ev)...)
		}); err != nil {
			log.Warn("could not record the failed attempt", "error", err.Error())
		}
		return cause
	}
	log.Error("phase failed", "error", cause.Error(), "hook", res.failedHook)
	client := river.ClientFromContext[pgx.Tx](ctx)
	cur := Step{Version: a.Version, Phase: a.Phase}
	pf := p.phaseEvent(rc, m, contract.KindPhaseFailed, a.Phase, job.Attempt)
	pf.Hook, pf.DurationMS, pf.Error, pf.Message = res.failedHook, res.duration.Milliseconds(), eventError(code, cause), cause.Error()
	mf := outbox.New(rc.ref, contract.KindMigrationFailed, m.Version)
	setMigration(&mf, m)
	mf.Phase, mf.Hook, mf.Error = a.Phase, res.failedHook, pf.Error
	evs = append(evs, pf, mf)
	f := failure{Hook: res.failedHook, Error: *pf.Error}
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		if err := p.cfg.Store.SetFailed(ctx, tx, rc.row.ID, m.Version, a.Phase, f); err != nil {
			return err
		}
		if hasHooks(m, contract.PhaseOnError) {
			return p.advance(ctx, client, tx, rc, cur, Step{Version: m.Version, Phase: contract.PhaseOnError}, "", evs...)
		}
		final := p.runFailedEvent(rc, m, a.Phase, f, "")
		log.Error("run failed", "reason", final.Message)
		return p.advance(ctx, client, tx, rc, cur, Step{}, queue.RunFailed, append(evs, final)...)
	})
	if errors.Is(err, errStale) {
		return nil
	}
	if err != nil {
		// Try the whole job again later; River's attempts include one spare for this.
		return fmt.Errorf("recording the failure of %s: %w (phase error: %v)", a.Phase, err, cause)
	}
	return river.JobCancel(cause)
}

func (p *Pipeline) runFailedEvent(rc *runContext, m *contract.Migration, phase string, f failure, extra string) contract.Event {
	ev := outbox.New(rc.ref, contract.KindRunFailed)
	setMigration(&ev, m)
	ev.Phase, ev.Hook, ev.Error = phase, f.Hook, &f.Error
	where := phase
	if f.Hook != "" {
		where = fmt.Sprintf("hook %q in %s", f.Hook, phase)
	}
	ev.Message = fmt.Sprintf("migration %s failed at %s: %s", m.ID(), where, f.Error.Message)
	if extra != "" {
		ev.Message += "; " + extra
	}
	ev.DurationMS = time.Since(rc.row.CreatedAt).Milliseconds()
	return ev
}

func hasHooks(m *contract.Migration, phase string) bool {
	for _, h := range m.Hooks {
		if h.Phase == phase {
			return true
		}
	}
	return false
}

// errorCode classifies a phase error for events.
func errorCode(err error, phase string) string {
	var he *hooks.HookError
	switch {
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

func pastVerb(direction string) string {
	if direction == contract.DirectionDown {
		return "reverted"
	}
	return "applied"
}

// observe reports a phase's outcome and its hooks' to the Observer.
func (p *Pipeline) observe(phase, outcome string, res *phaseResult) {
	p.cfg.Observer.PhaseDone(phase, outcome, res.duration)
	for _, h := range res.hooks {
		if h.kind == "" {
			continue
		}
		hookOutcome := "completed"
		if h.err != nil {
			hookOutcome = "failed"
		}
		p.cfg.Observer.HookDone(h.kind, phase, hookOutcome, h.duration)
	}
}
