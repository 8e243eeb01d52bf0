package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/dryrun"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// DryRunArgs is the job of a dry-run: every planned migration, all its phases and its DDL, in
// one transaction on the target that is always rolled back (see internal/dryrun). A dry-run is
// one job, not one per phase: nothing commits, so there is nothing to resume.
type DryRunArgs struct {
	RunID string `json:"run_id"`
	// Target and RequestID say, in River UI, whose run it is.
	Target    string `json:"target,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// Kind is River's job kind.
func (DryRunArgs) Kind() string { return "confiture_dry_run" }

type dryRunWorker struct {
	river.WorkerDefaults[DryRunArgs]
	p *Pipeline
}

func (w *dryRunWorker) NextRetry(job *river.Job[DryRunArgs]) time.Time {
	return w.p.nextRetry(job.JobRow)
}

func (w *dryRunWorker) Timeout(*river.Job[DryRunArgs]) time.Duration { return w.p.cfg.PhaseTimeout }

// dryRunAttempt is an attempt at a run's dry-run.
type dryRunAttempt struct {
	*attempt
	report *contract.DryRunReport
}

func (w *dryRunWorker) Work(ctx context.Context, job *river.Job[DryRunArgs]) error {
	da := &dryRunAttempt{}
	a, done, err := w.p.begin(ctx, job.JobRow, job.Args.RunID, dryRunStep, completer(job),
		func(a *attempt) []contract.Event { a.res = &phaseResult{}; return nil })
	if done {
		return err
	}
	da.attempt = a
	a.log = a.log.With("dry_run", true)
	a.succeed = da.succeeded
	return a.conclude(ctx, da.run(ctx))
}

// run dry-runs every planned migration in one target transaction that is rolled back.
func (da *dryRunAttempt) run(ctx context.Context) error {
	a := da.attempt
	rc := a.rc
	migs := make([]contract.Migration, 0, len(rc.row.Plan))
	for _, e := range rc.row.Plan {
		m, err := rc.migration(e.Version)
		if err != nil {
			return hooks.Permanent(err)
		}
		migs = append(migs, *m)
	}
	t, err := a.p.cfg.Targets.Get(rc.row.Target)
	if err != nil {
		return hooks.Permanent(err)
	}
	ctx = target.WithTarget(ctx, t)
	// Not Pool: a dry-run creates the tracking schema of a fresh target only inside its own
	// transaction, which it rolls back.
	pool, err := t.Conn(ctx)
	if err != nil {
		return err
	}
	o := a.p.cfg.DryRun
	o.Logger = a.log
	da.report, err = dryrun.Run(ctx, pool, a.p.cfg.Registry, dryrun.RunInfo{
		Run: rc.row.ID, RequestID: rc.row.RequestID, Target: rc.row.Target, Direction: rc.row.Direction,
		Schema: t.Schema(), TargetDSN: t.DSN(), Prepare: t.EnsureSchemaIn,
	}, migs, o)
	return err
}

// succeeded records the dry-run's report and ends the run: completed, or failed when a
// statement or hook failed.
func (da *dryRunAttempt) succeeded(ctx context.Context, tx pgx.Tx) error {
	a, report := da.attempt, da.report
	rc := a.rc
	data, err := json.Marshal(report)
	if err != nil {
		return err
	}
	rep := outbox.New(rc.ref, contract.KindDryRunReport)
	rep.Data, rep.DurationMS = data, int64(report.DurationMS)
	rep.Message = summarize(report)
	change := runstore.Change{Status: runstore.RunCompleted}
	final := outbox.New(rc.ref, contract.KindRunCompleted)
	final.Message = "dry-run: " + rep.Message
	if !report.Success {
		final = outbox.New(rc.ref, contract.KindRunFailed)
		final.Message = "dry-run: " + rep.Message
		f := firstFailure(report)
		final.Error = &contract.EventError{Code: f.code, Message: firstError(report)}
		final.Migration, final.Version, final.Phase, final.Hook = f.migration, f.version, f.phase, f.hook
		change = runstore.Change{Status: runstore.RunFailed, Failure: &runstore.Failure{Phase: dryRunStep.Phase, Error: failure{Error: *final.Error}}}
	}
	final.Data = mustJSON(a.summary)
	final.DurationMS = time.Since(rc.row.CreatedAt).Milliseconds()
	a.log.Info("dry-run finished", "success", report.Success, "summary", final.Message)
	return a.p.endRun(ctx, tx, a.client, rc, live(a.step, a.job.ID), change, rep, final)
}

// summarize says in one line what a dry-run found.
func summarize(r *contract.DryRunReport) string {
	warnings := len(r.Warnings)
	if !r.Success {
		return fmt.Sprintf("failed: %s (%d warning(s)); everything was rolled back", firstError(r), warnings)
	}
	return fmt.Sprintf("%d migration(s) would apply in %.0f ms, %d warning(s); everything was rolled back",
		len(r.Migrations), r.DurationMS, warnings)
}

// dryRunFailure says where a failed dry-run failed, and with which error code: hook_failed
// for a hook, sql_error for a statement of the migration, invalid_hooks for a hook plan the
// worker refuses (no phase ran).
type dryRunFailure struct {
	code, migration, version, phase, hook string
}

func firstFailure(r *contract.DryRunReport) dryRunFailure {
	m := r.Failed()
	if m == nil {
		return dryRunFailure{code: contract.CodeSQLError}
	}
	f := dryRunFailure{code: contract.CodeInvalidHooks, migration: m.ID(), version: m.Version}
	if n := len(m.Phases); n > 0 {
		f.code = contract.CodeHookFailed
		p := m.Phases[n-1]
		f.phase = p.Phase
		if p.Phase == contract.PhaseDDL {
			f.code = contract.CodeSQLError
		}
		for _, h := range p.Hooks {
			if h.Error != "" {
				f.hook = h.Name
			}
		}
	}
	return f
}

// firstError is the error of the first migration that failed.
func firstError(r *contract.DryRunReport) string {
	if m := r.Failed(); m != nil && m.Error != "" {
		return m.ID() + ": " + m.Error
	}
	return "the dry-run failed"
}
