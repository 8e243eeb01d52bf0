package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/target"
)

type runStartWorker struct {
	river.WorkerDefaults[RunStartArgs]
	p *Pipeline
}

func (w *runStartWorker) NextRetry(job *river.Job[RunStartArgs]) time.Time {
	return w.p.nextRetry(job.JobRow)
}

func (w *runStartWorker) Work(ctx context.Context, job *river.Job[RunStartArgs]) error {
	pl := &planAttempt{}
	a, done, err := w.p.begin(ctx, job.JobRow, job.Args.RunID, planStep, completer(job),
		func(a *attempt) []contract.Event { a.res = &phaseResult{}; return nil })
	if done {
		return err
	}
	pl.attempt = a
	a.succeed = pl.succeeded
	err = pl.run(ctx)
	a.nothingToDo = pl.d != nil && len(pl.d.entries) == 0
	return a.conclude(ctx, err)
}

// planAttempt is an attempt at planning a run.
type planAttempt struct {
	*attempt
	d *decision
}

// planError is a reason a run cannot go on, found at planning: retrying cannot help.
type planError struct {
	code string
	msg  string
}

func (e *planError) Error() string { return e.msg }

// Code is the event error code of the failure.
func (e *planError) Code() string { return e.code }

// run plans the run: reads the target's tracking table, decides, and takes over the ledger of
// the migrations it resumes.
func (pl *planAttempt) run(ctx context.Context) error {
	a := pl.attempt
	t, err := a.p.cfg.Targets.Get(a.rc.row.Target)
	if err != nil {
		return hooks.Permanent(&planError{code: contract.CodeUnknownTarget, msg: err.Error()})
	}
	ctx = target.WithTarget(ctx, t)
	// A dry-run changes nothing, not even a fresh target's tracking schema: it reads a
	// missing tracking table as empty.
	connect := t.Pool
	if a.rc.req.DryRun {
		connect = t.Conn
	}
	pool, err := connect(ctx)
	if err != nil {
		return err
	}
	applied, err := t.AppliedMigrations(ctx, pool)
	if err != nil {
		return err
	}
	var adopted []target.Applied
	var adoptedFrom string
	if a.rc.req.Adopt != "" {
		if adopted, adoptedFrom, err = pl.adoption(ctx, t, pool, applied); err != nil {
			return err
		}
		applied = append(slices.Clone(applied), adopted...)
		slices.SortStableFunc(applied, func(a, b target.Applied) int { return contract.CompareVersions(a.Version, b.Version) })
	}
	d, err := decide(a.rc.req, applied)
	if err != nil {
		return hooks.Permanent(err)
	}
	if a.rc.req.Adopt != "" {
		d.adopted, d.AdoptedFrom = adopted, adoptedFrom
		d.Adopted = []string{}
		for _, r := range adopted {
			d.Adopted = append(d.Adopted, r.Version)
		}
	}
	// Hooks were validated at intake against this worker's registry; check again in case the
	// run was accepted by a worker with other hooks loaded.
	for _, e := range d.entries {
		m, _ := a.rc.migration(e.Version)
		if _, err := a.p.cfg.Registry.PlanAll(m.Hooks); err != nil {
			code := contract.CodeInvalidHooks
			if errors.Is(err, hooks.ErrUnknownHook) {
				code = contract.CodeUnknownHook
			}
			return hooks.Permanent(&planError{code: code, msg: fmt.Sprintf("migration %s: %v", m.ID(), err)})
		}
	}
	if !a.rc.req.DryRun { // a dry-run changes nothing
		if err := pl.takeOver(ctx, t, d); err != nil {
			return err
		}
	}
	pl.d = d
	return nil
}

// takeOver records forced checksums, and for each migration the run applies takes over the
// ledger rows of the earlier run that began it without finishing it, in one target transaction
// under the target's lock: the run then does not repeat what that run committed, and its hooks
// keep their idempotency keys.
func (pl *planAttempt) takeOver(ctx context.Context, t *target.Target, d *decision) error {
	a := pl.attempt
	pool, err := t.Pool(ctx)
	if err != nil {
		return err
	}
	self := a.rc.row.ID
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := t.Lock(ctx, tx); err != nil {
			return err
		}
		if len(d.adopted) > 0 {
			if err := t.RecordAdopted(ctx, tx, d.adopted); err != nil {
				return err
			}
			a.log.Info("adopted the history of another tool", "from", d.AdoptedFrom, "versions", d.Adopted)
		}
		for _, f := range d.forced {
			if err := t.UpdateChecksum(ctx, tx, f.Version, f.Name, f.Checksum); err != nil {
				return err
			}
		}
		if a.rc.req.Direction != contract.DirectionUp {
			return nil
		}
		for i, e := range d.entries {
			owner := d.owners[e.Version]
			from, err := t.PredecessorOf(ctx, tx, e.Version, owner, self)
			if err != nil {
				return err
			}
			if from != "" {
				n, err := t.Adopt(ctx, tx, e.Version, from, self)
				if err != nil {
					return err
				}
				a.log.Info("taking over the work of an earlier run on this migration", "version", e.Version, "from_run", from, "ledger_rows", n)
			}
			if owner != "" && owner != self {
				if err := t.Claim(ctx, tx, e.Version, self); err != nil {
					return err
				}
			}
			if d.entries[i].Origin, err = t.OriginOf(ctx, tx, e.Version, self); err != nil {
				return err
			}
		}
		return nil
	})
}

// succeeded records the plan: the run goes to its first step, or completes when there is
// nothing to do.
func (pl *planAttempt) succeeded(ctx context.Context, tx pgx.Tx) error {
	a, d := pl.attempt, pl.d
	rc := a.rc
	started := outbox.New(rc.ref, contract.KindRunStarted)
	started.Data = mustJSON(d.RunPlan)
	if len(d.entries) == 0 {
		done := outbox.New(rc.ref, contract.KindRunCompleted)
		done.Message = "nothing to do: " + nothingToDo(rc.req, d) + adoptNote(d, rc.row.DryRun) + incompleteNote(a.summary)
		done.Data = mustJSON(a.summary)
		done.DurationMS = time.Since(rc.row.CreatedAt).Milliseconds()
		switch {
		case len(d.Forced) > 0 && rc.row.DryRun:
			done.Message += fmt.Sprintf("; would record the changed checksums of %s (force; a dry-run records nothing)", strings.Join(d.Forced, ", "))
		case len(d.Forced) > 0:
			done.Message += fmt.Sprintf("; recorded the changed checksums of %s (force)", strings.Join(d.Forced, ", "))
		}
		a.log.Info("run completed", "message", done.Message)
		if err := a.p.apply(ctx, tx, rc.row.ID, live(a.step, a.job.ID), runstore.Change{Plan: runstore.Plan{}}); err != nil {
			return err
		}
		evs := []contract.Event{started}
		if rc.row.DryRun {
			// A dry-run with nothing pending is a clean report that says so.
			rep := outbox.New(rc.ref, contract.KindDryRunReport)
			rep.Message = "nothing pending: " + nothingToDo(rc.req, d) + adoptNote(d, true)
			rep.Data = mustJSON(contract.DryRunReport{Schema: contract.DryRunReportSchemaV2, Run: rc.row.ID, RequestID: rc.row.RequestID, Target: rc.row.Target,
				Direction: d.Direction, Success: true, Migrations: []contract.DryRunMigrationReport{}, Warnings: []contract.DryRunWarning{}})
			evs = append(evs, rep)
			done.Message = "dry-run: " + done.Message
		}
		return a.p.end(ctx, tx, a.client, rc, a.step, a.job.ID, runstore.RunCompleted, append(evs, done)...)
	}
	started.Message = fmt.Sprintf("%s %d migration(s): %s", verb(d.Direction), len(d.Versions), strings.Join(d.Versions, ", "))
	for _, r := range d.Resumed {
		started.Message += fmt.Sprintf("; resuming %s at %s", r.Version, r.From)
	}
	if len(d.Forced) > 0 {
		started.Message += fmt.Sprintf("; accepted changed checksums of %s (force)", strings.Join(d.Forced, ", "))
	}
	started.Message += adoptNote(d, rc.req.DryRun) + leftNote(d.Incomplete)
	if rc.req.DryRun {
		started.Message = "dry-run: " + started.Message
		a.log.Info("dry-run started", "plan", d.Versions, "direction", d.Direction)
		return a.p.advance(ctx, tx, a.client, rc, a.step, a.job.ID, dryRunStep, d.entries, started)
	}
	rc.row.Plan = d.entries
	first := FirstStep(d.Direction, d.entries, rc.works)
	m, err := rc.migration(first.Version)
	if err != nil {
		return err
	}
	a.log.Info("run started", "plan", d.Versions, "direction", d.Direction)
	evs := []contract.Event{started}
	if !rc.plain(m.Version) {
		evs = append(evs, migrationStarted(rc, m, first.Phase))
	}
	return a.p.advance(ctx, tx, a.client, rc, a.step, a.job.ID, first, d.entries, evs...)
}

// decision is what a run does, decided from its request and the target's tracking table.
type decision struct {
	contract.RunPlan
	entries runstore.Plan
	// forced are the applied migrations whose checksum the run records anew (force).
	forced []target.Applied
	// owners maps each incomplete migration the run resumes to the run that owns it.
	owners map[string]string
	// adopted are the tracking rows the run records for the tool it adopts.
	adopted []target.Applied
}

// decide plans a run: which migrations to apply (or revert), in order, and from which phase.
// Applied migrations whose checksum changed (drift) fail the run unless the request says
// force. A migration an earlier run left incomplete is resumed from the first phase that run
// did not finish; incomplete ones the request leaves out (beyond "to", or not in it) are
// reported. It reads nothing and changes nothing.
func decide(req *contract.Request, applied []target.Applied) (*decision, error) {
	// Versions match by number ("001" is "1"), so a migration keeps its tracking row when the
	// spelling of its version changes, as when a directory is read in another tool's format.
	byVersion := map[string]target.Applied{}
	for _, a := range applied {
		byVersion[contract.VersionKey(a.Version)] = a
	}
	migs := slices.Clone(req.Migrations)
	slices.SortFunc(migs, func(a, b contract.Migration) int { return contract.CompareVersions(a.Version, b.Version) })
	inRequest := map[string]*contract.Migration{}
	for i := range migs {
		inRequest[contract.VersionKey(migs[i].Version)] = &migs[i]
	}

	d := &decision{RunPlan: contract.RunPlan{Direction: req.Direction, Versions: []string{}}, owners: map[string]string{}}
	var drift []string
	for _, m := range migs {
		a, ok := byVersion[contract.VersionKey(m.Version)]
		if !ok || a.Checksum == m.Checksum {
			continue
		}
		if !req.Force {
			drift = append(drift, fmt.Sprintf("%s_%s (applied %s, request %s)", m.Version, m.Name, short(a.Checksum), short(m.Checksum)))
			continue
		}
		d.forced = append(d.forced, target.Applied{Version: m.Version, Name: m.Name, Checksum: m.Checksum})
		d.Forced = append(d.Forced, m.Version)
	}
	if len(drift) > 0 {
		return nil, &planError{code: contract.CodeDrift, msg: fmt.Sprintf(
			"checksum drift: applied migration(s) changed since they were applied: %s; restore the files, or resubmit with force to accept the new checksums",
			strings.Join(drift, "; "))}
	}

	switch req.Direction {
	case contract.DirectionUp:
		for _, m := range migs {
			a, tracked := byVersion[contract.VersionKey(m.Version)]
			beyond := req.To != "" && contract.CompareVersions(m.Version, req.To) > 0 && !contract.SameVersion(m.Version, req.To)
			switch {
			case tracked && a.Complete:
				d.Applied++
			case beyond:
			case tracked:
				from := phaseAfter(a.Phase)
				d.entries = append(d.entries, runstore.PlanEntry{Version: m.Version, From: from})
				d.Resumed = append(d.Resumed, contract.ResumedMigration{Version: m.Version, From: from})
				d.owners[m.Version] = a.RunID
				d.Versions = append(d.Versions, m.Version)
			default:
				d.entries = append(d.entries, runstore.PlanEntry{Version: m.Version})
				d.Versions = append(d.Versions, m.Version)
			}
		}
		for _, a := range applied {
			planned := false
			if m, ok := inRequest[contract.VersionKey(a.Version)]; ok {
				_, planned = d.owners[m.Version]
			}
			if !a.Complete && !planned {
				d.Incomplete = append(d.Incomplete, contract.IncompleteMigration{Version: a.Version, Name: a.Name, Phase: a.Phase})
			}
		}
	case contract.DirectionDown:
		for i := len(applied) - 1; i >= 0; i-- {
			a := applied[i]
			if req.To != "" && (contract.CompareVersions(a.Version, req.To) <= 0 || contract.SameVersion(a.Version, req.To)) {
				break
			}
			m, ok := inRequest[contract.VersionKey(a.Version)]
			if !ok {
				return nil, &planError{code: contract.CodeNoDownMigration, msg: fmt.Sprintf(
					"migration %s_%s is applied but not in the request, so it cannot be reverted", a.Version, a.Name)}
			}
			if strings.TrimSpace(m.DownSQL) == "" {
				return nil, &planError{code: contract.CodeNoDownMigration, msg: fmt.Sprintf(
					"migration %s has no down SQL (%s.down.sql), so it cannot be reverted", m.ID(), m.ID())}
			}
			d.entries = append(d.entries, runstore.PlanEntry{Version: a.Version})
			d.Versions = append(d.Versions, a.Version)
			if req.To == "" {
				break // without "to", down reverts the latest applied migration only
			}
		}
	}
	if req.DryRun && len(d.Resumed) > 0 {
		// A dry-run runs whole migrations; one whose DDL committed cannot run again. It is
		// left out and said so; a real run resumes it.
		var keep runstore.Plan
		var versions []string
		for _, e := range d.entries {
			if e.From == "" {
				keep, versions = append(keep, e), append(versions, e.Version)
				continue
			}
			a := byVersion[contract.VersionKey(e.Version)]
			d.Incomplete = append(d.Incomplete, contract.IncompleteMigration{Version: a.Version, Name: a.Name, Phase: a.Phase})
		}
		d.entries, d.Versions, d.Resumed = keep, versions, nil
	}
	return d, nil
}

// phaseAfter is the up phase after phase, where a migration that committed phase resumes.
func phaseAfter(phase string) string {
	i := phaseIndex(phase)
	if i < phaseIndex(contract.PhaseDDL) {
		i = phaseIndex(contract.PhaseDDL) // a tracking row exists: its DDL committed
	}
	if i+1 >= len(upPhases) {
		return contract.PhaseCleanup
	}
	return upPhases[i+1]
}

func nothingToDo(req *contract.Request, d *decision) string {
	if req.Direction == contract.DirectionDown {
		return "no applied migration to revert"
	}
	return fmt.Sprintf("all %d migration(s) already applied", d.Applied) + leftNote(d.Incomplete)
}

// leftNote says which incomplete migrations a run leaves as they are.
func leftNote(left []contract.IncompleteMigration) string {
	if len(left) == 0 {
		return ""
	}
	var names []string
	for _, m := range left {
		names = append(names, fmt.Sprintf("%s_%s (after %s)", m.Version, m.Name, m.Phase))
	}
	return "; not resuming incomplete " + strings.Join(names, ", ")
}

// summary reads the target's incomplete migrations for a run's final event, within a bound.
func (p *Pipeline) summary(ctx context.Context, rc *runContext) (contract.RunSummary, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var s contract.RunSummary
	t, err := p.cfg.Targets.Get(rc.row.Target)
	if err != nil {
		return s, err
	}
	ctx = target.WithTarget(ctx, t)
	pool, err := t.Conn(ctx) // only reads: a dry-run's target may have no tracking table
	if err != nil {
		return s, err
	}
	applied, err := t.AppliedMigrations(ctx, pool)
	if err != nil {
		return s, fmt.Errorf("target %q: read the tracking table: %w", t.Name(), err)
	}
	for _, a := range applied {
		if !a.Complete {
			s.Incomplete = append(s.Incomplete, contract.IncompleteMigration{Version: a.Version, Name: a.Name, Phase: a.Phase})
		}
		if a.RunID == rc.row.ID {
			s.Applied = append(s.Applied, contract.AppliedMigration{Version: a.Version, Name: a.Name, DDLMS: a.ExecutionTimeMS})
		}
	}
	return s, nil
}

// summaryOrWhy is summary for a run that ends now whatever the target says: when the tracking
// table cannot be read, the summary says why, and log says it too.
func (p *Pipeline) summaryOrWhy(ctx context.Context, rc *runContext, log *slog.Logger) contract.RunSummary {
	s, err := p.summary(ctx, rc)
	return withUnread(s, err, log)
}

// withUnread is the summary s, read with error err: when it could not be read, it says why.
func withUnread(s contract.RunSummary, err error, log *slog.Logger) contract.RunSummary {
	if err != nil {
		s.Unread = err.Error()
		log.Warn("could not read the target's tracking table for the run's final event", "error", err.Error())
	}
	return s
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
