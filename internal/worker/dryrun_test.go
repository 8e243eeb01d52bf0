package worker

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// TestDryRunReportsAndChangesNothing runs a dry-run request through the whole worker: one job,
// a dryrun.report event, the run completed, and the target exactly as before.
func TestDryRunReportsAndChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Exec(context.Background(), `CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts SELECT g, g FROM generate_series(1, 100) g`)
	require.NoError(t, err)
	m := mig("001", "add_limit", "ALTER TABLE accounts ADD COLUMN credit_limit int;\nCREATE INDEX CONCURRENTLY accounts_balance ON accounts (balance);", "",
		sqlHook("after_ddl", "fill", "UPDATE accounts SET credit_limit = balance * 2"),
		hook("after_validation", "filled", "assert", map[string]any{"sql": "SELECT count(*) = 0 FROM accounts WHERE credit_limit IS NULL"}))
	req := request("up", m)
	req.DryRun = true
	before := targetCatalog(t, b)
	evs := b.run(t, req)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
	reports := ofKind(evs, contract.KindDryRunReport)
	require.Len(t, reports, 1)
	var rep struct {
		Success    bool `json:"success"`
		Migrations []struct {
			Version string `json:"version"`
		} `json:"migrations"`
		Warnings []struct {
			Code string `json:"code"`
		} `json:"warnings"`
	}
	require.NoError(t, json.Unmarshal(reports[0].Data, &rep))
	require.True(t, rep.Success)
	require.Len(t, rep.Migrations, 1)
	var codes []string
	for _, w := range rep.Warnings {
		codes = append(codes, w.Code)
	}
	require.Contains(t, codes, "emulated", "CREATE INDEX CONCURRENTLY runs as CREATE INDEX")
	require.Empty(t, ofKind(evs, contract.KindPhaseStarted), "a dry-run is one job, not phases")

	// Nothing changed: no column, no index, not even the fresh target's tracking schema.
	require.Zero(t, b.count(t, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'credit_limit'`))
	require.Equal(t, before, targetCatalog(t, b), "the dry-run left something in the target's catalog")
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_indexes WHERE indexname = 'accounts_balance'`))
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_class WHERE oid IN (to_regclass('confiture.schema_migrations'), to_regclass('confiture.hook_ledger'))`))

	// A dry-run that fails says where, and still changes nothing; then the real run applies.
	bad := mig("001", "add_limit", "ALTER TABLE accounts ADD COLUMN credit_limit int;\nALTER TABLE nope ADD COLUMN x int;", "")
	req = request("up", bad)
	req.DryRun = true
	evs = b.run(t, req)
	require.Equal(t, contract.KindRunFailed, last(evs).Kind, "events: %v", kinds(evs))
	require.Contains(t, last(evs).Message, "nope")
	require.Equal(t, contract.CodeSQLError, last(evs).Error.Code, "a statement failed")
	require.Equal(t, contract.PhaseDDL, last(evs).Phase)
	require.Zero(t, b.count(t, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'credit_limit'`))

	// A hook that fails in a dry-run is hook_failed, as in a real run.
	hooked := mig("001", "add_limit", "ALTER TABLE accounts ADD COLUMN credit_limit int;", "",
		hook("after_ddl", "none_negative", "assert", map[string]any{"sql": "SELECT count(*) > 0 FROM accounts WHERE balance < 0"}))
	req = request("up", hooked)
	req.DryRun = true
	evs = b.run(t, req)
	require.Equal(t, contract.KindRunFailed, last(evs).Kind, "events: %v", kinds(evs))
	require.Equal(t, contract.CodeHookFailed, last(evs).Error.Code, "%+v", last(evs))
	require.Equal(t, contract.PhaseAfterDDL, last(evs).Phase)
	require.Equal(t, "none_negative", last(evs).Hook)
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_class WHERE oid IN (to_regclass('confiture.schema_migrations'), to_regclass('confiture.hook_ledger'))`))

	evs = b.run(t, request("up", m))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'credit_limit'`))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM confiture.schema_migrations`), "the real run creates the tracking schema")
}

// targetCatalog lists the schemas, relations (with their storage) and functions of the
// target's database, but for the worker's own queue and River schemas, which share it here.
func targetCatalog(t *testing.T, b *bundle) string {
	t.Helper()
	var out string
	require.NoError(t, b.db.QueryRow(context.Background(), `
		SELECT coalesce(string_agg(x, E'\n' ORDER BY x), '') FROM (
			SELECT 'schema ' || nspname AS x FROM pg_namespace
			UNION ALL SELECT n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' ' || c.relfilenode
				FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			UNION ALL SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
				WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
		) c WHERE x NOT LIKE 'confiture\_queue%' AND x NOT LIKE 'confiture\_river%' AND x NOT LIKE 'schema confiture\_queue' AND x NOT LIKE 'schema confiture\_river'
			AND x NOT LIKE 'pg\_temp%' AND x NOT LIKE 'pg\_toast\_temp%'`).Scan(&out))
	require.Contains(t, out, "public.accounts r ")
	return out
}
