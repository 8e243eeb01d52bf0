package runstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Run statuses. A run is queued until its target is free, then running (at a step: planning, a
// phase of a migration, or its dry-run), and ends completed or failed; running may become
// paused and back. Rejected is kept for runs recorded before planning failures became failures.
const (
	RunQueued    = "queued"
	RunRunning   = "running"
	RunPaused    = "paused"
	RunCompleted = "completed"
	RunFailed    = "failed"
	RunRejected  = "rejected"
)

// Step is where a running run is: a phase of a migration. The zero Step is planning.
type Step struct {
	Version string
	Phase   string
}

// PlanEntry is one migration of a run's plan, in the order the run takes them.
type PlanEntry struct {
	Version string `json:"version"`
	// From is the first phase the run does: the first of the direction, or, for a migration
	// left incomplete by an earlier run, the first phase that run did not finish.
	From string `json:"from,omitempty"`
	// Origin is the run that began the migration's work on the target (itself, unless the
	// migration was resumed): the base of its idempotency keys.
	Origin string `json:"origin,omitempty"`
}

// Plan is the migrations a run applies or reverts, in order.
type Plan []PlanEntry

// UnmarshalJSON reads a plan, also as the list of versions that earlier workers recorded.
func (p *Plan) UnmarshalJSON(b []byte) error {
	var entries []PlanEntry
	if err := json.Unmarshal(b, &entries); err == nil {
		*p = entries
		return nil
	}
	var versions []string
	if err := json.Unmarshal(b, &versions); err != nil {
		return err
	}
	*p = make(Plan, len(versions))
	for i, v := range versions {
		(*p)[i] = PlanEntry{Version: v}
	}
	return nil
}

// Entry returns the plan's entry for version.
func (p Plan) Entry(version string) (PlanEntry, bool) {
	for _, e := range p {
		if e.Version == version {
			return e, true
		}
	}
	return PlanEntry{}, false
}

// Run is one row of the run table.
type Run struct {
	ID            string
	Seq           int64
	RequestID     string
	Target        string
	Direction     string
	DryRun        bool
	Status        string
	Request       json.RawMessage
	RequestSHA256 string
	// Plan is nil until the run is planned.
	Plan          Plan
	StepVersion   string
	StepPhase     string
	FailedVersion string
	FailedPhase   string
	Error         json.RawMessage
	CreatedAt     time.Time
	// JobID is the run's live River job, the job of its step; 0 when it has none (queued,
	// paused, ended).
	JobID int64
	// Attempt counts the attempts made at the current step.
	Attempt int
	// TransientSince is when a row of transient failures at the step began.
	TransientSince *time.Time
	// StoppedByJob is the job whose outcome failed or paused the run: retrying that job (River
	// UI) resumes the run.
	StoppedByJob int64
	// Epoch grows each time the run is resumed or retried, so that the events of its new
	// course get new ids.
	Epoch int
	// Rollout is the rollout the run is a member's run of, or "".
	Rollout string
}

// Step returns the run's current step.
func (r *Run) Step() Step { return Step{Version: r.StepVersion, Phase: r.StepPhase} }

// ErrRunNotFound is returned when a run id is not in the run table.
var ErrRunNotFound = errors.New("run not found")

// InsertRun records a new run as queued. If a run with the same target and request id exists,
// it inserts nothing and returns that run with created false.
func (s *Store) InsertRun(ctx context.Context, tx pgx.Tx, r *Run) (created bool, existing *Run, err error) {
	tag, err := tx.Exec(ctx, `INSERT INTO `+s.schema+`.runs
		(id, request_id, target, direction, dry_run, status, request, request_sha256, rollout)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, nullif($9, '')::uuid) ON CONFLICT (target, request_id) DO NOTHING`,
		r.ID, r.RequestID, r.Target, r.Direction, r.DryRun, RunQueued, r.Request, r.RequestSHA256, r.Rollout)
	if err != nil {
		return false, nil, fmt.Errorf("insert run: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil, nil
	}
	existing, err = s.findRun(ctx, tx, `target = $1 AND request_id = $2`, r.Target, r.RequestID)
	return false, existing, err
}

// RunExists reports whether a run was recorded for the request id on target.
func (s *Store) RunExists(ctx context.Context, target, requestID string) (bool, error) {
	var ok bool
	err := s.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+s.schema+`.runs WHERE target = $1 AND request_id = $2)`, target, requestID).Scan(&ok)
	return ok, err
}

// GetRun returns the run with id.
func (s *Store) GetRun(ctx context.Context, q Querier, id string) (*Run, error) {
	return s.findRun(ctx, q, `id = $1`, id)
}

// GetRunForUpdate returns the run with id, locked for the rest of tx.
func (s *Store) GetRunForUpdate(ctx context.Context, tx pgx.Tx, id string) (*Run, error) {
	return s.findRun(ctx, tx, `id = $1 FOR UPDATE`, id)
}

const runColumns = `id::text, seq, request_id, target, direction, dry_run, status, request,
	request_sha256, plan, step_version, step_phase, failed_version, failed_phase, error, created_at,
	coalesce(job_id, 0), attempt, transient_since, coalesce(stopped_by_job, 0), epoch,
	coalesce(rollout::text, '')`

func scanRun(row pgx.Row) (*Run, error) {
	var r Run
	var plan []byte
	err := row.Scan(&r.ID, &r.Seq, &r.RequestID, &r.Target, &r.Direction, &r.DryRun, &r.Status, &r.Request,
		&r.RequestSHA256, &plan, &r.StepVersion, &r.StepPhase, &r.FailedVersion, &r.FailedPhase, &r.Error,
		&r.CreatedAt, &r.JobID, &r.Attempt, &r.TransientSince, &r.StoppedByJob, &r.Epoch, &r.Rollout)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrRunNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read run: %w", err)
	}
	if len(plan) > 0 {
		if err := json.Unmarshal(plan, &r.Plan); err != nil {
			return nil, fmt.Errorf("read run plan: %w", err)
		}
	}
	return &r, nil
}

func (s *Store) findRun(ctx context.Context, q Querier, where string, args ...any) (*Run, error) {
	return scanRun(q.QueryRow(ctx, `SELECT `+runColumns+` FROM `+s.schema+`.runs WHERE `+where, args...))
}

// admissionLockSQL serializes the admissions of one target, whoever does them.
const admissionLockSQL = `SELECT pg_advisory_xact_lock(hashtext('confiture.queue.target:' || $1))`

// LockTarget takes target's admission lock (the one AdmitNext takes) for the rest of tx. A
// transaction that records a run takes it before the insert, so runs of one target get their
// seq in the order their transactions commit: a run can never be admitted ahead of one
// recorded before it whose transaction is still open.
func (s *Store) LockTarget(ctx context.Context, tx pgx.Tx, target string) error {
	if _, err := tx.Exec(ctx, admissionLockSQL, target); err != nil {
		return fmt.Errorf("admission lock: %w", err)
	}
	return nil
}

// AdmitNext starts the oldest queued run of target unless a run of target is running or
// paused, and returns it as started (nil when none starts). It holds the target's admission
// lock for the rest of tx, so admissions on one target are serialized and follow the order the
// queue database recorded the runs in. Call it in the transaction that queued a run or ended
// one; the caller inserts the started run's job and records it with SetJob.
func (s *Store) AdmitNext(ctx context.Context, tx pgx.Tx, target string) (*Run, error) {
	batch := &pgx.Batch{}
	batch.Queue(admissionLockSQL, target)
	batch.Queue(`UPDATE `+s.schema+`.runs SET status = 'running', started_at = coalesce(started_at, now()),
		step_version = '', step_phase = '', attempt = 0, transient_since = NULL, updated_at = now()
		WHERE id = (SELECT id FROM `+s.schema+`.runs WHERE target = $1 AND status = 'queued' ORDER BY seq LIMIT 1)
		AND NOT EXISTS (SELECT 1 FROM `+s.schema+`.runs WHERE target = $1 AND status IN ('running', 'paused'))
		RETURNING `+runColumns, target)
	br := tx.SendBatch(ctx, batch)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("admission lock: %w", err)
	}
	r, err := scanRun(br.QueryRow())
	if errors.Is(err, ErrRunNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("admit run: %w", err)
	}
	return r, nil
}

// Guard is the state a transition expects the run in; a run found otherwise is left alone.
type Guard struct {
	// Statuses the run may have.
	Statuses []string
	// Step the run must be at, unless AnyStep.
	Step    Step
	AnyStep bool
	// Job the run's live job must be (0: none), unless AnyJob.
	Job    int64
	AnyJob bool
}

// Change is what a transition does to a run row. Zero fields leave their column as it is
// (but see Apply on a change of status).
type Change struct {
	Status string
	// Step, when set, moves the run to *Step.
	Step *Step
	// Job sets the live job (SetJob), only if the run is (still) running when OnlyIfRunning
	// (else it has none), or clears it (ClearJob).
	Job           int64
	SetJob        bool
	OnlyIfRunning bool
	ClearJob      bool
	// Attempt: "inc" counts an attempt starting, "dec" takes back one that did not count,
	// "reset" starts a new step's count, "first" starts it with the attempt of a job that goes on
	// at the new step.
	Attempt string
	// Transient: "start" marks a transient failure (keeping an earlier start), "clear" ends
	// the row.
	Transient string
	// Plan records the run's plan; Failure where and why it is failing.
	Plan    Plan
	Failure *Failure
	// LastError records the error of an attempt that failed (nil leaves it).
	LastError any
	// StoppedByJob records the job whose outcome stopped the run; ClearStopped forgets it.
	StoppedByJob int64
	ClearStopped bool
	// NextEpoch starts a new epoch (a resumed or retried run).
	NextEpoch bool
	// Finished stamps finished_at; Paused stamps paused_at.
	Finished bool
	Paused   bool
	// Requeue clears the step and the failure: the run plans anew once admitted.
	Requeue bool
}

// Failure is where and why a run failed.
type Failure struct {
	Version string
	Phase   string
	Error   any
}

// ErrGuard is returned by Apply when the run is not in the state the guard expects.
var ErrGuard = errors.New("the run is not in the expected state")

// Apply makes change to run in tx if the run satisfies guard. It returns ErrGuard when the
// guard does not hold: the run is unchanged,
// but the statements also queued have run, so the caller rolls tx back. also adds statements
// that go in the same round trip, after the change (the events that report it). A change of
// status also clears finished_at and paused_at unless Finished or Paused stamps them.
func (s *Store) Apply(ctx context.Context, tx pgx.Tx, run string, guard Guard, change Change, also func(*pgx.Batch) error) error {
	var plan, failure, lastError []byte
	var err error
	if change.Plan != nil {
		if plan, err = json.Marshal(change.Plan); err != nil {
			return err
		}
	}
	var fv, fp string
	if change.Failure != nil {
		fv, fp = change.Failure.Version, change.Failure.Phase
		if failure, err = json.Marshal(change.Failure.Error); err != nil {
			return err
		}
	}
	if change.LastError != nil {
		if lastError, err = json.Marshal(change.LastError); err != nil {
			return err
		}
	}
	var sv, sp string
	if change.Step != nil {
		sv, sp = change.Step.Version, change.Step.Phase
	}
	jobOp := "keep"
	switch {
	case change.SetJob && change.OnlyIfRunning:
		jobOp = "set-if-running"
	case change.SetJob:
		jobOp = "set"
	case change.ClearJob:
		jobOp = "clear"
	}
	batch := &pgx.Batch{}
	batch.Queue(`UPDATE `+s.schema+`.runs SET
		status = coalesce(nullif($6, ''), status),
		step_version = CASE WHEN $7 THEN $8 WHEN $22 THEN '' ELSE step_version END,
		step_phase = CASE WHEN $7 THEN $9 WHEN $22 THEN '' ELSE step_phase END,
		job_id = CASE $10::text WHEN 'set' THEN $11::bigint WHEN 'clear' THEN NULL
			WHEN 'set-if-running' THEN CASE WHEN status = 'running' THEN $11::bigint END ELSE job_id END,
		attempt = CASE $12 WHEN 'inc' THEN attempt + 1 WHEN 'dec' THEN greatest(attempt - 1, 0)
			WHEN 'reset' THEN 0 WHEN 'first' THEN 1 ELSE attempt END,
		transient_since = CASE $13 WHEN 'start' THEN coalesce(transient_since, now()) WHEN 'clear' THEN NULL
			ELSE transient_since END,
		plan = coalesce($14::jsonb, plan),
		failed_version = CASE WHEN $15::jsonb IS NOT NULL THEN $16 WHEN $22 THEN '' ELSE failed_version END,
		failed_phase = CASE WHEN $15::jsonb IS NOT NULL THEN $17 WHEN $22 THEN '' ELSE failed_phase END,
		error = CASE WHEN $15::jsonb IS NOT NULL THEN $15::jsonb WHEN $22 THEN NULL ELSE error END,
		last_error = coalesce($18::jsonb, last_error),
		stopped_by_job = CASE WHEN $19 THEN NULL WHEN $20::bigint <> 0 THEN $20::bigint ELSE stopped_by_job END,
		epoch = epoch + CASE WHEN $21 THEN 1 ELSE 0 END,
		finished_at = CASE WHEN $23 THEN now() WHEN nullif($6, '') IS NOT NULL THEN NULL ELSE finished_at END,
		paused_at = CASE WHEN $24 THEN now() WHEN nullif($6, '') IS NOT NULL THEN NULL ELSE paused_at END,
		updated_at = now()
		WHERE id = $1 AND status = ANY($2) AND ($3 OR (step_version = $4 AND step_phase = $5))
		AND ($25 OR job_id IS NOT DISTINCT FROM nullif($26::bigint, 0))
		RETURNING 1`,
		run, guard.Statuses, guard.AnyStep, guard.Step.Version, guard.Step.Phase,
		change.Status, change.Step != nil, sv, sp, jobOp, change.Job, change.Attempt, change.Transient,
		plan, failure, fv, fp, lastError, change.ClearStopped, change.StoppedByJob, change.NextEpoch,
		change.Requeue, change.Finished, change.Paused, guard.AnyJob, guard.Job)
	if also != nil {
		if err := also(batch); err != nil {
			return err
		}
	}
	br := tx.SendBatch(ctx, batch)
	var one int
	err = br.QueryRow().Scan(&one)
	for i := 1; i < batch.Len() && err == nil; i++ {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrGuard
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", run, err)
	}
	return nil
}

// StartAttempt counts an attempt of job at step of run, if the run is running there with job
// as its live job, and returns the run as the attempt leaves it; ErrGuard otherwise. With
// follow, the run may be at any step of step's phase (a job that moved its run on to the next
// migration's step, and is tried again there). The transaction commits without waiting for
// the WAL flush (see jobs.begin).
func (s *Store) StartAttempt(ctx context.Context, tx pgx.Tx, run string, step Step, job int64, follow bool) (*Run, error) {
	batch := &pgx.Batch{}
	batch.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	batch.Queue(`UPDATE `+s.schema+`.runs SET attempt = attempt + 1, updated_at = now()
		WHERE id = $1 AND status = 'running' AND step_phase = $3 AND job_id = $4 AND ($5 OR step_version = $2)
		RETURNING `+runColumns, run, step.Version, step.Phase, job, follow)
	br := tx.SendBatch(ctx, batch)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	r, err := scanRun(br.QueryRow())
	if errors.Is(err, ErrRunNotFound) {
		return nil, ErrGuard
	}
	return r, err
}

// Expected is what a caller expects of a run whose job starts an attempt: the run running at
// Step with Job as its live job, in Epoch, with Attempts counted there so far.
type Expected struct {
	Step     Step
	Job      int64
	Epoch    int
	Attempts int
}

// StartAttemptExpected counts an attempt, as StartAttempt does, when the run is as exp says,
// and records the attempt's start events (their outbox rows: ids, subjects, payloads, built by
// the caller from exp) in the same statement, outside any transaction of the caller: one round
// trip, committed without waiting for the WAL flush. It returns the run as the attempt leaves
// it; ErrGuard when the run is not as expected, and then nothing is changed.
func (s *Store) StartAttemptExpected(ctx context.Context, q Querier, run string, exp Expected, ids, subjects []string, payloads [][]byte) (*Run, error) {
	r, err := scanRun(q.QueryRow(ctx, `WITH nosync AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)),
		counted AS (UPDATE `+s.schema+`.runs SET attempt = attempt + 1, updated_at = now()
			WHERE id = $1 AND status = 'running' AND step_version = $2 AND step_phase = $3 AND job_id = $4
			AND epoch = $5 AND attempt = $6 AND EXISTS (SELECT 1 FROM nosync)
			RETURNING `+runColumns+`),
		recorded AS (INSERT INTO `+s.schema+`.outbox (id, subject, payload)
			SELECT e.id, e.subject, e.payload
			FROM unnest($7::uuid[], $8::text[], $9::bytea[]) WITH ORDINALITY AS e(id, subject, payload, n)
			WHERE EXISTS (SELECT 1 FROM counted)
			ORDER BY n ON CONFLICT (id) DO NOTHING)
		SELECT * FROM counted`,
		run, exp.Step.Version, exp.Step.Phase, exp.Job, exp.Epoch, exp.Attempts, ids, subjects, payloads))
	if errors.Is(err, ErrRunNotFound) {
		return nil, ErrGuard
	}
	return r, err
}

// Dead is a running run whose step has no live job, as the reconciler finds it.
type Dead struct {
	Run  string
	Step Step
	// Job is the run's recorded job (0: none), JobState its River state ("" when the job does
	// not exist).
	Job      int64
	JobState string
}

// DeadRuns returns the running runs whose recorded job has ended (completed, cancelled,
// discarded), does not exist, or was never recorded. riverSchema is River's schema (unquoted).
func (s *Store) DeadRuns(ctx context.Context, riverSchema string, limit int) ([]Dead, error) {
	rows, err := s.Pool.Query(ctx, `SELECT r.id::text, r.step_version, r.step_phase, coalesce(r.job_id, 0), coalesce(j.state::text, '')
		FROM `+s.schema+`.runs r LEFT JOIN `+pgx.Identifier{riverSchema}.Sanitize()+`.river_job j ON j.id = r.job_id
		WHERE r.status = 'running' AND (j.id IS NULL OR j.state IN ('completed', 'cancelled', 'discarded'))
		ORDER BY r.seq LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("find runs without a live job: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Dead, error) {
		var d Dead
		err := r.Scan(&d.Run, &d.Step.Version, &d.Step.Phase, &d.Job, &d.JobState)
		return d, err
	})
}

// IdleTargets returns the targets that have a queued run and no running or paused one: their
// next run was not admitted.
func (s *Store) IdleTargets(ctx context.Context) ([]string, error) {
	rows, err := s.Pool.Query(ctx, `SELECT DISTINCT q.target FROM `+s.schema+`.runs q
		WHERE q.status = 'queued' AND NOT EXISTS (SELECT 1 FROM `+s.schema+`.runs a
			WHERE a.target = q.target AND a.status IN ('running', 'paused'))`)
	if err != nil {
		return nil, fmt.Errorf("find idle targets: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Listed is a run as a listing shows it: its row without the request and the plan, with how
// many migrations the plan holds and when it started and ended.
type Listed struct {
	ID, RequestID, Target, Direction string
	DryRun                           bool
	Status                           string
	StepVersion, StepPhase           string
	FailedVersion, FailedPhase       string
	Error                            json.RawMessage
	Migrations                       int
	CreatedAt                        time.Time
	StartedAt, FinishedAt            *time.Time
}

const listedColumns = `id::text, request_id, target, direction, dry_run, status, step_version, step_phase,
	failed_version, failed_phase, error, coalesce(jsonb_array_length(plan), 0), created_at, started_at, finished_at`

func scanListed(row pgx.CollectableRow) (Listed, error) {
	var l Listed
	err := row.Scan(&l.ID, &l.RequestID, &l.Target, &l.Direction, &l.DryRun, &l.Status, &l.StepVersion, &l.StepPhase,
		&l.FailedVersion, &l.FailedPhase, &l.Error, &l.Migrations, &l.CreatedAt, &l.StartedAt, &l.FinishedAt)
	return l, err
}

// ListRuns returns the latest runs of target, newest first, at most limit.
func (s *Store) ListRuns(ctx context.Context, target string, limit int) ([]Listed, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+listedColumns+` FROM `+s.schema+`.runs WHERE target = $1 ORDER BY seq DESC LIMIT $2`,
		target, limit)
	if err != nil {
		return nil, fmt.Errorf("list runs of %s: %w", target, err)
	}
	return pgx.CollectRows(rows, scanListed)
}

// ListedRun returns run id of target ("": of any target) as a listing shows it;
// ErrRunNotFound when there is no such run.
func (s *Store) ListedRun(ctx context.Context, target, id string) (*Listed, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+listedColumns+` FROM `+s.schema+`.runs WHERE id = $1::uuid AND ($2 = '' OR target = $2)`, id, target)
	if err != nil {
		return nil, fmt.Errorf("read run %s: %w", id, err)
	}
	l, err := pgx.CollectExactlyOneRow(rows, scanListed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrRunNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read run %s: %w", id, err)
	}
	return &l, nil
}

// RunJob is one River job of a run, as the runs page lists it.
type RunJob struct {
	ID             int64
	Kind           string
	Version, Phase string
	State          string
	Attempt        int
}

// RunJobs returns the River jobs of run (in riverSchema, unquoted) that River still holds,
// oldest first: its steps' jobs, by the run id in their arguments.
func (s *Store) RunJobs(ctx context.Context, riverSchema, run string) ([]RunJob, error) {
	rows, err := s.Pool.Query(ctx, `SELECT id, kind, coalesce(args->>'version', ''), coalesce(args->>'phase', ''), state::text, attempt
		FROM `+pgx.Identifier{riverSchema}.Sanitize()+`.river_job WHERE args->>'run_id' = $1 ORDER BY id`, run)
	if err != nil {
		return nil, fmt.Errorf("jobs of run %s: %w", run, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (RunJob, error) {
		var j RunJob
		err := r.Scan(&j.ID, &j.Kind, &j.Version, &j.Phase, &j.State, &j.Attempt)
		return j, err
	})
}
