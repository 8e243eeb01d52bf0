// Package runstore owns the queue database: River's tables (migrated with rivermigrate), and the
// worker's own run table and event outbox, each in a schema of its own (never public).
package runstore

import (
	"context"
	"fmt"
	"log/slog"

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
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
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

// migrations of the worker's own queue tables; %[1]s is the quoted schema, %[2]s River's.
// Append only.
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
	// The run state machine (internal/jobs): the run's live job, the attempts counted at its
	// step, a row of transient failures, the job whose outcome stopped it (retrying that job
	// resumes the run), and an epoch that keeps the event ids of a resumed run new. Runs
	// running under the previous version get their live job from River's table.
	`ALTER TABLE %[1]s.runs
		ADD COLUMN job_id          bigint,
		ADD COLUMN attempt         integer NOT NULL DEFAULT 0,
		ADD COLUMN transient_since timestamptz,
		ADD COLUMN stopped_by_job  bigint,
		ADD COLUMN epoch           integer NOT NULL DEFAULT 0,
		ADD COLUMN last_error      jsonb,
		ADD COLUMN paused_at       timestamptz,
		ADD COLUMN updated_at      timestamptz NOT NULL DEFAULT now();
	DROP INDEX %[1]s.runs_active;
	CREATE INDEX runs_active ON %[1]s.runs (target, seq) WHERE status IN ('queued', 'running', 'paused');
	CREATE INDEX runs_stopped_by_job ON %[1]s.runs (stopped_by_job) WHERE stopped_by_job IS NOT NULL;
	UPDATE %[1]s.runs r SET job_id = (SELECT max(j.id) FROM %[2]s.river_job j
		WHERE j.args->>'run_id' = r.id::text AND j.state NOT IN ('completed', 'cancelled', 'discarded'))
		WHERE r.status = 'running';`,
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
	// Rollouts: a request naming a target group, run as one run per member, in waves
	// (rollouts.go, internal/jobs/rollout.go). A member's run is an ordinary run that knows its
	// rollout.
	`CREATE TABLE %[1]s.rollouts (
		id             uuid PRIMARY KEY,
		group_name     text NOT NULL,
		request_id     text NOT NULL,
		dry_run        boolean NOT NULL DEFAULT false,
		direction      text NOT NULL,
		request        jsonb NOT NULL,
		request_sha256 text NOT NULL,
		policy         jsonb NOT NULL,
		state          text NOT NULL,
		wave           integer NOT NULL DEFAULT 0,
		waves          integer NOT NULL,
		canary         boolean NOT NULL,
		next_wave_at   timestamptz,
		seq            integer NOT NULL DEFAULT 0,
		created_at     timestamptz NOT NULL DEFAULT now(),
		updated_at     timestamptz NOT NULL DEFAULT now(),
		finished_at    timestamptz,
		UNIQUE (group_name, request_id)
	);
	CREATE TABLE %[1]s.rollout_members (
		rollout    uuid NOT NULL REFERENCES %[1]s.rollouts (id),
		position   integer NOT NULL,
		target     text NOT NULL,
		wave       integer NOT NULL,
		state      text NOT NULL DEFAULT 'pending',
		error      jsonb,
		updated_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (rollout, position),
		UNIQUE (rollout, target)
	);
	CREATE INDEX rollout_members_target ON %[1]s.rollout_members (target);
	ALTER TABLE %[1]s.runs ADD COLUMN rollout uuid;`,
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
	q, rq := pgx.Identifier{schema}.Sanitize(), pgx.Identifier{riverSchema}.Sanitize()
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
		if _, err := tx.Exec(ctx, fmt.Sprintf(migrations[v-1], q, rq)); err != nil {
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
