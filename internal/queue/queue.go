// Package queue owns the queue database: River's tables (migrated with rivermigrate), and the
// worker's own run table and event outbox, each in a schema of its own (never public).
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// Defaults for the queue database's schemas.
const (
	DefaultSchema      = "confiture_queue"
	DefaultRiverSchema = "confiture_river"
)

// Querier is a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store is the worker's tables in the queue database.
type Store struct {
	Pool *pgxpool.Pool
	// schema is the quoted name of the schema that holds runs and the outbox.
	schema string
	name   string
}

// NewStore returns a Store for the tables in schema (unquoted).
func NewStore(pool *pgxpool.Pool, schema string) *Store {
	return &Store{Pool: pool, schema: pgx.Identifier{schema}.Sanitize(), name: schema}
}

// Schema returns the quoted schema name, for SQL built by other packages of the worker.
func (s *Store) Schema() string { return s.schema }

// migrations of the worker's own queue tables; %[1]s is the quoted schema. Append only.
var migrations = []string{
	`CREATE TABLE %[1]s.runs (
		id             uuid PRIMARY KEY,
		seq            bigserial UNIQUE,
		request_id     text NOT NULL,
		target         text NOT NULL,
		direction      text NOT NULL,
		dry_run        boolean NOT NULL DEFAULT false,
		status         text NOT NULL,
		request        jsonb NOT NULL,
		request_sha256 text NOT NULL,
		plan           jsonb,
		step_version   text NOT NULL DEFAULT '',
		step_phase     text NOT NULL DEFAULT '',
		failed_version text NOT NULL DEFAULT '',
		failed_phase   text NOT NULL DEFAULT '',
		error          jsonb,
		created_at     timestamptz NOT NULL DEFAULT now(),
		started_at     timestamptz,
		finished_at    timestamptz,
		UNIQUE (target, request_id)
	);
	CREATE INDEX runs_active ON %[1]s.runs (target, seq) WHERE status IN ('queued', 'running');
	CREATE TABLE %[1]s.outbox (
		seq          bigserial PRIMARY KEY,
		id           uuid NOT NULL UNIQUE,
		subject      text NOT NULL,
		payload      bytea NOT NULL,
		created_at   timestamptz NOT NULL DEFAULT now(),
		published_at timestamptz
	);
	CREATE INDEX outbox_unpublished ON %[1]s.outbox (seq) WHERE published_at IS NULL;`,
	// The workers using this queue database and the NATS system its events go to: a worker
	// connected to another NATS system than a live one's refuses to start (workers.go).
	`CREATE TABLE %[1]s.workers (
		id          uuid PRIMARY KEY,
		host        text NOT NULL,
		pid         integer NOT NULL,
		nats_system text NOT NULL,
		nats_url    text NOT NULL, -- without credentials
		started_at  timestamptz NOT NULL DEFAULT now(),
		seen_at     timestamptz NOT NULL DEFAULT now()
	);
	CREATE TABLE %[1]s.nats_system (
		only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
		system   text NOT NULL,
		url      text NOT NULL, -- without credentials
		since    timestamptz NOT NULL DEFAULT now()
	);`,
}

// Migrate brings River's tables (in riverSchema) and the worker's tables (in schema) up to date.
// It holds an advisory lock for the whole time, so workers starting together take turns.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema, riverSchema string, logger *slog.Logger) error {
	// River's migrations cannot all run in one transaction (one adds an enum value that a
	// later one uses), so the lock is a session lock on a connection of its own.
	lockConn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("queue database: %w", err)
	}
	defer lockConn.Release()
	if _, err := lockConn.Exec(ctx, `SELECT pg_advisory_lock(hashtext('confiture.queue.migrate'))`); err != nil {
		return fmt.Errorf("queue database: migration lock: %w", err)
	}
	defer lockConn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext('confiture.queue.migrate'))`) //nolint:errcheck // the session ends with the lock at worst

	for _, s := range []string{schema, riverSchema} {
		if _, err := pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{s}.Sanitize()); err != nil {
			return fmt.Errorf("queue database: create schema %s: %w", s, err)
		}
	}
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: riverSchema, Logger: logger})
	if err != nil {
		return err
	}
	res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("queue database: River migrations: %w", err)
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("queue database: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	q := pgx.Identifier{schema}.Sanitize()
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+q+`.queue_migrations (
		version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("queue database: %w", err)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+q+`.queue_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("queue database: %w", err)
	}
	if current > len(migrations) {
		return fmt.Errorf("queue database: schema %s is at version %d, newer than this worker knows (%d): upgrade the worker", schema, current, len(migrations))
	}
	for v := current + 1; v <= len(migrations); v++ {
		if _, err := tx.Exec(ctx, fmt.Sprintf(migrations[v-1], q)); err != nil {
			return fmt.Errorf("queue database: migration %d: %w", v, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.queue_migrations (version) VALUES ($1)`, v); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("queue database: %w", err)
	}
	if logger != nil && (len(res.Versions) > 0 || current < len(migrations)) {
		logger.Info("queue database migrated", "river_versions_applied", len(res.Versions),
			"queue_version", len(migrations), "schema", schema, "river_schema", riverSchema)
	}
	return nil
}

// Current reports whether the worker's queue tables are at the version this build knows.
func (s *Store) Current(ctx context.Context) (bool, error) {
	var v int
	err := s.Pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+s.schema+`.queue_migrations`).Scan(&v)
	return v == len(migrations), err
}

// Run statuses.
const (
	RunQueued    = "queued"
	RunRunning   = "running"
	RunCompleted = "completed"
	RunFailed    = "failed"
	RunRejected  = "rejected"
)

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
	Plan          []string
	StepVersion   string
	StepPhase     string
	FailedVersion string
	FailedPhase   string
	Error         json.RawMessage
	CreatedAt     time.Time
}

// ErrRunNotFound is returned when a run id is not in the run table.
var ErrRunNotFound = errors.New("run not found")

// InsertRun records a new run as queued. If a run with the same target and request id exists,
// it inserts nothing and returns that run with created false.
func (s *Store) InsertRun(ctx context.Context, tx pgx.Tx, r *Run) (created bool, existing *Run, err error) {
	tag, err := tx.Exec(ctx, `INSERT INTO `+s.schema+`.runs
		(id, request_id, target, direction, dry_run, status, request, request_sha256)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (target, request_id) DO NOTHING`,
		r.ID, r.RequestID, r.Target, r.Direction, r.DryRun, RunQueued, r.Request, r.RequestSHA256)
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

func (s *Store) findRun(ctx context.Context, tx Querier, where string, args ...any) (*Run, error) {
	var r Run
	var plan []byte
	err := tx.QueryRow(ctx, `SELECT id::text, seq, request_id, target, direction, dry_run, status, request,
		request_sha256, plan, step_version, step_phase, failed_version, failed_phase, error, created_at
		FROM `+s.schema+`.runs WHERE `+where, args...).Scan(&r.ID, &r.Seq, &r.RequestID, &r.Target,
		&r.Direction, &r.DryRun, &r.Status, &r.Request, &r.RequestSHA256, &plan, &r.StepVersion,
		&r.StepPhase, &r.FailedVersion, &r.FailedPhase, &r.Error, &r.CreatedAt)
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

// AdmitNext starts the oldest queued run of target unless a run of target is running, and
// returns its id ("" when none starts). It holds the target's admission lock for the rest of tx,
// so admissions on one target are serialized and in arrival order. Call it in the transaction
// that queued a run or ended one.
func (s *Store) AdmitNext(ctx context.Context, tx pgx.Tx, target string) (string, error) {
	batch := &pgx.Batch{}
	batch.Queue(`SELECT pg_advisory_xact_lock(hashtext('confiture.queue.target:' || $1))`, target)
	batch.Queue(`UPDATE `+s.schema+`.runs SET status = 'running', started_at = now()
		WHERE id = (SELECT id FROM `+s.schema+`.runs WHERE target = $1 AND status = 'queued' ORDER BY seq LIMIT 1)
		AND NOT EXISTS (SELECT 1 FROM `+s.schema+`.runs WHERE target = $1 AND status = 'running')
		RETURNING id::text`, target)
	br := tx.SendBatch(ctx, batch)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return "", fmt.Errorf("admission lock: %w", err)
	}
	var id string
	if err := br.QueryRow().Scan(&id); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("admit run: %w", err)
	}
	return id, nil
}

// SetFailed records where and why a run is failing (before its on_error hooks run).
func (s *Store) SetFailed(ctx context.Context, tx pgx.Tx, id, version, phase string, runErr any) error {
	b, err := json.Marshal(runErr)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE `+s.schema+`.runs SET failed_version = $2, failed_phase = $3, error = $4 WHERE id = $1`, id, version, phase, b)
	return err
}

const moveStepSQL = `UPDATE %s.runs SET step_version = $4, step_phase = $5,
	status = coalesce(nullif($6, ''), status), plan = coalesce($7::jsonb, plan),
	finished_at = CASE WHEN $6 = '' THEN NULL ELSE now() END
	WHERE id = $1 AND status = 'running' AND step_version = $2 AND step_phase = $3`

// Move is a change of a run's step: from one step to the next, or, when Status is set, to the
// end of the run with that status. Plan, when set, records the run's plan at the same time.
type Move struct {
	Run                    string
	FromVersion, FromPhase string
	ToVersion, ToPhase     string
	Status                 string
	Plan                   []string
}

func (s *Store) moveArgs(m Move) []any {
	var plan []byte
	if m.Plan != nil {
		plan, _ = json.Marshal(m.Plan) // a []string always marshals
	}
	return []any{m.Run, m.FromVersion, m.FromPhase, m.ToVersion, m.ToPhase, m.Status, plan}
}

// QueueMove adds the move to batch. Its command tag reports 0 rows when the run is not running
// at the move's origin: the caller is a stale or duplicate job.
func (s *Store) QueueMove(batch *pgx.Batch, m Move) {
	batch.Queue(fmt.Sprintf(moveStepSQL, s.schema), s.moveArgs(m)...)
}

// MoveStep makes the move at once; it reports whether the run was at the move's origin.
func (s *Store) MoveStep(ctx context.Context, tx pgx.Tx, m Move) (bool, error) {
	tag, err := tx.Exec(ctx, fmt.Sprintf(moveStepSQL, s.schema), s.moveArgs(m)...)
	if err != nil {
		return false, fmt.Errorf("move run step: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}
