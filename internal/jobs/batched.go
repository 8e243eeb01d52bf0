package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// A phase that holds a batched hook (hooks.Batched: the backfill) runs in segments (see
// phaseAttempt.runHooks): the batched hook commits batch by batch with its checkpoint, between
// the transactions of the hooks before and after it.
//
// A batched hook runs as a chain of slices of one River job: a slice works for at most
// Config.BackfillSlice, then the job snoozes (River's JobSnooze, which does not use up an
// attempt; nor does the pipeline count it) and the next slice, on any worker, resumes from the
// checkpoint. So a backfill of hours never holds a worker slot longer than a slice, never
// outlives the job timeout, is rescued by River like any job if its worker dies, and lets
// graceful shutdown finish within its bound: the slice stops after its current batch. A slice
// that commits no batch counts as a failed attempt, so a backfill whose batches keep timing
// out fails when its attempts are used up instead of snoozing for ever.

// errSliceEnded is returned by a phase whose batched hook has more to do after its slice.
var errSliceEnded = errors.New("batched hook: slice ended")

func isBatched(p hooks.Planned) bool {
	_, ok := p.Hook.(hooks.Batched)
	return ok
}

// runBatched runs one slice of a batched hook, or reads its outcome from the ledger when an
// earlier slice (or the run this one resumes) finished it.
func (pa *phaseAttempt) runBatched(ctx context.Context, t *target.Target, pool *pgxpool.Pool, pl hooks.Planned) error {
	a := pa.attempt
	name := pl.Spec.Name
	rows, err := t.Ledger(ctx, pool, a.rc.row.ID, pa.m.Version, a.step.Phase)
	if err != nil {
		return err
	}
	if _, done := pendingOf([]hooks.Planned{pl}, rows); len(done) > 0 {
		pa.add(done...)
		return nil
	}
	log := pa.hookLog.With("migration", pa.m.ID(), "phase", a.step.Phase, "hook", name)
	// The contract's records name hook, phase and migration themselves (as the executor's do);
	// the hook's own records get them from its logger.
	pa.hookLog.DebugContext(ctx, hooks.MsgHookStart, "hook", name, "phase", a.step.Phase, "migration", pa.m.ID())
	store := &target.Checkpoints{Target: t, Row: target.LedgerRow{Run: a.rc.row.ID, Version: pa.m.Version, Phase: a.step.Phase,
		Hook: name, Attempt: a.n, Origin: pa.entry.Origin}}
	prog := &progressReporter{pa: pa, hook: name, log: log, key: a.rc.row.ID + "/" + pa.m.Version + "/" + a.step.Phase + "/" + name}
	bc := &hooks.BatchContext{
		Context: hooks.Context{
			Run: a.rc.row.ID, RequestID: a.rc.row.RequestID, Target: a.rc.row.Target, Migration: pa.m.ID(),
			Version: pa.m.Version, Phase: a.step.Phase, Hook: name, Attempt: a.n, Origin: pa.entry.Origin,
			TargetDSN: t.DSN(), TargetSchema: t.Schema(), Logger: log,
		},
		DB: pool, Checkpoints: store, Until: time.Now().Add(a.p.cfg.BackfillSlice), Progress: prog.report,
	}
	started := time.Now()
	out, err := runBatchedSafely(ctx, pl.Hook.(hooks.Batched), bc)
	ho := hookOutcome{name: name, kind: pl.Spec.Hook, duration: out.Elapsed, rows: out.Rows}
	if ho.duration == 0 {
		ho.duration = time.Since(started)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		// The job's context ended (an operator's cancel, a stop, the job's timeout): the hook
		// stopped after a committed batch. conclude tells a pause from the end of a slice.
		pa.add(ho)
		return errSliceEnded
	case err != nil:
		var he *hooks.HookError
		if !errors.As(err, &he) {
			he = &hooks.HookError{Hook: name, Phase: a.step.Phase, Err: err}
			err = he
		}
		ho.err = err
		pa.add(ho)
		pa.hookLog.ErrorContext(ctx, hooks.MsgHookFailed, "hook", name, "phase", a.step.Phase, "duration_ms", ho.duration.Milliseconds(),
			"error", err.Error(), "migration", pa.m.ID(), "stack", he.Stack)
		return err
	case !out.Done:
		pa.add(ho)
		return errSliceEnded
	}
	a.p.progress.forget(prog.key)
	ho.rows, ho.message = out.Result.RowsAffected, out.Result.Message
	rctx, cancel := recordCtx(ctx)
	defer cancel()
	done := store.Row
	done.Status, done.RowsAffected, done.DurationMS, done.Message = target.StatusCompleted, ho.rows, ho.duration.Milliseconds(), ho.message
	done.Stats, done.Checkpoint = out.Result.Stats, store.Last
	if err := t.WriteLedger(rctx, pool, done); err != nil {
		return err
	}
	ho.committed = true
	pa.add(ho)
	pa.hookLog.InfoContext(ctx, hooks.MsgHookCompleted, "hook", name, "phase", a.step.Phase, "duration_ms", ho.duration.Milliseconds(),
		"rows_affected", ho.rows, "migration", pa.m.ID())
	return nil
}

// runBatchedSafely turns a panic of the hook into a *hooks.HookError.
func runBatchedSafely(ctx context.Context, h hooks.Batched, bc *hooks.BatchContext) (out hooks.BatchOutcome, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &hooks.HookError{Hook: bc.Hook, Phase: bc.Phase, Panic: true, Err: fmt.Errorf("%v", r)}
		}
	}()
	return h.RunBatches(ctx, bc)
}

// progressInterval is the least time between two backfill.progress events of one hook.
const progressInterval = time.Second

// progressReporter turns a batched hook's progress into backfill.progress events (at most one
// a second), debug log records and the backfill rows counter, and notes that the slice made
// progress.
type progressReporter struct {
	pa   *phaseAttempt
	hook string
	log  interface {
		Debug(msg string, args ...any)
		Warn(msg string, args ...any)
	}
	// key names the hook in the pipeline's progress clock.
	key string
}

func (r *progressReporter) report(bp hooks.BatchProgress) {
	// The batch has committed: a fault here can pause or kill the worker, not fail the batch.
	_ = r.pa.fault(context.Background(), fault.BackfillAfterBatch)
	p := r.pa.p
	r.pa.res.progressed = true
	p.cfg.Observer.BackfillRows(bp.LastBatchRows)
	if !p.progress.due(r.key, time.Now(), progressInterval) {
		return
	}
	r.publish(bp)
}

func (r *progressReporter) publish(bp hooks.BatchProgress) {
	a := r.pa.attempt
	data := contract.BackfillProgress{
		Rows: bp.Rows, EstimatedTotal: bp.EstimatedTotal, BatchSize: bp.BatchSize,
		RowsPerSecond: bp.RowsPerSecond, ETAMS: bp.ETA.Milliseconds(),
		LastBatchMS: float64(bp.LastBatch.Microseconds()) / 1000,
	}
	msg := fmt.Sprintf("%d row(s)", bp.Rows)
	if bp.EstimatedTotal > 0 {
		msg += fmt.Sprintf(" of about %d (%.0f%%)", bp.EstimatedTotal, 100*float64(bp.Rows)/float64(bp.EstimatedTotal))
	}
	msg += fmt.Sprintf(", %.0f rows/s, batch %d", bp.RowsPerSecond, bp.BatchSize)
	if bp.ETA > 0 {
		msg += ", about " + bp.ETA.Round(time.Second).String() + " left"
	}
	r.log.Debug("backfill_progress", "rows", bp.Rows, "estimated_total", bp.EstimatedTotal, "batch_size", bp.BatchSize,
		"rows_per_second", int64(bp.RowsPerSecond), "eta_ms", bp.ETA.Milliseconds(), "last_batch_ms", bp.LastBatch.Milliseconds())
	ev := a.p.stepEvent(a.rc, contract.KindBackfillProgress, a.step, a.n, r.hook, fmt.Sprint(bp.Rows))
	ev.Hook, ev.RowsAffected, ev.Message = r.hook, bp.Rows, msg
	ev.Data, _ = json.Marshal(data)
	// No state change: no wait for the WAL flush.
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	batch := &pgx.Batch{}
	batch.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	if err := outbox.Queue(batch, a.p.cfg.Store.Schema(), true, ev); err == nil {
		if err := a.p.cfg.Store.Pool.SendBatch(ctx, batch).Close(); err != nil {
			r.log.Warn("could not record backfill progress", "error", err.Error())
		}
	}
}
