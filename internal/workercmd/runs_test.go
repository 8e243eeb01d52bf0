package workercmd

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
	"github.com/confiture-io/confiture-worker/internal/worker"
)

// `worker runs retry` retries a failed run against a running worker's queue database, without
// being a worker itself; an action the run's state does not allow, and a malformed RUN, are
// refused.
func TestRunsCommandRetriesAFailedRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.New(t)
	w, err := worker.New(worker.Config{
		DatabaseURL: dsn, Targets: []target.Config{{Name: "default", DSN: dsn}}, DataDir: t.TempDir(),
		EmbeddedNATSPort: -1, HTTPAddr: "off", MaxAttempts: 1,
	})
	require.NoError(t, err)
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	require.NoError(t, w.Start(startCtx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	})
	db, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	_, err = db.Exec(ctx, `CREATE TABLE gate (open int)`)
	require.NoError(t, err)
	c, err := client.Connect(w.NATSURL())
	require.NoError(t, err)
	t.Cleanup(c.Close)

	up := "CREATE TABLE gated (id int);"
	req := &contract.Request{Schema: contract.RequestSchemaV1, ID: "deploy-7", Target: "default", Direction: contract.DirectionUp,
		Migrations: []contract.Migration{{Version: "001", Name: "gated", UpSQL: up, Checksum: contract.Checksum(up),
			Hooks: []contract.HookSpec{{Phase: contract.PhaseAfterDDL, Name: "gate", Hook: "sql",
				Params: map[string]any{"sql": "SELECT 1 / (SELECT count(*)::int FROM gate)"}}}}}}
	wait := func() *contract.Event {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		final, err := c.Wait(ctx, req.Target, contract.RunID(req.Target, req.ID), nil)
		require.NoError(t, err)
		return final
	}
	_, err = c.Publish(ctx, req)
	require.NoError(t, err)
	require.Equal(t, contract.KindRunFailed, wait().Kind)

	args := []string{"--database-url", dsn, "--target", "default=" + dsn, "--data-dir", t.TempDir()}
	code, _, stderr := runMain(t, append([]string{"runs", "pause", "default:deploy-7"}, args...)...)
	require.Equal(t, ExitFailed, code)
	require.Contains(t, stderr, "cannot pause run "+contract.RunID("default", "deploy-7")+": it is failed")

	code, _, stderr = runMain(t, append([]string{"runs", "retry", "not a run"}, args...)...)
	require.Equal(t, ExitUsage, code, stderr)

	_, err = db.Exec(ctx, `INSERT INTO gate VALUES (1)`)
	require.NoError(t, err)
	code, stdout, stderr := runMain(t, append([]string{"runs", "retry", "default:deploy-7", "--reason", "gate opened"}, args...)...)
	require.Equal(t, ExitOK, code, stderr)
	require.Contains(t, stdout, "queued again")
	// The retry's run.retried reaches the stream through the worker's outbox relay, a moment after
	// the command returns: until it is there, the run's last event is still the old run.failed.
	deadline, cancelWait := context.WithTimeout(ctx, time.Minute)
	defer cancelWait()
	var final *contract.Event
	for retried := false; !retried; {
		final, err = c.Wait(deadline, req.Target, contract.RunID(req.Target, req.ID), func(ev *contract.Event) {
			if ev.Kind == contract.KindRunRetried {
				retried = true
			}
		})
		require.NoError(t, err, "run.retried never reached the stream")
	}
	require.Equal(t, contract.KindRunCompleted, final.Kind, final.Message)
}
