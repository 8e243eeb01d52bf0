package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/target"
)

type phaseWorker struct {
	river.WorkerDefaults[PhaseArgs]
	p *Pipeline
}

func (w *phaseWorker) NextRetry(job *river.Job[PhaseArgs]) time.Time {
	return w.p.nextRetry(job.JobRow)
}

func (w *phaseWorker) Timeout(*river.Job[PhaseArgs]) time.Duration { return w.p.cfg.PhaseTimeout }

// phaseAttempt is an attempt at a phase of a migration: what it runs and where.
type phaseAttempt struct {
	*attempt
	m       *contract.Migration
	entry   runstore.PlanEntry
	planned []hooks.Planned
	// planErr is why the phase's hooks could not be planned (a worker without a hook the
	// request uses): the phase fails at once.
	planErr error
	// hookLog carries the run's attributes; the executor's records add migration and phase.
	hookLog *slog.Logger
	// plain says the migration is its ddl phase alone (no hooks in the phases the run takes
	// it through): its only event is migration.completed.
	plain bool
}

// Work runs the job's step. The job of a ddl step goes on, in the same job, with the next
// migration's ddl when that is the run's next step (migrations without hooks in a row): each
// migration is applied in its own target transaction with its tracking row, and the run is
// moved on to the migration in progress in queue transactions, at most chainFlush apart (and
// before the job's outcome is recorded), without a job inserted. A crash, a stop or a retry
// finds the run at a migration the job reached (begin follows it), and the target's tracking
// table and ledger say which committed: those are not run again, and their events keep their
// ids. The job gives its worker slot back after a slice (BackfillSlice), as a backfill does.
func (w *phaseWorker) Work(ctx context.Context, job *river.Job[PhaseArgs]) error {
	p, args := w.p, job.Args
	pa := &phaseAttempt{}
	a, done, err := p.begin(ctx, job.JobRow, args.RunID, Step{Version: args.Version, Phase: args.Phase}, completer(job),
		func(a *attempt) []contract.Event { pa.attempt = a; return pa.prepare() })
	if done {
		return err
	}
	pa.attempt = a
	c := &chain{at: pa.step, since: time.Now(), flushed: time.Now()}
	for {
		pa.succeed = pa.succeeded
		err := pa.run(ctx)
		if next, ok := pa.chainNext(ctx, err, c.since); ok {
			npa, evs, herr := pa.hop(next)
			if herr == nil {
				c.pending = append(c.pending, evs...)
				c.wait = c.wait || !pa.plain
				pa = npa
				if time.Since(c.flushed) < chainFlush && len(c.pending) < chainFlushEvents {
					continue
				}
				if ferr := c.flush(ctx, pa); ferr != nil {
					return c.lost(pa, ferr)
				}
				continue
			}
			pa.log.Warn("could not go on with the next migration in this job; it goes on in a job of its own", "error", herr.Error())
		}
		if ferr := c.flush(ctx, pa); ferr != nil {
			return c.lost(pa, ferr)
		}
		return pa.conclude(ctx, err)
	}
}

// How often a job that goes on with the next migrations moves its run on: at most this long
// after its last move, or with this many events waiting.
const (
	chainFlush       = 100 * time.Millisecond
	chainFlushEvents = 200
)

// chain is what a phase job that goes on with the next migrations has not recorded yet.
type chain struct {
	// at is the run's step as recorded, since is when the job began, flushed when it last
	// moved the run on.
	at             Step
	since, flushed time.Time
	// pending are the events of the migrations done since, and wait says one of them was a
	// migration with hooks (its phase.completed's id holds the attempt: its commit waits for
	// the WAL flush).
	pending []contract.Event
	wait    bool
}

// flush moves the run, still running at c.at with this job, to pa's step, with the pending
// events. A plain migration's one event has the same id when a crash of PostgreSQL loses this
// commit and the job moves the run on again, so without a migration with hooks among them the
// commit does not wait for the WAL flush. errStale when the run is not running at c.at with
// this job any more (an operator paused it meanwhile).
func (c *chain) flush(ctx context.Context, pa *phaseAttempt) error {
	a := pa.attempt
	if c.at == a.step && len(c.pending) == 0 {
		return nil
	}
	rctx, cancel := recordCtx(ctx)
	defer cancel()
	inTx := a.p.inTxNoFlush
	if c.wait {
		inTx = a.p.inTx
	}
	if err := inTx(rctx, func(tx pgx.Tx) error {
		return a.p.apply(rctx, tx, a.rc.row.ID, runstore.Guard{Statuses: []string{runstore.RunRunning}, Step: c.at, Job: a.job.ID},
			runstore.Change{Step: &a.step, Attempt: "first", Transient: "clear"}, c.pending...)
	}); err != nil {
		return err
	}
	c.at, c.pending, c.wait, c.flushed = a.step, nil, false, time.Now()
	row := a.rc.row
	row.StepVersion, row.StepPhase, row.Attempt, row.TransientSince = a.step.Version, a.step.Phase, 1, nil
	return nil
}

// lost ends a job whose run could not be moved on: when the run was paused (or moved) meanwhile,
// without effect, as any stale job; otherwise River tries the job again, which finds the run at
// its last recorded step and goes on from there.
func (c *chain) lost(pa *phaseAttempt, err error) error {
	if errors.Is(err, errStale) {
		pa.log.Info("the run changed while this job went on with the next migrations; the migrations it applied since are recorded when the run goes on", "applied_since", describeStep(c.at))
		return nil
	}
	return fmt.Errorf("move the run on to %s: %w", describeStep(pa.step), err)
}

// chainNext returns the step this job goes on with after its step ended with err: the next
// migration's ddl, when the step was a ddl that succeeded, the migration has no later phase
// with work and the next has none before its ddl, and the job's slice is not over.
func (pa *phaseAttempt) chainNext(ctx context.Context, err error, since time.Time) (Step, bool) {
	a := pa.attempt
	if err != nil || a.step.Phase != contract.PhaseDDL || ctx.Err() != nil || time.Since(since) >= a.p.cfg.BackfillSlice {
		return Step{}, false
	}
	next, migrationDone, runDone := NextStep(a.rc.row.Direction, a.rc.row.Plan, a.step, a.rc.works)
	return next, migrationDone && !runDone && next.Phase == contract.PhaseDDL
}

// hop returns the attempt at next that this job goes on with, and the events of the step that
// succeeded (those of succeeded) and next's start events, for the chain to record.
func (pa *phaseAttempt) hop(next Step) (*phaseAttempt, []contract.Event, error) {
	a := pa.attempt
	na := &attempt{p: a.p, job: a.job, client: a.client, completeJob: a.completeJob, step: next, rc: a.rc,
		n: 1, fetched: a.fetched, log: a.p.attemptLog(a.rc.row, 1, a.job.ID), moved: true}
	npa := &phaseAttempt{attempt: na}
	start := npa.prepare()
	evs, err := pa.doneEvents(next, true)
	if err != nil {
		return nil, nil, err
	}
	a.observe(outCompleted)
	return npa, append(evs, start...), nil
}

// completer returns the function that completes job in a transaction.
func completer[T river.JobArgs](job *river.Job[T]) func(context.Context, pgx.Tx) error {
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	}
}

// prepare plans the phase's hooks and returns its start events: phase.started and a
// hook.started for each hook.
func (pa *phaseAttempt) prepare() []contract.Event {
	a := pa.attempt
	a.res = &phaseResult{}
	m, err := a.rc.migration(a.step.Version)
	if err != nil {
		pa.planErr = hooks.Permanent(err)
		return nil
	}
	pa.m = m
	pa.entry, _ = a.rc.row.Plan.Entry(m.Version)
	if pa.entry.Origin == "" {
		pa.entry.Origin = a.rc.row.ID
	}
	pa.hookLog = a.log.With("version", m.Version)
	a.log = pa.hookLog.With("migration", m.ID(), "phase", a.step.Phase)
	if pa.plain = a.step.Phase == contract.PhaseDDL && a.rc.plain(m.Version); pa.plain {
		return nil
	}
	if a.step.Phase != contract.PhaseDDL {
		if pa.planned, err = a.p.cfg.Registry.Plan(a.step.Phase, m.Hooks); err != nil {
			pa.planErr = hooks.Permanent(err)
		}
	}
	ps := a.p.stepEvent(a.rc, contract.KindPhaseStarted, a.step, a.n, a.key())
	if a.step.Phase != contract.PhaseDDL {
		ps.Message = fmt.Sprintf("%d hook(s)", len(pa.planned))
	}
	evs := []contract.Event{ps}
	for _, h := range pa.planned {
		ev := a.p.stepEvent(a.rc, contract.KindHookStarted, a.step, a.n, h.Spec.Name, a.key())
		ev.Hook = h.Spec.Name
		evs = append(evs, ev)
	}
	return evs
}

// run does the phase's work.
func (pa *phaseAttempt) run(ctx context.Context) error {
	a := pa.attempt
	if pa.planErr != nil {
		return pa.planErr
	}
	t, err := a.p.cfg.Targets.Get(a.rc.row.Target)
	if err != nil {
		return hooks.Permanent(err)
	}
	ctx = target.WithTarget(ctx, t)
	start := time.Now()
	defer func() { a.res.duration = time.Since(start) }()
	switch a.step.Phase {
	case contract.PhaseDDL:
		err = pa.runDDL(ctx, t)
	case contract.PhaseOnError:
		err = pa.runOnError(ctx, t)
	default:
		err = pa.runHooks(ctx, t)
	}
	if err == nil {
		err = a.fault(ctx, fault.PhaseAfterCommit)
	}
	return err
}

// marks returns what the phase records in the tracking table when it commits, for an up run
// past the DDL: the phase reached, and whether it completes the migration.
func (pa *phaseAttempt) marks() (mark bool, complete bool) {
	a := pa.attempt
	if a.rc.row.Direction != contract.DirectionUp || phaseIndex(a.step.Phase) <= phaseIndex(contract.PhaseDDL) {
		return false, false
	}
	at := completesAt(pa.m, firstPhase(a.rc.row.Direction, pa.entry))
	return true, at == a.step.Phase
}

// runHooks runs the hooks of a phase. Consecutive hooks that join the phase's transaction run
// together in one target transaction with their ledger rows; a batched hook (a backfill) runs
// in batches of its own, each committed with its checkpoint, a slice at a time; an external
// hook (a plugin) runs on its own, outside any transaction of ours, and is recorded once it
// returns. Every segment reads the ledger first and skips the hooks committed there, so a
// failure in one segment never runs an earlier segment again.
func (pa *phaseAttempt) runHooks(ctx context.Context, t *target.Target) error {
	a := pa.attempt
	mark, complete := pa.marks()
	if len(pa.planned) == 0 {
		if a.step.Phase == contract.PhaseCleanup && a.rc.row.Direction == contract.DirectionUp &&
			completesAt(pa.m, firstPhase(a.rc.row.Direction, pa.entry)) == "" {
			// A resumed migration with nothing left to run: it is complete only once this
			// is recorded.
			return pa.markReached(ctx, t, true)
		}
		return nil
	}
	pool, err := t.Pool(ctx)
	if err != nil {
		return err
	}
	segmented := slices.ContainsFunc(pa.planned, func(p hooks.Planned) bool { return isBatched(p) || !p.Def.JoinsPhaseTx() })
	if segmented {
		pa.hookLog.InfoContext(ctx, hooks.MsgExecutingHooks, "phase", a.step.Phase, "hook_count", len(pa.planned), "migration", pa.m.ID())
	}
	for i := 0; i < len(pa.planned); {
		pl := pa.planned[i]
		switch {
		case isBatched(pl):
			err = pa.runBatched(ctx, t, pool, pl)
			i++
		case !pl.Def.JoinsPhaseTx():
			err = pa.runOwn(ctx, t, pool, pl)
			i++
		default:
			j := i
			for j < len(pa.planned) && pa.planned[j].Def.JoinsPhaseTx() && !isBatched(pa.planned[j]) {
				j++
			}
			last := j == len(pa.planned)
			var reached *target.Reached
			if last && mark {
				reached = &target.Reached{Version: pa.m.Version, Phase: a.step.Phase, Complete: complete}
			}
			err = pa.runInTx(ctx, t, pool, pa.planned[i:j], hooks.RunOptions{Segment: segmented}, reached)
			i = j
			if last {
				mark = false // recorded with the last segment
			}
		}
		if err != nil {
			return err
		}
	}
	if mark {
		// The phase ended with a hook that commits on its own: record the phase apart.
		if err := pa.markReached(ctx, t, complete); err != nil {
			return err
		}
	}
	if segmented {
		pa.hookLog.InfoContext(ctx, hooks.MsgPhaseCompleted, "phase", a.step.Phase, "hooks_executed", len(a.res.hooks), "migration", pa.m.ID())
	}
	return nil
}

// markReached records in a transaction of its own that the phase committed (and, with
// complete, that the migration is complete).
func (pa *phaseAttempt) markReached(ctx context.Context, t *target.Target, complete bool) error {
	pool, err := t.Pool(ctx)
	if err != nil {
		return err
	}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return t.MarkReached(ctx, tx, pa.m.Version, pa.step.Phase, complete)
	}); err != nil {
		return fmt.Errorf("target %q: record phase: %w", t.Name(), err)
	}
	return nil
}

// info is where the phase's hooks run.
func (pa *phaseAttempt) info(t *target.Target) hooks.PhaseInfo {
	a := pa.attempt
	return hooks.PhaseInfo{
		TargetDSN: t.DSN(), TargetSchema: t.Schema(),
		Run: a.rc.row.ID, RequestID: a.rc.row.RequestID, Target: a.rc.row.Target,
		Migration: pa.m.ID(), Version: pa.m.Version, Phase: a.step.Phase, Attempt: a.n, Origin: pa.entry.Origin,
	}
}

// ledgerRow is the ledger row of hook outcome o.
func (pa *phaseAttempt) ledgerRow(o hooks.Outcome) target.LedgerRow {
	a := pa.attempt
	lr := target.LedgerRow{
		Run: a.rc.row.ID, Version: pa.m.Version, Phase: a.step.Phase, Hook: o.Name, Status: target.StatusCompleted,
		Attempt: a.n, RowsAffected: o.Result.RowsAffected, DurationMS: o.Duration.Milliseconds(),
		Stats: o.Result.Stats, Message: o.Result.Message, Origin: pa.entry.Origin,
	}
	if o.Err != nil {
		lr.Status, lr.Error = target.StatusFailed, o.Err.Error()
	}
	return lr
}

// add records hook outcomes in the attempt's result.
func (pa *phaseAttempt) add(hs ...hookOutcome) {
	for _, h := range hs {
		pa.res.hooks = append(pa.res.hooks, h)
		pa.res.rows += h.rows
		if h.err != nil && pa.res.failedHook == "" {
			pa.res.failedHook = h.name
		}
	}
}

// runInTx runs planned in one target transaction with their ledger rows, skipping the hooks
// the ledger shows committed, and records reached (the phase's tracking mark, if set) with
// their ledger rows.
func (pa *phaseAttempt) runInTx(ctx context.Context, t *target.Target, pool *pgxpool.Pool, planned []hooks.Planned, opts hooks.RunOptions, reached *target.Reached) error {
	a := pa.attempt
	ph, err := t.BeginPhase(ctx, pool, a.rc.row.ID, pa.m.Version, a.step.Phase)
	if err != nil {
		return err
	}
	tx := ph.Tx
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	todo, done := pendingOf(planned, ph.Done)
	pa.add(done...)
	if len(done) > 0 {
		a.log.Info("hooks already committed by an earlier attempt or run; not running them again", "hooks", len(done))
	}
	var runErr error
	ran := len(pa.res.hooks)
	var rows []target.LedgerRow
	if len(todo) > 0 {
		exec := hooks.Executor{Logger: pa.hookLog}
		stats := hooks.NewLazyStats(func() (map[string]any, error) { return t.RunStats(ctx, tx, a.rc.row.ID) })
		var outs []hooks.Outcome
		outs, runErr = exec.Run(ctx, pa.info(t), tx, stats, todo, opts)
		rows = make([]target.LedgerRow, 0, len(outs))
		for _, o := range outs {
			pa.add(hookOutcome{name: o.Name, kind: o.Hook, duration: o.Duration, rows: o.Result.RowsAffected, message: o.Result.Message, err: o.Err})
			rows = append(rows, pa.ledgerRow(o))
		}
		if runErr != nil && !opts.ContinueOnError {
			_ = tx.Rollback(ctx)
			// Record the failure for operators; the phase's effects were rolled back.
			rctx, cancel := recordCtx(ctx)
			defer cancel()
			if err := t.WriteLedger(rctx, pool, rows[len(rows)-1]); err != nil {
				a.log.Warn("could not record the hook's failure in the ledger", "error", err.Error())
			}
			return runErr
		}
	}
	if len(todo) == 0 && reached == nil {
		return nil
	}
	if err := t.RecordPhase(ctx, tx, reached, rows...); err != nil {
		return err
	}
	if err := pa.fault(ctx, fault.PhaseBeforeCommit); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("target %q: commit: %w", t.Name(), err)
	}
	for i := ran; i < len(pa.res.hooks); i++ {
		pa.res.hooks[i].committed = pa.res.hooks[i].err == nil
	}
	return runErr
}

// pendingOf splits planned into the hooks still to run and the outcomes of those the ledger
// shows committed.
func pendingOf(planned []hooks.Planned, ledger []target.LedgerRow) (todo []hooks.Planned, done []hookOutcome) {
	committed := map[string]target.LedgerRow{}
	for _, r := range ledger {
		if r.Status == target.StatusCompleted {
			committed[r.Hook] = r
		}
	}
	for _, p := range planned {
		if r, ok := committed[p.Spec.Name]; ok {
			done = append(done, fromLedger(r))
			continue
		}
		todo = append(todo, p)
	}
	return todo, done
}

func fromLedger(r target.LedgerRow) hookOutcome {
	return hookOutcome{name: r.Hook, duration: time.Duration(r.DurationMS) * time.Millisecond, rows: r.RowsAffected, message: r.Message,
		earlier: true, committed: true}
}

// runOwn runs a hook that does not join the phase's transaction (an external plugin) on its
// own: holding the target's lock as a session lock on a connection of its own, it reads the
// hook's ledger row, runs the hook unless the row shows it completed, and records it. The hook
// runs between the transactions of the hooks before and after it, so it never waits on their
// locks, and a later hook's failure does not run it again. Its work is its own: if the worker
// dies after the hook and before its ledger row, it runs again, with the same idempotency key.
func (pa *phaseAttempt) runOwn(ctx context.Context, t *target.Target, pool *pgxpool.Pool, pl hooks.Planned) error {
	a := pa.attempt
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if err := t.SessionLock(ctx, conn.Conn()); err != nil {
		return err
	}
	defer t.SessionUnlock(ctx, conn.Conn())
	rows, err := t.Ledger(ctx, conn, a.rc.row.ID, pa.m.Version, a.step.Phase)
	if err != nil {
		return err
	}
	if _, done := pendingOf([]hooks.Planned{pl}, rows); len(done) > 0 {
		pa.add(done...)
		return nil
	}
	exec := hooks.Executor{Logger: pa.hookLog}
	stats := hooks.NewLazyStats(func() (map[string]any, error) { return t.RunStats(ctx, conn, a.rc.row.ID) })
	outs, runErr := exec.Run(ctx, pa.info(t), nil, stats, []hooks.Planned{pl}, hooks.RunOptions{Segment: true})
	for _, o := range outs {
		// The hook has run: record it even if the job's time has just run out.
		rctx, cancel := recordCtx(ctx)
		err := t.WriteLedger(rctx, conn, pa.ledgerRow(o))
		cancel()
		pa.add(hookOutcome{name: o.Name, kind: o.Hook, duration: o.Duration, rows: o.Result.RowsAffected, message: o.Result.Message, err: o.Err,
			committed: err == nil && o.Err == nil})
		if err != nil && runErr == nil {
			return fmt.Errorf("target %q: record hook %q: %w", t.Name(), o.Name, err)
		}
	}
	return runErr
}

// runOnError runs the on_error hooks of the migration that failed, all of them even when one
// fails, each in a savepoint, in one transaction with their ledger rows. Their failures are
// reported and never replace the original error.
func (pa *phaseAttempt) runOnError(ctx context.Context, t *target.Target) error {
	pool, err := t.Pool(ctx)
	if err != nil {
		return err
	}
	err = pa.runInTx(ctx, t, pool, pa.planned, hooks.RunOptions{ContinueOnError: true}, nil)
	var he *hooks.HookError
	if errors.As(err, &he) {
		return nil // a hook's failure is in the result: on_error is done, and says so
	}
	return err
}

// succeeded records a phase that is done: the run moves to its next step, or ends.
func (pa *phaseAttempt) succeeded(ctx context.Context, tx pgx.Tx) error {
	a := pa.attempt
	if a.step.Phase == contract.PhaseOnError {
		return a.onErrorDone(ctx, tx, nil)
	}
	next, migrationDone, runDone := NextStep(a.rc.row.Direction, a.rc.row.Plan, a.step, a.rc.works)
	evs, err := pa.doneEvents(next, migrationDone && !runDone)
	if err != nil {
		return err
	}
	if runDone {
		if migrationDone {
			evs = append(evs, pa.migrationCompleted())
		}
		done := outbox.New(a.rc.ref, contract.KindRunCompleted)
		done.Message = fmt.Sprintf("%s %d migration(s)", pastVerb(a.rc.row.Direction), len(a.rc.row.Plan)) + incompleteNote(a.summary)
		done.DurationMS = time.Since(a.rc.row.CreatedAt).Milliseconds()
		done.Data = mustJSON(a.summary)
		a.log.Info("run completed", "migrations", len(a.rc.row.Plan))
		return a.p.end(ctx, tx, a.client, a.rc, a.step, a.job.ID, runstore.RunCompleted, append(evs, done)...)
	}
	return a.p.advance(ctx, tx, a.client, a.rc, a.step, a.job.ID, next, nil, evs...)
}

// doneEvents returns the events of the phase's success: its hooks', phase.completed (not for a
// plain migration), and, when the run goes on to next, another migration, migration.completed
// and next's migration.started (not for a plain one).
func (pa *phaseAttempt) doneEvents(next Step, nextMigration bool) ([]contract.Event, error) {
	a := pa.attempt
	evs := make([]contract.Event, 0, len(a.res.hooks)+3)
	for _, h := range a.res.hooks {
		evs = append(evs, a.hookEvent(h))
	}
	if !pa.plain {
		pc := a.p.stepEvent(a.rc, contract.KindPhaseCompleted, a.step, a.n)
		pc.DurationMS, pc.RowsAffected, pc.Message = a.res.duration.Milliseconds(), a.res.rows, a.res.message
		if pc.Message == "" && a.step.Phase != contract.PhaseDDL {
			pc.Message = fmt.Sprintf("%d hook(s)", len(a.res.hooks))
		}
		evs = append(evs, pc)
	}
	if !nextMigration {
		return evs, nil
	}
	evs = append(evs, pa.migrationCompleted())
	nm, err := a.rc.migration(next.Version)
	if err != nil {
		return nil, err
	}
	if !a.rc.plain(nm.Version) {
		evs = append(evs, migrationStarted(a.rc, nm, next.Phase))
	}
	return evs, nil
}

// migrationCompleted is the migration.completed of the phase's migration, which it completes;
// for a plain migration, with what its ddl did.
func (pa *phaseAttempt) migrationCompleted() contract.Event {
	a := pa.attempt
	mc := outbox.New(a.rc.ref, contract.KindMigrationCompleted, pa.m.Version)
	setMigration(&mc, pa.m)
	if pa.plain {
		mc.DurationMS, mc.RowsAffected, mc.Message = a.res.duration.Milliseconds(), a.res.rows, a.res.message
	}
	a.log.Info("migration completed")
	return mc
}

// migrationStarted is the migration.started of m, which the run begins at phase from.
func migrationStarted(rc *runContext, m *contract.Migration, from string) contract.Event {
	ms := outbox.New(rc.ref, contract.KindMigrationStarted, m.Version)
	setMigration(&ms, m)
	if e, ok := rc.row.Plan.Entry(m.Version); ok && e.From != "" && e.From != firstPhase(rc.row.Direction, runstore.PlanEntry{}) {
		ms.Message = fmt.Sprintf("resuming at %s: an earlier run left it incomplete", from)
	}
	return ms
}

func pastVerb(direction string) string {
	if direction == contract.DirectionDown {
		return "reverted"
	}
	return "applied"
}
