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
	require.Contains(t, codes, "not_transactional", "CREATE INDEX CONCURRENTLY is described, not executed")
	require.Empty(t, ofKind(evs, contract.KindPhaseStarted), "a dry-run is one job, not phases")

	// Nothing changed: no column, no index, no tracking row, no ledger row.
	require.Zero(t, b.count(t, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'credit_limit'`))
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_indexes WHERE indexname = 'accounts_balance'`))
	require.Zero(t, b.count(t, `SELECT count(*) FROM confiture.schema_migrations`))
	require.Zero(t, b.count(t, `SELECT count(*) FROM confiture.hook_ledger`))

	// A dry-run that fails says where, and still changes nothing; then the real run applies.
	bad := mig("001", "add_limit", "ALTER TABLE accounts ADD COLUMN credit_limit int;\nALTER TABLE nope ADD COLUMN x int;", "")
	req = request("up", bad)
	req.DryRun = true
	evs = b.run(t, req)
	require.Equal(t, contract.KindRunFailed, last(evs).Kind, "events: %v", kinds(evs))
	require.Contains(t, last(evs).Message, "nope")
	require.Zero(t, b.count(t, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'credit_limit'`))

	evs = b.run(t, request("up", m))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'credit_limit'`))
}
