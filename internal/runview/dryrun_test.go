package runview

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// successfulReport is a dry-run that succeeded with a warning of every severity.
func successfulReport() *contract.DryRunReport {
	all := contract.DryRunBlocked
	return &contract.DryRunReport{
		Schema: contract.DryRunReportSchemaV2,
		Run:    testRun, RequestID: "deploy-1", Target: "default", Direction: contract.DirectionUp,
		Success: true, DurationMS: 1234.5,
		Migrations: []contract.DryRunMigrationReport{{
			Version: "001", Name: "add_email", Success: true, DurationMS: 1201.7,
			Phases: []contract.DryRunPhaseReport{
				{Phase: contract.PhaseBeforeValidation, DurationMS: 0.8, Hooks: []contract.DryRunHookReport{{
					Name: "users_exist", Hook: "assert", DurationMS: 0.61, Rows: 1, Executed: true,
					Locks:       []contract.DryRunLock{{Relation: "users", Mode: "AccessShareLock"}},
					Transaction: 1, HeldMS: 0.61,
					Blocks: []contract.DryRunBlock{{Table: "users", Mode: "AccessShareLock", Blocks: []string{contract.DryRunBlocksDDL}, Bytes: 150 << 20, EstimatedRows: 2000000}},
				}}},
				{Phase: contract.PhaseBeforeDDL, DurationMS: 0.05},
				{Phase: contract.PhaseDDL, DurationMS: 1190.2, Statements: []contract.DryRunStatementReport{
					{
						Line: 1, SQL: "ALTER TABLE users ADD COLUMN email text DEFAULT md5(random()::text)", DurationMS: 1150.4, Executed: true,
						Locks:       []contract.DryRunLock{{Relation: "users", Mode: "AccessExclusiveLock"}},
						Rewrites:    []string{"users"},
						Tables:      []contract.DryRunTableStat{{Name: "users", Bytes: 150 << 20, EstimatedRows: 2000000}},
						Transaction: 2, HeldMS: 1190.0,
						Blocks: []contract.DryRunBlock{{Table: "users", Mode: "AccessExclusiveLock", Blocks: all, Bytes: 150 << 20, EstimatedRows: 2000000}},
					},
					{
						Line: 3, SQL: "CREATE INDEX users_email_idx ON users (email)", DurationMS: 39.6, Executed: true,
						Locks:       []contract.DryRunLock{{Relation: "users", Mode: "ShareLock"}, {Relation: "users_email_idx", Mode: "AccessExclusiveLock"}},
						Created:     []string{"users_email_idx (index)"},
						Transaction: 2, HeldMS: 39.6,
						Blocks: []contract.DryRunBlock{{Table: "users", Mode: "ShareLock", Bytes: 160 << 20, EstimatedRows: 2000000,
							Blocks: []string{contract.DryRunBlocksWrites, contract.DryRunBlocksMaintenance, contract.DryRunBlocksDDL}}},
					},
					{Line: 5, SQL: "VACUUM users", Skipped: "VACUUM; cannot run inside a transaction block; not executed"},
				}},
				{Phase: contract.PhaseAfterDDL, DurationMS: 1010.1, Hooks: []contract.DryRunHookReport{
					{Name: "seed", Hook: "sql", DurationMS: 9.4, Rows: 2, Executed: true, Locks: []contract.DryRunLock{{Relation: "users", Mode: "RowExclusiveLock"}},
						Transaction: 3, HeldMS: 9.4,
						Blocks: []contract.DryRunBlock{{Table: "users", Mode: "RowExclusiveLock", Blocks: []string{contract.DryRunBlocksDDL}, Bytes: 160 << 20, EstimatedRows: 2000000}}},
					{Name: "fill_email", Hook: "backfill", DurationMS: 1000.4, Rows: 41000, Executed: true, Sampled: true,
						Locks:       []contract.DryRunLock{{Relation: "users", Mode: "RowExclusiveLock"}},
						Message:     "sampled 8 batch(es): 41000 row(s) in 1000 ms, 41000 rows/s (longest batch 196 ms); about 2000000 row(s) to do in users: about 48.8s",
						Transaction: 4, HeldMS: 1000.4},
					{Name: "notify", Hook: "notify-slack", Skipped: "not executed: the hook does not run inside the migration transaction, so it cannot be rolled back"},
				}},
			},
		}},
		Warnings: []contract.DryRunWarning{
			{Severity: contract.DryRunSeverityWarning, Code: contract.DryRunCodeTableRewrite, Migration: "001_add_email", Phase: contract.PhaseDDL, Line: 1, Message: "table users is rewritten (its storage replaced) under an exclusive lock"},
			{Severity: contract.DryRunSeverityInfo, Code: contract.DryRunCodeBackfillEstimate, Migration: "001_add_email", Phase: contract.PhaseAfterDDL, Hook: "fill_email", Message: "hook fill_email (backfill) sampled 8 batch(es): 41000 row(s) in 1000 ms, 41000 rows/s (longest batch 196 ms); about 2000000 row(s) to do in users: about 48.8s"},
			{Severity: contract.DryRunSeverityInfo, Code: contract.DryRunCodeHookNotExecuted, Migration: "001_add_email", Phase: contract.PhaseAfterDDL, Hook: "notify", Message: "hook notify (notify-slack) not executed"},
			{Severity: contract.DryRunSeverityWarning, Code: contract.DryRunCodeNotTransactional, Migration: "001_add_email", Phase: contract.PhaseDDL, Line: 5, Message: "line 5: VACUUM users: not executed by the dry-run (VACUUM)"},
			{Severity: contract.DryRunSeverityWarning, Code: contract.DryRunCodeBlocksApplication, Migration: "001_add_email", Phase: contract.PhaseDDL, Line: 1, Message: "reads and writes on users (150.0 MiB, about 2000000 rows) would wait about 1.2 s: AccessExclusiveLock held until its transaction commits after line 3"},
		},
		Thresholds: &contract.DryRunThresholds{LargeTableBytes: 100 << 20, BlockMS: 1000},
	}
}

// failedReport is a dry-run whose second statement hit lock_timeout.
func failedReport() *contract.DryRunReport {
	const lockErr = "ERROR: canceling statement due to lock timeout (SQLSTATE 55P03): would wait for a lock held by pid 4242 running \"BEGIN; LOCK orders\""
	return &contract.DryRunReport{
		Schema:    contract.DryRunReportSchemaV2,
		Direction: contract.DirectionUp, Success: false, DurationMS: 2010.2,
		Migrations: []contract.DryRunMigrationReport{{
			Version: "002", Name: "orders_fk", Success: false, DurationMS: 2004.9,
			Error: "ddl: line 2: " + lockErr,
			Phases: []contract.DryRunPhaseReport{
				{Phase: contract.PhaseDDL, DurationMS: 2004.1, Statements: []contract.DryRunStatementReport{
					{Line: 1, SQL: "ALTER TABLE orders ADD COLUMN note text", DurationMS: 0.42, Executed: true,
						Locks:       []contract.DryRunLock{{Relation: "orders", Mode: "AccessExclusiveLock"}},
						Transaction: 1, HeldMS: 2001.7,
						Blocks: []contract.DryRunBlock{{Table: "orders", Mode: "AccessExclusiveLock", Blocks: contract.DryRunBlocked, Bytes: 8192, EstimatedRows: 0}}},
					{Line: 2, SQL: "ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users", DurationMS: 2001.3, Error: lockErr},
				}},
			},
		}},
		Warnings: []contract.DryRunWarning{
			{Severity: contract.DryRunSeverityError, Code: contract.DryRunCodeLockTimeout, Migration: "002_orders_fk", Phase: contract.PhaseDDL, Line: 2, Message: "line 2: would wait for a lock held by pid 4242 running \"BEGIN; LOCK orders\""},
		},
	}
}

func withReport(rep *contract.DryRunReport) func(*contract.Event) {
	return func(ev *contract.Event) {
		data, err := json.Marshal(rep)
		if err != nil {
			panic(err)
		}
		ev.Data, ev.DurationMS = data, int64(rep.DurationMS)
	}
}

// dryRunEvents are the events the worker publishes for a dry-run with report rep.
func dryRunEvents(rep *contract.DryRunReport) []*contract.Event {
	es := &events{}
	es.add(contract.KindRunAccepted, msg("dry-run of 1 migration(s) accepted")).
		add(contract.KindDryRunReport, withReport(rep), msg("summary"))
	if rep.Success {
		es.add(contract.KindRunCompleted, took(1300, 0), msg("dry-run: 1 migration(s) would apply"))
	} else {
		es.add(contract.KindRunFailed, took(2100, 0), fails(contract.CodeSQLError, "002_orders_fk: lock timeout", "", false), msg("dry-run: failed"))
	}
	return es.list
}

func TestRenderDryRunReportWithWarnings(t *testing.T) {
	t.Parallel()
	evs := dryRunEvents(successfulReport())
	got := render(RenderOptions{}, evs)
	want := `run 5f0c2b0e-5d1a-4c57-9a53-3f0c1e7d2a41 accepted: dry-run of 1 migration(s) accepted
dry-run report (up): succeeded in 1.2s, 1 migration, 5 warnings; everything was rolled back
✓ 001_add_email  ok  1.2s
  before_validation  0.80ms
    HOOK         TX    TIME    HELD  ROWS  BLOCKS  TYPE
    users_exist   1  0.61ms  0.61ms     1  -       assert
        blocks:   AccessShare on users (150.0 MiB) for 0.61ms: ddl
  ddl                1.2s
    LINE  TX  TIME  HELD  ROWS  BLOCKS        STATEMENT
       1   2  1.1s  1.2s     0  reads+writes  ALTER TABLE users ADD COLUMN email text DEFAULT md5(random()::text)
        blocks:   AccessExclusive on users (150.0 MiB) for 1.2s: reads, writes, row locks, maintenance, ddl
        rewrites: users
        tables:   users (150.0 MiB, ~2000000 rows)
       3   2  40ms  40ms     0  writes        CREATE INDEX users_email_idx ON users (email)
        locks:    users Share, users_email_idx AccessExclusive
        blocks:   Share on users (160.0 MiB) for 40ms: writes, maintenance, ddl
        created:  users_email_idx (index)
       5   -     -     -     -  -             VACUUM users
        skipped:  VACUUM; cannot run inside a transaction block; not executed
  after_ddl          1.0s
    HOOK        TX   TIME   HELD   ROWS  BLOCKS  TYPE
    seed         3  9.4ms  9.4ms      2  -       sql
        blocks:   RowExclusive on users (160.0 MiB) for 9.4ms: ddl
    fill_email   4   1.0s   1.0s  41000  -       backfill
        estimate: sampled 8 batch(es): 41000 row(s) in 1000 ms, 41000 rows/s (longest batch 196 ms); about 2000000 row(s) to do in users: about 48.8s
        locks:    users RowExclusive
    notify       -      -      -      -  -       notify-slack
        skipped:  not executed: the hook does not run inside the migration transaction, so it cannot be rolled back
warnings
  warning (3)
    table_rewrite [001_add_email ddl line 1]: table users is rewritten (its storage replaced) under an exclusive lock
    not_transactional [001_add_email ddl line 5]: line 5: VACUUM users: not executed by the dry-run (VACUUM)
    blocks_application [001_add_email ddl line 1]: reads and writes on users (150.0 MiB, about 2000000 rows) would wait about 1.2 s: AccessExclusiveLock held until its transaction commits after line 3
  info (2)
    backfill_estimate [001_add_email after_ddl hook fill_email]: hook fill_email (backfill) sampled 8 batch(es): 41000 row(s) in 1000 ms, 41000 rows/s (longest batch 196 ms); about 2000000 row(s) to do in users: about 48.8s
    hook_not_executed [001_add_email after_ddl hook notify]: hook notify (notify-slack) not executed
run completed in 1.3s: dry-run: 1 migration(s) would apply
`
	require.Equal(t, want, got)
	require.NotContains(t, got, "before_ddl", "hook phases without hooks are not shown")

	colored := render(RenderOptions{Color: true}, evs)
	require.Contains(t, colored, ansiGreen+"succeeded"+ansiReset)
	require.Contains(t, colored, ansiYellow+"warning"+ansiReset)
	require.Equal(t, want, stripANSI(colored), "colours change nothing but colours")
}

func TestRenderFailedDryRunReport(t *testing.T) {
	t.Parallel()
	got := render(RenderOptions{}, dryRunEvents(failedReport()))
	want := `run 5f0c2b0e-5d1a-4c57-9a53-3f0c1e7d2a41 accepted: dry-run of 1 migration(s) accepted
dry-run report (up): failed in 2.0s, 1 migration, 1 warning; everything was rolled back
✗ 002_orders_fk  failed  2.0s
  ddl                2.0s
    LINE  TX    TIME  HELD  ROWS  BLOCKS        STATEMENT
       1   1  0.42ms  2.0s     0  reads+writes  ALTER TABLE orders ADD COLUMN note text
        blocks:   AccessExclusive on orders (8.0 KiB) for 2.0s: reads, writes, row locks, maintenance, ddl
       2   -    2.0s     -     -  -             ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users
        error:    ERROR: canceling statement due to lock timeout (SQLSTATE 55P03): would wait for a lock held by pid 4242 running "BEGIN; LOCK orders"
warnings
  error (1)
    lock_timeout [002_orders_fk ddl line 2]: line 2: would wait for a lock held by pid 4242 running "BEGIN; LOCK orders"
run failed after 2.1s: dry-run: failed
  error:     sql_error: 002_orders_fk: lock timeout
`
	require.Equal(t, want, got)
}

func TestRenderDryRunFailureBeforeAnyStatement(t *testing.T) {
	t.Parallel()
	rep := &contract.DryRunReport{
		Direction: contract.DirectionDown, DurationMS: 3,
		Migrations: []contract.DryRunMigrationReport{{
			Version: "003", Name: "no_down", DurationMS: 0.2, Error: "ddl: migration has no down SQL\nadd 003_no_down.down.sql",
			Phases: []contract.DryRunPhaseReport{{Phase: contract.PhaseBeforeDDL, DurationMS: 0.1}, {Phase: contract.PhaseDDL, DurationMS: 0.05}},
		}},
		Warnings: []contract.DryRunWarning{{Severity: "critical", Code: "future_code", Message: "from a newer worker\x1b[31m"}},
	}
	es := &events{}
	es.add(contract.KindDryRunReport, withReport(rep))
	require.Equal(t, `dry-run report (down): failed in 3.0ms, 1 migration, 1 warning; everything was rolled back
✗ 003_no_down  failed  0.20ms
  error: ddl: migration has no down SQL
         add 003_no_down.down.sql
  ddl                0.05ms
warnings
  critical (1)
    future_code: from a newer worker?[31m
`, render(RenderOptions{}, es.list))
}

func TestRenderDryRunDataThatIsNotAReport(t *testing.T) {
	t.Parallel()
	es := &events{}
	es.add(contract.KindDryRunReport, took(12, 3), msg("old style"), func(ev *contract.Event) { ev.Data = json.RawMessage(`{"rows":3}`) })
	r := NewRenderer(new(strings.Builder), RenderOptions{})
	out := render(RenderOptions{}, es.list)
	require.Equal(t, "dry-run report: 3 rows in 12ms  old style\n  {\n    \"rows\": 3\n  }\n", out)
	r.Render(es.list[0])
	require.Nil(t, r.Report(), "data without success is not a report")
}

func TestRenderDryRunJSONPrintsRawEvents(t *testing.T) {
	t.Parallel()
	evs := dryRunEvents(successfulReport())
	var b strings.Builder
	r := NewRenderer(&b, RenderOptions{JSON: true})
	for _, ev := range evs {
		r.Render(ev)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.Len(t, lines, len(evs))
	want, err := json.Marshal(evs[1])
	require.NoError(t, err)
	require.Equal(t, string(want), lines[1], "the dryrun.report event exactly as published")
	require.Equal(t, successfulReport(), r.Report(), "the report is kept for the exit code in JSON mode too")
	code, _ := r.Verdict(evs[len(evs)-1], true, FailOnWarning)
	require.Equal(t, Warnings, code)
}

// leftIncomplete gives the final event of evs the summary of a target with an incomplete
// migration.
func leftIncomplete(evs []*contract.Event) []*contract.Event {
	return withData(evs, `{"incomplete":[{"version":"002","name":"orders","phase":"after_ddl"}]}`)
}

// withData gives the final event of evs the data data.
func withData(evs []*contract.Event, data string) []*contract.Event {
	last := *evs[len(evs)-1]
	last.Data = json.RawMessage(data)
	return append(evs[:len(evs)-1:len(evs)-1], &last)
}

func TestDryRunVerdict(t *testing.T) {
	t.Parallel()
	withSeverities := func(sevs ...string) *contract.DryRunReport {
		rep := successfulReport()
		rep.Warnings = nil
		for _, s := range sevs {
			rep.Warnings = append(rep.Warnings, contract.DryRunWarning{Severity: s, Code: contract.DryRunCodeTableRewrite, Message: "m"})
		}
		return rep
	}
	completed := func(rep *contract.DryRunReport) []*contract.Event { return dryRunEvents(rep) }
	failedRun := func(rep *contract.DryRunReport) []*contract.Event {
		evs := dryRunEvents(rep)
		es := &events{}
		es.add(contract.KindRunFailed, fails(contract.CodeInternal, "boom", "", false))
		return append(evs[:len(evs)-1], es.list[0])
	}
	noReport := func(kind string) []*contract.Event {
		es := &events{}
		es.add(contract.KindRunAccepted).add(kind)
		return es.list
	}
	cases := []struct {
		name   string
		evs    []*contract.Event
		dryRun bool
		failOn string
		code   Verdict
		reason string
	}{
		{"clean, fail-on error", completed(withSeverities()), true, FailOnError, OK, ""},
		{"clean, fail-on warning", completed(withSeverities()), true, FailOnWarning, OK, ""},
		{"info only, fail-on warning", completed(withSeverities("info", "info")), true, FailOnWarning, OK, ""},
		{"warning, fail-on error", completed(withSeverities("info", "warning")), true, FailOnError, OK, ""},
		{"warning, fail-on warning", completed(withSeverities("info", "warning")), true, FailOnWarning, Warnings, "found 1 warning at or above --fail-on=warning"},
		{"error, fail-on error", completed(withSeverities("error", "warning")), true, FailOnError, Warnings, "found 1 warning at or above --fail-on=error"},
		{"error, fail-on warning", completed(withSeverities("error", "warning")), true, FailOnWarning, Warnings, "found 2 warnings at or above --fail-on=warning"},
		{"error, fail-on none", completed(withSeverities("error", "warning")), true, FailOnNone, OK, ""},
		{"unknown severity counts as error", completed(withSeverities("critical")), true, FailOnError, Warnings, "found 1 warning"},
		{"failed report", dryRunEvents(failedReport()), true, FailOnError, Failed, "the dry-run failed: 002_orders_fk: ddl: line 2: ERROR: canceling statement due to lock timeout"},
		{"failed report, fail-on none", dryRunEvents(failedReport()), true, FailOnNone, Failed, "the dry-run failed"},
		{"failed report, even if the run says completed", append(dryRunEvents(failedReport())[:2], completed(withSeverities())[2]), true, FailOnNone, Failed, "the dry-run failed"},
		{"good report, run failed", failedRun(withSeverities()), true, FailOnError, Failed, ""},
		{"no report, completed", noReport(contract.KindRunCompleted), true, FailOnError, Failed, "without a dryrun.report event"},
		{"no report, completed, fail-on none", noReport(contract.KindRunCompleted), true, FailOnNone, OK, ""},
		{"no report, failed", noReport(contract.KindRunFailed), true, FailOnError, Failed, ""},
		{"rejected", noReport(contract.KindRunRejected), true, FailOnError, Rejected, ""},
		{"not a dry-run, completed", noReport(contract.KindRunCompleted), false, FailOnError, OK, ""},
		{"not a dry-run, failed", noReport(contract.KindRunFailed), false, FailOnError, Failed, ""},
		{"completed, incomplete migrations left", leftIncomplete(noReport(contract.KindRunCompleted)), false, FailOnError, Failed,
			"the target has 1 incomplete migration: 002_orders (after after_ddl); once the cause is fixed, submit them again"},
		{"failed, incomplete migrations left", leftIncomplete(noReport(contract.KindRunFailed)), false, FailOnError, Failed,
			"the target has 1 incomplete migration"},
		{"failed, tracking table unread", withData(noReport(contract.KindRunFailed), `{"unread":"target \"app\": connection refused"}`), false, FailOnError, Failed,
			"could not tell whether the target has incomplete migrations"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, opts := range []RenderOptions{{}, {JSON: true}} {
				r := NewRenderer(new(strings.Builder), opts)
				for _, ev := range tc.evs {
					r.Render(ev)
				}
				code, reason := r.Verdict(r.Last(), tc.dryRun, tc.failOn)
				require.Equal(t, tc.code, code, "JSON %v: %s", opts.JSON, reason)
				if tc.reason == "" {
					require.Empty(t, reason)
				} else {
					require.Contains(t, reason, tc.reason)
				}
			}
		})
	}
	code, _ := NewRenderer(new(strings.Builder), RenderOptions{}).Verdict(nil, true, FailOnError)
	require.Equal(t, Failed, code)
}

// TestDryRunDocExamplesAreReal keeps the examples of docs/DRY_RUN.md equal to what the
// renderer prints for the reports of this file.
func TestDryRunDocExamplesAreReal(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "DRY_RUN.md"))
	require.NoError(t, err)
	ok := render(RenderOptions{}, dryRunEvents(successfulReport()))
	require.Contains(t, string(doc), "```\n"+ok+"```\n", "the successful example")
	failed := render(RenderOptions{}, dryRunEvents(failedReport())[1:2])
	require.Contains(t, string(doc), "```\n"+failed+"```\n", "the failed example")
}

// Locks on a table the dry-run created block no application: they show no blocks line, and
// the locks line only when it names something else too.
func TestLockDetailsOfNewTables(t *testing.T) {
	t.Parallel()
	fresh := []contract.DryRunBlock{{Table: "orders", Mode: "AccessExclusiveLock", Blocks: []string{}, New: true}}
	require.Empty(t, lockDetails([]contract.DryRunLock{{Relation: "orders", Mode: "RowExclusiveLock"}}, fresh, 3))
	require.Equal(t, []string{"locks:    orders AccessExclusive, orders_pkey AccessExclusive"},
		lockDetails([]contract.DryRunLock{{Relation: "orders", Mode: "AccessExclusiveLock"}, {Relation: "orders_pkey", Mode: "AccessExclusiveLock"}}, fresh, 3))
	existing := []contract.DryRunBlock{{Table: "users", Mode: "ShareLock", Bytes: 8192, Blocks: []string{contract.DryRunBlocksWrites}}}
	require.Equal(t, []string{"blocks:   Share on users (8.0 KiB) for 3.0ms: writes"},
		lockDetails([]contract.DryRunLock{{Relation: "users", Mode: "ShareLock"}}, existing, 3))
}
