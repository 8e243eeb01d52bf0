package worker

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// A phase without hooks costs no job and no event, and migrations without hooks in a row share
// one job: each is applied in its own target transaction with its tracking row, and reported by
// one migration.completed. Phases with hooks keep their jobs and their phase and hook events.
func TestMigrationsWithoutHooksShareOneJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	plain := func(v string) contract.Migration {
		return mig(v, "plain", fmt.Sprintf("CREATE TABLE p%s (id int PRIMARY KEY);", v), fmt.Sprintf("DROP TABLE p%s;", v))
	}
	req := request("up",
		mig("001", "first", "CREATE TABLE first (id int);", "DROP TABLE first;",
			sqlHook(contract.PhaseAfterDDL, "seed", "INSERT INTO first VALUES (1)")),
		plain("002"), plain("003"), plain("004"),
		mig("005", "checked", "CREATE TABLE checked (id int);", "DROP TABLE checked;",
			hook(contract.PhaseBeforeValidation, "first_seeded", "assert", map[string]any{"sql": "SELECT count(*) = 1 FROM first"})),
		plain("006"),
	)
	evs := b.run(t, req)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	run := last(evs).Run

	require.Equal(t, []string{"001 true", "002 true", "003 true", "004 true", "005 true", "006 true"},
		b.queryStrings(t, `SELECT version || ' ' || complete FROM confiture.schema_migrations ORDER BY version`))

	// The jobs: planning; 001 ddl and after_ddl; 002 ddl, which went on with 003 and 004; 005
	// before_validation, then its ddl, which went on with 006.
	require.Equal(t, []string{"confiture_phase 001/after_ddl", "confiture_phase 001/ddl", "confiture_phase 002/ddl",
		"confiture_phase 005/before_validation", "confiture_phase 005/ddl", "confiture_run_start /"},
		b.queryStrings(t, `SELECT kind || ' ' || coalesce(args->>'version', '') || '/' || coalesce(args->>'phase', '')
			FROM `+runstore.DefaultRiverSchema+`.river_job WHERE args->>'run_id' = $1 ORDER BY 1`, run))

	var got []string
	for _, e := range evs {
		if e.Version != "" {
			got = append(got, e.Kind+" "+e.Version+"/"+e.Phase+" "+e.Hook)
		}
	}
	require.Equal(t, []string{
		"migration.started 001/ ",
		"phase.started 001/ddl ", "phase.completed 001/ddl ",
		"phase.started 001/after_ddl ", "hook.started 001/after_ddl seed", "hook.completed 001/after_ddl seed", "phase.completed 001/after_ddl ",
		"migration.completed 001/ ",
		"migration.completed 002/ ", "migration.completed 003/ ", "migration.completed 004/ ",
		"migration.started 005/ ",
		"phase.started 005/before_validation ", "hook.started 005/before_validation first_seeded",
		"hook.completed 005/before_validation first_seeded", "phase.completed 005/before_validation ",
		"phase.started 005/ddl ", "phase.completed 005/ddl ",
		"migration.completed 005/ ",
		"migration.completed 006/ ",
	}, got)
	for _, e := range ofKind(evs, contract.KindMigrationCompleted) {
		if e.Version == "003" {
			require.Contains(t, e.Message, "applied 003_plain: 1 statement(s)", "a migration without hooks says what its ddl did")
		}
	}
	// Each migration's ddl has its ledger row, as a phase of its own would.
	require.Equal(t, 8, b.count(t, `SELECT count(*) FROM confiture.hook_ledger WHERE status = 'completed'`), "6 ddl rows + 2 hooks")

	// Down: the same, in reverse.
	down := request("down", req.Migrations...)
	down.To = "001"
	evs = b.run(t, down)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, []string{"001"}, b.queryStrings(t, `SELECT version FROM confiture.schema_migrations ORDER BY version`))
}

// A job that goes on with the next migrations gives its worker slot back once its slice
// (backfill_slice) is over: the next migration then has a job of its own.
func TestAChainOfMigrationsGivesItsSlotBackAfterASlice(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.BackfillSlice = time.Nanosecond })
	var ms []contract.Migration
	for _, v := range []string{"001", "002", "003"} {
		ms = append(ms, mig(v, "plain", fmt.Sprintf("CREATE TABLE p%s (id int);", v), fmt.Sprintf("DROP TABLE p%s;", v)))
	}
	evs := b.run(t, request("up", ms...))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, 3, b.count(t, `SELECT count(*) FROM `+runstore.DefaultRiverSchema+`.river_job
		WHERE kind = 'confiture_phase' AND args->>'run_id' = $1`, last(evs).Run), "one ddl job a migration")
	require.Len(t, ofKind(evs, contract.KindMigrationCompleted), 3)
}

// The run's final event lists the migrations it applied with their DDL's time.
func TestRunCompletedListsTheMigrationsItApplied(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.run(t, request("up", mig("001", "a", "CREATE TABLE a (id int);", "DROP TABLE a;")))
	require.Equal(t, contract.KindRunCompleted, last(first).Kind)
	evs := b.run(t, request("up", mig("001", "a", "CREATE TABLE a (id int);", "DROP TABLE a;"),
		mig("002", "b", "CREATE TABLE b (id int); SELECT pg_sleep(0.02);", "DROP TABLE b;")))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	var sum contract.RunSummary
	require.NoError(t, json.Unmarshal(last(evs).Data, &sum))
	require.Len(t, sum.Applied, 1, "001 was applied by the run before: %+v", sum.Applied)
	require.Equal(t, "002", sum.Applied[0].Version)
	require.Equal(t, "b", sum.Applied[0].Name)
	require.GreaterOrEqual(t, sum.Applied[0].DDLMS, int64(20))
}
