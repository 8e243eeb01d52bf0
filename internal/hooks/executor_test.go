package hooks

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

var testInfo = PhaseInfo{
	Run: "run-1", RequestID: "req-1", Target: "default", Migration: "001_init", Version: "001",
	Phase: contract.PhaseAfterDDL, Attempt: 2,
}

func TestExecutorRunsHooksInOrder(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	pool := newPool(t)
	tx := beginTx(t, pool)
	var seen []*Context
	record := func(id int) HookFunc {
		return func(ctx context.Context, hc *Context) (Result, error) {
			cp := *hc
			seen = append(seen, &cp)
			return insertHook(id)(ctx, hc)
		}
	}
	outs, err := (&Executor{}).Run(ctx, testInfo, tx, NewStats(nil),
		[]Planned{planned("one", record(1)), planned("two", record(2)), planned("three", record(3))}, RunOptions{})
	require.NoError(t, err)
	require.Len(t, outs, 3)
	for i, name := range []string{"one", "two", "three"} {
		require.Equal(t, name, outs[i].Name)
		require.Equal(t, "test", outs[i].Hook)
		require.NoError(t, outs[i].Err)
		require.EqualValues(t, 1, outs[i].Result.RowsAffected)
		require.False(t, outs[i].Started.IsZero())
		require.GreaterOrEqual(t, outs[i].Duration, time.Duration(0))

		hc := seen[i]
		require.Equal(t, name, hc.Hook)
		require.Equal(t, testInfo.Run, hc.Run)
		require.Equal(t, testInfo.RequestID, hc.RequestID)
		require.Equal(t, testInfo.Target, hc.Target)
		require.Equal(t, testInfo.Migration, hc.Migration)
		require.Equal(t, testInfo.Version, hc.Version)
		require.Equal(t, testInfo.Phase, hc.Phase)
		require.Equal(t, testInfo.Attempt, hc.Attempt)
		require.Same(t, tx, hc.Tx, "without ContinueOnError hooks run in the phase's transaction itself")
		require.NotNil(t, hc.Logger)
		require.NotNil(t, hc.Stats)
	}
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, []int{1, 2, 3}, ids(t, pool))
}

func TestExecutorFailureStopsPhase(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	tests := []struct {
		name  string
		hook  HookFunc
		check func(t *testing.T, he *HookError)
	}{
		{
			name: "error",
			hook: func(context.Context, *Context) (Result, error) { return Result{}, errBoom },
			check: func(t *testing.T, he *HookError) {
				require.False(t, he.Panic)
				require.False(t, he.Failure)
				require.Empty(t, he.Stack)
				require.ErrorIs(t, he, errBoom)
				require.Equal(t, `hook "bad" in after_ddl: boom`, he.Error())
			},
		},
		{
			name: "sql error",
			hook: func(ctx context.Context, hc *Context) (Result, error) {
				_, err := hc.Tx.Exec(ctx, `INSERT INTO t (id) VALUES (1)`) // duplicate key
				return Result{}, err
			},
			check: func(t *testing.T, he *HookError) {
				var pgErr *pgconn.PgError
				require.ErrorAs(t, he, &pgErr)
				require.Equal(t, "23505", pgErr.Code)
				require.False(t, Retryable(he), "a constraint violation is not retryable through a HookError")
			},
		},
		{
			name: "panic",
			hook: func(context.Context, *Context) (Result, error) { panic("kaboom") },
			check: func(t *testing.T, he *HookError) {
				require.True(t, he.Panic)
				require.False(t, he.Failure)
				require.Contains(t, he.Stack, "goroutine")
				require.Contains(t, he.Stack, "TestExecutorFailureStopsPhase", "the stack shows where the hook panicked")
				require.Equal(t, `hook "bad" in after_ddl panicked: kaboom`, he.Error())
			},
		},
		{
			name: "panic with an error value",
			hook: func(context.Context, *Context) (Result, error) { panic(errBoom) },
			check: func(t *testing.T, he *HookError) {
				require.True(t, he.Panic)
				require.NotEmpty(t, he.Stack)
				require.Contains(t, he.Error(), "boom")
			},
		},
		{
			name: "failure result",
			hook: func(context.Context, *Context) (Result, error) {
				return Result{Failed: true, Message: "orders without customer: 3", RowsAffected: 3}, nil
			},
			check: func(t *testing.T, he *HookError) {
				require.True(t, he.Failure)
				require.False(t, he.Panic)
				require.Empty(t, he.Stack)
				require.Equal(t, `hook "bad" in after_ddl failed: orders without customer: 3`, he.Error())
			},
		},
		{
			name: "failure result without a message",
			hook: func(context.Context, *Context) (Result, error) { return Result{Failed: true}, nil },
			check: func(t *testing.T, he *HookError) {
				require.True(t, he.Failure)
				require.Contains(t, he.Error(), "failed")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			pool := newPool(t)
			tx := beginTx(t, pool)
			ranLater := false
			later := HookFunc(func(context.Context, *Context) (Result, error) { ranLater = true; return Result{}, nil })
			stats := NewStats(nil)
			outs, err := (&Executor{}).Run(ctx, testInfo, tx, stats,
				[]Planned{planned("first", insertHook(1)), planned("bad", tt.hook), planned("later", later)}, RunOptions{})
			require.Error(t, err)
			var he *HookError
			require.ErrorAs(t, err, &he)
			require.Equal(t, "bad", he.Hook)
			require.Equal(t, contract.PhaseAfterDDL, he.Phase)
			tt.check(t, he)

			require.False(t, ranLater, "a failure stops the phase")
			require.Len(t, outs, 2, "outcomes of the hooks that ran")
			require.NoError(t, outs[0].Err)
			require.Same(t, he, outs[1].Err.(*HookError))
			require.Equal(t, "bad", outs[1].Name)
		})
	}
}

func TestExecutorContinueOnError(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	pool := newPool(t)
	tx := beginTx(t, pool)
	// Each failing hook first changes the table, then fails; its change must be undone while
	// the others' stay, and the transaction must stay usable after an SQL error.
	then := func(id int, fail HookFunc) HookFunc {
		return func(ctx context.Context, hc *Context) (Result, error) {
			if _, err := insertHook(id)(ctx, hc); err != nil {
				return Result{}, err
			}
			return fail(ctx, hc)
		}
	}
	sqlError := then(2, func(ctx context.Context, hc *Context) (Result, error) {
		_, err := hc.Tx.Exec(ctx, `SELECT * FROM no_such_table`)
		return Result{}, err
	})
	panics := then(3, func(context.Context, *Context) (Result, error) { panic("on_error hook bug") })
	failed := then(4, func(context.Context, *Context) (Result, error) {
		return Result{Failed: true, Message: "still broken", Stats: map[string]any{"from_failed": true}}, nil
	})
	var ran []string
	track := func(name string, h HookFunc) Planned {
		return planned(name, func(ctx context.Context, hc *Context) (Result, error) {
			ran = append(ran, name)
			require.NotSame(t, tx, hc.Tx, "with ContinueOnError each hook runs in a savepoint")
			return h(ctx, hc)
		})
	}
	stats := NewStats(nil)
	outs, err := (&Executor{}).Run(ctx, testInfo, tx, stats, []Planned{
		track("notify", insertHook(1)),
		track("sql-error", sqlError),
		track("panics", panics),
		track("failed", failed),
		track("cleanup", insertHook(5)),
	}, RunOptions{ContinueOnError: true})

	require.Equal(t, []string{"notify", "sql-error", "panics", "failed", "cleanup"}, ran, "every hook runs")
	require.Len(t, outs, 5)
	var he *HookError
	require.ErrorAs(t, err, &he)
	require.Equal(t, "sql-error", he.Hook, "the first failure is returned")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "42P01", pgErr.Code)

	require.NoError(t, outs[0].Err)
	require.ErrorAs(t, outs[2].Err, &he)
	require.True(t, he.Panic)
	require.ErrorAs(t, outs[3].Err, &he)
	require.True(t, he.Failure)
	require.NoError(t, outs[4].Err)
	_, merged := stats.Get("from_failed")
	require.False(t, merged, "a failed hook's stats are not shared")

	require.Equal(t, []int{1, 5}, ids(t, tx), "the failed hooks' statements are undone, the others' stay")
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, []int{1, 5}, ids(t, pool))
}

func TestExecutorContinueOnErrorAllSucceed(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	pool := newPool(t)
	tx := beginTx(t, pool)
	outs, err := (&Executor{}).Run(ctx, testInfo, tx, NewStats(nil),
		[]Planned{planned("a", insertHook(1)), planned("b", insertHook(2))}, RunOptions{ContinueOnError: true})
	require.NoError(t, err)
	require.Len(t, outs, 2)
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, []int{1, 2}, ids(t, pool), "released savepoints keep their effects")
}

func TestExecutorSharesStats(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	pool := newPool(t)
	tx := beginTx(t, pool)
	stats := NewStats(map[string]any{"from_earlier_phase": "yes", "count": 1})
	var sawCount, sawEarlier any
	outs, err := (&Executor{}).Run(ctx, testInfo, tx, stats, []Planned{
		planned("producer", func(_ context.Context, hc *Context) (Result, error) {
			v, _ := hc.Stats.Get("count")
			require.Equal(t, 1, v)
			return Result{Stats: map[string]any{"count": 42, "backfilled": int64(1000)}}, nil
		}),
		planned("consumer", func(_ context.Context, hc *Context) (Result, error) {
			sawCount, _ = hc.Stats.Get("count")
			sawEarlier, _ = hc.Stats.Get("from_earlier_phase")
			return Result{}, nil
		}),
	}, RunOptions{})
	require.NoError(t, err)
	require.Len(t, outs, 2)
	require.Equal(t, 42, sawCount, "a later hook sees what an earlier one returned")
	require.Equal(t, "yes", sawEarlier)
	require.Equal(t, map[string]any{"from_earlier_phase": "yes", "count": 42, "backfilled": int64(1000)}, stats.Snapshot())
	require.Equal(t, map[string]any{"count": 42, "backfilled": int64(1000)}, outs[0].Result.Stats)
}

func TestExecutorEmptyPhase(t *testing.T) {
	t.Parallel()
	outs, err := (&Executor{}).Run(testCtx(t), testInfo, nil, NewStats(nil), nil, RunOptions{})
	require.NoError(t, err)
	require.Empty(t, outs)
}

func TestStats(t *testing.T) {
	t.Parallel()
	initial := map[string]any{"a": 1}
	s := NewStats(initial)
	initial["a"] = 2
	v, ok := s.Get("a")
	require.True(t, ok)
	require.Equal(t, 1, v, "NewStats copies its argument")
	s.Set("b", "x")
	s.Merge(map[string]any{"a": 3, "c": true})
	s.Merge(nil)
	snap := s.Snapshot()
	require.Equal(t, map[string]any{"a": 3, "b": "x", "c": true}, snap)
	snap["a"] = 99
	v, _ = s.Get("a")
	require.Equal(t, 3, v, "Snapshot returns a copy")
	_, ok = s.Get("missing")
	require.False(t, ok)
}
