package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/queue"
)

// runOnError runs the on_error hooks of the migration that failed, then fails the run with the
// original error. Every on_error hook runs even if another fails (each in a savepoint); their
// failures are logged and reported as events and never replace the original error. on_error is
// not retried: it runs once, and the run ends.
func (p *Pipeline) runOnError(ctx context.Context, job *river.Job[PhaseArgs], rc *runContext, m *contract.Migration, log, hookLog *slog.Logger) error {
	a := job.Args
	var orig failure
	if err := json.Unmarshal(rc.row.Error, &orig); err != nil {
		orig = failure{Error: contract.EventError{Code: contract.CodeInternal, Message: "unknown failure"}}
	}
	res := &phaseResult{}
	planned, err := p.cfg.Registry.Plan(a.Phase, m.Hooks)
	if err == nil {
		if err = p.recordStart(ctx, rc, m, a.Phase, job.Attempt, planned); err != nil {
			return err
		}
		t, terr := p.cfg.Targets.Get(rc.row.Target)
		if terr != nil {
			err = terr
		} else {
			res, err = p.runHooks(ctx, t, rc, m, a.Phase, job.Attempt, planned, log, hookLog, hooks.RunOptions{ContinueOnError: true})
		}
	}
	extra := ""
	if err != nil {
		log.Error("on_error hooks failed", "error", err.Error(), "original_error", orig.Error.Message)
		extra = "on_error also failed: " + err.Error()
	}
	client := river.ClientFromContext[pgx.Tx](ctx)
	ctx, cancel := recordCtx(ctx)
	defer cancel()
	evs := p.hookEvents(rc, m, a.Phase, job.Attempt, res)
	kind := contract.KindPhaseCompleted
	if err != nil {
		kind = contract.KindPhaseFailed
	}
	pe := p.phaseEvent(rc, m, kind, a.Phase, job.Attempt)
	pe.DurationMS, pe.RowsAffected = res.duration.Milliseconds(), res.rows
	pe.Message = fmt.Sprintf("%d hook(s)", len(res.hooks))
	if err != nil {
		pe.Hook, pe.Error, pe.Message = res.failedHook, eventError(errorCode(err, a.Phase), err), err.Error()
	}
	final := p.runFailedEvent(rc, m, rc.row.FailedPhase, orig, extra)
	log.Error("run failed", "reason", final.Message)
	evs = append(evs, pe, final)
	return finishJob(ctx, p, job, func(tx pgx.Tx) error {
		return p.advance(ctx, client, tx, rc, Step{Version: a.Version, Phase: a.Phase}, Step{}, queue.RunFailed, evs...)
	})
}
