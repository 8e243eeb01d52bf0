package dryrun_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/dryrun"
)

// Between two steps the dry-run looks at the tables (the full-scan warning reads the table,
// which takes ACCESS SHARE on it) and reuses the catalog read after the first step as the one
// before the second: neither may leak into what the second step is said to have done.
func TestStepsAreMeasuredApart(t *testing.T) {
	t.Parallel()
	b := setup(t, baseSchema)
	rep := b.run(t, dryrun.Options{}, mig("0001", `ALTER TABLE users ALTER COLUMN n SET NOT NULL;
		CREATE TABLE a (id int PRIMARY KEY);
		DROP TABLE a;
		SELECT 1;
		CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';
		ALTER TABLE users RENAME TO people;`,
		contract.HookSpec{Phase: contract.PhaseAfterDDL, Name: "drop_f", Hook: "sql", Params: map[string]any{"sql": "DROP FUNCTION f()"}}))
	require.True(t, rep.Success, "%+v", rep)

	notNull := findStmt(t, rep, "ALTER TABLE users ALTER COLUMN n SET NOT NULL")
	require.Equal(t, []contract.DryRunLock{{Relation: "users", Mode: "AccessExclusiveLock"}}, notNull.Locks)
	require.NotNil(t, hasWarning(rep, contract.DryRunCodeFullScanUnderLock), "the warning that reads users")

	create := findStmt(t, rep, "CREATE TABLE a")
	require.ElementsMatch(t, []string{"a (table)", "a_pkey (index)"}, create.Created)
	require.Empty(t, create.Dropped)
	for _, l := range create.Locks {
		require.NotContains(t, []string{"users", "users_pkey"}, l.Relation, "a lock taken between the steps: %v", create.Locks)
	}

	drop := findStmt(t, rep, "DROP TABLE a")
	require.ElementsMatch(t, []string{"a (table)", "a_pkey (index)"}, drop.Dropped)
	require.Empty(t, drop.Created)

	sel := findStmt(t, rep, "SELECT 1")
	require.Empty(t, sel.Locks)
	require.Empty(t, sel.Created)
	require.Empty(t, sel.Dropped)

	require.Equal(t, []string{"f() (function)"}, findStmt(t, rep, "CREATE FUNCTION").Created)
	// Held since the first statement: not acquired again.
	require.Empty(t, findStmt(t, rep, "ALTER TABLE users RENAME").Locks)

	var hook *contract.DryRunHookReport
	for _, p := range rep.Migrations[0].Phases {
		for i := range p.Hooks {
			hook = &p.Hooks[i]
		}
	}
	require.NotNil(t, hook)
	require.Equal(t, []string{"f() (function)"}, hook.Dropped)
}

// What DRY_RUN.md says a rollback does not undo, because PostgreSQL never does: sequence values
// and the statistics CREATE INDEX and ANALYZE write in place. Everything else is back.
func TestRollbackKeepsSequencesAndStatistics(t *testing.T) {
	t.Parallel()
	b := setup(t, `CREATE TABLE t (id serial PRIMARY KEY, v int); CREATE TABLE s AS SELECT g AS v FROM generate_series(1, 5000) g;`)
	ctx := t.Context()
	var tuples float64
	var hasIndex bool
	stats := `SELECT reltuples, relhasindex FROM pg_class WHERE oid = 's'::regclass`
	require.NoError(t, b.conn.QueryRow(ctx, stats).Scan(&tuples, &hasIndex))
	require.Equal(t, float64(-1), tuples, "never vacuumed or analyzed")
	require.False(t, hasIndex)
	before := fingerprint(t, b.conn, "t", "s")
	rep := b.run(t, dryrun.Options{}, mig("0001", `INSERT INTO t (v) SELECT g FROM generate_series(1, 10) g;
		CREATE INDEX s_v ON s (v);`))
	require.True(t, rep.Success, "%+v", rep)
	require.Equal(t, before, fingerprint(t, b.conn, "t", "s"))

	var last int64
	require.NoError(t, b.conn.QueryRow(ctx, `SELECT last_value FROM t_id_seq`).Scan(&last))
	require.Equal(t, int64(10), last, "the sequence moved on")
	require.NoError(t, b.conn.QueryRow(ctx, stats).Scan(&tuples, &hasIndex))
	require.Equal(t, float64(5000), tuples, "CREATE INDEX counted the rows, in place")
	require.True(t, hasIndex, "relhasindex was set in place, though the index is gone")
}
