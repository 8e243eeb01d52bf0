package target

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/confiture-io/confiture-worker/internal/testdb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// A closed pgx pool's health checker can still be winding down when the check runs.
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
	)
}

const (
	run1 = "11111111-1111-4111-8111-111111111111"
	run2 = "22222222-2222-4222-8222-222222222222"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openTarget returns target name of a new Set over cfg, with its pool open.
func openTarget(t *testing.T, cfg Config) (*Target, *pgxpool.Pool) {
	t.Helper()
	set, err := NewSet([]Config{cfg})
	require.NoError(t, err)
	t.Cleanup(set.Close)
	tg, err := set.Get(cfg.Name)
	require.NoError(t, err)
	pool, err := tg.Pool(testCtx(t))
	require.NoError(t, err)
	return tg, pool
}

func newTarget(t *testing.T) (*Target, *pgxpool.Pool) {
	t.Helper()
	return openTarget(t, Config{Name: "default", DSN: testdb.New(t)})
}

func TestPoolCreatesTrackingSchemaConcurrently(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dsn := testdb.New(t)
	// Two worker processes (two Sets) start on the same database at once.
	const n = 4
	targets := make([]*Target, n)
	for i := range targets {
		set, err := NewSet([]Config{{Name: "default", DSN: dsn}})
		require.NoError(t, err)
		t.Cleanup(set.Close)
		targets[i], err = set.Get("default")
		require.NoError(t, err)
	}
	errs := make(chan error, 2*n)
	for _, tg := range targets {
		for range 2 { // also two callers of the same Target
			go func() {
				_, err := tg.Pool(ctx)
				errs <- err
			}()
		}
	}
	for range 2 * n {
		require.NoError(t, <-errs)
	}
	pool, err := targets[0].Pool(ctx)
	require.NoError(t, err)
	ctx = WithTarget(ctx, targets[0])
	again, err := targets[0].Pool(ctx)
	require.NoError(t, err)
	require.Same(t, pool, again, "the pool is opened once per Target")
	require.GreaterOrEqual(t, targets[0].ServerVersion(), 120000)

	rows, err := pool.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'confiture' ORDER BY 1`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"hook_ledger", "schema_migrations"}, tables)

	// A later start finds the schema in place.
	tg, _ := openTarget(t, Config{Name: "default", DSN: dsn})
	require.Equal(t, "confiture", tg.TrackingSchema())

	var app string
	require.NoError(t, pool.QueryRow(ctx, `SHOW application_name`).Scan(&app))
	require.Equal(t, "confiture-worker", app)
	require.EqualValues(t, DefaultMaxServerConns, pool.Config().MaxConns, "a pool is as large as its server allows")
}

func TestAppliedMigrationsRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	tg, pool := newTarget(t)
	ctx = WithTarget(ctx, tg)

	applied, err := tg.AppliedMigrations(ctx, pool)
	require.NoError(t, err)
	require.Empty(t, applied)

	before := time.Now().Add(-time.Minute)
	require.NoError(t, tg.RecordApplied(ctx, pool, Applied{
		Version: "002", Name: "add_email", Checksum: "bbb", ExecutionTimeMS: 20, AppliedBy: "alice", RunID: run2,
	}))
	require.NoError(t, tg.RecordApplied(ctx, pool, Applied{
		Version: "001", Name: "users", Checksum: "aaa", ExecutionTimeMS: 10, AppliedBy: "alice", RunID: run1,
	}))
	applied, err = tg.AppliedMigrations(ctx, pool)
	require.NoError(t, err)
	require.Len(t, applied, 2)
	require.Equal(t, "001", applied[0].Version, "in version order")
	require.Equal(t, "002", applied[1].Version)
	a := applied[0]
	require.Equal(t, "users", a.Name)
	require.Equal(t, "aaa", a.Checksum)
	require.EqualValues(t, 10, a.ExecutionTimeMS)
	require.Equal(t, "alice", a.AppliedBy)
	require.Equal(t, run1, a.RunID)
	require.True(t, a.AppliedAt.After(before))

	ok, run, err := isApplied(t, tg, pool, "002")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, run2, run)
	ok, run, err = isApplied(t, tg, pool, "003")
	require.NoError(t, err)
	require.False(t, ok)
	require.Empty(t, run)

	// Recording again (force) replaces the row.
	require.NoError(t, tg.RecordApplied(ctx, pool, Applied{
		Version: "001", Name: "users_v2", Checksum: "ccc", ExecutionTimeMS: 30, AppliedBy: "bob", RunID: run2,
	}))
	applied, err = tg.AppliedMigrations(ctx, pool)
	require.NoError(t, err)
	require.Len(t, applied, 2)
	require.Equal(t, Applied{Version: "001", Name: "users_v2", Checksum: "ccc", ExecutionTimeMS: 30, AppliedBy: "bob", RunID: run2, AppliedAt: applied[0].AppliedAt}, applied[0])

	// Deleting in a transaction that rolls back changes nothing; committed, it does.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tg.DeleteApplied(ctx, tx, "002"))
	ok, _, err = isApplied(t, tg, tx, "002")
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, tx.Rollback(ctx))
	ok, _, err = isApplied(t, tg, pool, "002")
	require.NoError(t, err)
	require.True(t, ok)

	require.NoError(t, tg.DeleteApplied(ctx, pool, "002"))
	require.NoError(t, tg.DeleteApplied(ctx, pool, "002"), "deleting a missing row is not an error")
	applied, err = tg.AppliedMigrations(ctx, pool)
	require.NoError(t, err)
	require.Len(t, applied, 1)
	require.Equal(t, "001", applied[0].Version)
}

func TestWriteLedgerUpsert(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	tg, pool := newTarget(t)
	ctx = WithTarget(ctx, tg)

	require.NoError(t, tg.WriteLedger(ctx, pool), "no rows is a no-op")
	require.NoError(t, tg.WriteLedger(ctx, pool,
		LedgerRow{Run: run1, Version: "001", Phase: "ddl", Hook: "ddl", Status: StatusRunning, Attempt: 1,
			RowsAffected: 5, DurationMS: 7, Checkpoint: json.RawMessage(`{"next_segment":1}`)},
		LedgerRow{Run: run1, Version: "001", Phase: "after_ddl", Hook: "backfill", Status: StatusFailed, Attempt: 1,
			Error: "boom"},
	))
	rows, err := tg.Ledger(ctx, pool, run1, "001", "ddl")
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.Equal(t, StatusRunning, rows[0].Status)
	require.JSONEq(t, `{"next_segment":1}`, string(rows[0].Checkpoint))
	require.Nil(t, rows[0].Stats)

	// The same key again updates the row in place.
	require.NoError(t, tg.WriteLedger(ctx, pool, LedgerRow{
		Run: run1, Version: "001", Phase: "ddl", Hook: "ddl", Status: StatusCompleted, Attempt: 2,
		RowsAffected: 9, DurationMS: 11, Checkpoint: json.RawMessage(`{"next_segment":2}`),
		Stats: map[string]any{"rows": 9, "table": "users"}, Message: "applied",
	}))
	rows, err = tg.Ledger(ctx, pool, run1, "001", "ddl")
	require.NoError(t, err)
	require.Len(t, rows, 1)
	r := rows[0]
	require.JSONEq(t, `{"next_segment":2}`, string(r.Checkpoint))
	r.Checkpoint = nil
	require.Equal(t, LedgerRow{
		Run: run1, Version: "001", Phase: "ddl", Hook: "ddl", Status: StatusCompleted, Attempt: 2,
		RowsAffected: 9, DurationMS: 11, Stats: map[string]any{"rows": float64(9), "table": "users"}, Message: "applied",
	}, r)

	rows, err = tg.Ledger(ctx, pool, run1, "001", "after_ddl")
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.Equal(t, StatusFailed, rows[0].Status)
	require.Equal(t, "boom", rows[0].Error)

	rows, err = tg.Ledger(ctx, pool, run2, "001", "ddl")
	require.NoError(t, err)
	require.Empty(t, rows, "other runs' rows are not returned")

	err = tg.WriteLedger(ctx, pool, LedgerRow{Run: run1, Version: "001", Phase: "x", Hook: "h", Status: StatusCompleted,
		Stats: map[string]any{"bad": make(chan int)}})
	require.ErrorContains(t, err, `hook "h" stats`)
}

func TestWriteLedgerIsTransactional(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	tg, pool := newTarget(t)
	ctx = WithTarget(ctx, tg)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tg.WriteLedger(ctx, tx, LedgerRow{Run: run1, Version: "001", Phase: "after_ddl", Hook: "h", Status: StatusCompleted}))
	require.NoError(t, tx.Rollback(ctx))
	rows, err := tg.Ledger(ctx, pool, run1, "001", "after_ddl")
	require.NoError(t, err)
	require.Empty(t, rows, "rows written in a rolled-back transaction are gone with it")
}

// writeInTx writes rows in a transaction of their own, as one phase does.
func writeInTx(t *testing.T, tg *Target, pool *pgxpool.Pool, rows ...LedgerRow) {
	t.Helper()
	ctx := WithTarget(testCtx(t), tg)
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return tg.WriteLedger(ctx, tx, rows...) }))
}

func statsRow(version, phase, hook, status string, stats map[string]any) LedgerRow {
	return LedgerRow{Run: run1, Version: version, Phase: phase, Hook: hook, Status: status, Attempt: 1, Stats: stats}
}

func TestRunStatsMergeOrder(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	tg, pool := newTarget(t)
	ctx = WithTarget(ctx, tg)

	stats, err := tg.RunStats(ctx, pool, run1)
	require.NoError(t, err)
	require.Empty(t, stats)

	// Phases commit one after the other; a later phase's value of a key wins, whatever the
	// hooks are called.
	writeInTx(t, tg, pool, statsRow("001", "before_ddl", "zz_count", StatusCompleted, map[string]any{"count": 1, "first": "yes"}))
	writeInTx(t, tg, pool, statsRow("001", "after_ddl", "aa_count", StatusCompleted, map[string]any{"count": 2}))
	writeInTx(t, tg, pool,
		statsRow("001", "after_validation", "failed", StatusFailed, map[string]any{"count": 99}),
		statsRow("001", "after_validation", "running", StatusRunning, map[string]any{"count": 98}),
		statsRow("001", "after_validation", "no_stats", StatusCompleted, nil),
	)
	other := statsRow("001", "cleanup", "other_run", StatusCompleted, map[string]any{"count": 97})
	other.Run = run2
	writeInTx(t, tg, pool, other)

	stats, err = tg.RunStats(ctx, pool, run1)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"count": float64(2), "first": "yes"}, stats,
		"completed rows of the run only, later phases winning")

	// A retry of an earlier hook updates its row: its new value is now the latest.
	writeInTx(t, tg, pool, statsRow("001", "before_ddl", "zz_count", StatusCompleted, map[string]any{"count": 3}))
	stats, err = tg.RunStats(ctx, pool, run1)
	require.NoError(t, err)
	require.Equal(t, float64(3), stats["count"])
}

// TestRunStatsSamePhaseFollowsRunOrder: the hooks of one phase write their ledger rows in one
// transaction, in the order they ran. The executor shares stats in that order (a later hook's
// value of a key replaces an earlier one's), so the stats a later phase reads back must agree.
func TestRunStatsSamePhaseFollowsRunOrder(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	tg, pool := newTarget(t)
	ctx = WithTarget(ctx, tg)
	// "z_count" ran first (lower priority), "a_recount" second.
	writeInTx(t, tg, pool,
		statsRow("001", "after_ddl", "z_count", StatusCompleted, map[string]any{"users": 10}),
		statsRow("001", "after_ddl", "a_recount", StatusCompleted, map[string]any{"users": 12}),
	)
	stats, err := tg.RunStats(ctx, pool, run1)
	require.NoError(t, err)
	require.Equal(t, float64(12), stats["users"], "the value of the hook that ran last")
}

func TestBeginPhaseReadsLedger(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	tg, pool := newTarget(t)
	ctx = WithTarget(ctx, tg)
	writeInTx(t, tg, pool, statsRow("001", "before_ddl", "guard", StatusCompleted, map[string]any{"guarded": true}))
	writeInTx(t, tg, pool,
		statsRow("001", "after_ddl", "backfill", StatusCompleted, map[string]any{"rows": 100}),
		statsRow("001", "after_ddl", "check", StatusFailed, map[string]any{"rows": -1}),
	)
	other := statsRow("001", "after_ddl", "other", StatusCompleted, map[string]any{"rows": -2})
	other.Run = run2
	writeInTx(t, tg, pool, other)

	ph, err := tg.BeginPhase(ctx, pool, run1, "001", "after_ddl")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ph.Tx.Rollback(context.Background()) })
	require.Len(t, ph.Done, 2)
	require.Equal(t, "backfill", ph.Done[0].Hook)
	require.Equal(t, StatusCompleted, ph.Done[0].Status)
	require.Equal(t, "check", ph.Done[1].Hook)
	require.Equal(t, StatusFailed, ph.Done[1].Status)
	stats, err := tg.RunStats(ctx, ph.Tx, run1)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"guarded": true, "rows": float64(100)}, stats)

	// The transaction is usable and sees the ledger.
	rows, err := tg.Ledger(ctx, ph.Tx, run1, "001", "before_ddl")
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.NoError(t, ph.Tx.Commit(ctx))

	// A phase that has not run yet.
	ph, err = tg.BeginPhase(ctx, pool, run1, "001", "cleanup")
	require.NoError(t, err)
	require.Empty(t, ph.Done)
	require.NoError(t, ph.Tx.Rollback(ctx))
}

// waitingForAdvisoryLock reports whether some session of the database is waiting for an
// advisory lock.
func waitingForAdvisoryLock(t *testing.T, tg *Target, pool *pgxpool.Pool) bool {
	t.Helper()
	var n int
	err := pool.QueryRow(WithTarget(testCtx(t), tg), `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n)
	if err != nil {
		t.Errorf("pg_locks: %v", err) // called from require.Eventually's goroutine: no FailNow
		return false
	}
	return n > 0
}

func TestBeginPhaseHoldsTargetLock(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dsn := testdb.New(t)
	// Two workers (two Sets, two pools) on the same target.
	tg1, pool1 := openTarget(t, Config{Name: "default", DSN: dsn})
	tg2, pool2 := openTarget(t, Config{Name: "default", DSN: dsn})
	// Another target in the same database has a lock of its own.
	_, err := pool1.Exec(WithTarget(ctx, tg1), `CREATE SCHEMA billing`)
	require.NoError(t, err)
	tgOther, poolOther := openTarget(t, Config{Name: "billing", DSN: dsn, Schema: "billing"})

	first, err := tg1.BeginPhase(ctx, pool1, run1, "001", "after_ddl")
	require.NoError(t, err)
	t.Cleanup(func() { _ = first.Tx.Rollback(context.Background()) })

	type result struct {
		ph  *Phase
		err error
	}
	second := make(chan result, 1)
	secondCtx, cancelSecond := context.WithCancel(ctx)
	secondDone := make(chan struct{})
	go func() {
		defer close(secondDone)
		ph, err := tg2.BeginPhase(secondCtx, pool2, run2, "001", "before_ddl")
		second <- result{ph, err}
	}()
	// Should the test fail early, stop the waiting BeginPhase and release its connection so
	// that the pools can close.
	t.Cleanup(func() {
		cancelSecond()
		<-secondDone
		select {
		case r := <-second:
			if r.ph != nil {
				_ = r.ph.Tx.Rollback(context.Background())
			}
		default:
		}
	})
	require.Eventually(t, func() bool { return waitingForAdvisoryLock(t, tg1, pool1) }, 10*time.Second, 10*time.Millisecond,
		"the second BeginPhase waits for the target's lock")
	select {
	case r := <-second:
		t.Fatalf("the second BeginPhase returned while the first phase holds the lock: %v", r.err)
	default:
	}

	// The other target is not blocked.
	ph, err := tgOther.BeginPhase(ctx, poolOther, run1, "001", "after_ddl")
	require.NoError(t, err)
	require.NoError(t, ph.Tx.Rollback(ctx))

	// A write made under the lock is visible to the phase that waited for it.
	require.NoError(t, tg1.WriteLedger(ctx, first.Tx, statsRow("001", "after_ddl", "h", StatusCompleted, map[string]any{"k": "v"})))
	require.NoError(t, first.Tx.Commit(ctx))
	var r result
	select {
	case r = <-second:
	case <-time.After(10 * time.Second):
		t.Fatal("the second BeginPhase did not get the lock after the first committed")
	}
	require.NoError(t, r.err)
	defer r.ph.Tx.Rollback(ctx) //nolint:errcheck
	rows, err := tg2.Ledger(ctx, r.ph.Tx, run1, "001", "after_ddl")
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.False(t, waitingForAdvisoryLock(t, tg1, pool1))
}

func TestBeginPhaseConnectionErrorIsRedacted(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	set, err := NewSet([]Config{{Name: "down", DSN: fakeDSN}})
	require.NoError(t, err)
	tg, err := set.Get("down")
	require.NoError(t, err)
	// pgxpool connects lazily: the pool opens, BeginPhase fails to connect.
	pool, err := pgxpool.New(ctx, fakeDSN)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	ph, err := tg.BeginPhase(ctx, pool, run1, "001", "after_ddl")
	require.Nil(t, ph)
	require.ErrorContains(t, err, `target "down"`)
	require.NotContains(t, err.Error(), "s3cr3t-pw")
}

func TestTargetSchemaSetsSearchPath(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dsn := testdb.New(t)
	admin, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	for _, schema := range []string{"billing", "Tenant-1"} {
		t.Run(schema, func(t *testing.T) {
			_, err := admin.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize())
			require.NoError(t, err)
			tg, pool := openTarget(t, Config{Name: "t", DSN: dsn, Schema: schema})
			ctx := WithTarget(ctx, tg)
			require.Equal(t, "confiture_"+schema, tg.TrackingSchema())

			var current string
			require.NoError(t, pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&current))
			require.Equal(t, schema, current)

			// Unqualified names in a migration land in the target's schema.
			_, err = pool.Exec(ctx, `CREATE TABLE accounts (id int)`)
			require.NoError(t, err)
			var where string
			require.NoError(t, admin.QueryRow(ctx, `SELECT table_schema FROM information_schema.tables WHERE table_name = 'accounts' AND table_schema = $1`, schema).Scan(&where))
			require.Equal(t, schema, where)

			// Its tracking tables live in a schema of their own.
			require.NoError(t, tg.RecordApplied(ctx, pool, Applied{Version: "001", Name: "n", Checksum: "c", AppliedBy: "b", RunID: run1}))
			var n int
			require.NoError(t, admin.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.schema_migrations`,
				pgx.Identifier{"confiture_" + schema}.Sanitize())).Scan(&n))
			require.Equal(t, 1, n)
		})
	}
	var n int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'confiture'`).Scan(&n))
	require.Zero(t, n, "targets with a schema do not use the default tracking schema")
}

// isApplied reports whether version is in the tracking table seen through q, and which run
// applied it.
func isApplied(t *testing.T, tg *Target, q Querier, version string) (bool, string, error) {
	t.Helper()
	applied, err := tg.AppliedMigrations(testCtx(t), q)
	for _, a := range applied {
		if a.Version == version {
			return true, a.RunID, err
		}
	}
	return false, "", err
}

const run3 = "33333333-3333-4333-8333-333333333333"

func ledgerRow(run, version, phase, hook, status string) LedgerRow {
	return LedgerRow{Run: run, Version: version, Phase: phase, Hook: hook, Status: status, Attempt: 1}
}

func hooksOf(t *testing.T, tg *Target, pool *pgxpool.Pool, run, version string) []string {
	t.Helper()
	rows, err := tg.ledger(testCtx(t), pool, `WHERE run_id = $1 AND version = $2`, run, version)
	require.NoError(t, err)
	var out []string
	for _, r := range rows {
		out = append(out, r.Phase+"/"+r.Hook+" "+r.Status)
	}
	return out
}

// A run that resumes a migration takes over what an earlier run committed (and a batched hook's
// checkpoint), keeps its idempotency origin, and never takes over the work of a run whose DDL
// completed (it applied or reverted the migration).
func TestPredecessorAdoptAndOrigin(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	tg, pool := newTarget(t)
	ctx = WithTarget(ctx, tg)
	// run1 failed before 001's DDL committed: its before_ddl hook committed, a backfill ran part way.
	writeInTx(t, tg, pool,
		ledgerRow(run1, "001", "before_validation", "check", StatusCompleted),
		ledgerRow(run1, "001", "before_ddl", "prep", StatusCompleted),
		ledgerRow(run1, "001", "before_ddl", "fill", StatusRunning),
		ledgerRow(run1, "001", "before_ddl", "broken", StatusFailed))
	from, err := tg.PredecessorOf(ctx, pool, "001", "", run2)
	require.NoError(t, err)
	require.Equal(t, run1, from)
	// run2 had written a failed row of its own for the hook run1 completed: it gives way.
	writeInTx(t, tg, pool, ledgerRow(run2, "001", "before_ddl", "prep", StatusFailed))
	n, err := tg.Adopt(ctx, pool, "001", run1, run2)
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
	require.Equal(t, []string{"before_validation/check completed", "before_ddl/prep completed", "before_ddl/fill running"},
		hooksOf(t, tg, pool, run2, "001"), "the failed row of run1 is not taken over")
	origin, err := tg.OriginOf(ctx, pool, "001", run2)
	require.NoError(t, err)
	require.Equal(t, run1, origin, "the taken-over work keeps run1's idempotency keys")
	origin, err = tg.OriginOf(ctx, pool, "002", run2)
	require.NoError(t, err)
	require.Equal(t, run2, origin, "a migration begun by run2 is its own")

	// run2 is now the latest to touch 001: a third run takes over from it, and only once.
	from, err = tg.PredecessorOf(ctx, pool, "001", "", run3)
	require.NoError(t, err)
	require.Equal(t, run2, from)
	from, err = tg.PredecessorOf(ctx, pool, "001", run3, run3)
	require.NoError(t, err)
	require.Empty(t, from, "a run does not take over from itself")

	// Once a run's DDL completed, its work belongs to the migration it applied (or reverted).
	writeInTx(t, tg, pool, ledgerRow(run3, "001", "ddl", "ddl", StatusCompleted))
	from, err = tg.PredecessorOf(ctx, pool, "001", "", run1)
	require.NoError(t, err)
	require.Empty(t, from)
}

// The tracking row of a migration is incomplete from its DDL until its last phase, and the run
// that resumes it claims it.
func TestMarkReachedAndClaim(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	tg, pool := newTarget(t)
	ctx = WithTarget(ctx, tg)
	require.NoError(t, tg.RecordApplied(ctx, pool, Applied{Version: "001", Name: "m", Checksum: "c", AppliedBy: "t", RunID: run1, Phase: "ddl"}))
	require.NoError(t, tg.MarkReached(ctx, pool, "001", "after_ddl", false))
	applied, err := tg.AppliedMigrations(ctx, pool)
	require.NoError(t, err)
	require.False(t, applied[0].Complete)
	require.Equal(t, "after_ddl", applied[0].Phase)
	require.NoError(t, tg.Claim(ctx, pool, "001", run2))
	require.NoError(t, tg.MarkReached(ctx, pool, "001", "cleanup", true))
	require.NoError(t, tg.MarkReached(ctx, pool, "001", "cleanup", false))
	applied, err = tg.AppliedMigrations(ctx, pool)
	require.NoError(t, err)
	require.True(t, applied[0].Complete, "complete stays complete")
	require.Equal(t, run2, applied[0].RunID)
	require.NoError(t, tg.UpdateChecksum(ctx, pool, "001", "m2", "c2"))
	applied, err = tg.AppliedMigrations(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, "c2", applied[0].Checksum)
	require.True(t, applied[0].Complete, "a forced checksum keeps the rest of the row")
}

// A worker whose role may use the tracking tables but does not own them (they were created by
// another role, as with per-replica or short-lived database roles) opens the target: no ALTER
// TABLE runs once the columns exist.
func TestTargetOpensForARoleThatDoesNotOwnTheTrackingTables(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dsn := testdb.New(t)
	ownerTarget, owner := openTarget(t, Config{Name: "default", DSN: dsn}) // creates the tables
	role := fmt.Sprintf("confiture_user_%d", time.Now().UnixNano())
	_, err := owner.Exec(WithTarget(ctx, ownerTarget), `CREATE ROLE `+role+` LOGIN;
		GRANT USAGE, CREATE ON SCHEMA confiture TO `+role+`;
		GRANT ALL ON ALL TABLES IN SCHEMA confiture TO `+role+`;
		GRANT ALL ON ALL SEQUENCES IN SCHEMA confiture TO `+role)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = owner.Exec(WithTarget(context.Background(), ownerTarget), `DROP OWNED BY `+role+`; DROP ROLE `+role)
	})
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	other := fmt.Sprintf("postgres://%s@%s:%d/%s", role, cfg.Host, cfg.Port, cfg.Database)
	tg, pool := openTarget(t, Config{Name: "default", DSN: other})
	applied, err := tg.AppliedMigrations(ctx, pool)
	require.NoError(t, err)
	require.Empty(t, applied)
}
