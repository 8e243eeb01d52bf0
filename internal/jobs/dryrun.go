package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/dryrun"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/queue"
)

// DryRunArgs is the job of a dry-run: every planned migration, all its phases and its DDL, in
// one transaction on the target that is always rolled back (see internal/dryrun). A dry-run is
// one job, not one per phase: nothing commits, so there is nothing to resume.
type DryRunArgs struct {
	RunID string `json:"run_id"`
}

// Kind is River's job kind.
func (DryRunArgs) Kind() string { return "confiture_dry_run" }

// dryRunStep is the step a dry-run is at while its job runs.
var dryRunStep = Step{Phase: "dry_run"}

type dryRunWorker struct {
	river.WorkerDefaults[DryRunArgs]
	p *Pipeline
}

func (w *dryRunWorker) NextRetry(job *river.Job[DryRunArgs]) time.Time {
	return time.Now().Add(w.p.backoff(job.Attempt))
}

func (w *dryRunWorker) Timeout(*river.Job[DryRunArgs]) time.Duration { return w.p.cfg.PhaseTimeout }

func (w *dryRunWorker) Work(ctx context.Context, job *river.Job[DryRunArgs]) error {
	p := w.p
	rc, err := p.loadRun(ctx, job.Args.RunID)
	if err != nil {
		return err
	}
	if rc.row.Status != queue.RunRunning || rc.row.StepVersion != dryRunStep.Version || rc.row.StepPhase != dryRunStep.Phase {
		return nil // stale
	}
	log := p.cfg.Logger.With("run", rc.row.ID, "request_id", rc.row.RequestID, "target", rc.row.Target,
		"attempt", job.Attempt, "job_id", job.ID, "dry_run", true)
	migs := make([]contract.Migration, 0, len(rc.row.Plan))
	for _, v := range rc.row.Plan {
		m, err := rc.migration(v)
		if err != nil {
			return river.JobCancel(err)
		}
		migs = append(migs, *m)
	}
	t, err := p.cfg.Targets.Get(rc.row.Target)
	var report *contract.DryRunReport
	if err == nil {
		pool, perr := t.Pool(ctx)
		if perr != nil {
			err = perr
		} else {
			report, err = dryrun.Run(ctx, pool, p.cfg.Registry, dryrun.RunInfo{
				Run: rc.row.ID, RequestID: rc.row.RequestID, Target: rc.row.Target, Direction: rc.row.Direction,
				Schema: t.Schema(), TargetDSN: t.DSN(),
			}, migs, w.options(log))
		}
	}
	if err != nil && job.Attempt < p.cfg.MaxAttempts {
		log.Warn("dry-run could not run; will retry", "error", err.Error())
		return err
	}

	ctx, cancel := recordCtx(ctx)
	defer cancel()
	client := river.ClientFromContext[pgx.Tx](ctx)
	var evs []contract.Event
	status := queue.RunCompleted
	final := outbox.New(rc.ref, contract.KindRunCompleted)
	if err != nil {
		status = queue.RunFailed
		final = outbox.New(rc.ref, contract.KindRunFailed)
		final.Error = eventError(contract.CodeInternal, err)
		final.Message = "dry-run could not run: " + err.Error()
	} else {
		data, merr := json.Marshal(report)
		if merr != nil {
			return merr
		}
		rep := outbox.New(rc.ref, contract.KindDryRunReport)
		rep.Data, rep.DurationMS = data, int64(report.DurationMS)
		rep.Message = summarize(report)
		evs = append(evs, rep)
		final.Message = "dry-run: " + rep.Message
		if !report.Success {
			status = queue.RunFailed
			final = outbox.New(rc.ref, contract.KindRunFailed)
			final.Message = "dry-run: " + rep.Message
			final.Error = &contract.EventError{Code: contract.CodeSQLError, Message: firstError(report)}
		}
	}
	final.DurationMS = time.Since(rc.row.CreatedAt).Milliseconds()
	log.Info("dry-run finished", "success", status == queue.RunCompleted, "summary", final.Message)
	return finishJob(ctx, p, job, func(tx pgx.Tx) error {
		return p.advance(ctx, client, tx, rc, dryRunStep, Step{}, status, append(evs, final)...)
	})
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

// firstError is the error of the first migration that failed.
func firstError(r *contract.DryRunReport) string {
	for _, m := range r.Migrations {
		if !m.Success && m.Error != "" {
			return fmt.Sprintf("%s_%s: %s", m.Version, m.Name, m.Error)
		}
	}
	return "the dry-run failed"
}

func (w *dryRunWorker) options(log *slog.Logger) dryrun.Options {
	o := w.p.cfg.DryRun
	o.Logger = log
	return o
}
