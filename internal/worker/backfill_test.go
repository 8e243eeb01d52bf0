package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// bigTable is a migration that creates a table of n rows with a counter column.
func bigTable(version string, n int, hs ...contract.HookSpec) contract.Migration {
	up := `CREATE TABLE big (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0, payload text);
		INSERT INTO big (id, payload) SELECT g * 2, md5(g::text) FROM generate_series(1, ` + strconv.Itoa(n) + `) g;
		ANALYZE big;`
	return mig(version, "big", up, "DROP TABLE big", hs...)
}

func backfillHook(name string, params map[string]any) contract.HookSpec {
	p := map[string]any{"table": "big", "set": "counter = counter + 1"}
	for k, v := range params {
		p[k] = v
	}
	return hook(contract.PhaseAfterDDL, name, "backfill", p)
}

func TestBackfillRunsInSlicesBetweenTransactionalHooks(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.BackfillSlice = 200 * time.Millisecond })
	const n = 60000
	evs := b.run(t, request("up", bigTable("001", n,
		sqlHook(contract.PhaseAfterDDL, "before", `CREATE TABLE marks (what text); INSERT INTO marks VALUES ('before')`),
		backfillHook("fill", map[string]any{"rows_per_second": 40000, "batch_size": 500, "max_batch_size": 2000}),
		hook(contract.PhaseAfterDDL, "after", "sql", map[string]any{"sql": `INSERT INTO marks SELECT 'after:' || count(*) FILTER (WHERE counter = 1) FROM big`}, "fill"),
	)))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, n, b.count(t, `SELECT count(*) FROM big WHERE counter = 1`))
	require.Zero(t, b.count(t, `SELECT count(*) FROM big WHERE counter <> 1`))
	// The hook after the backfill saw all of it; the one before committed before it.
	require.Equal(t, []string{"before", "after:60000"}, b.queryStrings(t, `SELECT what FROM marks ORDER BY what DESC`))

	progress := ofKind(evs, contract.KindBackfillProgress)
	require.NotEmpty(t, progress, "a 1.5 s backfill reports its progress")
	var data contract.BackfillProgress
	require.NoError(t, json.Unmarshal(progress[0].Data, &data))
	require.Positive(t, data.Rows)
	require.InDelta(t, n, data.EstimatedTotal, n/10)
	require.Positive(t, data.BatchSize)
	require.Equal(t, "fill", progress[0].Hook)
	for i := 1; i < len(progress); i++ {
		require.GreaterOrEqual(t, progress[i].Time.Sub(progress[i-1].Time), 900*time.Millisecond, "at most one a second")
	}

	var done *contract.Event
	for _, ev := range ofKind(evs, contract.KindHookCompleted) {
		if ev.Hook == "fill" {
			done = ev
		}
	}
	require.NotNil(t, done)
	require.Equal(t, int64(n), done.RowsAffected)
	require.Equal(t, []string{"completed 60000"}, b.queryStrings(t,
		`SELECT status || ' ' || rows_affected FROM confiture.hook_ledger WHERE hook = 'fill'`))
	// The backfill ran as several slices of one job.
	require.Positive(t, b.count(t, `SELECT coalesce((metadata->>'snoozes')::int, 0) FROM `+runstore.DefaultRiverSchema+`.river_job
		WHERE kind = 'confiture_phase' AND args->>'phase' = 'after_ddl'`))
}

func TestBackfillPausedByCancellingItsJobResumesOnRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.BackfillSlice = time.Minute })
	const n = 40000
	req := request("up", bigTable("001", n, backfillHook("fill", map[string]any{"rows_per_second": 10000, "batch_size": 500, "max_batch_size": 500})))
	pub, err := b.client.Publish(context.Background(), req)
	require.NoError(t, err)

	rc, err := river.NewClient(riverpgxv5.New(b.db), &river.Config{Schema: runstore.DefaultRiverSchema})
	require.NoError(t, err)
	ctx := context.Background()
	var jobID int64
	require.Eventually(t, func() bool {
		err := b.db.QueryRow(ctx, `SELECT id FROM `+runstore.DefaultRiverSchema+`.river_job
			WHERE kind = 'confiture_phase' AND args->>'phase' = 'after_ddl' AND state = 'running'`).Scan(&jobID)
		return err == nil && b.count(t, `SELECT count(*) FROM big WHERE counter = 1`) > 2000
	}, 30*time.Second, 20*time.Millisecond)
	_, err = rc.JobCancel(ctx, jobID)
	require.NoError(t, err)
	pausedEv := waitForKind(t, b, req.Target, pub.Run, contract.KindRunPaused)
	require.Equal(t, "fill", pausedEv.Hook)
	require.Contains(t, pausedEv.Message, fmt.Sprintf("Retry job %d", jobID))
	// The job's part is over, with the pause: River shows it finished, its output says why.
	require.Equal(t, []string{"completed paused"}, b.queryStrings(t, `SELECT state || ' ' || (metadata->'output'->>'outcome')
		FROM `+runstore.DefaultRiverSchema+`.river_job WHERE id = $1`, jobID))
	require.Equal(t, []string{"paused"}, b.queryStrings(t, `SELECT status FROM confiture_queue.runs`))
	// Paused: some rows done, exactly once, the checkpoint matching them.
	paused := b.count(t, `SELECT count(*) FROM big WHERE counter = 1`)
	require.Less(t, paused, n)
	require.Zero(t, b.count(t, `SELECT count(*) FROM big WHERE counter > 1`))
	require.Equal(t, []string{"running " + strconv.Itoa(paused)}, b.queryStrings(t,
		`SELECT status || ' ' || rows_affected FROM confiture.hook_ledger WHERE hook = 'fill'`))
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, paused, b.count(t, `SELECT count(*) FROM big WHERE counter = 1`), "nothing runs while paused")

	_, err = rc.JobRetry(ctx, jobID)
	require.NoError(t, err)
	evs := b.wait(t, req.Target, pub.Run)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, n, b.count(t, `SELECT count(*) FROM big WHERE counter = 1`))
	require.Zero(t, b.count(t, `SELECT count(*) FROM big WHERE counter <> 1`))
	require.Len(t, ofKind(evs, contract.KindRunPaused), 1, "%v", kinds(evs))
	require.Len(t, ofKind(evs, contract.KindRunResumed), 1, "%v", kinds(evs))
	require.Empty(t, ofKind(evs, contract.KindHookFailed), "a paused hook did not fail: %v", kinds(evs))
}

func TestBackfillOfATableWithoutAKeyFailsAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	evs := b.run(t, request("up", mig("001", "heap", `CREATE TABLE heap (n int)`, "",
		hook(contract.PhaseAfterDDL, "fill", "backfill", map[string]any{"table": "heap", "set": "n = 1"}))))
	final := last(evs)
	require.Equal(t, contract.KindRunFailed, final.Kind, "%v", kinds(evs))
	require.Equal(t, "fill", final.Hook)
	require.Equal(t, contract.CodeHookFailed, final.Error.Code)
	require.Contains(t, final.Error.Message, `table "heap" has no primary key`)
	require.False(t, final.Error.Retryable)
	require.Empty(t, ofKind(evs, contract.KindPhaseRetrying), "retrying cannot give the table a key")
}

// An operator's pause of a phase that holds a backfill pauses the run, once, whatever the phase
// is doing when the pause comes: running the backfill (it stops after its batch) or a later hook
// of the phase (its transaction rolls back). A resume right after, while the cancelled job may
// still be winding down, goes on in a new job, and every effect happens once.
func TestOperatorPauseOfABackfillPhase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// slow is the SQL of the hook after the backfill; running waits until the pause may come.
		slow    string
		running func(t *testing.T, b *bundle, target, run string)
	}{
		{"while the backfill runs", "INSERT INTO audit (what) VALUES ('after')", func(t *testing.T, b *bundle, target, run string) {
			waitForKind(t, b, target, run, contract.KindBackfillProgress)
		}},
		{"while a later hook of its phase runs", "INSERT INTO audit (what) VALUES ('after'); SELECT pg_sleep(4)", func(t *testing.T, b *bundle, _, _ string) {
			require.Eventually(t, func() bool {
				return len(b.queryStrings(t, `SELECT pid::text FROM pg_stat_activity WHERE query LIKE '%pg_sleep(4)%' AND pid <> pg_backend_pid()`)) > 0
			}, 60*time.Second, 20*time.Millisecond, "the hook after the backfill never ran")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(c *Config) { c.BackfillSlice = 500 * time.Millisecond })
			_, err := b.db.Exec(context.Background(), auditTable)
			require.NoError(t, err)
			const n = 20000
			req := request("up", bigTable("001", n,
				backfillHook("fill", map[string]any{"batch_size": 500, "max_batch_size": 500, "rows_per_second": 10000}),
				hook(contract.PhaseAfterDDL, "after", "sql", map[string]any{"sql": tc.slow}, "fill")))
			pub, err := b.client.Publish(context.Background(), req)
			require.NoError(t, err)
			tc.running(t, b, req.Target, pub.Run)

			op := b.w.Operator()
			require.NoError(t, op.Pause(context.Background(), pub.Run, "maintenance"))
			waitForKind(t, b, req.Target, pub.Run, contract.KindRunPaused)
			require.NoError(t, op.Resume(context.Background(), pub.Run, ""))

			evs := b.wait(t, req.Target, pub.Run)
			require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
			require.Len(t, ofKind(evs, contract.KindRunPaused), 1, "%v", kinds(evs))
			require.Empty(t, ofKind(evs, contract.KindRunFailed), "%v", kinds(evs))
			require.Equal(t, []string{strconv.Itoa(n)}, b.queryStrings(t, `SELECT count(*)::text FROM big WHERE counter = 1`), "every row once")
			require.Equal(t, []string{"0"}, b.queryStrings(t, `SELECT count(*)::text FROM big WHERE counter <> 1`))
			require.Equal(t, []string{"after"}, b.queryStrings(t, `SELECT what FROM audit`), "the hook after the backfill committed once")
		})
	}
}
