package worker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/jobs"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

const auditTable = `CREATE TABLE audit (id bigserial PRIMARY KEY, what text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`

func audit(phase, name string) contract.HookSpec {
	return sqlHook(phase, name, "INSERT INTO audit (what) VALUES ('"+name+"')")
}

// everyPhase returns a migration with one audit hook in every phase (on_error included).
func everyPhase(version, name, up, down string) contract.Migration {
	var hs []contract.HookSpec
	for _, p := range []string{"before_validation", "before_ddl", "after_ddl", "after_validation", "cleanup", "on_error"} {
		hs = append(hs, audit(p, version+"_"+p))
	}
	return mig(version, name, up, down, hs...)
}

func TestUpPathRunsEveryPhaseInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Exec(context.Background(), auditTable)
	require.NoError(t, err)

	m1 := everyPhase("001", "create_items", "CREATE TABLE items (id int PRIMARY KEY, name text);", "DROP TABLE items;")
	m1.Hooks = append(m1.Hooks,
		sqlHook("after_ddl", "seed", "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g"),
		hook("after_validation", "items_seeded", "assert", map[string]any{"sql": "SELECT count(*) = 50 FROM items", "message": "50 items"}),
	)
	m2 := everyPhase("002", "add_price", "ALTER TABLE items ADD COLUMN price numeric;", "ALTER TABLE items DROP COLUMN price;")
	m2.Hooks = append(m2.Hooks, sqlHook("after_ddl", "backfill_price", "UPDATE items SET price = id * 10 WHERE price IS NULL"))

	evs := b.run(t, request("up", m2, m1)) // out of order on purpose: versions decide
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))

	// Through the target's tables: hooks ran once each, in phase order, migration by migration.
	want := []string{}
	for _, v := range []string{"001", "002"} {
		for _, p := range []string{"before_validation", "before_ddl", "after_ddl", "after_validation", "cleanup"} {
			want = append(want, v+"_"+p)
		}
	}
	require.Equal(t, want, b.queryStrings(t, `SELECT what FROM audit ORDER BY id`))
	require.Equal(t, 50, b.count(t, `SELECT count(*) FROM items WHERE price = id * 10`))
	require.Equal(t, []string{"001", "002"}, b.queryStrings(t, `SELECT version FROM confiture.schema_migrations ORDER BY version`))
	require.Equal(t, []string{contract.Checksum(m1.UpSQL), contract.Checksum(m2.UpSQL)},
		b.queryStrings(t, `SELECT checksum FROM confiture.schema_migrations ORDER BY version`))
	require.Equal(t, 15, b.count(t, `SELECT count(*) FROM confiture.hook_ledger WHERE status = 'completed'`),
		"13 hooks + 2 ddl rows")

	// Through the events a subscriber received, in order.
	var phases []string
	for _, e := range ofKind(evs, contract.KindPhaseCompleted) {
		phases = append(phases, e.Version+"/"+e.Phase)
	}
	require.Equal(t, []string{
		"001/before_validation", "001/before_ddl", "001/ddl", "001/after_ddl", "001/after_validation", "001/cleanup",
		"002/before_validation", "002/before_ddl", "002/ddl", "002/after_ddl", "002/after_validation", "002/cleanup",
	}, phases)
	require.Equal(t, contract.KindRunAccepted, evs[0].Kind)
	require.Equal(t, contract.KindRunStarted, evs[1].Kind)
	require.Len(t, ofKind(evs, contract.KindHookCompleted), 13)
	require.Len(t, ofKind(evs, contract.KindMigrationCompleted), 2)
	require.Empty(t, ofKind(evs, contract.KindHookFailed))
	seen := map[string]bool{}
	for _, e := range evs {
		require.False(t, seen[e.ID], "event ids are unique")
		seen[e.ID] = true
		require.Equal(t, evs[0].Run, e.Run)
	}
	// hook.started comes before hook.completed for each hook, and the ddl phase reports rows.
	for _, e := range ofKind(evs, contract.KindPhaseCompleted) {
		if e.Phase == "after_ddl" && e.Version == "002" {
			require.EqualValues(t, 51, e.RowsAffected, "audit row + 50 prices")
		}
	}

	// A second identical request finds nothing to do.
	evs = b.run(t, request("up", m1, m2))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind)
	require.Contains(t, last(evs).Message, "all 2 migration(s) already applied")
}

func TestDownPathRevertsLatestThenTo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Exec(context.Background(), auditTable)
	require.NoError(t, err)
	m1 := everyPhase("001", "create_items", "CREATE TABLE items (id int PRIMARY KEY);", "DROP TABLE items;")
	m2 := everyPhase("002", "add_price", "ALTER TABLE items ADD COLUMN price numeric;", "ALTER TABLE items DROP COLUMN price;")
	m3 := mig("003", "add_index", "CREATE INDEX items_price ON items (price);", "DROP INDEX items_price;")
	require.Equal(t, contract.KindRunCompleted, last(b.run(t, request("up", m1, m2, m3))).Kind)
	_, err = b.db.Exec(context.Background(), `TRUNCATE audit`)
	require.NoError(t, err)

	// Without "to", down reverts the latest applied migration only.
	evs := b.run(t, request("down", m1, m2, m3))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
	require.Equal(t, []string{"001", "002"}, b.queryStrings(t, `SELECT version FROM confiture.schema_migrations ORDER BY version`))
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_indexes WHERE indexname = 'items_price'`))

	// With "to", everything after it, newest first, through before_ddl -> ddl -> cleanup.
	req := request("down", m1, m2, m3)
	req.To = "000"
	evs = b.run(t, req)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
	require.Empty(t, b.queryStrings(t, `SELECT version FROM confiture.schema_migrations`))
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_tables WHERE tablename = 'items'`))
	require.Equal(t, []string{"002_before_ddl", "002_cleanup", "001_before_ddl", "001_cleanup"},
		b.queryStrings(t, `SELECT what FROM audit ORDER BY id`))
	var phases []string
	for _, e := range ofKind(evs, contract.KindPhaseCompleted) {
		phases = append(phases, e.Version+"/"+e.Phase)
	}
	require.Equal(t, []string{"002/before_ddl", "002/ddl", "002/cleanup", "001/before_ddl", "001/ddl", "001/cleanup"}, phases)

	// A migration without down SQL cannot be reverted: the run fails at planning, nothing
	// changed. (Accepted requests end completed or failed: only intake rejects.)
	require.Equal(t, contract.KindRunCompleted, last(b.run(t, request("up", m1, mig("002", "x", "SELECT 1", "")))).Kind)
	evs = b.run(t, request("down", m1, mig("002", "x", "SELECT 1", "")))
	require.Equal(t, contract.KindRunFailed, last(evs).Kind)
	require.False(t, last(evs).Error.Retryable)
	require.Equal(t, contract.CodeNoDownMigration, last(evs).Error.Code)
	require.Equal(t, []string{"001", "002"}, b.queryStrings(t, `SELECT version FROM confiture.schema_migrations ORDER BY version`))
}

func TestFlakyHookIsRetriedWithoutRepeatingCommittedWork(t *testing.T) {
	t.Parallel()
	var faults int
	b := setup(t, func(c *Config) {
		c.MaxAttempts = 4
		// The cleanup phase commits on the target, then "crashes" before its queue
		// transaction, once: the retry must find the ledger and not run it again.
		c.Fault = func(_ context.Context, point string, at fault.Where) error {
			if point == fault.PhaseAfterCommit && at.Phase == "cleanup" && at.Attempt == 1 {
				faults++
				return errFault
			}
			return nil
		}
	})
	_, err := b.db.Exec(context.Background(), auditTable)
	require.NoError(t, err)
	m := mig("001", "t", "CREATE TABLE t (id int);", "",
		audit("after_ddl", "before_flaky"),
		hook("after_ddl", "flaky", "flaky", map[string]any{"succeed_on": 3}, "before_flaky"),
		audit("cleanup", "cleanup_once"),
	)
	evs := b.run(t, request("up", m))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
	require.EqualValues(t, 3, b.attempts["flaky"].Load())
	require.Equal(t, 1, faults)
	// Each effect exactly once although after_ddl ran three times and cleanup twice.
	require.Equal(t, []string{"before_flaky", "flaky", "cleanup_once"}, b.queryStrings(t, `SELECT what FROM audit ORDER BY id`))
	require.Equal(t, []string{"3"}, b.queryStrings(t, `SELECT attempt::text FROM confiture.hook_ledger WHERE hook = 'flaky'`))
	require.Equal(t, []string{"3 of 4"}, b.queryStrings(t, `SELECT attempt || ' of ' || max_attempts FROM confiture_river.river_job
		WHERE kind = 'confiture_phase' AND args->>'phase' = 'after_ddl'`), "River UI shows the attempts the run counted, of max_attempts")
	require.Equal(t, []string{"1"}, b.queryStrings(t, `SELECT attempt::text FROM confiture.hook_ledger WHERE hook = 'cleanup_once'`))

	retrying := ofKind(evs, contract.KindPhaseRetrying)
	require.Len(t, retrying, 3, "two after_ddl attempts and one cleanup attempt: %v", kinds(evs))
	require.Equal(t, "flaky", retrying[0].Hook)
	require.Equal(t, contract.CodeHookFailed, retrying[0].Error.Code)
	require.Len(t, ofKind(evs, contract.KindHookFailed), 2)
	require.Len(t, ofKind(evs, contract.KindHookCompleted), 3, "a hook completed is reported once: %v", kinds(evs))
}

func TestAlwaysFailingHookRunsOnErrorAndSkipsLaterPhases(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Exec(context.Background(), auditTable)
	require.NoError(t, err)
	m1 := mig("001", "ok", "CREATE TABLE ok (id int);", "", audit("on_error", "m1_on_error"))
	m2 := mig("002", "bad", "CREATE TABLE bad (id int);", "",
		audit("after_ddl", "before_failing"),
		hook("after_ddl", "always", "failing", nil, "before_failing"),
		audit("after_validation", "never"),
		audit("on_error", "notify"),
		hook("on_error", "on_error_boom", "failing", nil),
		audit("on_error", "after_boom"),
	)
	m3 := mig("003", "later", "CREATE TABLE later (id int);", "", audit("before_validation", "never_either"))
	evs := b.run(t, request("up", m1, m2, m3))
	final := last(evs)
	require.Equal(t, contract.KindRunFailed, final.Kind, "events: %v", kinds(evs))
	require.Equal(t, "002", final.Version)
	require.Equal(t, "after_ddl", final.Phase)
	require.Equal(t, "always", final.Hook)
	require.Equal(t, contract.CodeHookFailed, final.Error.Code, "the original error, not on_error's")
	require.Contains(t, final.Message, `hook "always" in after_ddl`)
	require.Contains(t, final.Message, "on_error also failed")
	require.EqualValues(t, 3, b.attempts["failing"].Load()-1, "3 attempts of the phase, then on_error's one call")

	// on_error ran (all of its hooks, despite one failing), later phases and migrations did not;
	// after_ddl's own effects were rolled back; 002's DDL stays (it committed before).
	require.Equal(t, []string{"notify", "after_boom"}, b.queryStrings(t, `SELECT what FROM audit ORDER BY id`))
	require.Equal(t, []string{"001", "002"}, b.queryStrings(t, `SELECT version FROM confiture.schema_migrations ORDER BY version`))
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_tables WHERE tablename = 'later'`))
	require.Len(t, ofKind(evs, contract.KindPhaseRetrying), 2)
	require.Len(t, ofKind(evs, contract.KindMigrationFailed), 1)
	for _, e := range evs {
		require.False(t, e.Version == "002" && e.Phase == "after_validation", "002's after_validation must not start: %v", kinds(evs))
		require.NotEqual(t, "003", e.Version, "migration 003 must not start")
	}
	onErr := ofKind(evs, contract.KindPhaseFailed)
	require.Equal(t, "on_error", onErr[len(onErr)-1].Phase)
}

func TestRunsOnOneTargetAreSerializedInRecordedOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Exec(context.Background(), auditTable)
	require.NoError(t, err)
	slow := func(v, tag string) contract.Migration {
		return mig(v, "slow_"+tag, "SELECT pg_sleep(0.2);", "",
			audit("before_ddl", tag+"_start"),
			sqlHook("after_ddl", tag+"_sleep", "SELECT pg_sleep(0.2)"),
			audit("cleanup", tag+"_end"))
	}
	reqA := request("up", slow("001", "a"))
	reqB := request("up", slow("001", "a"), slow("002", "b"))
	pubA, err := b.client.Publish(context.Background(), reqA)
	require.NoError(t, err)
	pubB, err := b.client.Publish(context.Background(), reqB)
	require.NoError(t, err)
	evA := b.wait(t, "default", pubA.Run)
	evB := b.wait(t, "default", pubB.Run)
	require.Equal(t, contract.KindRunCompleted, last(evA).Kind)
	require.Equal(t, contract.KindRunCompleted, last(evB).Kind)
	// B waited for A: it found 001 applied and did only 002.
	require.Equal(t, []string{"a_start", "a_end", "b_start", "b_end"}, b.queryStrings(t, `SELECT what FROM audit ORDER BY id`))
	require.False(t, ofKind(evB, contract.KindRunStarted)[0].Time.Before(last(evA).Time), "B started after A completed")
}

func TestSameRequestIDGivesOneRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Exec(context.Background(), auditTable)
	require.NoError(t, err)
	req := request("up", mig("001", "once", "INSERT INTO audit (what) VALUES ('ddl');", ""))
	ctx := context.Background()
	first, err := b.client.Publish(ctx, req)
	require.NoError(t, err)
	require.False(t, first.Duplicate)
	second, err := b.client.Publish(ctx, req)
	require.NoError(t, err)
	require.True(t, second.Duplicate, "JetStream de-duplicates by message id")
	require.Equal(t, first.Run, second.Run)
	evs := b.wait(t, "default", first.Run)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind)

	// Past the de-duplication window (simulated with another message id), the queue database's
	// unique key still makes it one run.
	data, err := jsonMarshal(req)
	require.NoError(t, err)
	_, err = b.client.PublishRaw(ctx, "default", req.ID+"-redelivered", data)
	require.NoError(t, err)
	dup := waitForKind(t, b, "default", first.Run, contract.KindRunDuplicate)
	require.Contains(t, dup.Message, "nothing more to do")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM audit`))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM confiture_queue.runs`))
}

func TestBadInputIsRejectedAndTheWorkerKeepsRunning(t *testing.T) {
	t.Parallel()
	b := setup(t)
	good := mig("001", "good", "CREATE TABLE good (id int);", "")
	cycle := mig("001", "cycle", "SELECT 1;", "",
		hook("after_ddl", "a", "sql", map[string]any{"sql": "SELECT 1"}, "b"),
		hook("after_ddl", "b", "sql", map[string]any{"sql": "SELECT 1"}, "a"))
	unknownTarget := request("up", good)
	unknownTarget.Target = "nope"
	cases := []struct {
		name   string
		target string
		data   func() []byte
		kind   string
		code   string
		reason string
	}{
		{"malformed JSON", "default", func() []byte { return []byte(`{"schema": "confiture.request/v1",`) }, contract.KindRunRejected, contract.CodeInvalidRequest, "malformed JSON"},
		{"missing schema", "default", func() []byte { return []byte(`{"id": "x", "target": "default"}`) }, contract.KindRunRejected, contract.CodeUnsupportedSchema, `"schema"`},
		{"wrong schema", "default", func() []byte {
			r := request("up", good)
			r.Schema = "confiture.request/v2"
			return mustJSON(t, r)
		}, contract.KindRunRejected, contract.CodeUnsupportedSchema, "confiture.request/v2"},
		{"unknown target", "nope", func() []byte { return mustJSON(t, unknownTarget) }, contract.KindRunRejected, contract.CodeUnknownTarget, `"nope"`},
		{"unknown hook", "default", func() []byte {
			return mustJSON(t, request("up", mig("001", "x", "SELECT 1;", "", hook("after_ddl", "h", "no_such_hook", nil))))
		}, contract.KindRunRejected, contract.CodeUnknownHook, "no_such_hook"},
		{"bad hook params", "default", func() []byte {
			return mustJSON(t, request("up", mig("001", "x", "SELECT 1;", "", hook("after_ddl", "h", "sql", map[string]any{"sqll": "x"}))))
		}, contract.KindRunRejected, "", "sqll"},
		{"hooks cycle", "default", func() []byte { return mustJSON(t, request("up", cycle)) }, contract.KindRunRejected, "", "cycle"},
		{"COMMIT in migration", "default", func() []byte {
			return mustJSON(t, request("up", mig("001", "x", "CREATE TABLE x (id int);\nCOMMIT;", "")))
		}, contract.KindRunRejected, contract.CodeInvalidSQL, "line 2"},
		{"NUL character", "default", func() []byte {
			return mustJSON(t, request("up", mig("001", "x", "SELECT 'a\x00b';", "")))
		}, contract.KindRunRejected, contract.CodeInvalidRequest, "NUL"},
		{"invalid UTF-8", "default", func() []byte {
			data := mustJSON(t, request("up", mig("001", "x", "SELECT 1;", "", sqlHook("after_ddl", "h", "SELECT 'Zz'"))))
			return bytes.Replace(data, []byte("Zz"), []byte{0xff, 0xfe}, 1)
		}, contract.KindRunRejected, contract.CodeInvalidRequest, "UTF-8"},
		{"SQL error in DDL", "default", func() []byte {
			return mustJSON(t, request("up", mig("001", "x", "CREATE TABLE ok_before (id int);\nCREATE TABLEE broken (id int);", "")))
		}, contract.KindRunFailed, contract.CodeSQLError, "line 2"},
		{"hook that panics", "default", func() []byte {
			return mustJSON(t, request("up", mig("002", "x", "CREATE TABLE px (id int);", "", hook("after_ddl", "kaboom", "boom", nil))))
		}, contract.KindRunFailed, contract.CodePanic, "boom hook exploded"},
	}
	for i, tc := range cases {
		msgID := "bad-" + string(rune('a'+i))
		data := tc.data()
		_, err := b.client.PublishRaw(context.Background(), tc.target, msgID, data)
		require.NoError(t, err, tc.name)
		run := contract.RunID(tc.target, msgID)
		// The worker names the run after the request id when the request decodes, and after the
		// message id otherwise (submit sets both the same).
		if req, err := contract.DecodeRequest(data); err == nil {
			run = contract.RunID(tc.target, req.ID)
		}
		evs := b.wait(t, tc.target, run)
		final := last(evs)
		require.Equal(t, tc.kind, final.Kind, "%s: %v", tc.name, kinds(evs))
		require.NotNil(t, final.Error, tc.name)
		if tc.code != "" {
			require.Equal(t, tc.code, final.Error.Code, "%s: %s", tc.name, final.Error.Message)
		}
		require.Contains(t, final.Error.Message+final.Message, tc.reason, tc.name)
	}
	// A failed DDL is not retried (a syntax error cannot heal) and leaves nothing behind.
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_tables WHERE tablename = 'ok_before'`))
	require.EqualValues(t, 3, b.attempts["boom"].Load(), "a panic is retried like an error")
	require.Equal(t, []string{"002"}, b.queryStrings(t, `SELECT version FROM confiture.schema_migrations`),
		"the panicking hook's migration keeps its committed DDL")

	// Still alive, and no message is redelivered forever: the request stream drains.
	evs := b.run(t, request("up", good))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind)
	require.Eventually(t, func() bool {
		info, err := b.client.JS.Stream(context.Background(), contract.RequestStream)
		return err == nil && info.CachedInfo().State.Msgs == 0
	}, 10*time.Second, 50*time.Millisecond)
}

func TestChecksumDriftFailsTheRunUnlessForced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := mig("001", "a", "CREATE TABLE a (id int);", "")
	require.Equal(t, contract.KindRunCompleted, last(b.run(t, request("up", m))).Kind)
	changed := mig("001", "a", "CREATE TABLE a (id bigint);", "")
	next := mig("002", "b", "CREATE TABLE b (id int);", "")
	evs := b.run(t, request("up", changed, next))
	require.Equal(t, contract.KindRunFailed, last(evs).Kind)
	require.Equal(t, contract.CodeDrift, last(evs).Error.Code)
	require.Empty(t, ofKind(evs, contract.KindRunRetrying), "drift is not retried")
	require.Contains(t, last(evs).Error.Message, "001_a")
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_tables WHERE tablename = 'b'`), "nothing changed")

	forced := request("up", changed, next)
	forced.Force = true
	evs = b.run(t, forced)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind)
	require.Equal(t, []string{contract.Checksum(changed.UpSQL)}, b.queryStrings(t, `SELECT checksum FROM confiture.schema_migrations WHERE version = '001'`))
}

func TestNonTransactionalStatementsRunOutsideTheTransactionInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	up := "CREATE TABLE big (id int, v int);\n" +
		"INSERT INTO big SELECT g, g FROM generate_series(1, 1000) g;\n" +
		"CREATE INDEX CONCURRENTLY big_v ON big (v);\n" +
		"ANALYZE big;"
	evs := b.run(t, request("up", mig("001", "concurrent", up, "")))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM pg_indexes WHERE indexname = 'big_v'`))
	require.Equal(t, []string{"001"}, b.queryStrings(t, `SELECT version FROM confiture.schema_migrations`))
	var cp string
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT checkpoint->>'next_segment' FROM confiture.hook_ledger WHERE phase = 'ddl'`).Scan(&cp))
	require.Equal(t, "3", cp)
}

// TestMachineNATSServer runs a request through the NATS server this machine runs (Debian's
// 2.9.10 here), when one listens: the embedded server is 2.15, and the worker must work with
// both. Set CONFITURE_TEST_NATS_URL to test another server.
func TestMachineNATSServer(t *testing.T) {
	t.Parallel()
	url := os.Getenv("CONFITURE_TEST_NATS_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := nats.Connect(url, nats.Timeout(time.Second))
	if err != nil {
		t.Skipf("no NATS server at %s: %v", url, err)
	}
	nc.Close()
	// A target name of its own keeps this run apart from anything else on that server.
	name := fmt.Sprintf("ci_%d", time.Now().UnixNano())
	b := setup(t, func(c *Config) {
		c.NATSURL = url
		c.Targets = []target.Config{{Name: name, DSN: c.DatabaseURL}}
	})
	req := request("up", mig("001", "on_machine_nats", "CREATE TABLE machine_nats (id int);", "",
		hook("after_validation", "exists", "assert", map[string]any{"sql": "SELECT to_regclass('machine_nats') IS NOT NULL"})))
	req.Target = name
	evs := b.run(t, req)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
	require.Len(t, ofKind(evs, contract.KindHookCompleted), 1)
}

// TestGracefulStopLetsTheRunningPhaseFinishAndAnotherWorkerResumes stops a worker while a phase
// runs: the phase finishes within the shutdown bound, and a new worker on the same queue and
// NATS store finishes the run.
func TestGracefulStopLetsTheRunningPhaseFinishAndAnotherWorkerResumes(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	dataDir := t.TempDir()
	port := freePort(t)
	newWorker := func() *Worker {
		w, err := New(Config{
			DatabaseURL: dsn, DataDir: dataDir, EmbeddedNATSPort: port, Concurrency: 2,
			FetchCooldown: time.Millisecond, ShutdownTimeout: 10 * time.Second, Logger: testLogger(t),
		})
		require.NoError(t, err)
		require.NoError(t, w.Start(context.Background()))
		return w
	}
	w1 := newWorker()
	cl, err := client.Connect(w1.NATSURL())
	require.NoError(t, err)
	defer cl.Close()
	m := mig("001", "slow", "CREATE TABLE slow (id int);", "",
		sqlHook("after_ddl", "sleepy", "INSERT INTO slow SELECT 1 FROM pg_sleep(1)"),
		sqlHook("cleanup", "after", "INSERT INTO slow VALUES (2)"))
	req := request("up", m)
	pub, err := cl.Publish(context.Background(), req)
	require.NoError(t, err)
	waitForKindOn(t, cl, "default", pub.Run, contract.KindHookStarted)

	start := time.Now()
	require.NoError(t, w1.Stop(context.Background()))
	require.Less(t, time.Since(start), 9*time.Second, "Stop returns within the shutdown bound")
	cl.Close()

	w2 := newWorker()
	defer func() { require.NoError(t, w2.Stop(context.Background())) }()
	cl2, err := client.Connect(w2.NATSURL())
	require.NoError(t, err)
	defer cl2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	final, err := cl2.Wait(ctx, "default", pub.Run, nil)
	require.NoError(t, err)
	require.Equal(t, contract.KindRunCompleted, final.Kind)

	db, err := pgxpool.New(context.Background(), dsn)
	require.NoError(t, err)
	defer db.Close()
	var rows []int
	r, err := db.Query(context.Background(), `SELECT id FROM slow ORDER BY id`)
	require.NoError(t, err)
	for r.Next() {
		var id int
		require.NoError(t, r.Scan(&id))
		rows = append(rows, id)
	}
	require.Equal(t, []int{1, 2}, rows, "the phase that was running ran once, and the run went on")
	var attempt int
	require.NoError(t, db.QueryRow(context.Background(), `SELECT attempt FROM confiture.hook_ledger WHERE hook = 'sleepy'`).Scan(&attempt))
	require.Equal(t, 1, attempt, "the running phase finished in the stopping worker")
}

func TestStatsFlowFromOnePhaseToLaterOnes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m1 := mig("001", "a", "SELECT 1;", "",
		hook("before_ddl", "count", "set_stat", map[string]any{"key": "counted"}),
		hook("cleanup", "use", "need_stat", map[string]any{"key": "counted"}))
	m2 := mig("002", "b", "SELECT 2;", "", hook("after_ddl", "use_later", "need_stat", map[string]any{"key": "counted"}))
	evs := b.run(t, request("up", m1, m2))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))

	// Another run does not see them.
	evs = b.run(t, request("up", m1, m2, mig("003", "c", "SELECT 3;", "", hook("after_ddl", "nope", "need_stat", map[string]any{"key": "counted"}))))
	require.Equal(t, contract.KindRunFailed, last(evs).Kind)
	require.Contains(t, last(evs).Message, "no stat counted")
}

func TestPhaseTimeoutFailsTheRunAndFreesTheTarget(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) {
		// Ten times what reaching the hook takes on a busy machine, so that the timeout
		// strikes in the hook, which sleeps far longer.
		c.PhaseTimeout = 3 * time.Second
		c.MaxAttempts = 1
	})
	evs := b.run(t, request("up", mig("001", "slow", "SELECT 1;", "", sqlHook("after_ddl", "sleepy", "SELECT pg_sleep(120)"))))
	final := last(evs)
	require.Equal(t, contract.KindRunFailed, final.Kind, "events: %v", kinds(evs))
	require.Equal(t, contract.CodeTimeout, final.Error.Code, final.Error.Message)
	require.Equal(t, "sleepy", final.Hook)

	// The target is free for the next run.
	evs = b.run(t, request("up", mig("002", "quick", "SELECT 2;", "")))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
}

// A migration body with a statement that cannot run in a transaction is checkpointed segment by
// segment: after a connection loss in its last segment, the retry resumes there and repeats
// nothing that committed.
func TestDDLResumesAfterItsLastCommittedSegment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	up := "CREATE TABLE resumed (id int);\nINSERT INTO resumed VALUES (1);\nCREATE SEQUENCE once;\n" +
		"CREATE INDEX CONCURRENTLY resumed_id ON resumed (id);\n" +
		// The first time only, the session is killed (a retryable error) in the last segment.
		"SELECT CASE WHEN nextval('once') = 1 THEN pg_terminate_backend(pg_backend_pid()) END;\n" +
		"INSERT INTO resumed VALUES (2);"
	evs := b.run(t, request("up", mig("001", "resume", up, "")))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
	require.Len(t, ofKind(evs, contract.KindPhaseRetrying), 1, "events: %v", kinds(evs))
	require.Equal(t, []string{"1", "2"}, b.queryStrings(t, `SELECT id::text FROM resumed ORDER BY id`))
	require.Equal(t, []string{"001"}, b.queryStrings(t, `SELECT version FROM confiture.schema_migrations`))
	require.Equal(t, []string{"3"}, b.queryStrings(t, `SELECT checkpoint->>'next_segment' FROM confiture.hook_ledger WHERE phase = 'ddl'`))
}

// TestMetricsHealthAndRiverUIAreServed runs one run and reads what an operator would.
func TestMetricsHealthAndRiverUIAreServed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	evs := b.run(t, request("up", mig("001", "observed", "SELECT 1;", "", sqlHook("after_ddl", "noop", "SELECT 1"))))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind)
	base := "http://" + b.w.HTTPAddr()

	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, body := get("/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `confiture_runs_total{status="completed"} 1`)
	require.Contains(t, body, `confiture_phase_duration_seconds_count{outcome="completed",phase="ddl"} 1`)
	require.Contains(t, body, `confiture_hook_duration_seconds_count{hook="sql",outcome="completed",phase="after_ddl"} 1`)
	require.Contains(t, body, "confiture_outbox_lag_seconds")
	require.Contains(t, body, "confiture_intake_lag_seconds_count 1")

	code, body = get("/readyz")
	require.Equal(t, http.StatusOK, code, body)
	for _, check := range []string{"postgres", "nats", "river", "migrations"} {
		require.Contains(t, body, `"`+check+`":"ok"`)
	}
	code, _ = get("/healthz")
	require.Equal(t, http.StatusOK, code)
	code, body = get("/riverui/api/jobs?state=completed&limit=20")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "confiture_phase")
}

// A worker given a credentials file puts its HTTP server behind it; a file it cannot use stops
// it from starting, naming the file and the line.
func TestHTTPCredentialsFile(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	file := filepath.Join(t.TempDir(), "http-credentials")
	require.NoError(t, os.WriteFile(file, []byte("viewer token prometheus-scrape-token\n"), 0o600))
	w := startWorker(t, Config{DatabaseURL: dsn, HTTPAddr: "127.0.0.1:0", HTTPCredentialsFile: file})
	get := func(path, token string) int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+w.HTTPAddr()+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, get("/readyz", ""))
	require.Equal(t, http.StatusUnauthorized, get("/metrics", ""))
	require.Equal(t, http.StatusOK, get("/metrics", "prometheus-scrape-token"))
	require.Equal(t, http.StatusForbidden, get("/riverui/", "prometheus-scrape-token"), "a viewer does not get River UI")

	require.NoError(t, os.WriteFile(file, []byte("# tokens\nviewer token too-short\n"), 0o600))
	_, err := New(Config{DatabaseURL: dsn, HTTPAddr: "127.0.0.1:0", HTTPCredentialsFile: file})
	require.ErrorContains(t, err, file+":2: the token is shorter than 16 characters")
	require.NotContains(t, err.Error(), "too-short")
}

// The pipeline's jobs go to their own River queue, which River UI does not confuse with the
// target "default"; the worker still works River's default queue, where workers before this
// one put their jobs.
func TestJobsGoToTheirOwnQueueAndTheDefaultQueueIsStillWorked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	evs := b.run(t, request("up", mig("001", "queued", "SELECT 1;", "", sqlHook("after_ddl", "noop", "SELECT 1"))))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind)
	require.Equal(t, []string{jobs.QueueName}, b.queryStrings(t,
		`SELECT DISTINCT queue FROM confiture_river.river_job WHERE kind IN ('confiture_run_start', 'confiture_phase')`))

	ctx := t.Context()
	res, err := b.w.river.Insert(ctx, jobs.ReconcileArgs{}, &river.InsertOpts{Queue: river.QueueDefault})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		j, err := b.w.river.JobGet(ctx, res.Job.ID)
		return err == nil && j.State == rivertype.JobStateCompleted
	}, 30*time.Second, 10*time.Millisecond, "a job in River's default queue runs")
}

// A phase that fails for good ends its job as River ends a job that failed for good
// (discarded, with the error and the job's output), not as completed; retrying that job (River
// UI) retries the run, which resumes from its failed phase.
func TestAFailedPhaseJobIsDiscardedAndRetryingItRetriesTheRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req := request("up", mig("001", "later", "CREATE TABLE later_t (id int REFERENCES missing_t (id));", ""))
	evs := b.run(t, req)
	final := last(evs)
	require.Equal(t, contract.KindRunFailed, final.Kind, "%v", kinds(evs))
	var job int64
	var state, outcome, errText string
	require.NoError(t, b.db.QueryRow(t.Context(), `SELECT id, state::text, metadata->'output'->>'outcome', errors[array_length(errors, 1)]->>'error'
		FROM confiture_river.river_job WHERE kind = 'confiture_phase'`).Scan(&job, &state, &outcome, &errText))
	require.Equal(t, "discarded", state)
	require.Equal(t, "failed", outcome)
	require.Contains(t, errText, `relation "missing_t" does not exist`)
	require.Contains(t, final.Message, fmt.Sprintf("retry job %d", job))

	_, err := b.db.Exec(t.Context(), `CREATE TABLE missing_t (id int PRIMARY KEY)`)
	require.NoError(t, err)
	_, err = b.w.river.JobRetry(t.Context(), job)
	require.NoError(t, err)
	waitForKind(t, b, req.Target, final.Run, contract.KindRunRetried)
	require.Eventually(t, func() bool {
		return b.queryStrings(t, `SELECT status FROM confiture_queue.runs`)[0] == "completed"
	}, 60*time.Second, 10*time.Millisecond)
	evs = b.wait(t, req.Target, final.Run)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Len(t, ofKind(evs, contract.KindRunRetried), 1, "%v", kinds(evs))
}
