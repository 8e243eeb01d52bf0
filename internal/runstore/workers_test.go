package runstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

const liveness = 15 * time.Second

func newStore(t *testing.T) *runstore.Store {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testdb.New(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, runstore.Migrate(ctx, pool, runstore.DefaultSchema, runstore.DefaultRiverSchema, nil))
	return runstore.NewStore(pool, runstore.DefaultSchema)
}

func worker(system string) runstore.WorkerInfo {
	return runstore.WorkerInfo{ID: uuid.NewString(), Host: "host-" + system, PID: 42, NATSSystem: system, NATSURL: "nats://" + system + ":4222"}
}

var errOtherSystem = errors.New("a live worker uses another NATS system")

// sameSystem is the policy the worker applies: no live worker on another system.
func sameSystem(me runstore.WorkerInfo) func(runstore.Roster) error {
	return func(r runstore.Roster) error {
		for _, w := range r.Live {
			if w.NATSSystem != me.NATSSystem {
				return errOtherSystem
			}
		}
		return nil
	}
}

func register(t *testing.T, s *runstore.Store, me runstore.WorkerInfo) runstore.Roster {
	t.Helper()
	r, err := s.RegisterWorker(context.Background(), me, liveness, sameSystem(me))
	require.NoError(t, err)
	return r
}

// snapshot is the worker table and the recorded NATS system, as text.
func snapshot(t *testing.T, s *runstore.Store) []string {
	t.Helper()
	rows, err := s.Pool.Query(context.Background(), `SELECT format('%s %s %s %s %s %s %s', id, host, pid, nats_system, nats_url, started_at, seen_at)
		FROM confiture_queue.workers UNION ALL SELECT format('system %s %s %s', system, url, since) FROM confiture_queue.nats_system ORDER BY 1`)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

func workerIDs(t *testing.T, s *runstore.Store) []string {
	t.Helper()
	rows, err := s.Pool.Query(context.Background(), `SELECT id::text FROM confiture_queue.workers ORDER BY started_at, id`)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		out = append(out, id)
	}
	require.NoError(t, rows.Err())
	return out
}

func recorded(t *testing.T, s *runstore.Store) (system, url string, since time.Time) {
	t.Helper()
	require.NoError(t, s.Pool.QueryRow(context.Background(), `SELECT system, url, since FROM confiture_queue.nats_system`).Scan(&system, &url, &since))
	return system, url, since
}

func TestRegisterWorkersOnOneSystem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	a, b := worker("x"), worker("x")

	r := register(t, s, a)
	require.Empty(t, r.Live)
	require.Nil(t, r.Last, "nothing recorded in a new queue database")
	system, url, since := recorded(t, s)
	require.Equal(t, "x", system)
	require.Equal(t, a.NATSURL, url)

	b.NATSURL = "nats://x-node-2:4222" // another node of the same cluster
	r = register(t, s, b)
	require.Len(t, r.Live, 1)
	require.Equal(t, a.ID, r.Live[0].ID)
	require.Equal(t, a.Host, r.Live[0].Host)
	require.Equal(t, a.PID, r.Live[0].PID)
	require.Equal(t, a.NATSURL, r.Live[0].NATSURL)
	require.WithinDuration(t, r.Now, r.Live[0].SeenAt, time.Minute)
	require.NotNil(t, r.Last)
	require.Equal(t, "x", r.Last.System)
	require.Equal(t, []string{a.ID, b.ID}, workerIDs(t, s))
	_, url, again := recorded(t, s)
	require.Equal(t, b.NATSURL, url, "the URL of the last worker that registered")
	require.True(t, since.Equal(again), "since changes only with the system")

	var before, after time.Time
	require.NoError(t, s.Pool.QueryRow(ctx, `SELECT seen_at FROM confiture_queue.workers WHERE id = $1`, a.ID).Scan(&before))
	require.NoError(t, s.Heartbeat(ctx, a.ID))
	require.NoError(t, s.Pool.QueryRow(ctx, `SELECT seen_at FROM confiture_queue.workers WHERE id = $1`, a.ID).Scan(&after))
	require.True(t, after.After(before), "heartbeat moves seen_at: %s then %s", before, after)

	require.NoError(t, s.UnregisterWorker(ctx, a.ID))
	require.Equal(t, []string{b.ID}, workerIDs(t, s))
	require.ErrorIs(t, s.Heartbeat(ctx, a.ID), runstore.ErrWorkerGone)
	system, _, _ = recorded(t, s)
	require.Equal(t, "x", system, "the system stays recorded when workers leave")
}

// TestRegisterWorkerRefusedChangesNothing: when admit refuses, not even the rows of dead
// workers are deleted.
func TestRegisterWorkerRefusedChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	dead := worker("x")
	register(t, s, dead)
	_, err := s.Pool.Exec(ctx, `UPDATE confiture_queue.workers SET seen_at = now() - interval '1 hour'`)
	require.NoError(t, err)
	a := worker("x")
	register(t, s, a)
	before := snapshot(t, s)

	b := worker("y")
	r, err := s.RegisterWorker(ctx, b, liveness, sameSystem(b))
	require.ErrorIs(t, err, errOtherSystem)
	require.Len(t, r.Live, 1, "the roster comes back with the refusal, for its message")
	require.Equal(t, a.ID, r.Live[0].ID, "a dead worker is not live")
	require.Equal(t, before, snapshot(t, s))
}

// TestRegisterWorkerAfterTheOthersLeftOrDied: with no live worker on the old system, a worker
// on another one registers, the dead workers' rows go, and the new system is recorded with
// the time it took over; a dead worker that comes back learns its row is gone.
func TestRegisterWorkerAfterTheOthersLeftOrDied(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	a := worker("x")
	register(t, s, a)
	_, err := s.Pool.Exec(ctx, `INSERT INTO confiture_queue.outbox (id, subject, payload) VALUES ($1, 'confiture.events.t.r.k', '{}')`, uuid.NewString())
	require.NoError(t, err)
	// Just outside the liveness window.
	_, err = s.Pool.Exec(ctx, `UPDATE confiture_queue.workers SET seen_at = now() - $1::bigint * interval '1 microsecond' - interval '1 ms'`, liveness.Microseconds())
	require.NoError(t, err)
	_, _, sinceX := recorded(t, s)

	b := worker("y")
	r := register(t, s, b)
	require.Empty(t, r.Live)
	require.Equal(t, &runstore.NATSSystem{System: "x", URL: a.NATSURL, Since: sinceX}, r.Last)
	require.EqualValues(t, 1, r.Unpublished)
	require.Equal(t, []string{b.ID}, workerIDs(t, s), "the dead worker's row is gone")
	system, url, sinceY := recorded(t, s)
	require.Equal(t, "y", system)
	require.Equal(t, b.NATSURL, url)
	require.True(t, sinceY.After(sinceX))

	require.ErrorIs(t, s.Heartbeat(ctx, a.ID), runstore.ErrWorkerGone)
	_, err = s.RegisterWorker(ctx, a, liveness, sameSystem(a))
	require.ErrorIs(t, err, errOtherSystem, "back from the dead, it is refused like any newcomer")
}

// TestRegisterWorkerTakesTurns: two workers on two systems register at the same moment; each
// looks at the roster for a while before it decides. Exactly one gets in.
func TestRegisterWorkerTakesTurns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, system := range []string{"x", "y"} {
		wg.Go(func() {
			me := worker(system)
			_, errs[i] = s.RegisterWorker(ctx, me, liveness, func(r runstore.Roster) error {
				time.Sleep(200 * time.Millisecond) // the other one starts meanwhile
				return sameSystem(me)(r)
			})
		})
	}
	wg.Wait()
	require.Equal(t, 1, count(errs, nil), "one registers: %v", errs)
	require.Equal(t, 1, count(errs, errOtherSystem), "the other is refused: %v", errs)
	require.Len(t, workerIDs(t, s), 1)
}

func count(errs []error, target error) int {
	n := 0
	for _, err := range errs {
		if err == target || (target != nil && errors.Is(err, target)) {
			n++
		}
	}
	return n
}
