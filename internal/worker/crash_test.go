package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
)

// TestBackfillSurvivesSIGKILL kills the worker process mid-backfill, at different points, and
// restarts it: River rescues the phase job, the backfill resumes after its last committed batch,
// and every row is updated exactly once.
func TestBackfillSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts worker processes")
	}
	t.Parallel()
	db, env, ns := procSetup(t)
	env["CONFITURE_BACKFILL_SLICE"] = "1s"
	natsURL := ns.url()
	ctx := context.Background()
	count := func(sql string) int {
		var n int
		require.NoError(t, db.QueryRow(ctx, sql).Scan(&n))
		return n
	}

	w := startChild(t, env)
	c, err := client.Connect(natsURL)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	const n = 150000
	// The table is filled here, not in the migration's DDL: the fault suite's 2 s phase timeout
	// is meant for the backfill's slices, and a 150,000-row insert on a busy machine can take
	// longer than that.
	table := bigTable("001", n)
	_, err = db.Exec(ctx, table.UpSQL)
	require.NoError(t, err)
	req := request("up", mig("001", "big", `COMMENT ON TABLE big IS 'backfilled by the worker'`, "",
		backfillHook("fill", map[string]any{
			"rows_per_second": 30000, "batch_size": 1000, "min_batch_size": 1000, "max_batch_size": 1000,
		})))
	pub, err := c.Publish(ctx, req)
	require.NoError(t, err)

	// Kill it at three points of the backfill, each a little further on.
	done := func() int {
		var v int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM big WHERE counter = 1`).Scan(&v); err != nil {
			return -1 // the table does not exist yet
		}
		return v
	}
	for i, after := range []int{7000, 23000, 61000} {
		require.Eventually(t, func() bool { return done() > after }, 90*time.Second, 10*time.Millisecond,
			"kill %d: the backfill did not pass %d rows", i+1, after)
		w.kill(t)
		// What is done is done once, and the checkpoint counts exactly that.
		require.Zero(t, count(`SELECT count(*) FROM big WHERE counter > 1`), "kill %d", i+1)
		require.Equal(t, []string{"running " + strconv.Itoa(done())}, queryStrings(t, db,
			`SELECT status || ' ' || rows_affected FROM confiture.hook_ledger WHERE hook = 'fill'`), "kill %d", i+1)
		w = startChild(t, env)
	}

	evs := waitRun(t, c, req.Target, pub.Run)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, n, count(`SELECT count(*) FROM big WHERE counter = 1`))
	require.Zero(t, count(`SELECT count(*) FROM big WHERE counter <> 1`))
	require.Equal(t, []string{"completed " + strconv.Itoa(n)}, queryStrings(t, db,
		`SELECT status || ' ' || rows_affected FROM confiture.hook_ledger WHERE hook = 'fill'`))
	require.Equal(t, 1, count(`SELECT count(*) FROM confiture.schema_migrations WHERE version = '001'`))
}

// A worker that dies holding a phase job does not hold the run until River's rescue (here ten
// minutes away): once the worker is missed for liveness_window, the reconciler hands its job
// back, and another worker finishes the run without repeating what the dead one committed.
func TestAJobOfAWorkerThatDiedIsHandedBackOnceTheWorkerIsMissed(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts worker processes")
	}
	t.Parallel()
	db, env, ns := procSetup(t)
	env = with(env, "CONFITURE_PHASE_TIMEOUT", "10m", "CONFITURE_RESCUE_AFTER", "10m", "CONFITURE_RECONCILE_INTERVAL", "1s")
	dying := startChild(t, with(env, "CONFITURE_FAULT", "phase.after_commit=kill@1"))
	c, err := client.Connect(ns.url())
	require.NoError(t, err)
	t.Cleanup(c.Close)
	req := effectsRequest()
	pub, err := c.Publish(context.Background(), req)
	require.NoError(t, err)
	select {
	case <-dying.done:
	case <-time.After(90 * time.Second):
		t.Fatal("the worker never reached its fault")
	}
	died := time.Now()
	startChild(t, env)
	checkExactlyOnce(t, db, ns.url(), pub.Run, waitRun(t, c, req.Target, pub.Run))
	t.Logf("the run completed %s after its worker died", time.Since(died).Round(100*time.Millisecond))
	var rescued string
	require.NoError(t, db.QueryRow(context.Background(), `SELECT errors[cardinality(errors)]->>'error' FROM confiture_river.river_job
		WHERE cardinality(errors) > 0 ORDER BY id LIMIT 1`).Scan(&rescued))
	require.Contains(t, rescued, "is gone: not seen for")
}

// TestRolloutSurvivesSIGKILL kills the worker process in the middle of a rollout's waves, twice,
// and restarts it: the rollout completes, every member's migration ran once, and the rollout's
// events count each member's end once.
func TestRolloutSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts worker processes")
	}
	t.Parallel()
	db, env, ns := procSetup(t)
	ctx := context.Background()
	const members = 12
	for i := 1; i <= members; i++ {
		_, err := db.Exec(ctx, fmt.Sprintf("CREATE SCHEMA tenant_%02d", i))
		require.NoError(t, err)
	}
	config := filepath.Join(t.TempDir(), "worker.yaml")
	require.NoError(t, os.WriteFile(config, []byte(`target_groups:
  - name: tenants
    schemas: {target: default, match: "tenant_*"}
    rollout: {canary: 1, wave_size: 4, max_concurrent: 3}
`), 0o600))
	env["CONFITURE_CONFIG"] = config

	w := startChild(t, env)
	c, err := client.Connect(ns.url())
	require.NoError(t, err)
	t.Cleanup(c.Close)
	req := groupRequest("tenants", nil, mig("001", "effects", `CREATE TABLE effects (at timestamptz DEFAULT now())`, "",
		sqlHook(contract.PhaseAfterDDL, "slow", `SELECT pg_sleep(0.3)`),
		sqlHook(contract.PhaseAfterValidation, "once", `INSERT INTO effects DEFAULT VALUES`)))
	pub, err := c.Publish(ctx, req)
	require.NoError(t, err)

	ended := func() int {
		var n int
		require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM confiture_queue.rollout_members WHERE rollout = $1 AND state = 'completed'`, pub.Run).Scan(&n))
		return n
	}
	for i, after := range []int{2, 6} {
		require.Eventually(t, func() bool { return ended() >= after }, 2*time.Minute, 10*time.Millisecond, "kill %d", i+1)
		w.kill(t)
		w = startChild(t, env)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var evs []*contract.Event
	final, err := c.WaitRollout(wctx, "tenants", pub.Run, func(ev *contract.Event) { evs = append(evs, ev) })
	require.NoError(t, err, kinds(evs))
	require.Equal(t, contract.KindRolloutCompleted, final.Kind, kinds(evs))
	var st contract.RolloutStatus
	require.NoError(t, jsonUnmarshal(final.Data, &st))
	require.Equal(t, members, st.Completed)
	require.Len(t, ofKind(evs, contract.KindRolloutProgress), members, "one progress event per member's end")
	require.Len(t, ofKind(evs, contract.KindWaveCompleted), 4, "the canary and three waves of four")
	for i := 1; i <= members; i++ {
		var n int
		require.NoError(t, db.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM tenant_%02d.effects`, i)).Scan(&n))
		require.Equal(t, 1, n, "tenant_%02d: its after_validation hook committed once", i)
	}
}
