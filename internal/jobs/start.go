package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/queue"
	"github.com/confiture-io/confiture-worker/internal/target"
)

type runStartWorker struct {
	river.WorkerDefaults[RunStartArgs]
	p *Pipeline
}

func (w *runStartWorker) NextRetry(job *river.Job[RunStartArgs]) time.Time {
	return time.Now().Add(w.p.backoff(job.Attempt))
}

// planError is a reason to reject a run at planning time.
type planError struct {
	code string
	msg  string
}

func (e *planError) Error() string { return e.msg }

// RunPlan is the data of a run.started event.
type RunPlan struct {
	Direction string   `json:"direction"`
	Versions  []string `json:"versions"`
	Applied   int      `json:"already_applied"`
	Forced    []string `json:"forced_checksums,omitempty"`
}

func (w *runStartWorker) Work(ctx context.Context, job *river.Job[RunStartArgs]) error {
	p := w.p
	rc, err := p.loadRun(ctx, job.Args.RunID)
	if err != nil {
		return err
	}
	if rc.row.Status != queue.RunRunning || rc.row.Plan != nil {
		return nil // stale: the run was planned already or has ended
	}
	log := p.cfg.Logger.With("run", rc.row.ID, "request_id", rc.row.RequestID, "target", rc.row.Target,
		"attempt", job.Attempt, "job_id", job.ID)

	t, err := p.cfg.Targets.Get(rc.row.Target)
	var plan *RunPlan
	if err == nil {
		plan, err = p.plan(ctx, t, rc)
	}
	var pe *planError
	if err != nil && !errors.As(err, &pe) {
		if errors.Is(err, target.ErrUnknownTarget) {
			pe = &planError{code: contract.CodeUnknownTarget, msg: err.Error()}
		} else if job.Attempt < p.cfg.MaxAttempts {
			log.Warn("planning run failed; will retry", "error", err.Error())
			return err
		} else {
			pe = &planError{code: contract.CodeInternal, msg: "planning failed: " + err.Error()}
		}
	}

	client := river.ClientFromContext[pgx.Tx](ctx)
	ctx, cancel := recordCtx(ctx)
	defer cancel()
	unplanned := Step{}
	var planned *runContext
	err = finishJob(ctx, p, job, func(tx pgx.Tx) error {
		if pe != nil {
			log.Warn("run rejected", "reason", pe.msg)
			ev := outbox.New(rc.ref, contract.KindRunRejected)
			ev.Error = &contract.EventError{Code: pe.code, Message: pe.msg}
			ev.Message = pe.msg
			return p.advance(ctx, client, tx, rc, unplanned, Step{}, queue.RunRejected, ev)
		}
		started := outbox.New(rc.ref, contract.KindRunStarted)
		started.Data = mustJSON(plan)
		if len(plan.Versions) == 0 {
			done := outbox.New(rc.ref, contract.KindRunCompleted)
			done.Message = "nothing to do: " + nothingToDo(rc.req, plan)
			log.Info("run completed", "message", done.Message)
			return p.advancePlanned(ctx, client, tx, rc, unplanned, Step{}, queue.RunCompleted, plan.Versions, started, done)
		}
		started.Message = fmt.Sprintf("%s %d migration(s): %s", verb(plan.Direction), len(plan.Versions), strings.Join(plan.Versions, ", "))
		if len(plan.Forced) > 0 {
			started.Message += fmt.Sprintf("; accepted changed checksums of %s (force)", strings.Join(plan.Forced, ", "))
		}
		if rc.req.DryRun {
			started.Message = "dry-run: " + started.Message
			log.Info("dry-run started", "plan", plan.Versions, "direction", plan.Direction)
			return p.advancePlanned(ctx, client, tx, rc, unplanned, dryRunStep, "", plan.Versions, started)
		}
		first := FirstStep(plan.Direction, plan.Versions)
		m, err := rc.migration(first.Version)
		if err != nil {
			return err
		}
		ms := outbox.New(rc.ref, contract.KindMigrationStarted, first.Version)
		setMigration(&ms, m)
		log.Info("run started", "plan", plan.Versions, "direction", plan.Direction)
		if err := p.advancePlanned(ctx, client, tx, rc, unplanned, first, "", plan.Versions, started, ms); err != nil {
			return err
		}
		row := *rc.row
		row.Plan = plan.Versions
		planned = &runContext{row: &row, req: rc.req, ref: rc.ref}
		return nil
	})
	if err == nil && planned != nil {
		p.runs.put(planned) // only once the plan has committed
	}
	return err
}

// plan decides which migrations the run applies (or reverts), in order, from the target's
// tracking table. Drift (an applied migration whose checksum changed) rejects the run unless
// the request says force; then the new checksum is recorded.
func (p *Pipeline) plan(ctx context.Context, t *target.Target, rc *runContext) (*RunPlan, error) {
	pool, err := t.Pool(ctx)
	if err != nil {
		return nil, err
	}
	applied, err := t.AppliedMigrations(ctx, pool)
	if err != nil {
		return nil, err
	}
	byVersion := map[string]target.Applied{}
	for _, a := range applied {
		byVersion[a.Version] = a
	}
	req := rc.req
	migs := slices.Clone(req.Migrations)
	slices.SortFunc(migs, func(a, b contract.Migration) int { return strings.Compare(a.Version, b.Version) })

	plan := &RunPlan{Direction: req.Direction, Versions: []string{}}
	var drift []string
	var forced []target.Applied
	for _, m := range migs {
		a, ok := byVersion[m.Version]
		if !ok {
			continue
		}
		plan.Applied++
		if a.Checksum != m.Checksum {
			if !req.Force {
				drift = append(drift, fmt.Sprintf("%s_%s (applied %s, request %s)", m.Version, m.Name, short(a.Checksum), short(m.Checksum)))
				continue
			}
			a.Checksum, a.Name = m.Checksum, m.Name
			forced = append(forced, a)
			plan.Forced = append(plan.Forced, m.Version)
		}
	}
	if len(drift) > 0 {
		return nil, &planError{code: contract.CodeDrift, msg: fmt.Sprintf(
			"checksum drift: applied migration(s) changed since they were applied: %s; restore the files, or resubmit with force to accept the new checksums",
			strings.Join(drift, "; "))}
	}

	switch req.Direction {
	case contract.DirectionUp:
		for _, m := range migs {
			if _, done := byVersion[m.Version]; done || (req.To != "" && m.Version > req.To) {
				continue
			}
			plan.Versions = append(plan.Versions, m.Version)
		}
	case contract.DirectionDown:
		inRequest := map[string]*contract.Migration{}
		for i := range migs {
			inRequest[migs[i].Version] = &migs[i]
		}
		for i := len(applied) - 1; i >= 0; i-- {
			a := applied[i]
			if req.To != "" && a.Version <= req.To {
				break
			}
			m, ok := inRequest[a.Version]
			if !ok {
				return nil, &planError{code: contract.CodeNoDownMigration, msg: fmt.Sprintf(
					"migration %s_%s is applied but not in the request, so it cannot be reverted", a.Version, a.Name)}
			}
			if strings.TrimSpace(m.DownSQL) == "" {
				return nil, &planError{code: contract.CodeNoDownMigration, msg: fmt.Sprintf(
					"migration %s has no down SQL (%s.down.sql), so it cannot be reverted", m.ID(), m.ID())}
			}
			plan.Versions = append(plan.Versions, a.Version)
			if req.To == "" {
				break // without "to", down reverts the latest applied migration only
			}
		}
	}
	// Hooks were validated at intake against this worker's registry; check again in case the
	// run was accepted by a worker with other hooks loaded.
	for _, v := range plan.Versions {
		m, _ := rc.migration(v)
		if _, err := p.cfg.Registry.PlanAll(m.Hooks); err != nil {
			code := contract.CodeInvalidHooks
			if errors.Is(err, hooks.ErrUnknownHook) {
				code = contract.CodeUnknownHook
			}
			return nil, &planError{code: code, msg: fmt.Sprintf("migration %s: %v", m.ID(), err)}
		}
	}
	if len(forced) > 0 && len(plan.Versions) > 0 && !req.DryRun { // a dry-run changes nothing
		tx, err := pool.Begin(ctx)
		if err != nil {
			return nil, err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
		for _, a := range forced {
			if err := t.RecordApplied(ctx, tx, a); err != nil {
				return nil, err
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return nil, err
		}
	}
	return plan, nil
}

func nothingToDo(req *contract.Request, plan *RunPlan) string {
	if req.Direction == contract.DirectionDown {
		return "no applied migration to revert"
	}
	return fmt.Sprintf("all %d migration(s) already applied", plan.Applied)
}

func verb(direction string) string {
	if direction == contract.DirectionDown {
		return "reverting"
	}
	return "applying"
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

func setMigration(ev *contract.Event, m *contract.Migration) {
	ev.Migration, ev.Version = m.ID(), m.Version
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with plain structs
	}
	return b
}
