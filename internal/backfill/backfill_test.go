package backfill_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/backfill"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// store keeps the checkpoint in a table of the test database, under an advisory lock, as the
// hook ledger does.
type store struct {
	failSave func(rows int64) error
	saves    atomic.Int64
}

func (s *store) Load(ctx context.Context, tx pgx.Tx) (json.RawMessage, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(42)`); err != nil {
		return nil, err
	}
	var data []byte
	err := tx.QueryRow(ctx, `SELECT data FROM ckpt WHERE id = 1`).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return data, err
}

func (s *store) Save(ctx context.Context, tx pgx.Tx, data json.RawMessage, rows int64) error {
	if s.failSave != nil {
		if err := s.failSave(rows); err != nil {
			return err
		}
	}
	s.saves.Add(1)
	_, err := tx.Exec(ctx, `INSERT INTO ckpt VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET data = $1, rows = $2`, data, rows)
	return err
}

type env struct {
	pool  *pgxpool.Pool
	store *store
}

func setup(t *testing.T, schema string) *env {
	t.Helper()
	dsn := testdb.New(t)
	pool, err := pgxpool.New(context.Background(), dsn)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(context.Background(), `CREATE TABLE ckpt (id int PRIMARY KEY, data jsonb, rows bigint);`+schema)
	require.NoError(t, err)
	return &env{pool: pool, store: &store{}}
}

func (e *env) bc(until time.Time, progress func(hooks.BatchProgress)) *hooks.BatchContext {
	return &hooks.BatchContext{
		Context:     hooks.Context{Hook: "fill", Logger: slog.New(slog.DiscardHandler)},
		DB:          e.pool,
		Checkpoints: e.store,
		Until:       until,
		Progress:    progress,
	}
}

func newHook(t *testing.T, params map[string]any) hooks.Batched {
	t.Helper()
	h, err := backfill.Definition().New(params)
	require.NoError(t, err)
	return h.(hooks.Batched)
}

// untilDone calls RunBatches in slices until the backfill is done.
func (e *env) untilDone(t *testing.T, h hooks.Batched, slice time.Duration) hooks.BatchOutcome {
	t.Helper()
	for i := 0; i < 100000; i++ {
		out, err := h.RunBatches(context.Background(), e.bc(time.Now().Add(slice), nil))
		require.NoError(t, err)
		if out.Done {
			return out
		}
	}
	t.Fatal("backfill never finished")
	return hooks.BatchOutcome{}
}

// exactlyOnce asserts that every row of table selected by where has counter 1 and the others 0.
func (e *env) exactlyOnce(t *testing.T, table, where string, wantDone int64) {
	t.Helper()
	var once, other, total int64
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT count(*) FILTER (WHERE counter = 1 AND (`+where+`)), count(*) FILTER (WHERE counter <> CASE WHEN `+where+` THEN 1 ELSE 0 END), count(*) FROM `+table).
		Scan(&once, &other, &total))
	require.Zero(t, other, "rows done more than once, skipped, or done outside the filter")
	require.Equal(t, wantDone, once)
}

const numbers = `CREATE TABLE items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0, payload text);
	INSERT INTO items (id, payload) SELECT g * 3, md5(g::text) FROM generate_series(1, 5000) g;
	ANALYZE items;`

func TestBackfillEveryRowOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, numbers)
	var progress []hooks.BatchProgress
	h := newHook(t, map[string]any{"table": "items", "set": "counter = counter + 1", "batch_size": 300, "min_batch_size": 50})
	out, err := h.RunBatches(context.Background(), e.bc(time.Time{}, func(p hooks.BatchProgress) { progress = append(progress, p) }))
	require.NoError(t, err)
	require.True(t, out.Done)
	require.Equal(t, int64(5000), out.Rows)
	require.Equal(t, int64(5000), out.Result.RowsAffected)
	require.Contains(t, out.Result.Message, "5000 row(s) of items")
	e.exactlyOnce(t, "items", "true", 5000)

	require.NotEmpty(t, progress)
	last := progress[len(progress)-1]
	require.Equal(t, int64(5000), last.Rows)
	require.Equal(t, int64(5000), last.EstimatedTotal)
	require.Positive(t, last.RowsPerSecond)
	require.Equal(t, 300, int(progress[0].Rows), "the first batch has the first size")
	require.Equal(t, int64(len(progress)), e.store.saves.Load(), "one checkpoint per batch")

	// Run again: the checkpoint says done, nothing is updated twice.
	out, err = h.RunBatches(context.Background(), e.bc(time.Time{}, nil))
	require.NoError(t, err)
	require.True(t, out.Done)
	e.exactlyOnce(t, "items", "true", 5000)
}

func TestBackfillResumesAcrossSlices(t *testing.T) {
	t.Parallel()
	e := setup(t, numbers)
	h := newHook(t, map[string]any{"table": "items", "set": "counter = counter + 1", "batch_size": 100, "min_batch_size": 100, "max_batch_size": 100})
	// A slice that has already ended runs exactly one batch.
	out, err := h.RunBatches(context.Background(), e.bc(time.Now(), nil))
	require.NoError(t, err)
	require.False(t, out.Done)
	require.Equal(t, int64(100), out.Rows)
	e.exactlyOnce(t, "items", "id <= 300", 100)

	out = e.untilDone(t, h, 0)
	require.Equal(t, int64(5000), out.Rows)
	e.exactlyOnce(t, "items", "true", 5000)
	require.Equal(t, int64(51), e.store.saves.Load(), "50 full batches and the empty last one")
}

func TestBackfillFailedCheckpointRollsBackItsBatch(t *testing.T) {
	t.Parallel()
	e := setup(t, numbers)
	boom := errors.New("queue gone")
	var failed atomic.Bool
	e.store.failSave = func(rows int64) error {
		if rows > 2000 && failed.CompareAndSwap(false, true) {
			return boom
		}
		return nil
	}
	h := newHook(t, map[string]any{"table": "items", "set": "counter = counter + 1", "batch_size": 700, "min_batch_size": 700, "max_batch_size": 700})
	_, err := h.RunBatches(context.Background(), e.bc(time.Time{}, nil))
	require.ErrorIs(t, err, boom)
	// Batches of 700 (pinned: on a busy machine the sizer would shrink slow batches): the third
	// (rows 1401-2100) failed to save its checkpoint and rolled back.
	e.exactlyOnce(t, "items", "id <= 3 * 1400", 1400)

	out, err := h.RunBatches(context.Background(), e.bc(time.Time{}, nil))
	require.NoError(t, err)
	require.True(t, out.Done)
	e.exactlyOnce(t, "items", "true", 5000)
}

func TestBackfillRetriesALockTimeoutSmaller(t *testing.T) {
	t.Parallel()
	e := setup(t, numbers)
	ctx := context.Background()
	// Another session holds a row of the first batch for a while.
	locker, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = locker.Exec(ctx, `SELECT * FROM items WHERE id = 30 FOR UPDATE`)
	require.NoError(t, err)
	var once sync.Once
	release := func() { once.Do(func() { _ = locker.Rollback(ctx) }) }
	t.Cleanup(release)
	time.AfterFunc(700*time.Millisecond, release)

	h := newHook(t, map[string]any{"table": "items", "set": "counter = counter + 1", "batch_size": 1000,
		"lock_timeout_ms": 100, "retry_pause_ms": 100})
	bf := h.(*backfill.Hook)
	out, st, err := backfill.RunWithStats(ctx, bf, e.bc(time.Time{}, nil))
	require.NoError(t, err)
	require.True(t, out.Done)
	require.Positive(t, st.Retries, "the first batch waited on the locked row and was retried")
	e.exactlyOnce(t, "items", "true", 5000)
}

func TestBackfillGivesUpAfterMaxRetries(t *testing.T) {
	t.Parallel()
	e := setup(t, numbers)
	ctx := context.Background()
	locker, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = locker.Rollback(ctx) })
	_, err = locker.Exec(ctx, `LOCK TABLE items IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)
	h := newHook(t, map[string]any{"table": "items", "set": "counter = counter + 1", "lock_timeout_ms": 20, "retry_pause_ms": 1, "max_retries": 2})
	_, err = h.RunBatches(ctx, e.bc(time.Time{}, nil))
	require.ErrorContains(t, err, "3 batches in a row timed out")
	require.True(t, hooks.Retryable(err), "the phase is retried later")
}

func TestBackfillCompositeAndTextKeys(t *testing.T) {
	t.Parallel()
	e := setup(t, `
		CREATE TABLE pairs (tenant int NOT NULL, seq int NOT NULL, counter int NOT NULL DEFAULT 0, PRIMARY KEY (tenant, seq));
		INSERT INTO pairs (tenant, seq) SELECT t, s FROM generate_series(1, 7) t, generate_series(1, 300) s WHERE (t * s) % 5 <> 0;
		CREATE TABLE words (word text COLLATE "C" PRIMARY KEY, counter int NOT NULL DEFAULT 0);
		INSERT INTO words SELECT 'w-' || md5(g::text) || CASE WHEN g % 3 = 0 THEN ' spaced, ''quoted''' ELSE '' END FROM generate_series(1, 2000) g;
		CREATE TABLE stamps (at timestamptz NOT NULL, id uuid NOT NULL, counter int NOT NULL DEFAULT 0, UNIQUE (at, id));
		INSERT INTO stamps SELECT '2026-01-01'::timestamptz + (g % 50) * interval '1 minute', gen_random_uuid() FROM generate_series(1, 1500) g;`)
	var n int64
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pairs`).Scan(&n))
	out := e.untilDone(t, newHook(t, map[string]any{"table": "pairs", "set": "counter = counter + 1", "batch_size": 97, "min_batch_size": 10}), time.Hour)
	require.Equal(t, n, out.Rows)
	e.exactlyOnce(t, "pairs", "true", n)

	e.store = &store{}
	_, err := e.pool.Exec(context.Background(), `TRUNCATE ckpt`)
	require.NoError(t, err)
	out = e.untilDone(t, newHook(t, map[string]any{"table": "words", "set": "counter = counter + 1", "batch_size": 150, "min_batch_size": 10}), 0)
	require.Equal(t, int64(2000), out.Rows)
	e.exactlyOnce(t, "words", "true", 2000)

	_, err = e.pool.Exec(context.Background(), `TRUNCATE ckpt`)
	require.NoError(t, err)
	out = e.untilDone(t, newHook(t, map[string]any{"table": "public.stamps", "key": []any{"at", "id"}, "set": "counter = counter + 1",
		"batch_size": 100, "min_batch_size": 10}), 0)
	require.Equal(t, int64(1500), out.Rows)
	e.exactlyOnce(t, "stamps", "true", 1500)
}

func TestBackfillEmptyTable(t *testing.T) {
	t.Parallel()
	e := setup(t, `CREATE TABLE items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);`)
	out, err := newHook(t, map[string]any{"table": "items", "set": "counter = counter + 1"}).RunBatches(context.Background(), e.bc(time.Time{}, nil))
	require.NoError(t, err)
	require.True(t, out.Done)
	require.Zero(t, out.Rows)
}

func TestBackfillWhereFilter(t *testing.T) {
	t.Parallel()
	e := setup(t, numbers+`ALTER TABLE items ADD COLUMN todo boolean NOT NULL DEFAULT false; UPDATE items SET todo = id % 2 = 0; ANALYZE items;`)
	var progress []hooks.BatchProgress
	h := newHook(t, map[string]any{"table": "items", "set": "counter = counter + 1, todo = false", "where": "todo", "batch_size": 400})
	out, err := h.RunBatches(context.Background(), e.bc(time.Time{}, func(p hooks.BatchProgress) { progress = append(progress, p) }))
	require.NoError(t, err)
	require.Equal(t, int64(2500), out.Rows)
	e.exactlyOnce(t, "items", "id % 2 = 0", 2500)
	require.InDelta(t, 2500, progress[0].EstimatedTotal, 1000, "the planner's estimate counts the filtered rows")
}

func TestBackfillUpdateTemplate(t *testing.T) {
	t.Parallel()
	e := setup(t, numbers+`CREATE TABLE bonus (item_id bigint PRIMARY KEY, amount int NOT NULL);
		INSERT INTO bonus SELECT id, 1 FROM items WHERE id % 4 = 0;`)
	h := newHook(t, map[string]any{"table": "items", "alias": "i",
		"update": "UPDATE items i SET counter = i.counter + b.amount FROM bonus b WHERE b.item_id = i.id AND {{range}}", "batch_size": 500})
	out := e.untilDone(t, h, time.Hour)
	require.Equal(t, int64(1250), out.Rows)
	e.exactlyOnce(t, "items", "id % 4 = 0", 1250)
}

func TestBackfillCancelStopsAfterTheBatchAndResumes(t *testing.T) {
	t.Parallel()
	e := setup(t, numbers)
	ctx, cancel := context.WithCancel(context.Background())
	// Batches pinned at 200: the assertions count three of them.
	h := newHook(t, map[string]any{"table": "items", "set": "counter = counter + 1", "batch_size": 200, "min_batch_size": 200, "max_batch_size": 200})
	batches := 0
	out, err := h.RunBatches(ctx, e.bc(time.Time{}, func(hooks.BatchProgress) {
		if batches++; batches == 3 {
			cancel()
		}
	}))
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, out.Done)
	require.Equal(t, int64(600), out.Rows, "the batch in progress committed with its checkpoint")
	e.exactlyOnce(t, "items", "id <= 3 * 600", 600)

	out = e.untilDone(t, h, time.Hour)
	require.Equal(t, int64(5000), out.Rows)
	e.exactlyOnce(t, "items", "true", 5000)
}

func TestBackfillRateCap(t *testing.T) {
	t.Parallel()
	e := setup(t, numbers)
	h := newHook(t, map[string]any{"table": "items", "set": "counter = counter + 1", "batch_size": 500, "max_batch_size": 500, "rows_per_second": 10000})
	start := time.Now()
	out := e.untilDone(t, h, time.Hour)
	require.Equal(t, int64(5000), out.Rows)
	// 5000 rows at 10000/s: the tenth batch cannot start before 0.45 s.
	require.GreaterOrEqual(t, time.Since(start), 450*time.Millisecond)
}

func TestBackfillRefusesATableWithoutAUsableKey(t *testing.T) {
	t.Parallel()
	e := setup(t, `CREATE TABLE heap (a int, b int NOT NULL, c int NOT NULL, counter int NOT NULL DEFAULT 0);
		CREATE UNIQUE INDEX heap_a ON heap (a); CREATE INDEX heap_b ON heap (b); CREATE UNIQUE INDEX heap_c ON heap (c) WHERE c > 0;`)
	for _, tc := range []struct {
		params map[string]any
		want   string
	}{
		{map[string]any{"table": "heap", "set": "counter = 1"}, "has no primary key"},
		{map[string]any{"table": "heap", "set": "counter = 1", "key": []any{"a"}}, `"a" of "heap" may be NULL`},
		{map[string]any{"table": "heap", "set": "counter = 1", "key": []any{"b"}}, "not the column list of a unique index"},
		{map[string]any{"table": "heap", "set": "counter = 1", "key": []any{"c"}}, "not the column list of a unique index"},
		{map[string]any{"table": "nope", "set": "counter = 1"}, `table "nope" does not exist`},
	} {
		_, err := newHook(t, tc.params).RunBatches(context.Background(), e.bc(time.Time{}, nil))
		require.ErrorContains(t, err, tc.want)
		require.False(t, hooks.Retryable(err), "a missing key is fixed by editing the hook, not by retrying")
	}
}

func TestBackfillParams(t *testing.T) {
	t.Parallel()
	reg := hooks.NewRegistry()
	require.NoError(t, backfill.Register(reg))
	for _, bad := range []map[string]any{
		{"set": "x = 1"},
		{"table": "t"},
		{"table": "t", "set": "x = 1", "update": "UPDATE t SET x = 1 WHERE {{range}}"},
		{"table": "t", "update": "UPDATE t SET x = 1"},
		{"table": "t", "update": "UPDATE t SET x = 1 WHERE {{range}}", "where": "x"},
		{"table": "t", "set": "x = 1", "batch_size": 0},
		{"table": "t", "set": "x = 1", "min_batch_size": 10, "max_batch_size": 5},
		{"table": "a.b.c", "set": "x = 1"},
		{"table": "t", "set": "x = 1", "key": []any{"a", "a"}},
		{"table": "t", "set": "x = 1", "bogus": 1},
	} {
		_, err := reg.Plan("after_ddl", []contract.HookSpec{{Phase: "after_ddl", Name: "f", Hook: "backfill", Params: bad}})
		require.Error(t, err, "%v", bad)
	}
	_, err := reg.Plan("on_error", []contract.HookSpec{{Phase: "on_error", Name: "f", Hook: "backfill", Params: map[string]any{"table": "t", "set": "x = 1"}}})
	require.ErrorContains(t, err, "may not run in on_error")
}

func TestSampleRunsInsideTheTransaction(t *testing.T) {
	t.Parallel()
	e := setup(t, numbers)
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	h := newHook(t, map[string]any{"table": "items", "set": "counter = counter + 1", "batch_size": 100, "max_batch_size": 100, "sample_ms": 50})
	res, err := h.Run(ctx, &hooks.Context{Tx: tx, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.Positive(t, res.RowsAffected)
	var done int64
	require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM items WHERE counter = 1`).Scan(&done))
	require.Equal(t, res.RowsAffected, done)
	if res.RowsAffected < 5000 {
		require.Contains(t, res.Message, "rows/s")
		require.Contains(t, res.Message, "about 5000 row(s) to do")
	}
	require.NoError(t, tx.Rollback(ctx))
	e.exactlyOnce(t, "items", "false", 0)
}

func TestPlannerSettingsComeBackAfterEachBatch(t *testing.T) {
	t.Parallel()
	e := setup(t, numbers)
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	// The dry-run's transaction goes on after the hook: it must plan as it did before, although
	// the hook plans its own statements with enable_sort and enable_seqscan off.
	h := newHook(t, map[string]any{"table": "items", "set": "counter = counter + 1", "batch_size": 1000, "max_batch_size": 1000})
	res, err := h.Run(ctx, &hooks.Context{Tx: tx, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.Positive(t, res.RowsAffected)
	var sort, seqscan string
	require.NoError(t, tx.QueryRow(ctx, `SELECT current_setting('enable_sort'), current_setting('enable_seqscan')`).Scan(&sort, &seqscan))
	require.Equal(t, "on", sort)
	require.Equal(t, "on", seqscan)
}
