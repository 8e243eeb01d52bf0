package dryrun_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/builtin"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/dryrun"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/syncbuf"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

type bundle struct {
	dsn      string
	conn     *pgx.Conn
	registry *hooks.Registry
}

func setup(t *testing.T, schema string) *bundle {
	t.Helper()
	ctx := context.Background()
	dsn := testdb.New(t)
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if schema != "" {
		_, err = conn.Exec(ctx, schema)
		require.NoError(t, err)
	}
	reg := hooks.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	return &bundle{dsn: dsn, conn: conn, registry: reg}
}

func mig(version, up string, hs ...contract.HookSpec) contract.Migration {
	return contract.Migration{Version: version, Name: "m" + version, UpSQL: up, Checksum: contract.Checksum(up), Hooks: hs}
}

func (b *bundle) run(t *testing.T, opts dryrun.Options, ms ...contract.Migration) *contract.DryRunReport {
	t.Helper()
	info := dryrun.RunInfo{Run: contract.RunID("default", "deploy-1"), RequestID: "deploy-1", Target: "default"}
	rep, err := dryrun.Run(context.Background(), b.conn, b.registry, info, ms, opts)
	require.NoError(t, err)
	// Every report the engine produces is valid data for a dryrun.report event.
	data, err := json.Marshal(rep)
	require.NoError(t, err)
	require.NoError(t, contract.ValidateDryRunReport(data), "%s", data)
	return rep
}

// fingerprint describes the user catalog and the row counts of tables.
func fingerprint(t *testing.T, conn *pgx.Conn, tables ...string) string {
	t.Helper()
	ctx := context.Background()
	const filter = `NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`
	queries := []string{
		`SELECT table_schema || '.' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
		 FROM information_schema.columns WHERE table_schema ` + filter + ` ORDER BY 1`,
		`SELECT n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' ' || c.relfilenode FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname ` + filter + ` ORDER BY 1`,
		`SELECT indexdef FROM pg_indexes WHERE schemaname ` + filter + ` ORDER BY 1`,
		`SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(c.oid) || ' ' || convalidated FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname ` + filter + ` ORDER BY 1`,
		`SELECT p.oid::regprocedure::text || md5(p.prosrc) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname ` + filter + ` ORDER BY 1`,
		`SELECT t.typname || ' ' || e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid ORDER BY 1`,
	}
	for _, tbl := range tables {
		queries = append(queries, `SELECT count(*)::text || ' ' || md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM `+tbl+` x`)
	}
	var sb strings.Builder
	for _, q := range queries {
		rows, err := conn.Query(ctx, q)
		require.NoError(t, err, q)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err, q)
		sb.WriteString(strings.Join(lines, "\n") + "\n--\n")
	}
	return sb.String()
}

func findStmt(t *testing.T, rep *contract.DryRunReport, prefix string) contract.DryRunStatementReport {
	t.Helper()
	for _, m := range rep.Migrations {
		for _, p := range m.Phases {
			for _, s := range p.Statements {
				if strings.HasPrefix(s.SQL, prefix) {
					return s
				}
			}
		}
	}
	t.Fatalf("no statement %q in report", prefix)
	return contract.DryRunStatementReport{}
}

func hasWarning(rep *contract.DryRunReport, code string) *contract.DryRunWarning {
	for i := range rep.Warnings {
		if rep.Warnings[i].Code == code {
			return &rep.Warnings[i]
		}
	}
	return nil
}

const baseSchema = `
CREATE SCHEMA confiture;
CREATE TABLE confiture.migrations (version text PRIMARY KEY, name text);
INSERT INTO confiture.migrations VALUES ('0000', 'init');
CREATE TABLE users (id int PRIMARY KEY, email text, n int);
INSERT INTO users SELECT g, 'u' || g || '@x', g FROM generate_series(1, 100) g;`

func TestNothingLeftBehind(t *testing.T) {
	t.Parallel()
	b := setup(t, baseSchema)
	before := fingerprint(t, b.conn, "users", "confiture.migrations")

	rep := b.run(t, dryrun.Options{},
		mig("0001", `CREATE TABLE orders (id bigserial PRIMARY KEY, user_id int REFERENCES users, total numeric);
			INSERT INTO orders (user_id, total) SELECT id, 1 FROM users;`),
		mig("0002", `ALTER TABLE users ADD COLUMN active boolean NOT NULL DEFAULT true;
			CREATE INDEX users_email ON users (email);
			CREATE FUNCTION f_total(int) RETURNS numeric LANGUAGE sql AS $$ SELECT sum(total) FROM orders WHERE user_id = $1 $$;`,
			contract.HookSpec{Phase: contract.PhaseAfterDDL, Name: "backfill", Hook: "sql",
				Params: map[string]any{"sql": "UPDATE users SET email = upper(email); DELETE FROM confiture.migrations"}},
			contract.HookSpec{Phase: contract.PhaseAfterValidation, Name: "check", Hook: "assert",
				Params: map[string]any{"sql": "SELECT count(*) = 100 FROM orders"}}),
		mig("0003", `SAVEPOINT mine;
			UPDATE users SET n = -1;
			ROLLBACK TO SAVEPOINT mine;
			UPDATE users SET n = n + 1 WHERE id <= 10;
			RELEASE SAVEPOINT mine;
			DELETE FROM orders WHERE user_id > 90;`),
	)
	require.True(t, rep.Success, "%+v", rep)
	require.Len(t, rep.Migrations, 3)
	require.Equal(t, before, fingerprint(t, b.conn, "users", "confiture.migrations"))

	create := findStmt(t, rep, "CREATE TABLE orders")
	require.True(t, create.Executed)
	require.Contains(t, create.Created, "orders (table)")
	require.Contains(t, create.Created, "orders_pkey (index)")
	require.Contains(t, create.Created, "orders_id_seq (sequence)")
	require.Equal(t, int64(100), findStmt(t, rep, "INSERT INTO orders").Rows)
	require.Contains(t, findStmt(t, rep, "CREATE FUNCTION").Created, "f_total(integer) (function)")
	require.Equal(t, int64(10), findStmt(t, rep, "DELETE FROM orders").Rows)

	var hookRep *contract.DryRunHookReport
	for _, p := range rep.Migrations[1].Phases {
		for i := range p.Hooks {
			if p.Hooks[i].Name == "backfill" {
				hookRep = &p.Hooks[i]
			}
		}
	}
	require.NotNil(t, hookRep)
	require.True(t, hookRep.Executed)
	require.Contains(t, hookRep.Locks, contract.DryRunLock{Relation: "users", Mode: "RowExclusiveLock"})
	require.Equal(t, []string{"before_validation", "before_ddl", "ddl", "after_ddl", "after_validation", "cleanup"},
		phaseNames(rep.Migrations[0]))

	data, err := json.Marshal(rep)
	require.NoError(t, err)
	require.Contains(t, string(data), `"duration_ms"`)
	require.Contains(t, string(data), `"statements"`)
}

func phaseNames(m contract.DryRunMigrationReport) []string {
	var out []string
	for _, p := range m.Phases {
		out = append(out, p.Phase)
	}
	return out
}

func TestFailingLaterMigrationRollsBackEarlierOnes(t *testing.T) {
	t.Parallel()
	b := setup(t, baseSchema)
	before := fingerprint(t, b.conn, "users", "confiture.migrations")
	rep := b.run(t, dryrun.Options{},
		mig("0001", `CREATE TABLE a (id int); INSERT INTO confiture.migrations VALUES ('0001', 'a');`),
		mig("0002", "ALTER TABLE users ADD COLUMN x int;\nUPDATE users SET id = NULL;\nCREATE TABLE never (id int);"),
		mig("0003", `CREATE TABLE b (id int);`),
	)
	require.False(t, rep.Success)
	require.Len(t, rep.Migrations, 2, "later migrations are not run")
	require.True(t, rep.Migrations[0].Success)
	failed := rep.Migrations[1]
	require.False(t, failed.Success)
	require.Contains(t, failed.Error, "line 2")
	require.Contains(t, failed.Error, "null value")
	st := findStmt(t, rep, "UPDATE users SET id = NULL")
	require.NotEmpty(t, st.Error)
	require.False(t, st.Executed)
	require.Equal(t, before, fingerprint(t, b.conn, "users", "confiture.migrations"))
}

func TestLocksAndRewrites(t *testing.T) {
	t.Parallel()
	b := setup(t, baseSchema)
	rep := b.run(t, dryrun.Options{}, mig("0001", `ALTER TABLE users ADD COLUMN x int;
		CREATE INDEX users_n ON users (n);
		ALTER TABLE users ALTER COLUMN n TYPE bigint;`))
	require.True(t, rep.Success, "%+v", rep)

	add := findStmt(t, rep, "ALTER TABLE users ADD COLUMN x")
	require.Contains(t, add.Locks, contract.DryRunLock{Relation: "users", Mode: "AccessExclusiveLock"})
	require.Empty(t, add.Rewrites)
	require.Len(t, add.Tables, 1)
	require.Equal(t, "users", add.Tables[0].Name)
	require.Positive(t, add.Tables[0].Bytes)

	idx := findStmt(t, rep, "CREATE INDEX users_n")
	require.Contains(t, idx.Locks, contract.DryRunLock{Relation: "users", Mode: "ShareLock"})
	require.Contains(t, idx.Created, "users_n (index)")

	typ := findStmt(t, rep, "ALTER TABLE users ALTER COLUMN n TYPE bigint")
	require.Equal(t, []string{"users"}, typ.Rewrites)
	w := hasWarning(rep, contract.DryRunCodeTableRewrite)
	require.NotNil(t, w)
	require.Equal(t, 3, w.Line)
}

func TestLargeTableWarning(t *testing.T) {
	t.Parallel()
	b := setup(t, baseSchema)
	rep := b.run(t, dryrun.Options{LargeTable: 1}, mig("0001", `ALTER TABLE users ADD COLUMN x int`))
	w := hasWarning(rep, contract.DryRunCodeAccessExclusiveLarge)
	require.NotNil(t, w)
	require.Contains(t, w.Message, "users")
	require.Contains(t, w.Message, "held")
	rep = b.run(t, dryrun.Options{}, mig("0001", `ALTER TABLE users ADD COLUMN x int`))
	require.Nil(t, hasWarning(rep, contract.DryRunCodeAccessExclusiveLarge))
}

func TestNonTransactionalAndTxControl(t *testing.T) {
	t.Parallel()
	b := setup(t, baseSchema)
	before := fingerprint(t, b.conn, "users")
	rep := b.run(t, dryrun.Options{}, mig("0001", "VACUUM users;\nALTER TABLE users ADD COLUMN x int;"))
	require.True(t, rep.Success)
	st := findStmt(t, rep, "VACUUM")
	require.False(t, st.Executed)
	require.Contains(t, st.Skipped, "cannot run inside a transaction block; not executed")
	w := hasWarning(rep, contract.DryRunCodeNotTransactional)
	require.NotNil(t, w)
	require.Equal(t, 1, w.Line)
	require.True(t, findStmt(t, rep, "ALTER TABLE users ADD COLUMN x").Executed)

	rep = b.run(t, dryrun.Options{}, mig("0002", "CREATE TABLE z (id int);\nCOMMIT;"))
	require.False(t, rep.Success)
	require.NotNil(t, hasWarning(rep, contract.DryRunCodeTxControl))
	require.Contains(t, rep.Migrations[0].Error, "line 2")
	require.Equal(t, before, fingerprint(t, b.conn, "users"))
}

func TestFullScanWarning(t *testing.T) {
	t.Parallel()
	b := setup(t, baseSchema+`; CREATE TABLE empty (id int, v int);`)
	rep := b.run(t, dryrun.Options{}, mig("0001", `ALTER TABLE users ALTER COLUMN n SET NOT NULL;
		ALTER TABLE empty ALTER COLUMN v SET NOT NULL;
		ALTER TABLE users ADD CONSTRAINT n_pos CHECK (n > 0) NOT VALID;
		ALTER TABLE users ADD CONSTRAINT n_pos2 CHECK (n > 0);`))
	require.True(t, rep.Success, "%+v", rep)
	var lines []int
	for _, w := range rep.Warnings {
		if w.Code == contract.DryRunCodeFullScanUnderLock {
			lines = append(lines, w.Line)
		}
	}
	require.Equal(t, []int{1, 4}, lines)
}

func TestEnumValueUsedBeforeCommit(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TYPE mood AS ENUM ('sad'); CREATE TABLE p (m mood);`)
	rep := b.run(t, dryrun.Options{}, mig("0001", "ALTER TYPE mood ADD VALUE 'happy';\nINSERT INTO p VALUES ('happy');"))
	w := hasWarning(rep, contract.DryRunCodeEnumValueUsed)
	require.NotNil(t, w)
	require.Equal(t, 2, w.Line)
	require.False(t, rep.Success, "PostgreSQL refuses the use too")
	require.Contains(t, w.Message, "in the same transaction")

	// A no_transaction migration can, in a real run; the dry-run says it cannot show it.
	m := mig("0001", "ALTER TYPE mood ADD VALUE 'happy';\nINSERT INTO p VALUES ('happy');")
	m.NoTransaction = true
	rep = b.run(t, dryrun.Options{}, m)
	w = hasWarning(rep, contract.DryRunCodeEnumValueUsed)
	require.NotNil(t, w)
	require.Contains(t, w.Message, "a real run of this no_transaction migration commits line 1 first, so it can, but the dry-run runs in one transaction and cannot")
	require.False(t, rep.Success)
}

func TestLockTimeoutNamesBlocker(t *testing.T) {
	t.Parallel()
	b := setup(t, baseSchema)
	ctx := context.Background()
	other, err := pgx.Connect(ctx, b.dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close(context.Background()) })
	otx, err := other.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = otx.Rollback(context.Background()) })
	_, err = otx.Exec(ctx, "LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)
	pid := other.PgConn().PID()

	start := time.Now()
	rep := b.run(t, dryrun.Options{LockTimeout: 200 * time.Millisecond}, mig("0001", `ALTER TABLE users ADD COLUMN x int`))
	require.Less(t, time.Since(start), 2*time.Second)
	require.False(t, rep.Success)
	st := findStmt(t, rep, "ALTER TABLE users")
	require.Contains(t, st.Error, fmt.Sprintf("would wait for a lock held by pid %d running LOCK TABLE users IN ACCESS EXCLUSIVE MODE", pid))
	require.NotNil(t, hasWarning(rep, contract.DryRunCodeLockTimeout))
}

func TestHooks(t *testing.T) {
	t.Parallel()
	b := setup(t, baseSchema)
	b.registry.MustRegister(hooks.Definition{
		Name: "external", Description: "runs an external program", Source: "test",
		New: func(map[string]any) (hooks.Hook, error) {
			return hooks.HookFunc(func(context.Context, *hooks.Context) (hooks.Result, error) {
				panic("must not run")
			}), nil
		},
	})
	rep := b.run(t, dryrun.Options{}, mig("0001", `CREATE TABLE t (id int)`,
		contract.HookSpec{Phase: contract.PhaseBeforeDDL, Name: "ext", Hook: "external"},
		contract.HookSpec{Phase: contract.PhaseAfterValidation, Name: "not-empty", Hook: "assert",
			Params: map[string]any{"sql": "SELECT count(*) > 0 FROM t", "message": "t is empty"}}))
	require.False(t, rep.Success)
	require.False(t, rep.Migrations[0].Success)
	require.Contains(t, rep.Migrations[0].Error, "t is empty")
	ext := rep.Migrations[0].Phases[1].Hooks[0]
	require.False(t, ext.Executed)
	require.Contains(t, ext.Skipped, "not executed")
	require.Contains(t, ext.Skipped, "runs an external program")
	require.NotNil(t, hasWarning(rep, contract.DryRunCodeHookNotExecuted))
	last := rep.Migrations[0].Phases[len(rep.Migrations[0].Phases)-1]
	require.Equal(t, contract.PhaseAfterValidation, last.Phase)
	require.Contains(t, last.Hooks[0].Error, "t is empty")
}

func TestLogRecords(t *testing.T) {
	t.Parallel()
	b := setup(t, baseSchema)
	var buf syncbuf.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	b.run(t, dryrun.Options{Logger: log}, mig("0001", `CREATE TABLE a (id int)`), mig("0002", `SELECT 1/0`))
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m))
		recs = append(recs, m)
	}
	var msgs []string
	for _, r := range recs {
		msgs = append(msgs, r["msg"].(string))
	}
	require.Equal(t, []string{hooks.MsgDryRunStart, hooks.MsgDryRunCompleted, hooks.MsgDryRunStart, hooks.MsgDryRunFailed, hooks.MsgDryRunCompleted}, msgs)
	require.Equal(t, "0001_m0001", recs[0]["migration"])
	require.Equal(t, "0001", recs[0]["version"])
	require.Equal(t, true, recs[1]["success"])
	require.Contains(t, recs[1], "execution_time_ms")
	require.Contains(t, recs[3]["error"], "division by zero")
	require.Equal(t, false, recs[4]["success"])
}

func TestBackfillIsSampledAndExtrapolated(t *testing.T) {
	t.Parallel()
	b := setup(t, baseSchema+`
		CREATE TABLE events (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
		INSERT INTO events (id) SELECT g FROM generate_series(1, 200000) g;
		ANALYZE events;`)
	before := fingerprint(t, b.conn, "events")
	rep := b.run(t, dryrun.Options{}, mig("0001", `ALTER TABLE events ADD COLUMN day date`,
		contract.HookSpec{Phase: contract.PhaseAfterDDL, Name: "fill", Hook: "backfill",
			Params: map[string]any{"table": "events", "set": "n = n + 1", "batch_size": 1000, "max_batch_size": 1000, "sample_ms": 100, "dry_run_complete_ms": 0}}))
	require.True(t, rep.Success, "%+v", rep)
	var hr *contract.DryRunHookReport
	for _, p := range rep.Migrations[0].Phases {
		for i := range p.Hooks {
			if p.Hooks[i].Name == "fill" {
				hr = &p.Hooks[i]
			}
		}
	}
	require.NotNil(t, hr)
	require.True(t, hr.Executed)
	require.True(t, hr.Sampled)
	require.Positive(t, hr.Rows)
	require.Less(t, hr.Rows, int64(200000), "only the first batches run")
	require.Contains(t, hr.Message, "rows/s")
	require.Contains(t, hr.Message, "about 200000 row(s) to do in events")
	require.Contains(t, hr.Locks, contract.DryRunLock{Relation: "events", Mode: "RowExclusiveLock"})
	w := hasWarning(rep, contract.DryRunCodeBackfillEstimate)
	require.NotNil(t, w)
	require.Equal(t, contract.DryRunSeverityInfo, w.Severity)
	require.Nil(t, hasWarning(rep, contract.DryRunCodeHookNotExecuted))
	require.Equal(t, before, fingerprint(t, b.conn, "events"), "the sampled batches are rolled back")
}

// A backfill the sample says is short runs to its end in the dry-run, so a validation after it
// sees every row; one that is only sampled leaves rows, and a validation that fails on them
// says the sample may be why.
func TestShortBackfillRunsToTheEnd(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE events (id bigint PRIMARY KEY, day date);
		INSERT INTO events (id) SELECT g FROM generate_series(1, 20000) g;
		ANALYZE events;`)
	m := func(completeMS int) contract.Migration {
		return mig("0001", `ALTER TABLE events ADD COLUMN n int`,
			contract.HookSpec{Phase: contract.PhaseAfterDDL, Name: "fill", Hook: "backfill",
				Params: map[string]any{"table": "events", "set": "day = date '2026-01-01'", "where": "day IS NULL",
					"batch_size": 500, "max_batch_size": 500, "target_batch_ms": 1, "sample_ms": 1, "dry_run_complete_ms": completeMS}},
			contract.HookSpec{Phase: contract.PhaseAfterValidation, Name: "all_filled", Hook: "assert",
				Params: map[string]any{"sql": "SELECT count(*) = 0 FROM events WHERE day IS NULL"}})
	}
	rep := b.run(t, dryrun.Options{}, m(60000))
	require.True(t, rep.Success, "%+v", rep)
	fill := rep.Migrations[0].Phases[3].Hooks[0]
	require.False(t, fill.Sampled, "%+v", fill)
	require.Equal(t, int64(20000), fill.Rows)
	require.Contains(t, fill.Message, "ran the whole backfill")

	rep = b.run(t, dryrun.Options{}, m(0))
	require.False(t, rep.Success)
	require.Contains(t, rep.Migrations[0].Error, "the dry-run ran only a sample of hook fill")
}
