package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/confiture-io/confiture-worker/internal/fault"
)

// Message is one outbox row on its way to the bus.
type Message struct {
	ID      string
	Subject string
	Data    []byte
}

// Publisher sends messages to the bus in order and returns once the bus has stored all of them.
// It must use each message's ID as the bus's de-duplication id.
type Publisher interface {
	PublishBatch(ctx context.Context, msgs []Message) error
}

// Relay moves committed events from the outbox to the bus. Several workers may run one each;
// an advisory lock lets one relay at a time, which keeps every run's events in order.
type Relay struct {
	Pool *pgxpool.Pool
	// Schema is the quoted schema of the outbox table.
	Schema    string
	Publisher Publisher
	Logger    *slog.Logger
	// PollInterval bounds how long a committed event waits when no notification wakes the
	// relay (events recorded without one, such as phase.started, or a missed notification).
	// Defaults to 250ms.
	PollInterval time.Duration
	// BatchSize is how many events one transaction relays. Defaults to 200.
	BatchSize int
	// Retention is how long published events stay in the outbox. Defaults to 24h.
	Retention time.Duration
	// Fault is called at fault.OutboxAfterPublish, for the tests that inject failures; an
	// error it returns fails the batch there. Defaults to none.
	Fault fault.Func
}

// Run relays until ctx is done, then makes one last attempt to flush within a short bound.
func (r *Relay) Run(ctx context.Context) {
	r.setDefaults()
	wake := make(chan struct{}, 1)
	go r.listen(ctx, wake)
	ticker := time.NewTicker(r.PollInterval)
	defer ticker.Stop()
	backoff := time.Duration(0)
	failing := false
	lastPurge := time.Time{}
	for {
		if _, err := r.Flush(ctx); err != nil && ctx.Err() == nil {
			if !failing {
				r.Logger.Warn("outbox relay failing; events wait in the outbox", "error", err.Error())
				failing = true
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		} else {
			if failing {
				r.Logger.Info("outbox relay recovered")
				failing = false
			}
			backoff = 0
		}
		if time.Since(lastPurge) > time.Hour {
			r.purge(ctx)
			lastPurge = time.Now()
		}
		// While the bus is failing, only the back-off decides when to try again.
		var wakeC <-chan struct{} = wake
		var tick <-chan time.Time = ticker.C
		var retry <-chan time.Time
		if backoff > 0 {
			wakeC, tick, retry = nil, nil, time.After(backoff)
		}
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_, _ = r.Flush(final)
			cancel()
			return
		case <-wakeC:
		case <-tick:
		case <-retry:
		}
	}
}

func (r *Relay) setDefaults() {
	if r.PollInterval <= 0 {
		r.PollInterval = 250 * time.Millisecond
	}
	if r.BatchSize <= 0 {
		r.BatchSize = 200
	}
	if r.Retention <= 0 {
		r.Retention = 24 * time.Hour
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
}

// Flush relays every event committed so far and returns how many it published. It returns 0
// without error when another relay holds the lock.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	r.setDefaults()
	total := 0
	for {
		n, more, err := r.relayBatch(ctx)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

func (r *Relay) relayBatch(ctx context.Context) (int, bool, error) {
	// The marks commit without waiting for the WAL flush: a crash of PostgreSQL that loses them
	// publishes the events again, and the bus drops them as duplicates (their ids are its
	// de-duplication ids).
	tx, err := r.Pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: "BEGIN; SET LOCAL synchronous_commit = off"})
	if err != nil {
		return 0, false, fmt.Errorf("outbox relay: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	// One round trip: take the relay lock if free, and mark the oldest events published. The
	// marks commit only after the bus has stored the events.
	rows, err := tx.Query(ctx, `WITH leader AS (
			SELECT pg_try_advisory_xact_lock(hashtext('confiture.outbox.relay')) AS ok),
		batch AS (
			SELECT seq FROM `+r.Schema+`.outbox
			WHERE published_at IS NULL AND (SELECT ok FROM leader)
			ORDER BY seq LIMIT $1)
		UPDATE `+r.Schema+`.outbox o SET published_at = now() FROM batch
		WHERE o.seq = batch.seq AND o.published_at IS NULL RETURNING o.seq, o.id::text, o.subject, o.payload`, r.BatchSize)
	if err != nil {
		return 0, false, fmt.Errorf("outbox relay: %w", err)
	}
	type row struct {
		seq int64
		msg Message
	}
	batch, err := pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
		var x row
		err := cr.Scan(&x.seq, &x.msg.ID, &x.msg.Subject, &x.msg.Data)
		return x, err
	})
	if err != nil {
		return 0, false, fmt.Errorf("outbox relay: %w", err)
	}
	if len(batch) == 0 {
		return 0, false, nil
	}
	slices.SortFunc(batch, func(a, b row) int { return cmp.Compare(a.seq, b.seq) })
	msgs := make([]Message, len(batch))
	for i, x := range batch {
		msgs[i] = x.msg
	}
	if err := r.Publisher.PublishBatch(ctx, msgs); err != nil {
		return 0, false, fmt.Errorf("outbox relay: publish: %w", err)
	}
	if err := r.Fault.At(ctx, fault.OutboxAfterPublish, fault.Where{}); err != nil {
		return 0, false, fmt.Errorf("outbox relay: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		// The bus has the events; they will be published again and dropped as duplicates.
		return 0, false, fmt.Errorf("outbox relay: %w", err)
	}
	return len(msgs), len(msgs) == r.BatchSize, nil
}

// Lag returns the age of the oldest unpublished event, or 0 when the outbox is drained.
func (r *Relay) Lag(ctx context.Context) (time.Duration, error) {
	var age *time.Duration
	err := r.Pool.QueryRow(ctx, `SELECT now() - min(created_at) FROM `+r.Schema+`.outbox WHERE published_at IS NULL`).Scan(&age)
	if err != nil || age == nil {
		return 0, err
	}
	return *age, nil
}

func (r *Relay) purge(ctx context.Context) {
	_, err := r.Pool.Exec(ctx, `DELETE FROM `+r.Schema+`.outbox WHERE published_at < now() - $1::interval`, r.Retention.String())
	if err != nil && ctx.Err() == nil {
		r.Logger.Warn("outbox purge failed", "error", err.Error())
	}
}

// listen turns notifications on the outbox channel into wake-ups, reconnecting as needed.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	for ctx.Err() == nil {
		err := r.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		r.Logger.Debug("outbox listener reconnecting", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (r *Relay) listenOnce(ctx context.Context, wake chan<- struct{}) error {
	conn, err := r.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer func() {
		// A connection that was listening goes back clean, or not at all.
		if _, err := conn.Exec(context.WithoutCancel(ctx), `UNLISTEN *`); err != nil {
			conn.Hijack().Close(context.Background()) //nolint:errcheck
			return
		}
		conn.Release()
	}()
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{notifyChannel}.Sanitize()); err != nil {
		return err
	}
	for {
		_, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}
