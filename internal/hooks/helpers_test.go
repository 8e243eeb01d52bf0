package hooks

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// A closed pgx pool's health checker can still be winding down when the check runs.
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
	)
}

// testCtx is a context that ends with the test, bounded so that a hung query fails the test.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newPool opens a pool on a fresh database that holds an empty table t(id int primary key).
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := testCtx(t)
	pool, err := pgxpool.New(ctx, testdb.New(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)`)
	require.NoError(t, err)
	return pool
}

// beginTx begins a transaction on pool that is rolled back when the test ends (a no-op once
// committed).
func beginTx(t *testing.T, pool *pgxpool.Pool) pgx.Tx {
	t.Helper()
	tx, err := pool.Begin(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// ids returns the ids in table t, in order.
func ids(t *testing.T, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) []int {
	t.Helper()
	rows, err := q.Query(testCtx(t), `SELECT id FROM t ORDER BY id`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	return out
}

// planned wraps a hook as a Planned of the given name, bypassing the registry.
func planned(name string, h HookFunc) Planned {
	return Planned{
		Spec: contract.HookSpec{Phase: contract.PhaseAfterDDL, Name: name, Hook: "test"},
		Def:  &Definition{Name: "test", Source: "test", New: func(map[string]any) (Hook, error) { return h, nil }},
		Hook: h,
	}
}

// insertHook inserts id into t and returns it as one affected row.
func insertHook(id int) HookFunc {
	return func(ctx context.Context, hc *Context) (Result, error) {
		tag, err := hc.Tx.Exec(ctx, `INSERT INTO t (id) VALUES ($1)`, id)
		if err != nil {
			return Result{}, err
		}
		return Result{RowsAffected: tag.RowsAffected()}, nil
	}
}

// builtinRegistry returns a registry holding the built-in hooks.
func builtinRegistry(t *testing.T) *Registry {
	t.Helper()
	r := NewRegistry()
	require.NoError(t, RegisterBuiltins(r))
	return r
}
