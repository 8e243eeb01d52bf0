package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// A phase that holds a batched hook (hooks.Batched: the backfill) runs in segments: the hooks
// before it commit together in one target transaction, the batched hook then commits batch by
// batch with its checkpoint, and the hooks after it commit together in another transaction.
// Each segment's ledger rows commit with it, so a retry skips what is done and the batched hook
// resumes after its last committed batch.
//
// A batched hook runs as a chain of slices of one River job: a slice works for at most
// Config.BackfillSlice, then the job snoozes (River's JobSnooze, which does not use up an
// attempt) and the next slice, on any worker, resumes from the checkpoint. So a backfill of
// hours never holds a worker slot longer than a slice, never outlives the job timeout, is
// rescued by River like any job if its worker dies, and lets graceful shutdown finish within
// its bound: the slice stops after its current batch.

// errSliceEnded is returned by a phase whose batched hook has more to do after its slice.
var errSliceEnded = errors.New("batched hook: slice ended")

func isBatched(p hooks.Planned) bool {
	_, ok := p.Hook.(hooks.Batched)
	return ok
}

func hasBatched(planned []hooks.Planned) bool {
	for _, p := range planned {
		if isBatched(p) {
			return true
		}
	}
	return false
}

// runSegments runs a phase that holds batched hooks; see above.
func (p *Pipeline) runSegments(ctx context.Context, t *target.Target, pool *pgxpool.Pool, rc *runContext, m *contract.Migration, phase string, attempt int, planned []hooks.Planned, log, hookLog *slog.Logger) (*phaseResult, error) {
	start := time.Now()
	res := &phaseResult{}
	add := func(r *phaseResult) {
		res.hooks = append(res.hooks, r.hooks...)
		res.rows += r.rows
		if res.failedHook == "" {
			res.failedHook = r.failedHook
		}
	}
	defer func() { res.duration = time.Since(start) }()
	for i := 0; i < len(planned); {
		if !isBatched(planned[i]) {
			j := i
			for j < len(planned) && !isBatched(planned[j]) {
				j++
			}
			seg, err := p.runInTx(ctx, t, pool, rc, m, phase, attempt, false, planned[i:j], log, hookLog, hooks.RunOptions{})
			add(seg)
			if err != nil {
				return res, err
			}
			i = j
			continue
		}
		ho, err := p.runBatched(ctx, t, pool, rc, m, phase, attempt, planned[i], hookLog)
		res.hooks = append(res.hooks, ho)
		res.rows += ho.rows
		if ho.err != nil && res.failedHook == "" {
			res.failedHook = ho.name
		}
		if err != nil {
			return res, err
		}
		i++
	}
	return res, nil
}

// runBatched runs one slice of a batched hook, or reads its outcome from the ledger when an
// earlier slice finished it.
func (p *Pipeline) runBatched(ctx context.Context, t *target.Target, pool *pgxpool.Pool, rc *runContext, m *contract.Migration, phase string, attempt int, pl hooks.Planned, hookLog *slog.Logger) (hookOutcome, error) {
	name := pl.Spec.Name
	ho := hookOutcome{name: name, kind: pl.Spec.Hook}
	rows, err := t.Ledger(ctx, pool, rc.row.ID, m.Version, phase)
	if err != nil {
		return ho, err
	}
	for _, r := range rows {
		if r.Hook == name && r.Status == target.StatusCompleted {
			return hookOutcome{name: name, duration: time.Duration(r.DurationMS) * time.Millisecond, rows: r.RowsAffected, message: r.Message}, nil
		}
	}
	log := hookLog.With("migration", m.ID(), "phase", phase, "hook", name)
	// The contract's records name hook, phase and migration themselves (as the executor's do);
	// the hook's own records get them from its logger.
	hookLog.DebugContext(ctx, hooks.MsgHookStart, "hook", name, "phase", phase, "migration", m.ID())
	store := &target.Checkpoints{Target: t, Row: target.LedgerRow{Run: rc.row.ID, Version: m.Version, Phase: phase, Hook: name, Attempt: attempt}}
	prog := &progressReporter{p: p, rc: rc, m: m, phase: phase, hook: name, attempt: attempt, log: log,
		key: rc.row.ID + "/" + m.Version + "/" + phase + "/" + name}
	bc := &hooks.BatchContext{
		Context: hooks.Context{
			Run: rc.row.ID, RequestID: rc.row.RequestID, Target: rc.row.Target, Migration: m.ID(),
			Version: m.Version, Phase: phase, Hook: name, Attempt: attempt,
			TargetDSN: t.DSN(), TargetSchema: t.Schema(), Logger: log,
		},
		DB: pool, Checkpoints: store, Until: time.Now().Add(p.cfg.BackfillSlice), Progress: prog.report,
	}
	started := time.Now()
	out, err := runBatchedSafely(ctx, pl.Hook.(hooks.Batched), bc)
	ho.duration, ho.rows = out.Elapsed, out.Rows
	if ho.duration == 0 {
		ho.duration = time.Since(started)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		// The job's context ended (an operator's cancel, shutdown, the job's timeout): the hook
		// stopped after a committed batch. Not a failed attempt; Work tells a pause from the
		// end of a slice.
		return ho, errSliceEnded
	case err != nil:
		var he *hooks.HookError
		if !errors.As(err, &he) {
			he = &hooks.HookError{Hook: name, Phase: phase, Err: err}
			err = he
		}
		ho.err = err
		hookLog.ErrorContext(ctx, hooks.MsgHookFailed, "hook", name, "phase", phase, "duration_ms", ho.duration.Milliseconds(),
			"error", err.Error(), "migration", m.ID(), "stack", he.Stack)
		return ho, err
	case !out.Done:
		return ho, errSliceEnded
	}
	p.progressSent.Delete(prog.key)
	ho.rows, ho.message = out.Result.RowsAffected, out.Result.Message
	rctx, cancel := recordCtx(ctx)
	defer cancel()
	done := store.Row
	done.Status, done.RowsAffected, done.DurationMS, done.Message = target.StatusCompleted, ho.rows, ho.duration.Milliseconds(), ho.message
	done.Stats, done.Checkpoint = out.Result.Stats, store.Last
	if err := t.WriteLedger(rctx, pool, done); err != nil {
		return ho, err
	}
	hookLog.InfoContext(ctx, hooks.MsgHookCompleted, "hook", name, "phase", phase, "duration_ms", ho.duration.Milliseconds(),
		"rows_affected", ho.rows, "migration", m.ID())
	return ho, nil
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
// a second), debug log records and the backfill rows counter.
type progressReporter struct {
	p       *Pipeline
	rc      *runContext
	m       *contract.Migration
	phase   string
	hook    string
	attempt int
	log     *slog.Logger
	// key names the hook in Pipeline.progressSent, which keeps the time of its last event
	// across the slices this worker runs.
	key string
}

func (r *progressReporter) report(bp hooks.BatchProgress) {
	fault.At(fault.BackfillAfterBatch)
	r.p.cfg.Observer.BackfillRows(bp.LastBatchRows)
	now := time.Now()
	if sent, ok := r.p.progressSent.Load(r.key); ok && now.Sub(sent.(time.Time)) < progressInterval {
		return
	}
	r.p.progressSent.Store(r.key, now)
	r.publish(bp)
}

func (r *progressReporter) publish(bp hooks.BatchProgress) {
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
	ev := r.p.phaseEvent(r.rc, r.m, contract.KindBackfillProgress, r.phase, r.attempt, r.hook, fmt.Sprint(bp.Rows))
	ev.Hook, ev.RowsAffected, ev.Message = r.hook, bp.Rows, msg
	ev.Data, _ = json.Marshal(data)
	// Like the start events: no state change, so no wait for the WAL flush.
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	batch := &pgx.Batch{}
	batch.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	if err := outbox.Queue(batch, r.p.cfg.Store.Schema(), true, ev); err == nil {
		err = r.p.cfg.Store.Pool.SendBatch(ctx, batch).Close()
		if err != nil {
			r.log.Warn("could not record backfill progress", "error", err.Error())
		}
	}
}
