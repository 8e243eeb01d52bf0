// Package jobs runs migrations as River jobs: one job plans a run, then one job per phase of
// each migration does the work and, in the same queue-database transaction that completes it,
// records the phase's events and inserts the job of the next phase (pipeline.go says which).
//
// Each phase commits its effects on the target in one transaction together with its hook-ledger
// rows; the queue transaction commits after it. A retry after a crash between the two finds the
// ledger rows and does not repeat the effects. Every job compares its step with the run's
// current step, so a stale or duplicate job does nothing.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/dryrun"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/queue"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// RunStartArgs is the job that plans a run once it is admitted: it reads the target's tracking
// table, verifies checksums and decides which migrations to apply or revert.
type RunStartArgs struct {
	RunID string `json:"run_id"`
}

// Kind is River's job kind.
func (RunStartArgs) Kind() string { return "confiture_run_start" }

// PhaseArgs is the job of one phase of one migration of a run.
type PhaseArgs struct {
	RunID   string `json:"run_id"`
	Version string `json:"version"`
	Phase   string `json:"phase"`
}

// Kind is River's job kind.
func (PhaseArgs) Kind() string { return "confiture_phase" }

// Config is what the phase pipeline needs.
type Config struct {
	Store    *queue.Store
	Targets  *target.Set
	Registry *hooks.Registry
	// Logger is the base logger; every job derives one carrying the run's attributes.
	Logger *slog.Logger
	// MaxAttempts is how many times a phase is tried before it fails. Defaults to 5.
	MaxAttempts int
	// RetryBackoff is the wait before the second attempt; it doubles each attempt, with 10%
	// jitter, up to RetryBackoffMax. Defaults to 1s.
	RetryBackoff time.Duration
	// RetryBackoffMax caps the wait between attempts. Defaults to 1m.
	RetryBackoffMax time.Duration
	// PhaseTimeout bounds one attempt of one phase. Defaults to 30m.
	PhaseTimeout time.Duration
	// DryRun holds the dry-run's options (lock timeout, large-table threshold). Defaults to
	// dryrun's defaults.
	DryRun dryrun.Options
	// Queue is the River queue phase jobs go to. Defaults to river.QueueDefault.
	Queue string
	// BackfillSlice is how long one job of a batched hook (a backfill) works before it gives
	// its worker slot back and goes on in the next job slice. Defaults to a minute, and at most
	// half of PhaseTimeout.
	BackfillSlice time.Duration
	// Observer receives the pipeline's measurements (the worker's Prometheus metrics).
	// Defaults to none.
	Observer Observer

	// Fault, when set, is called at named points of a phase for fault-injection tests; an
	// error it returns fails the attempt at that point. Points: "after_target_commit" (the
	// phase's target transaction has committed, its queue transaction has not begun).
	// Defaults to none.
	Fault func(point string, args PhaseArgs, attempt int) error
}

// Observer receives measurements of the pipeline. Label values are bounded: phases, outcomes,
// hook types and run statuses, never run ids or declared hook names.
type Observer interface {
	// PhaseDone reports a phase attempt: outcome is completed, retrying or failed.
	PhaseDone(phase, outcome string, d time.Duration)
	// HookDone reports one hook of a phase attempt: outcome is completed or failed.
	HookDone(hookType, phase, outcome string, d time.Duration)
	// PhaseRetried counts a phase attempt that will be retried.
	PhaseRetried(phase string)
	// RunFinished counts a run that ended: completed, failed or rejected.
	RunFinished(status string)
	// BackfillRows counts rows written by a batch of a batched hook.
	BackfillRows(n int64)
}

type noObserver struct{}

func (noObserver) PhaseDone(string, string, time.Duration)        {}
func (noObserver) HookDone(string, string, string, time.Duration) {}
func (noObserver) PhaseRetried(string)                            {}
func (noObserver) RunFinished(string)                             {}
func (noObserver) BackfillRows(int64)                             {}

func (c *Config) withDefaults() *Config {
	out := *c
	if out.Observer == nil {
		out.Observer = noObserver{}
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	if out.MaxAttempts <= 0 {
		out.MaxAttempts = 5
	}
	if out.RetryBackoff <= 0 {
		out.RetryBackoff = time.Second
	}
	if out.RetryBackoffMax <= 0 {
		out.RetryBackoffMax = time.Minute
	}
	if out.PhaseTimeout == 0 {
		out.PhaseTimeout = 30 * time.Minute
	}
	if out.BackfillSlice <= 0 {
		out.BackfillSlice = time.Minute
	}
	if out.PhaseTimeout > 0 {
		out.BackfillSlice = min(out.BackfillSlice, out.PhaseTimeout/2)
	}
	if out.Queue == "" {
		out.Queue = river.QueueDefault
	}
	return &out
}

// Pipeline owns the River workers of the phase pipeline and admits runs to it.
type Pipeline struct {
	cfg    *Config
	client *river.Client[pgx.Tx]
	runs   *runCache
	// progressSent holds when each running batched hook last reported progress.
	progressSent sync.Map
}

// New returns a Pipeline and registers its workers in workers. Call SetClient with the River
// client built from those workers before admitting runs.
func New(cfg *Config, workers *river.Workers) (*Pipeline, error) {
	if cfg.Store == nil || cfg.Targets == nil || cfg.Registry == nil {
		return nil, errors.New("jobs: Config.Store, Config.Targets and Config.Registry are required")
	}
	p := &Pipeline{cfg: cfg.withDefaults(), runs: newRunCache(256)}
	if err := river.AddWorkerSafely(workers, &runStartWorker{p: p}); err != nil {
		return nil, err
	}
	if err := river.AddWorkerSafely(workers, &phaseWorker{p: p}); err != nil {
		return nil, err
	}
	if err := river.AddWorkerSafely(workers, &dryRunWorker{p: p}); err != nil {
		return nil, err
	}
	return p, nil
}

// SetClient gives the pipeline the River client it inserts jobs with outside a worker.
func (p *Pipeline) SetClient(c *river.Client[pgx.Tx]) { p.client = c }

// Admit starts the run if no other run of its target is running, and otherwise leaves it
// queued: it starts when the runs before it have ended, in arrival order. Call it in the
// transaction that inserted the run. It implements intake.Admitter.
func (p *Pipeline) Admit(ctx context.Context, tx pgx.Tx, run *queue.Run) error {
	return p.admitNext(ctx, p.client, tx, run.Target)
}

// admitNext starts the oldest queued run of target, if it may start now.
func (p *Pipeline) admitNext(ctx context.Context, client *river.Client[pgx.Tx], tx pgx.Tx, targetName string) error {
	if client == nil {
		return errors.New("jobs: no River client (SetClient was not called)")
	}
	id, err := p.cfg.Store.AdmitNext(ctx, tx, targetName)
	if err != nil || id == "" {
		return err
	}
	_, err = client.InsertTx(ctx, tx, RunStartArgs{RunID: id}, &river.InsertOpts{
		Queue: p.cfg.Queue, MaxAttempts: p.cfg.MaxAttempts + 1, // one spare: see failPhase
	})
	return err
}

// errStale is returned inside a transaction whose job found the run elsewhere than its step:
// the transaction is rolled back and the job ends without effect.
var errStale = errors.New("stale job: the run has moved on")

// advance moves the run from step from to step to (inserting to's job), or, when status is set,
// ends the run with that status (admitting the next queued run of its target). It records evs
// in the same transaction. It returns errStale when the run is not at from.
func (p *Pipeline) advance(ctx context.Context, client *river.Client[pgx.Tx], tx pgx.Tx, rc *runContext, from, to Step, status string, evs ...contract.Event) error {
	return p.advancePlanned(ctx, client, tx, rc, from, to, status, nil, evs...)
}

// advancePlanned is advance that also records the run's plan.
func (p *Pipeline) advancePlanned(ctx context.Context, client *river.Client[pgx.Tx], tx pgx.Tx, rc *runContext, from, to Step, status string, plan []string, evs ...contract.Event) error {
	// One round trip for the move and the events.
	batch := &pgx.Batch{}
	p.cfg.Store.QueueMove(batch, queue.Move{Run: rc.row.ID, FromVersion: from.Version, FromPhase: from.Phase,
		ToVersion: to.Version, ToPhase: to.Phase, Status: status, Plan: plan})
	if err := outbox.Queue(batch, p.cfg.Store.Schema(), true, evs...); err != nil {
		return err
	}
	br := tx.SendBatch(ctx, batch)
	tag, err := br.Exec()
	if err == nil && tag.RowsAffected() != 1 {
		err = errStale
	}
	if err == nil && len(evs) > 0 {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return p.followUp(ctx, client, tx, rc, to, status)
}

// moveStep is advance without events, for a transaction that records them later.
func (p *Pipeline) moveStep(ctx context.Context, client *river.Client[pgx.Tx], tx pgx.Tx, rc *runContext, from, to Step, status string) error {
	ok, err := p.cfg.Store.MoveStep(ctx, tx, queue.Move{Run: rc.row.ID, FromVersion: from.Version, FromPhase: from.Phase,
		ToVersion: to.Version, ToPhase: to.Phase, Status: status})
	if err != nil {
		return err
	}
	if !ok {
		return errStale
	}
	return p.followUp(ctx, client, tx, rc, to, status)
}

// followUp inserts the job of step to, or, for a run that ended, admits the next run.
func (p *Pipeline) followUp(ctx context.Context, client *river.Client[pgx.Tx], tx pgx.Tx, rc *runContext, to Step, status string) error {
	if status != "" {
		p.runs.drop(rc.row.ID)
		p.cfg.Observer.RunFinished(status)
		return p.admitNext(ctx, client, tx, rc.row.Target)
	}
	var args river.JobArgs = PhaseArgs{RunID: rc.row.ID, Version: to.Version, Phase: to.Phase}
	if to == dryRunStep {
		args = DryRunArgs{RunID: rc.row.ID}
	}
	_, err := client.InsertTx(ctx, tx, args, &river.InsertOpts{Queue: p.cfg.Queue, MaxAttempts: p.cfg.MaxAttempts + 1})
	return err
}

// finishJob runs fn in a queue transaction that also completes job. A stale job's transaction
// is rolled back and the job completes without effect.
func finishJob[T river.JobArgs](ctx context.Context, p *Pipeline, job *river.Job[T], fn func(tx pgx.Tx) error) error {
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
	if errors.Is(err, errStale) {
		return nil
	}
	return err
}

// backoff is the wait before attempt+1.
func (p *Pipeline) backoff(attempt int) time.Duration {
	d := p.cfg.RetryBackoff
	for i := 1; i < attempt && d < p.cfg.RetryBackoffMax; i++ {
		d *= 2
	}
	d = min(d, p.cfg.RetryBackoffMax)
	jitter := time.Duration(float64(d) * 0.1 * (2*rand.Float64() - 1))
	return d + jitter
}

// runContext is a run loaded for a job: its row, its decoded request and what events need.
type runContext struct {
	row *queue.Run
	req *contract.Request
	ref outbox.RunRef
}

// runFor returns the run of a phase job. The first attempt of a phase job was inserted by the
// transaction that moved the run to its step, and only the job itself moves the run on, so on
// that attempt a run this process has seen before is taken from the cache, at the job's step.
// Any later attempt (a retry, or a job rescued after a crash) reads the run again, because
// the run may have moved on without it.
func (p *Pipeline) runFor(ctx context.Context, a PhaseArgs, attempt int) (*runContext, error) {
	if attempt == 1 && a.Phase != contract.PhaseOnError {
		if cached := p.runs.get(a.RunID); cached != nil {
			row := *cached.row
			row.StepVersion, row.StepPhase = a.Version, a.Phase
			return &runContext{row: &row, req: cached.req, ref: cached.ref}, nil
		}
	}
	rc, err := p.loadRun(ctx, a.RunID)
	if err == nil && rc.row.Plan != nil && rc.row.Status == queue.RunRunning {
		p.runs.put(rc)
	}
	return rc, err
}

// loadRun reads a run.
func (p *Pipeline) loadRun(ctx context.Context, runID string) (*runContext, error) {
	row, err := p.cfg.Store.GetRun(ctx, p.cfg.Store.Pool, runID)
	if err != nil {
		return nil, err
	}
	var req contract.Request
	if err := json.Unmarshal(row.Request, &req); err != nil {
		return nil, fmt.Errorf("run %s: stored request: %w", runID, err)
	}
	return &runContext{row: row, req: &req, ref: outbox.RunRef{Run: row.ID, RequestID: row.RequestID, Target: row.Target}}, nil
}

func (rc *runContext) migration(version string) (*contract.Migration, error) {
	for i := range rc.req.Migrations {
		if rc.req.Migrations[i].Version == version {
			return &rc.req.Migrations[i], nil
		}
	}
	return nil, fmt.Errorf("run %s: migration %s is not in the request", rc.row.ID, version)
}

// recordTimeout bounds the recording of a phase's outcome.
const recordTimeout = 30 * time.Second

// recordCtx returns a context for recording an outcome in the queue database: it keeps ctx's
// values (River's client) but not its deadline or cancellation, because the outcome to record
// may be precisely that the job's context ran out (a phase timeout) or the worker is stopping.
func recordCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}

// inTx runs fn in a queue-database transaction and commits it.
func (p *Pipeline) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, p.cfg.Store.Pool, fn)
}

// eventError builds the error object of an event from err.
func eventError(code string, err error) *contract.EventError {
	e := &contract.EventError{Code: code, Message: err.Error(), Retryable: hooks.Retryable(err)}
	var pgErr interface{ SQLState() string }
	if errors.As(err, &pgErr) {
		e.SQLState = pgErr.SQLState()
	}
	return e
}
