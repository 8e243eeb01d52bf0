package target

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// Querier is what the tracking functions need: the target's pool, a connection or a
// transaction. The functions tag ctx with their target (WithTarget), so that a pool given as
// q prepares its connection for it.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// schemaSQL creates the tracking schema; %[1]s is the quoted schema name.
const schemaSQL = `
CREATE SCHEMA IF NOT EXISTS %[1]s;
CREATE TABLE IF NOT EXISTS %[1]s.schema_migrations (
	version           text PRIMARY KEY,
	name              text NOT NULL,
	checksum          text NOT NULL,
	applied_at        timestamptz NOT NULL DEFAULT now(),
	execution_time_ms bigint NOT NULL,
	applied_by        text NOT NULL,
	run_id            uuid NOT NULL
);
CREATE TABLE IF NOT EXISTS %[1]s.hook_ledger (
	run_id        uuid NOT NULL,
	version       text NOT NULL,
	phase         text NOT NULL,
	hook          text NOT NULL,
	status        text NOT NULL,
	attempt       integer NOT NULL,
	rows_affected bigint NOT NULL DEFAULT 0,
	duration_ms   bigint NOT NULL DEFAULT 0,
	stats         jsonb,
	checkpoint    jsonb,
	message       text NOT NULL DEFAULT '',
	error         text NOT NULL DEFAULT '',
	updated_at    timestamptz NOT NULL DEFAULT now(),
	-- The order rows were last written in (hooks of one phase share one updated_at).
	seq           bigserial NOT NULL,
	PRIMARY KEY (run_id, version, phase, hook)
);`

// columnsSQL adds the columns that came after the tables.
const columnsSQL = `
-- A migration is incomplete from its DDL until its last phase commits; phase is the last phase
-- that committed. Rows written before these columns existed are complete.
ALTER TABLE %[1]s.schema_migrations
	ADD COLUMN IF NOT EXISTS complete boolean NOT NULL DEFAULT true,
	ADD COLUMN IF NOT EXISTS phase    text NOT NULL DEFAULT '';
-- The run that began the migration's work on the target; a run that resumes the migration keeps
-- it, and so the idempotency keys of its hooks.
ALTER TABLE %[1]s.hook_ledger ADD COLUMN IF NOT EXISTS origin_run uuid;`

func (t *Target) ensureSchema(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if err := t.EnsureSchemaIn(ctx, tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// EnsureSchemaIn creates the tracking schema in tx when it, or one of its columns, is missing;
// the caller commits tx, or rolls it back (a dry-run). When something is missing it takes the
// target's lock for the rest of tx: CREATE ... IF NOT EXISTS can still race on the catalog.
func (t *Target) EnsureSchemaIn(ctx context.Context, tx pgx.Tx) error {
	// CREATE SCHEMA needs CREATE on the database and ALTER TABLE the table's owner, even when
	// there is nothing to do; a worker's role need have neither once the tables exist (another
	// role may have created them): the statements run only when something is missing.
	missing, err := t.schemaMissing(ctx, tx)
	if err != nil || !missing {
		return err
	}
	if err := t.Lock(ctx, tx); err != nil {
		return err
	}
	if missing, err = t.schemaMissing(ctx, tx); err != nil || !missing {
		return err
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(schemaSQL+columnsSQL, t.schema)); err != nil {
		return fmt.Errorf("create tracking schema %s: %w", t.schema, err)
	}
	return nil
}

func (t *Target) schemaMissing(ctx context.Context, q Querier) (bool, error) {
	var missing bool
	if err := q.QueryRow(ctx, `SELECT count(*) < 3 FROM pg_attribute WHERE NOT attisdropped AND (
		(attrelid = to_regclass($1) AND attname IN ('complete', 'phase')) OR (attrelid = to_regclass($2) AND attname = 'origin_run'))`,
		t.schema+".schema_migrations", t.schema+".hook_ledger").Scan(&missing); err != nil {
		return false, fmt.Errorf("tracking schema %s: %w", t.schema, err)
	}
	return missing, nil
}

const lockSQL = `SELECT pg_advisory_xact_lock(hashtext('confiture:' || $1))`

// Lock takes the target's advisory lock for the rest of tx: one phase of one run changes a
// target at a time, whichever worker or queue runs it.
func (t *Target) Lock(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, lockSQL, t.cfg.TrackingSchema)
	if err != nil {
		return fmt.Errorf("advisory lock on target %q: %w", t.cfg.Name, err)
	}
	return nil
}

// Applied is one row of the tracking table.
type Applied struct {
	Version         string
	Name            string
	Checksum        string
	AppliedAt       time.Time
	ExecutionTimeMS int64
	AppliedBy       string
	RunID           string
	// Complete is false from the migration's DDL until its last phase commits.
	Complete bool
	// Phase is the last phase that committed.
	Phase string
}

// AppliedMigrations returns the tracking table, in version order: complete and incomplete
// migrations. A tracking table that does not exist yet (a fresh target read through Conn) is
// empty; q must then not be a transaction, which the error would abort.
func (t *Target) AppliedMigrations(ctx context.Context, q Querier) ([]Applied, error) {
	ctx = WithTarget(ctx, t)
	rows, err := q.Query(ctx, `SELECT version, name, checksum, applied_at, execution_time_ms, applied_by, run_id::text,
		complete, phase FROM `+t.schema+`.schema_migrations ORDER BY version`)
	if undefinedTable(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	applied, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Applied, error) {
		var a Applied
		err := r.Scan(&a.Version, &a.Name, &a.Checksum, &a.AppliedAt, &a.ExecutionTimeMS, &a.AppliedBy, &a.RunID,
			&a.Complete, &a.Phase)
		return a, err
	})
	if undefinedTable(err) {
		return nil, nil
	}
	// In the order of versions (numbers, not strings: 9 before 10, 1.2 before 1.10).
	slices.SortStableFunc(applied, func(a, b Applied) int { return contract.CompareVersions(a.Version, b.Version) })
	return applied, err
}

// undefinedTable reports whether err is PostgreSQL's undefined_table (42P01).
func undefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}

// RecordApplied writes the tracking row of a migration whose DDL has run (complete or not),
// replacing an existing row of the same version.
func (t *Target) RecordApplied(ctx context.Context, q Querier, a Applied, ledger ...LedgerRow) error {
	ctx = WithTarget(ctx, t)
	batch := &pgx.Batch{}
	batch.Queue(`INSERT INTO `+t.schema+`.schema_migrations
		(version, name, checksum, execution_time_ms, applied_by, run_id, complete, phase) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, checksum = EXCLUDED.checksum,
		applied_at = now(), execution_time_ms = EXCLUDED.execution_time_ms,
		applied_by = EXCLUDED.applied_by, run_id = EXCLUDED.run_id, complete = EXCLUDED.complete,
		phase = EXCLUDED.phase`,
		a.Version, a.Name, a.Checksum, a.ExecutionTimeMS, a.AppliedBy, a.RunID, a.Complete, a.Phase)
	if err := t.queueLedger(batch, ledger); err != nil {
		return err
	}
	if err := q.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("record migration %s: %w", a.Version, err)
	}
	return nil
}

// RecordAdopted writes the tracking rows of migrations another tool applied (complete, with
// the time that tool applied them, or now when it does not say), leaving a row that exists
// as it is.
func (t *Target) RecordAdopted(ctx context.Context, q Querier, rows []Applied) error {
	ctx = WithTarget(ctx, t)
	batch := &pgx.Batch{}
	for _, a := range rows {
		var at *time.Time
		if !a.AppliedAt.IsZero() {
			at = &a.AppliedAt
		}
		batch.Queue(`INSERT INTO `+t.schema+`.schema_migrations
			(version, name, checksum, applied_at, execution_time_ms, applied_by, run_id, complete, phase)
			VALUES ($1, $2, $3, coalesce($4, now()), $5, $6, $7, true, '')
			ON CONFLICT (version) DO NOTHING`,
			a.Version, a.Name, a.Checksum, at, a.ExecutionTimeMS, a.AppliedBy, a.RunID)
	}
	if err := q.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("record adopted migrations: %w", err)
	}
	return nil
}

// UpdateChecksum records a migration's new checksum and name (a forced request), keeping the
// rest of its row.
func (t *Target) UpdateChecksum(ctx context.Context, q Querier, version, name, checksum string) error {
	ctx = WithTarget(ctx, t)
	_, err := q.Exec(ctx, `UPDATE `+t.schema+`.schema_migrations SET checksum = $2, name = $3 WHERE version = $1`,
		version, checksum, name)
	return err
}

// Reached is the mark of a phase of an applied migration that commits: the phase, and whether
// it completes the migration (its last phase).
type Reached struct {
	Version, Phase string
	Complete       bool
}

// MarkReached records that phase of an applied migration committed, and, when complete is
// set, that the migration is complete: its last phase has committed.
func (t *Target) MarkReached(ctx context.Context, q Querier, version, phase string, complete bool) error {
	return t.RecordPhase(ctx, q, &Reached{Version: version, Phase: phase, Complete: complete})
}

// RecordPhase inserts or updates ledger rows and, when reached is set, records the phase's
// mark (MarkReached), in one round trip.
func (t *Target) RecordPhase(ctx context.Context, q Querier, reached *Reached, rows ...LedgerRow) error {
	ctx = WithTarget(ctx, t)
	batch := &pgx.Batch{}
	if err := t.queueLedger(batch, rows); err != nil {
		return err
	}
	if reached != nil {
		batch.Queue(`UPDATE `+t.schema+`.schema_migrations SET phase = $2, complete = complete OR $3
			WHERE version = $1`, reached.Version, reached.Phase, reached.Complete)
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := q.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("record phase: %w", err)
	}
	return nil
}

// Claim makes run the owner of an incomplete migration (the run that resumes it).
func (t *Target) Claim(ctx context.Context, q Querier, version, run string) error {
	ctx = WithTarget(ctx, t)
	_, err := q.Exec(ctx, `UPDATE `+t.schema+`.schema_migrations SET run_id = $2 WHERE version = $1`, version, run)
	return err
}

// PredecessorOf returns the earlier run whose ledger rows of version a run that resumes the
// migration takes over ("" when there is none): for an incomplete migration, the owner of its
// tracking row (owner); otherwise the latest run with ledger rows of version, provided its DDL
// did not complete (a run whose DDL completed applied or reverted the migration, and its work
// belongs to that). self is the run asking.
func (t *Target) PredecessorOf(ctx context.Context, q Querier, version, owner, self string) (string, error) {
	ctx = WithTarget(ctx, t)
	if owner == "" {
		err := q.QueryRow(ctx, `SELECT run_id::text FROM `+t.schema+`.hook_ledger WHERE version = $1 AND run_id <> $2
			GROUP BY run_id ORDER BY max(seq) DESC LIMIT 1`, version, self).Scan(&owner)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		var ddlDone bool
		if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+t.schema+`.hook_ledger WHERE run_id = $1
			AND version = $2 AND phase = 'ddl' AND status = 'completed')`, owner, version).Scan(&ddlDone); err != nil {
			return "", err
		}
		if ddlDone {
			return "", nil
		}
	}
	if owner == self {
		return "", nil
	}
	return owner, nil
}

// OriginOf returns the run that began the work of run on version: the origin its ledger rows
// of version carry (taken over from a predecessor), else run itself.
func (t *Target) OriginOf(ctx context.Context, q Querier, version, run string) (string, error) {
	ctx = WithTarget(ctx, t)
	var origin string
	err := q.QueryRow(ctx, `SELECT coalesce(min(origin_run::text), $1::uuid::text) FROM `+t.schema+`.hook_ledger
		WHERE run_id = $1::uuid AND version = $2`, run, version).Scan(&origin)
	return origin, err
}

// Adopt copies the completed and in-progress ledger rows of version from run from to run to
// (a completed row to already has is kept; one it has that is not completed, from an earlier
// course of its own, gives way): the run that resumes a migration does not repeat what its
// predecessor committed, and its batched hooks go on from their checkpoints.
func (t *Target) Adopt(ctx context.Context, q Querier, version, from, to string) (int64, error) {
	ctx = WithTarget(ctx, t)
	tag, err := q.Exec(ctx, `INSERT INTO `+t.schema+`.hook_ledger
		(run_id, version, phase, hook, status, attempt, rows_affected, duration_ms, stats, checkpoint, message, error, origin_run)
		SELECT $3::uuid, version, phase, hook, status, 0, rows_affected, duration_ms, stats, checkpoint, message,
			'', coalesce(origin_run, run_id)
		FROM `+t.schema+`.hook_ledger WHERE run_id = $1 AND version = $2 AND status IN ('completed', 'running')
		ORDER BY seq ON CONFLICT (run_id, version, phase, hook) DO UPDATE SET status = EXCLUDED.status,
			rows_affected = EXCLUDED.rows_affected, duration_ms = EXCLUDED.duration_ms, stats = EXCLUDED.stats,
			checkpoint = EXCLUDED.checkpoint, message = EXCLUDED.message, error = '', origin_run = EXCLUDED.origin_run,
			updated_at = now(), seq = nextval(pg_get_serial_sequence($4, 'seq'))
			WHERE hook_ledger.status <> 'completed'`, from, version, to, t.schema+".hook_ledger")
	if err != nil {
		return 0, fmt.Errorf("adopt the ledger of run %s: %w", from, err)
	}
	return tag.RowsAffected(), nil
}

// DeleteApplied removes the tracking row of a reverted migration.
func (t *Target) DeleteApplied(ctx context.Context, q Querier, version string) error {
	ctx = WithTarget(ctx, t)
	_, err := q.Exec(ctx, `DELETE FROM `+t.schema+`.schema_migrations WHERE version = $1`, version)
	return err
}

// Ledger statuses.
const (
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusRunning   = "running"
)

// LedgerRow is one hook's (or one DDL phase's) record in the hook ledger.
type LedgerRow struct {
	Run          string
	Version      string
	Phase        string
	Hook         string
	Status       string
	Attempt      int
	RowsAffected int64
	DurationMS   int64
	Stats        map[string]any
	Checkpoint   json.RawMessage
	Message      string
	Error        string
	// Origin is the run that began the migration's work on the target; "" is Run.
	Origin string
}

// WriteLedger inserts or updates ledger rows, in one round trip.
func (t *Target) WriteLedger(ctx context.Context, q Querier, rows ...LedgerRow) error {
	return t.RecordPhase(ctx, q, nil, rows...)
}

// queueLedger adds the statements that insert or update ledger rows to batch.
func (t *Target) queueLedger(batch *pgx.Batch, rows []LedgerRow) error {
	for _, r := range rows {
		var stats []byte
		if len(r.Stats) > 0 {
			b, err := json.Marshal(r.Stats)
			if err != nil {
				return fmt.Errorf("hook %q stats: %w", r.Hook, err)
			}
			stats = b
		}
		var checkpoint []byte
		if len(r.Checkpoint) > 0 {
			checkpoint = r.Checkpoint
		}
		origin := r.Origin
		if origin == "" {
			origin = r.Run
		}
		batch.Queue(`INSERT INTO `+t.schema+`.hook_ledger
			(run_id, version, phase, hook, status, attempt, rows_affected, duration_ms, stats, checkpoint, message, error, origin_run)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $14)
			ON CONFLICT (run_id, version, phase, hook) DO UPDATE SET status = EXCLUDED.status,
			attempt = EXCLUDED.attempt, rows_affected = EXCLUDED.rows_affected,
			duration_ms = EXCLUDED.duration_ms, stats = EXCLUDED.stats, checkpoint = EXCLUDED.checkpoint,
			message = EXCLUDED.message, error = EXCLUDED.error, updated_at = now(),
			seq = nextval(pg_get_serial_sequence($13, 'seq'))`,
			r.Run, r.Version, r.Phase, r.Hook, r.Status, r.Attempt, r.RowsAffected, r.DurationMS,
			stats, checkpoint, r.Message, r.Error, t.schema+".hook_ledger", origin)
	}
	return nil
}

// Phase is an open transaction on the target for one phase of a run, holding the target's lock.
type Phase struct {
	Tx pgx.Tx
	// Done holds the ledger rows of this phase recorded so far (by earlier attempts, or by a
	// run this one resumes).
	Done []LedgerRow
}

// BeginPhase opens a transaction on the target, takes the target's lock and reads the phase's
// ledger rows, in one round trip. The ledger is always read: an attempt's number says nothing
// of what earlier attempts committed (River hands a job back with its attempt decremented when
// its worker stops). The caller commits or rolls back Phase.Tx.
func (t *Target) BeginPhase(ctx context.Context, pool *pgxpool.Pool, run, version, phase string) (*Phase, error) {
	ctx = WithTarget(ctx, t)
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, t.connError(err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = tx.Rollback(ctx)
		}
	}()
	p := &Phase{Tx: tx}
	if p.Done, err = t.LockLedger(ctx, tx, run, version, phase); err != nil {
		return nil, err
	}
	ok = true
	return p, nil
}

// LockLedger takes the target's lock for the rest of tx and reads the ledger rows of one phase
// of one migration of a run, oldest first, in one round trip.
func (t *Target) LockLedger(ctx context.Context, tx pgx.Tx, run, version, phase string) ([]LedgerRow, error) {
	batch := &pgx.Batch{}
	batch.Queue(lockSQL, t.cfg.TrackingSchema)
	batch.Queue(ledgerSelect+t.schema+`.hook_ledger WHERE run_id = $1 AND version = $2 AND phase = $3 ORDER BY seq`, run, version, phase)
	br := tx.SendBatch(ctx, batch)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, fmt.Errorf("advisory lock on target %q: %w", t.cfg.Name, err)
	}
	rows, err := scanLedger(br.Query())
	if err != nil {
		br.Close()
		return nil, err
	}
	return rows, br.Close()
}

// Ledger returns the ledger rows of one phase of one migration of a run, oldest first.
func (t *Target) Ledger(ctx context.Context, q Querier, run, version, phase string) ([]LedgerRow, error) {
	return t.ledger(ctx, q, `WHERE run_id = $1 AND version = $2 AND phase = $3`, run, version, phase)
}

// Checkpoints keeps one hook's checkpoint in its hook-ledger row (status running), under the
// target's lock, in the transaction of the step it belongs to: the checkpoint store of a
// batched hook (hooks.CheckpointStore).
type Checkpoints struct {
	Target *Target
	// Row names the hook (Run, Version, Phase, Hook) and gives the Attempt recorded.
	Row LedgerRow
	// Last is the checkpoint last loaded or saved.
	Last json.RawMessage
}

// Load takes the target's lock for the rest of tx and returns the hook's checkpoint.
func (c *Checkpoints) Load(ctx context.Context, tx pgx.Tx) (json.RawMessage, error) {
	if err := c.Target.Lock(ctx, tx); err != nil {
		return nil, err
	}
	rows, err := c.Target.ledger(ctx, tx, `WHERE run_id = $1 AND version = $2 AND phase = $3 AND hook = $4`,
		c.Row.Run, c.Row.Version, c.Row.Phase, c.Row.Hook)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	c.Last = rows[0].Checkpoint
	return c.Last, nil
}

// Save records checkpoint and the rows done so far in tx.
func (c *Checkpoints) Save(ctx context.Context, tx pgx.Tx, checkpoint json.RawMessage, rows int64) error {
	r := c.Row
	r.Status, r.Checkpoint, r.RowsAffected = StatusRunning, checkpoint, rows
	if err := c.Target.WriteLedger(ctx, tx, r); err != nil {
		return err
	}
	c.Last = checkpoint
	return nil
}

// RunStats merges the stats of every completed ledger row of a run, oldest first: the shared
// stats a hook of a later phase sees.
func (t *Target) RunStats(ctx context.Context, q Querier, run string) (map[string]any, error) {
	rows, err := t.ledger(ctx, q, `WHERE run_id = $1 AND status = 'completed' AND stats IS NOT NULL`, run)
	if err != nil {
		return nil, err
	}
	return mergeStats(rows), nil
}

func mergeStats(rows []LedgerRow) map[string]any {
	out := map[string]any{}
	for _, r := range rows {
		for k, v := range r.Stats {
			out[k] = v
		}
	}
	return out
}

const ledgerSelect = `SELECT run_id::text, version, phase, hook, status, attempt, rows_affected,
	duration_ms, stats, checkpoint, message, error FROM `

func (t *Target) ledger(ctx context.Context, q Querier, where string, args ...any) ([]LedgerRow, error) {
	ctx = WithTarget(ctx, t)
	return scanLedger(q.Query(ctx, ledgerSelect+t.schema+`.hook_ledger `+where+` ORDER BY seq`, args...))
}

func scanLedger(rows pgx.Rows, err error) ([]LedgerRow, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (LedgerRow, error) {
		var l LedgerRow
		var stats, checkpoint []byte
		if err := r.Scan(&l.Run, &l.Version, &l.Phase, &l.Hook, &l.Status, &l.Attempt, &l.RowsAffected,
			&l.DurationMS, &stats, &checkpoint, &l.Message, &l.Error); err != nil {
			return l, err
		}
		if len(stats) > 0 {
			if err := json.Unmarshal(stats, &l.Stats); err != nil {
				return l, err
			}
		}
		l.Checkpoint = checkpoint
		return l, nil
	})
}

// SessionLock takes the target's advisory lock on conn until SessionUnlock, for work that
// cannot run inside a transaction.
func (t *Target) SessionLock(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtext('confiture:' || $1))`, t.cfg.TrackingSchema)
	if err != nil {
		return fmt.Errorf("advisory lock on target %q: %w", t.cfg.Name, err)
	}
	return nil
}

// SessionUnlock releases the lock SessionLock took. If the lock cannot be released for sure,
// it closes conn, which ends the session and with it the lock: a pooled connection must never
// go back to its pool holding the target's lock, or every later phase would wait for it.
func (t *Target) SessionUnlock(ctx context.Context, conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
	defer cancel()
	var released bool
	err := conn.QueryRow(ctx, `SELECT pg_advisory_unlock(hashtext('confiture:' || $1))`, t.cfg.TrackingSchema).Scan(&released)
	if err != nil || !released {
		closeCtx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
		defer cancel()
		_ = conn.Close(closeCtx)
	}
}

// unlockTimeout bounds the release of a session lock.
const unlockTimeout = 5 * time.Second
