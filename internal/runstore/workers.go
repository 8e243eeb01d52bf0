package runstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// WorkerInfo is one row of the worker table: a worker process using this queue database, and
// the NATS system it relays the outbox to.
type WorkerInfo struct {
	ID         string
	Host       string
	PID        int
	NATSSystem string
	// NATSURL is the URL the worker connects to, without credentials: the caller redacts it.
	NATSURL   string
	StartedAt time.Time
	SeenAt    time.Time
}

// NATSSystem is the NATS system the queue database's events go to, as the last worker that
// registered recorded it.
type NATSSystem struct {
	System string
	URL    string // without credentials
	// Since is when events started to go to System.
	Since time.Time
}

// Roster is what a worker finds in the queue database when it registers.
type Roster struct {
	// Live are the other workers seen within the liveness window, the oldest first.
	Live []WorkerInfo
	// Last is the NATS system events went to until now; nil when none was recorded.
	Last *NATSSystem
	// Unpublished is how many events wait in the outbox for a relay.
	Unpublished int64
	// Now is the database's clock, against which SeenAt and Since are to be read.
	Now time.Time
}

// ErrWorkerGone is returned by Heartbeat when the worker's row is no longer there: another
// worker took it for a dead one's (it was not seen within that worker's liveness window).
var ErrWorkerGone = errors.New("this worker's row is gone from the worker table")

// RegisterWorker adds me to the worker table, if admit allows it. Under an advisory lock held
// until the end of its transaction (workers starting together take turns), it reads the
// roster and calls admit with it. When admit returns an error, RegisterWorker returns it, with
// the roster, and changes nothing. Otherwise, in the same transaction, it deletes the rows of
// workers not seen within liveness, inserts me (StartedAt and SeenAt are the database's now)
// and records me.NATSSystem as the system events go to.
func (s *Store) RegisterWorker(ctx context.Context, me WorkerInfo, liveness time.Duration, admit func(Roster) error) (Roster, error) {
	var r Roster
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('confiture.queue.workers:' || $1))`, s.name); err != nil {
			return fmt.Errorf("worker table lock: %w", err)
		}
		// FOR UPDATE: a heartbeat racing with this transaction either commits first (its
		// worker is live here) or waits and then finds its row deleted (ErrWorkerGone).
		rows, err := tx.Query(ctx, `SELECT id::text, host, pid, nats_system, nats_url, started_at, seen_at,
			seen_at > now() - $1::bigint * interval '1 microsecond', now()
			FROM `+s.schema+`.workers WHERE id <> $2::uuid ORDER BY started_at, id FOR UPDATE`,
			liveness.Microseconds(), me.ID)
		if err != nil {
			return fmt.Errorf("read worker table: %w", err)
		}
		for rows.Next() {
			var w WorkerInfo
			var live bool
			if err := rows.Scan(&w.ID, &w.Host, &w.PID, &w.NATSSystem, &w.NATSURL, &w.StartedAt, &w.SeenAt, &live, &r.Now); err != nil {
				rows.Close()
				return fmt.Errorf("read worker table: %w", err)
			}
			if live {
				r.Live = append(r.Live, w)
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read worker table: %w", err)
		}
		var last NATSSystem
		err = tx.QueryRow(ctx, `SELECT system, url, since FROM `+s.schema+`.nats_system`).Scan(&last.System, &last.URL, &last.Since)
		switch {
		case err == nil:
			r.Last = &last
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("read NATS system: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT now(), (SELECT count(*) FROM `+s.schema+`.outbox WHERE published_at IS NULL)`).
			Scan(&r.Now, &r.Unpublished); err != nil {
			return fmt.Errorf("count unpublished events: %w", err)
		}
		if err := admit(r); err != nil {
			return err
		}

		batch := &pgx.Batch{}
		batch.Queue(`DELETE FROM `+s.schema+`.workers WHERE seen_at <= now() - $1::bigint * interval '1 microsecond'`, liveness.Microseconds())
		batch.Queue(`INSERT INTO `+s.schema+`.workers (id, host, pid, nats_system, nats_url) VALUES ($1, $2, $3, $4, $5)`,
			me.ID, me.Host, me.PID, me.NATSSystem, me.NATSURL)
		// since changes only with the system: it says how long events have gone there.
		batch.Queue(`INSERT INTO `+s.schema+`.nats_system AS n (system, url) VALUES ($1, $2)
			ON CONFLICT (only_row) DO UPDATE SET system = excluded.system, url = excluded.url,
			since = CASE WHEN n.system = excluded.system THEN n.since ELSE now() END`, me.NATSSystem, me.NATSURL)
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("register worker: %w", err)
		}
		return nil
	})
	return r, err
}

// Heartbeat records that the worker id is alive now. It returns ErrWorkerGone when its row was
// deleted: the worker must register again (and may no longer be admitted).
func (s *Store) Heartbeat(ctx context.Context, id string) error {
	tag, err := s.Pool.Exec(ctx, `UPDATE `+s.schema+`.workers SET seen_at = now() WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("worker heartbeat: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrWorkerGone
	}
	return nil
}

// UnregisterWorker deletes the worker id's row. The NATS system stays recorded.
func (s *Store) UnregisterWorker(ctx context.Context, id string) error {
	if _, err := s.Pool.Exec(ctx, `DELETE FROM `+s.schema+`.workers WHERE id = $1`, id); err != nil {
		return fmt.Errorf("unregister worker: %w", err)
	}
	return nil
}

// OrphanJob is a River job that a worker no longer alive was working on.
type OrphanJob struct {
	ID          int64
	Attempt     int
	MaxAttempts int
	// Cancelled says someone asked to cancel it while it ran (River UI).
	Cancelled bool
	// Worker is the River client id of the worker that had it.
	Worker string
}

// OrphanJobs returns, locked for the rest of tx (skipping rows others hold), the running River
// jobs of a confiture_* kind whose worker is one of this queue database's workers (its River
// client id is clientPrefix + its worker id) that has not been seen for liveness, or is gone
// from the worker table, and that started more than liveness ago. riverSchema is River's
// schema, unquoted.
func (s *Store) OrphanJobs(ctx context.Context, tx pgx.Tx, riverSchema, clientPrefix string, liveness time.Duration, limit int) ([]OrphanJob, error) {
	rows, err := tx.Query(ctx, `SELECT j.id, j.attempt, j.max_attempts, coalesce(j.metadata ? 'cancel_attempted_at', false),
			j.attempted_by[cardinality(j.attempted_by)]
		FROM `+pgx.Identifier{riverSchema}.Sanitize()+`.river_job j
		WHERE j.state = 'running' AND j.kind LIKE 'confiture\_%'
		AND j.attempted_at < now() - $1::bigint * interval '1 microsecond'
		AND starts_with(j.attempted_by[cardinality(j.attempted_by)], $2)
		AND NOT EXISTS (SELECT 1 FROM `+s.schema+`.workers w
			WHERE $2 || w.id::text = j.attempted_by[cardinality(j.attempted_by)]
			AND w.seen_at > now() - $1::bigint * interval '1 microsecond')
		ORDER BY j.id LIMIT $3 FOR UPDATE OF j SKIP LOCKED`, liveness.Microseconds(), clientPrefix, limit)
	if err != nil {
		return nil, fmt.Errorf("find the jobs of workers gone: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (OrphanJob, error) {
		var o OrphanJob
		err := r.Scan(&o.ID, &o.Attempt, &o.MaxAttempts, &o.Cancelled, &o.Worker)
		return o, err
	})
}
