package worker

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/builtin"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/tcpproxy"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// The run lifecycle: every way a phase job can end leaves the run completed, failed or paused
// with an event, and a committed phase never runs again.

// startWorker starts a worker with cfg (and the test defaults of setup for what cfg leaves
// unset) and stops it when the test ends.
func startWorker(t *testing.T, cfg Config) *Worker {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Registry == nil {
		reg := hooks.NewRegistry()
		require.NoError(t, builtin.Register(reg))
		registerTestHooks(t, reg, &bundle{attempts: map[string]*atomic.Int64{}})
		cfg.Registry = reg
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "off"
	}
	if cfg.FetchCooldown == 0 {
		cfg.FetchCooldown = time.Millisecond
	}
	w, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	})
	return w
}

// riverClient is an insert-only River client on the queue database, as River UI uses.
func riverClient(t *testing.T, db *pgxpool.Pool) *river.Client[pgx.Tx] {
	t.Helper()
	rc, err := river.NewClient(riverpgxv5.New(db), &river.Config{Schema: runstore.DefaultRiverSchema})
	require.NoError(t, err)
	return rc
}

// phaseJob waits for the job of phase of version of run to be in one of states and returns
// its id.
func phaseJob(t *testing.T, db *pgxpool.Pool, run, version, phase string, states ...string) int64 {
	t.Helper()
	var id int64
	require.Eventually(t, func() bool {
		err := db.QueryRow(context.Background(), `SELECT id FROM `+runstore.DefaultRiverSchema+`.river_job
			WHERE kind = 'confiture_phase' AND args->>'run_id' = $1 AND args->>'version' = $2
			AND args->>'phase' = $3 AND state = ANY($4) ORDER BY id DESC LIMIT 1`,
			run, version, phase, states).Scan(&id)
		return err == nil
	}, 60*time.Second, 10*time.Millisecond, "no %s job of %s/%s in %v", phase, version, phase, states)
	return id
}

// A phase that committed on the target, then saw its context cancelled by a hard stop before
// recording that in the queue, is put back by River with its attempt decremented: the next
// worker must read the ledger and not run the hooks again.
func TestInterruptedAttemptAfterCommitDoesNotRepeatTheHooks(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	ns := startRestartableNATS(t)
	reached := make(chan struct{})
	var once sync.Once
	block := func(ctx context.Context, point string, at fault.Where) error {
		if point != fault.PhaseAfterCommit || at.Phase != contract.PhaseAfterDDL {
			return nil
		}
		first := false
		once.Do(func() { first = true })
		if !first {
			return nil
		}
		close(reached)
		<-ctx.Done() // the worker's hard stop
		return ctx.Err()
	}
	w1 := startWorker(t, Config{DatabaseURL: dsn, NATSURL: ns.url(), ShutdownTimeout: 200 * time.Millisecond, Fault: block})
	c, err := client.Connect(ns.url())
	require.NoError(t, err)
	t.Cleanup(c.Close)
	req := request("up", mig("001", "counter", `CREATE TABLE counter (n int NOT NULL); INSERT INTO counter VALUES (0);`, "",
		sqlHook(contract.PhaseAfterDDL, "bump", `UPDATE counter SET n = n + 1`),
		sqlHook(contract.PhaseCleanup, "tidy", `SELECT 1`)))
	pub, err := c.Publish(context.Background(), req)
	require.NoError(t, err)
	select {
	case <-reached:
	case <-time.After(60 * time.Second):
		t.Fatal("the phase never committed")
	}
	require.NoError(t, w1.Stop(context.Background()))

	startWorker(t, Config{DatabaseURL: dsn, NATSURL: ns.url()})
	evs := waitRun(t, c, req.Target, pub.Run)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	db := testPool(t, dsn)
	require.Equal(t, []string{"1"}, queryStrings(t, db, `SELECT n::text FROM counter`), "the committed hook ran once")
}

// A phase job cancelled while it waits for its retry (River UI's cancel on a scheduled job)
// fails the run, and the target takes the next run.
func TestCancelledRetryingPhaseJobFailsTheRunAndFreesTheTarget(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) {
		c.MaxAttempts = 5
		c.RetryBackoff, c.RetryBackoffMax = time.Hour, time.Hour
	})
	_, err := b.db.Exec(context.Background(), auditTable)
	require.NoError(t, err)
	req := request("up", mig("001", "stuck", "CREATE TABLE stuck (id int);", "",
		hook(contract.PhaseAfterDDL, "always", "failing", nil),
		audit(contract.PhaseOnError, "cleaned_up")))
	pub, err := b.client.Publish(context.Background(), req)
	require.NoError(t, err)
	waitForKind(t, b, req.Target, pub.Run, contract.KindPhaseRetrying)
	job := phaseJob(t, b.db, pub.Run, "001", contract.PhaseAfterDDL, "retryable", "scheduled")
	_, err = riverClient(t, b.db).JobCancel(context.Background(), job)
	require.NoError(t, err)

	evs := b.wait(t, req.Target, pub.Run)
	final := last(evs)
	require.Equal(t, contract.KindRunFailed, final.Kind, "%v", kinds(evs))
	require.Equal(t, contract.CodeCancelled, final.Error.Code, final.Message)
	require.Equal(t, []string{"cleaned_up"}, b.queryStrings(t, `SELECT what FROM audit`), "on_error ran")

	evs = b.run(t, request("up", mig("002", "next", "SELECT 2;", "")))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "the target is free: %v", kinds(evs))
}

// Cancelling a running phase job (River UI) fails the run at once: no retry is announced.
func TestCancellingARunningPhaseJobFailsTheRunWithoutARetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req := request("up", mig("001", "slow", "CREATE TABLE slow (id int);", "",
		sqlHook(contract.PhaseAfterDDL, "sleepy", `SELECT pg_sleep(60)`)))
	pub, err := b.client.Publish(context.Background(), req)
	require.NoError(t, err)
	waitForKind(t, b, req.Target, pub.Run, contract.KindHookStarted)
	job := phaseJob(t, b.db, pub.Run, "001", contract.PhaseAfterDDL, "running")
	_, err = riverClient(t, b.db).JobCancel(context.Background(), job)
	require.NoError(t, err)

	evs := b.wait(t, req.Target, pub.Run)
	final := last(evs)
	require.Equal(t, contract.KindRunFailed, final.Kind, "%v", kinds(evs))
	require.Equal(t, contract.CodeCancelled, final.Error.Code, final.Message)
	require.Empty(t, ofKind(evs, contract.KindPhaseRetrying), "a cancelled job is not retried: %v", kinds(evs))
}

// A phase job that River discards (its attempts used up outside the pipeline's own count, as
// when it is rescued again and again) fails the run with an event that says so.
func TestDiscardedPhaseJobFailsTheRun(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) {
		c.MaxAttempts = 5
		c.RetryBackoff, c.RetryBackoffMax = time.Hour, time.Hour
	})
	req := request("up", mig("001", "stuck", "CREATE TABLE stuck (id int);", "",
		hook(contract.PhaseAfterDDL, "always", "failing", nil)))
	pub, err := b.client.Publish(context.Background(), req)
	require.NoError(t, err)
	waitForKind(t, b, req.Target, pub.Run, contract.KindPhaseRetrying)
	job := phaseJob(t, b.db, pub.Run, "001", contract.PhaseAfterDDL, "retryable", "scheduled")
	// What River's rescuer does to a job whose attempts ran out.
	_, err = b.db.Exec(context.Background(), `UPDATE `+runstore.DefaultRiverSchema+`.river_job
		SET state = 'discarded', finalized_at = now() WHERE id = $1`, job)
	require.NoError(t, err)

	evs := b.wait(t, req.Target, pub.Run)
	require.Equal(t, contract.KindRunFailed, last(evs).Kind, "%v", kinds(evs))
	require.Contains(t, last(evs).Message, "discarded")
}

// A run whose after_ddl hook fails leaves its migration incomplete; the next request resumes
// it from after_ddl (the DDL is not run again) and runs its later phases.
func TestFailedPhaseLeavesTheMigrationIncompleteAndTheNextRequestResumesIt(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxAttempts = 1 })
	_, err := b.db.Exec(context.Background(), auditTable+`; CREATE TABLE gate (open boolean NOT NULL); INSERT INTO gate VALUES (false)`)
	require.NoError(t, err)
	m := mig("001", "gated", `CREATE TABLE gated (id int); INSERT INTO audit (what) VALUES ('ddl');`, "",
		audit(contract.PhaseBeforeDDL, "before"),
		hook(contract.PhaseAfterDDL, "gate", "assert", map[string]any{"sql": `SELECT open FROM gate`, "message": "the gate is closed"}),
		audit(contract.PhaseAfterValidation, "validated"),
		audit(contract.PhaseCleanup, "cleaned"))
	evs := b.run(t, request("up", m))
	require.Equal(t, contract.KindRunFailed, last(evs).Kind, "%v", kinds(evs))

	_, err = b.db.Exec(context.Background(), `UPDATE gate SET open = true`)
	require.NoError(t, err)
	evs = b.run(t, request("up", m))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, []string{"before", "ddl", "validated", "cleaned"}, b.queryStrings(t, `SELECT what FROM audit ORDER BY id`),
		"the second run resumed at after_ddl: nothing before it ran again, everything after it ran")
}

// A target that refuses connections for a moment is retried, not rejected: the run completes
// once it is back.
func TestTargetRefusingConnectionsIsRetriedNotRejected(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	proxy, err := tcpproxy.New("127.0.0.1:5432")
	require.NoError(t, err)
	t.Cleanup(proxy.Close)
	proxy.Down() // refusing connections from the start
	u := proxyDSN(t, dsn, proxy.Addr())
	b := setup(t, func(c *Config) {
		c.DatabaseURL = dsn
		c.Targets = []target.Config{{Name: "default", DSN: u}}
	})
	req := request("up", mig("001", "later", "CREATE TABLE later (id int);", ""))
	pub, err := b.client.Publish(context.Background(), req)
	require.NoError(t, err)
	waitForKind(t, b, req.Target, pub.Run, contract.KindRunAccepted)
	time.Sleep(2 * time.Second) // the target stays unreachable for a while
	require.NoError(t, proxy.Up())

	evs := b.wait(t, req.Target, pub.Run)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
}

// force with nothing pending records the new checksum, so a plain request afterwards is not
// refused for drift.
func TestForceWithNothingPendingRecordsTheNewChecksum(t *testing.T) {
	t.Parallel()
	b := setup(t)
	evs := b.run(t, request("up", mig("001", "t", "CREATE TABLE t (id int);", "")))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	edited := mig("001", "t", "CREATE TABLE t (id int); -- reformatted", "")
	forced := request("up", edited)
	forced.Force = true
	evs = b.run(t, forced)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, []string{edited.Checksum}, b.queryStrings(t, `SELECT checksum FROM confiture.schema_migrations`))
	evs = b.run(t, request("up", edited))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "no drift after force: %v", kinds(evs))
}

// A CREATE INDEX CONCURRENTLY that succeeded, whose checkpoint was then lost, is not built
// again (it would fail: the index exists).
func TestConcurrentIndexBuiltButNotCheckpointedIsNotBuiltAgain(t *testing.T) {
	t.Parallel()
	var once sync.Once
	b := setup(t, func(c *Config) {
		c.Fault = func(_ context.Context, point string, _ fault.Where) error {
			var err error
			if point == fault.NonTxStatementDone {
				once.Do(func() { err = errFault })
			}
			return err
		}
	})
	evs := b.run(t, request("up", mig("001", "indexed", "CREATE TABLE indexed (x int);\nCREATE INDEX CONCURRENTLY indexed_x ON indexed (x);\n", "")))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, []string{"true"}, b.queryStrings(t, `SELECT indisvalid::text FROM pg_index WHERE indexrelid = 'indexed_x'::regclass`))
}

// A statement outside a transaction that the server refused is not taken for done when the run
// is retried: a concurrent build whose index name is taken by another index fails again,
// instead of the migration being recorded with an index it never built.
func TestRefusedConcurrentIndexIsNotTakenForDoneOnRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxAttempts = 1 })
	_, err := b.db.Exec(context.Background(), `CREATE TABLE people (email text, name text); CREATE INDEX people_email ON people (name)`)
	require.NoError(t, err)
	req := request("up", mig("001", "email", "CREATE INDEX CONCURRENTLY people_email ON people (email);\n", ""))
	evs := b.run(t, req)
	require.Equal(t, contract.KindRunFailed, last(evs).Kind, "%v", kinds(evs))
	require.Contains(t, last(evs).Message, "42P07")

	require.NoError(t, b.w.Operator().Retry(context.Background(), last(evs).Run, "try again"))
	evs = b.waitPast(t, req.Target, last(evs).Run, contract.KindRunRetried)
	final := last(evs)
	require.Equal(t, contract.KindRunFailed, final.Kind, "%v", kinds(evs))
	require.Contains(t, final.Message, "42P07", "the statement ran again and failed the same way")
	require.Empty(t, b.queryStrings(t, `SELECT version FROM confiture.schema_migrations`))
}

// A concurrent index build that failed leaves an INVALID index behind; the run that tries
// again builds it anew instead of accepting the invalid one (IF NOT EXISTS would).
func TestInvalidIndexOfAFailedConcurrentBuildIsRebuilt(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxAttempts = 1 })
	_, err := b.db.Exec(context.Background(), `CREATE TABLE dup (x int); INSERT INTO dup VALUES (1), (1)`)
	require.NoError(t, err)
	m := mig("001", "unique", "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS dup_x ON dup (x);\n", "")
	evs := b.run(t, request("up", m))
	require.Equal(t, contract.KindRunFailed, last(evs).Kind, "duplicates: %v", kinds(evs))
	require.Equal(t, []string{"false"}, b.queryStrings(t, `SELECT indisvalid::text FROM pg_index WHERE indexrelid = 'dup_x'::regclass`))

	_, err = b.db.Exec(context.Background(), `DELETE FROM dup WHERE ctid IN (SELECT ctid FROM dup LIMIT 1)`)
	require.NoError(t, err)
	evs = b.run(t, request("up", m))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, []string{"true"}, b.queryStrings(t, `SELECT indisvalid::text FROM pg_index WHERE indexrelid = 'dup_x'::regclass`))
}

// A backfill whose batches never finish within the phase's time makes no progress: each such
// slice uses an attempt, and the run fails when they are gone instead of snoozing forever.
func TestBackfillSliceWithoutProgressUsesAnAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) {
		// Slices of 1 s; a phase (and planning) has 20 s, plenty on a busy machine.
		c.BackfillSlice, c.PhaseTimeout, c.RescueAfter, c.MaxAttempts = time.Second, 20*time.Second, 20*time.Second, 2
	})
	// The table is filled here, not in the migration's DDL, which has nothing to wait for then.
	_, err := b.db.Exec(context.Background(), bigTable("001", 1000).UpSQL)
	require.NoError(t, err)
	evs := b.run(t, request("up", mig("001", "big", `COMMENT ON TABLE big IS 'backfilled by the worker'`, "", backfillHook("stalled", map[string]any{
		// Every batch runs into its statement timeout and is retried smaller after a pause,
		// until the slice's time is up: no batch ever commits.
		"set": "counter = counter + 1 + (SELECT 0 FROM pg_sleep(5))", "batch_timeout_ms": 200, "retry_pause_ms": 300,
	}))))
	final := last(evs)
	require.Equal(t, contract.KindRunFailed, final.Kind, "%v", kinds(evs))
	require.Equal(t, "stalled", final.Hook, final.Message)
	require.Zero(t, b.count(t, `SELECT count(*) FROM big WHERE counter <> 0`))
}

// A plugin does not run inside the phase's transaction: it never waits on the locks of the
// hooks before it, and a later hook's failure does not run it again.
func TestPluginIsNotRepeatedWhenALaterHookOfItsPhaseFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePlugin(t, dir, "tally", "name: tally\ncommand: ./tally.sh\ntimeout: 10s\n",
		"#!/bin/sh\ncat >/dev/null\npsql -q -X -v ON_ERROR_STOP=1 \"$CONFITURE_TARGET_DSN\" -c 'UPDATE tally SET n = n + 1' >&2 || exit 1\n"+
			"echo '{\"schema\":\"confiture.plugin-result/v1\",\"success\":true,\"rows_affected\":1}'\n")
	b := setup(t, func(c *Config) { c.PluginPaths = []string{dir}; c.MaxAttempts = 3 })
	_, err := b.db.Exec(context.Background(), auditTable+`; CREATE TABLE tally (n int NOT NULL); INSERT INTO tally VALUES (0)`)
	require.NoError(t, err)
	evs := b.run(t, request("up", mig("001", "tallied", "SELECT 1;", "",
		sqlHook(contract.PhaseAfterDDL, "touch", `UPDATE tally SET n = n`), // holds the row lock
		hook(contract.PhaseAfterDDL, "count", "tally", nil, "touch"),
		hook(contract.PhaseAfterDDL, "flaky", "flaky", map[string]any{"succeed_on": 2}, "count"))))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, []string{"1"}, b.queryStrings(t, `SELECT n::text FROM tally`), "the plugin ran once")
	// Its work committed in the attempt that failed, which says so (once: the next attempt's
	// report of it from the ledger has the same event id).
	counted, retried := -1, -1
	for i, ev := range evs {
		switch {
		case ev.Kind == contract.KindHookCompleted && ev.Hook == "count":
			require.Equal(t, -1, counted, "reported once: %v", kinds(evs))
			counted = i
		case ev.Kind == contract.KindPhaseRetrying && retried < 0:
			retried = i
		}
	}
	require.True(t, counted >= 0 && counted < retried, "the plugin's hook.completed comes with the failed attempt: %v", kinds(evs))
}

// A session lock whose unlock fails must not go back to the pool with the connection: the next
// phase to take that connection would hold the target's lock forever.
func TestFailedSessionUnlockDoesNotLeaveTheLockOnAPooledConnection(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	set, err := target.NewSet([]target.Config{{Name: "default", DSN: dsn, MaxConns: 1}})
	require.NoError(t, err)
	t.Cleanup(set.Close)
	tg, err := set.Get("default")
	require.NoError(t, err)
	ctx := target.WithTarget(context.Background(), tg)
	pool, err := tg.Pool(ctx)
	require.NoError(t, err)
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	require.NoError(t, tg.SessionLock(ctx, conn.Conn()))
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tg.SessionUnlock(cancelled, conn.Conn())
	conn.Release()

	other := testPool(t, dsn)
	var free bool
	require.NoError(t, other.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('confiture:' || $1))`, tg.TrackingSchema()).Scan(&free))
	require.True(t, free, "the target's lock is held by a pooled connection")
}

func testPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	db, err := pgxpool.New(context.Background(), dsn)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return db
}

// proxyDSN is dsn with its host and port replaced by addr.
func proxyDSN(t *testing.T, dsn, addr string) string {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return "postgres://" + cfg.ConnConfig.User + "@" + host + ":" + port + "/" + cfg.ConnConfig.Database + "?sslmode=disable"
}

// A run that failed at its DDL committed its before_ddl hooks; the request that tries again
// takes that work over: those hooks do not run twice.
func TestARunTakesOverTheWorkOfAFailedRunBeforeItsDDL(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxAttempts = 1 })
	_, err := b.db.Exec(context.Background(), auditTable)
	require.NoError(t, err)
	broken := mig("001", "t", "CREATE TABLE t (id int); INSERT INTO missing VALUES (1);", "",
		audit(contract.PhaseBeforeValidation, "checked"), audit(contract.PhaseBeforeDDL, "prepared"))
	evs := b.run(t, request("up", broken))
	require.Equal(t, contract.KindRunFailed, last(evs).Kind, "%v", kinds(evs))
	require.Empty(t, b.queryStrings(t, `SELECT version FROM confiture.schema_migrations`), "the DDL did not commit")

	fixed := broken
	fixed.UpSQL = "CREATE TABLE t (id int);"
	fixed.Checksum = contract.Checksum(fixed.UpSQL)
	evs = b.run(t, request("up", fixed))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, []string{"checked", "prepared"}, b.queryStrings(t, `SELECT what FROM audit ORDER BY id`),
		"the hooks the failed run committed ran once")
	require.Equal(t, []string{"001 true"}, b.queryStrings(t, `SELECT version || ' ' || complete FROM confiture.schema_migrations`))
}

// A migration resumed with a fixed hooks file that leaves nothing to run after the phase
// reached is complete once the run ends.
func TestAResumedMigrationWithNothingLeftToRunIsComplete(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxAttempts = 1 })
	m := leaveIncomplete(t, b, "")

	m.Hooks = nil // the failing hook is dropped from the hooks file
	evs := b.run(t, request("up", m))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, []string{"001 true cleanup"}, b.queryStrings(t, `SELECT version || ' ' || complete || ' ' || phase FROM confiture.schema_migrations`))
	require.Empty(t, summaryOf(t, last(evs)).Incomplete)
}

// leaveIncomplete runs a migration 001 (creating table t, reverted by down) whose after_ddl
// hook fails, and returns it: the run fails and leaves it incomplete after its DDL.
func leaveIncomplete(t *testing.T, b *bundle, down string) contract.Migration {
	t.Helper()
	m := mig("001", "t", "CREATE TABLE t (id int);", down, hook(contract.PhaseAfterDDL, "never", "failing", nil))
	evs := b.run(t, request("up", m))
	require.Equal(t, contract.KindRunFailed, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, []string{"001 false ddl"}, b.queryStrings(t, `SELECT version || ' ' || complete || ' ' || phase FROM confiture.schema_migrations`))
	require.Equal(t, []contract.IncompleteMigration{{Version: "001", Name: "t", Phase: "ddl"}}, summaryOf(t, last(evs)).Incomplete)
	return m
}

// summaryOf decodes the summary in a run's final event.
func summaryOf(t *testing.T, ev *contract.Event) contract.RunSummary {
	t.Helper()
	var summary contract.RunSummary
	require.NoError(t, json.Unmarshal(ev.Data, &summary))
	return summary
}

// An incomplete migration can be reverted: down runs its down SQL and forgets it, and the
// target has nothing incomplete left.
func TestDownRevertsAnIncompleteMigration(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxAttempts = 1 })
	m := leaveIncomplete(t, b, "DROP TABLE t;")

	evs := b.run(t, request("down", m))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Empty(t, b.queryStrings(t, `SELECT version FROM confiture.schema_migrations`))
	require.Empty(t, b.queryStrings(t, `SELECT relname::text FROM pg_class WHERE relname = 't' AND relkind = 'r'`), "the down SQL ran")
	require.Empty(t, summaryOf(t, last(evs)).Incomplete)
}

// A migration whose last work is a batched backfill is complete once the backfill is.
func TestAMigrationEndingInABackfillIsCompleteWithIt(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.BackfillSlice = 200 * time.Millisecond })
	evs := b.run(t, request("up", bigTable("001", 5000, backfillHook("fill", map[string]any{"batch_size": 500, "max_batch_size": 500}))))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, []string{"001 true after_ddl"}, b.queryStrings(t, `SELECT version || ' ' || complete || ' ' || phase FROM confiture.schema_migrations`))
}
