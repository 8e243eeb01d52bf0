package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/confiture-io/confiture-worker/internal/jobs"
	"github.com/confiture-io/confiture-worker/internal/redact"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// Operator runs the operator actions on runs (pause, resume, fail, retry: see jobs.Pipeline)
// against the queue database of a worker configuration, without starting a worker: no NATS, no
// intake, no job is worked here. Each action commits its transition and its event; the
// workers' relays publish the event and their River clients work the jobs it inserts.
type Operator struct {
	pipeline *jobs.Pipeline
	close    func()
}

// Operator returns the operator actions of a started worker (for a program that embeds one).
func (w *Worker) Operator() *Operator { return &Operator{pipeline: w.pipeline, close: func() {}} }

// OpenOperator connects to the queue database of cfg, which the workers must have set up.
func OpenOperator(ctx context.Context, cfg Config) (*Operator, error) {
	w, err := New(cfg)
	if err != nil {
		return nil, err
	}
	poolCfg, err := pgxpool.ParseConfig(w.cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("queue database: invalid connection string: %s", redact.String(err.Error(), redact.Secrets(w.cfg.DatabaseURL)...))
	}
	poolCfg.MaxConns = 4
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "confiture-operator"
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		return nil, fmt.Errorf("queue database: %s", target.ConnectMessage(err, w.cfg.DatabaseURL))
	}
	op, err := w.operator(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return op, nil
}

func (w *Worker) operator(ctx context.Context, pool *pgxpool.Pool) (*Operator, error) {
	var ready bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, w.cfg.QueueSchema+".runs").Scan(&ready); err != nil {
		return nil, fmt.Errorf("queue database: %w", err)
	}
	if !ready {
		return nil, fmt.Errorf("queue database: no run table %s.runs: no worker has run on this database (or it uses another queue_schema)", w.cfg.QueueSchema)
	}
	pipeline, err := w.newPipeline(runstore.NewStore(pool, w.cfg.QueueSchema), river.NewWorkers())
	if err != nil {
		return nil, err
	}
	// Insert-only, as River UI's: it cancels and inserts jobs, and works none.
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Schema: w.cfg.RiverSchema, Logger: w.log.With("component", "river"), MaxAttempts: pipeline.MaxAttempts(),
	})
	if err != nil {
		return nil, fmt.Errorf("river: %w", err)
	}
	pipeline.SetClient(client)
	return &Operator{pipeline: pipeline, close: pool.Close}, nil
}

// Close closes the connections OpenOperator opened.
func (o *Operator) Close() { o.close() }

// Pause pauses a running run (see jobs.Pipeline.Pause); reason goes into its event.
func (o *Operator) Pause(ctx context.Context, run, reason string) error {
	return runError(o.pipeline.Pause(ctx, run, reason), run)
}

// Resume sets a paused run going again.
func (o *Operator) Resume(ctx context.Context, run, reason string) error {
	return runError(o.pipeline.Resume(ctx, run, reason), run)
}

// Fail fails a queued, running or paused run.
func (o *Operator) Fail(ctx context.Context, run, reason string) error {
	return runError(o.pipeline.Fail(ctx, run, reason), run)
}

// Retry queues a failed run again; it resumes from its failed phase.
func (o *Operator) Retry(ctx context.Context, run, reason string) error {
	return runError(o.pipeline.Retry(ctx, run, reason), run)
}

// runError names the run in a not-found error.
func runError(err error, run string) error {
	if errors.Is(err, runstore.ErrRunNotFound) {
		return fmt.Errorf("run %s: %w", run, err)
	}
	return err
}
