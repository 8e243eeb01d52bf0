// Package jobs runs migrations as River jobs, and owns the run state machine.
//
// A run is queued until its target is free, then running at a step (planning, a phase of a
// migration, or its dry-run), and ends completed or failed; it may be paused and resumed. Each
// step is one River job, the run's live job (runs.job_id). A job is worked in attempts
// (attempt.go): an attempt starts by counting itself on the run under a guard (the run still at
// its step, the job still its live job; otherwise the job is stale and ends without effect),
// does the step's work, and concludes with exactly one outcome: completed, a slice of a batched
// hook ended, paused or cancelled by an operator, interrupted by a stopping worker, transient
// trouble, a failure to retry, or a final failure. Each outcome is one transition of the run
// (transition.go), written with the events that report it, and with the job's completion where
// the job's part is over, in one queue-database transaction.
//
// What no attempt can report (a job cancelled while it waited, discarded by River, deleted, or
// lost with a worker that died) the reconciler finds (reconcile.go): a River periodic job that
// runs on the leader and moves each run whose live job has ended to an end state, to paused, or
// back to a live job. Operators act through the same transitions (operator.go).
//
// Each phase commits its effects on the target in one transaction together with its hook-ledger
// rows. Every attempt reads the ledger and skips what is committed there, so a retry, a rescue
// or a run that resumes an incomplete migration never repeats a committed effect. Whether an
// attempt ran before is read from the ledger, never inferred from River's attempt number.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/dryrun"
	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/targetgroup"
)

// QueueName is the River queue of the pipeline's jobs: a name River UI shows that no one takes
// for a target (River's own default queue is "default", the name of the default target).
// Workers also work River's default queue, where workers before this one put their jobs.
const QueueName = "confiture_jobs"

// RunStartArgs is the job that plans a run once it is admitted: it reads the target's tracking
// table, verifies checksums and decides which migrations to apply or revert, and from which
// phase.
type RunStartArgs struct {
	RunID string `json:"run_id"`
	// Target and RequestID say, in River UI, whose run it is; the job reads the run itself.
	Target    string `json:"target,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// Kind is River's job kind.
func (RunStartArgs) Kind() string { return "confiture_run_start" }

// PhaseArgs is the job of one phase of one migration of a run.
type PhaseArgs struct {
	RunID   string `json:"run_id"`
	Version string `json:"version"`
	Phase   string `json:"phase"`
	// Target, Migration (<version>_<name>) and Hooks (the phase's hook names) say, in River
	// UI, what the job does; the job reads the run itself.
	Target    string   `json:"target,omitempty"`
	Migration string   `json:"migration,omitempty"`
	Hooks     []string `json:"hooks,omitempty"`
}

// Kind is River's job kind.
func (PhaseArgs) Kind() string { return "confiture_phase" }

// Config is what the phase pipeline needs.
type Config struct {
	Store   *runstore.Store
	Targets *target.Set
	// Groups resolves the target groups a request may name instead of a target (a rollout).
	// Defaults to none.
	Groups   *targetgroup.Resolver
	Registry *hooks.Registry
	// Logger is the base logger; every job derives one carrying the run's attributes.
	Logger *slog.Logger
	// MaxAttempts is how many times a phase is tried before it fails. Attempts that transient
	// trouble or a stopping worker cut short do not count. Defaults to 5.
	MaxAttempts int
	// RetryBackoff is the wait before the second attempt; it doubles each attempt, with 10%
	// jitter, up to RetryBackoffMax. Defaults to 1s.
	RetryBackoff time.Duration
	// RetryBackoffMax caps the wait between attempts. Defaults to 1m.
	RetryBackoffMax time.Duration
	// OutageTolerance is how long a step keeps retrying through transient trouble (a target or
	// the queue database refusing connections, out of connection slots, starting up; see
	// package transient) before an attempt counts as failed. Defaults to 10m.
	OutageTolerance time.Duration
	// PhaseTimeout bounds one attempt of one phase. Defaults to 30m.
	PhaseTimeout time.Duration
	// DryRun holds the dry-run's options (lock timeout, large-table threshold). Defaults to
	// dryrun's defaults.
	DryRun dryrun.Options
	// Queue is the River queue the pipeline's jobs go to. Defaults to QueueName.
	Queue string
	// RiverSchema is the schema of River's tables, which the reconciler reads. Defaults to
	// runstore.DefaultRiverSchema.
	RiverSchema string
	// ReconcileInterval is how often the leader looks for runs whose live job ended without
	// moving them. Defaults to 30s.
	ReconcileInterval time.Duration
	// WorkerLiveness is how long after its last heartbeat in the queue database's worker table
	// a worker counts as alive: the reconciler hands the running jobs of a worker not seen for
	// longer back to River (see rescueOrphans). Workers must use RiverClientID as their River
	// client id. Defaults to 0: no such rescue (River's own, after rescue_after, remains).
	WorkerLiveness time.Duration
	// SteadySince, when set, says since when this worker's own heartbeats have succeeded
	// without a miss (zero: they are failing). The reconciler hands back the jobs of workers
	// missed for WorkerLiveness only once its own heartbeats have been steady that long: while
	// the queue database was unreachable (or restarting) every worker's heartbeats were late,
	// not only those of the workers that died.
	SteadySince func() time.Time
	// BackfillSlice is how long one job of a batched hook (a backfill) works before it gives
	// its worker slot back and goes on in the next job slice; and how long the job of a ddl
	// step goes on with the next migrations without hooks (phaseWorker.Work). Defaults to a
	// minute, and at most half of PhaseTimeout.
	BackfillSlice time.Duration
	// Observer receives the pipeline's measurements (the worker's Prometheus metrics).
	// Defaults to none.
	Observer Observer

	// Fault, when set, is called at the fault points of a phase (package fault) for the tests
	// that inject failures, with the job's context; an error it returns fails the attempt at
	// that point. Defaults to none.
	Fault fault.Func
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

// WithDefaults returns c with every unset field defaulted: the one place the pipeline's
// defaults are (the worker's configuration takes them from here). BackfillSlice is capped at
// half of PhaseTimeout.
func (c *Config) WithDefaults() *Config {
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
	if out.OutageTolerance <= 0 {
		out.OutageTolerance = 10 * time.Minute
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
		out.Queue = QueueName
	}
	if out.RiverSchema == "" {
		out.RiverSchema = runstore.DefaultRiverSchema
	}
	if out.ReconcileInterval <= 0 {
		out.ReconcileInterval = 30 * time.Second
	}
	return &out
}

// riverMaxAttempts is the max_attempts of the pipeline's River jobs: MaxAttempts, so that River
// UI shows the attempts the run counts. River's count follows the run's: both count an attempt
// when it begins (the run's durably, before any work), and neither counts one that a stop,
// transient trouble or a snooze cut short. River's is the backstop of a job that keeps dying
// with its worker: when it discards the job, the reconciler fails the run.
func (c *Config) riverMaxAttempts() int { return c.MaxAttempts }

// Pipeline owns the River workers of the phase pipeline and admits runs to it.
type Pipeline struct {
	cfg      *Config
	client   *river.Client[pgx.Tx]
	runs     *runCache
	progress progressClock
	// memberOf maps each group member added to the targets to its group.
	memberOf sync.Map
}

// New returns a Pipeline and registers its workers in workers. Call SetClient with the River
// client built from those workers before admitting runs; PeriodicJobs gives the reconciler's
// schedule for that client's configuration.
func New(cfg *Config, workers *river.Workers) (*Pipeline, error) {
	if cfg.Store == nil || cfg.Targets == nil || cfg.Registry == nil {
		return nil, errors.New("jobs: Config.Store, Config.Targets and Config.Registry are required")
	}
	p := &Pipeline{cfg: cfg.WithDefaults(), runs: newRunCache(256)}
	if cfg.Groups != nil {
		cfg.Targets.SetFallback(p.findMember)
	}
	for _, add := range []func() error{
		func() error { return river.AddWorkerSafely(workers, &runStartWorker{p: p}) },
		func() error { return river.AddWorkerSafely(workers, &phaseWorker{p: p}) },
		func() error { return river.AddWorkerSafely(workers, &dryRunWorker{p: p}) },
		func() error { return river.AddWorkerSafely(workers, &reconcileWorker{p: p}) },
		func() error { return river.AddWorkerSafely(workers, &rolloutWorker{p: p}) },
	} {
		if err := add(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// SetClient gives the pipeline the River client it inserts jobs with outside a worker.
func (p *Pipeline) SetClient(c *river.Client[pgx.Tx]) { p.client = c }

// MaxAttempts is the max_attempts River jobs of the pipeline are inserted with (see
// Config.MaxAttempts): set it as the River client's default too.
func (p *Pipeline) MaxAttempts() int { return p.cfg.riverMaxAttempts() }

// Admit starts the run if its target has no running or paused run, and otherwise leaves it
// queued: it starts when the runs before it have ended, in the order the queue database
// recorded them. Call it in the transaction that inserted the run. It implements
// intake.Admitter.
func (p *Pipeline) Admit(ctx context.Context, tx pgx.Tx, run *runstore.Run) error {
	if p.client == nil {
		return errors.New("jobs: no River client (SetClient was not called)")
	}
	return p.admitNext(ctx, tx, p.client, run.Target)
}

// backoff is the wait before attempt+1.
func (p *Pipeline) backoff(attempt int) time.Duration {
	d := p.cfg.RetryBackoff
	for i := 1; i < attempt && d < p.cfg.RetryBackoffMax; i++ {
		d *= 2
	}
	return jitter(min(d, p.cfg.RetryBackoffMax))
}

// jitter spreads d by up to 10% either way, so that retries of many runs do not align.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(float64(d)*0.1*(2*rand.Float64()-1))
}

// recordTimeout bounds the recording of an outcome.
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

// inTxNoFlush is inTx for a transaction whose commit need not wait for the WAL flush (set in
// the BEGIN's round trip).
func (p *Pipeline) inTxNoFlush(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, p.cfg.Store.Pool, pgx.TxOptions{BeginQuery: "BEGIN; SET LOCAL synchronous_commit = off"}, fn)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with plain structs
	}
	return b
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
