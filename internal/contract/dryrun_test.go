package contract

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fullDryRunReport is a dry-run report with every field of every type set somewhere. It is a
// fixture for the schema, not a consistent report: its top-level success is true although its
// second migration failed, so that the boolean is covered too.
func fullDryRunReport() *DryRunReport {
	return &DryRunReport{
		Schema:     DryRunReportSchemaV2,
		Run:        RunID("default", "deploy-42"),
		RequestID:  "deploy-42",
		Target:     "default",
		Direction:  DirectionUp,
		Success:    true,
		DurationMS: 1234.567,
		Migrations: []DryRunMigrationReport{
			{
				Version: "20240601120000", Name: "add_email", Success: true, DurationMS: 812.25,
				Phases: []DryRunPhaseReport{
					{
						Phase: PhaseBeforeValidation, DurationMS: 1.5, StartMS: 0.25,
						Hooks: []DryRunHookReport{{
							Name: "users_exist", Hook: "assert", DurationMS: 1.2, Rows: 1, Executed: true,
							StartMS: 0.3, Transaction: 1, HeldMS: 1.4,
							Blocks: []DryRunBlock{
								{Table: "users", Mode: "AccessShareLock", Blocks: []string{DryRunBlocksDDL}, Bytes: 8192, EstimatedRows: 12},
								{Table: "tmp_check", Mode: "AccessExclusiveLock", Blocks: []string{}, New: true},
								{Table: "plans", Mode: "AccessExclusiveLock", Blocks: DryRunBlocked, Bytes: 8192, Inferred: true},
							},
							Locks:    []DryRunLock{{Relation: "users", Mode: "AccessShareLock"}},
							Rewrites: []string{"users_tmp"}, Created: []string{"tmp_check (table)"}, Dropped: []string{"tmp_check (table)"},
							Tables: []DryRunTableStat{{Name: "users", Bytes: 8192, EstimatedRows: 12}},
						}},
					},
					{
						Phase: PhaseDDL, DurationMS: 800.75,
						Statements: []DryRunStatementReport{
							{
								Line: 1, SQL: "UPDATE users SET email = lower(name) WHERE email IS NULL", DurationMS: 790.5, Rows: 4000000,
								Locks:    []DryRunLock{{Relation: "users", Mode: "AccessExclusiveLock"}},
								Rewrites: []string{"users"}, Created: []string{"users_email_idx (index)", "lower_email(text) (function)"},
								Dropped:  []string{"old_users (table)"},
								Tables:   []DryRunTableStat{{Name: "users", Bytes: 524288000, EstimatedRows: 4000000}},
								Executed: true, StartMS: 2, Transaction: 2, HeldMS: 791,
								Blocks: []DryRunBlock{{Table: "users", Mode: "AccessExclusiveLock", Blocks: DryRunBlocked, Bytes: 524288000, EstimatedRows: 4000000}},
							},
							{
								Line: 3, SQL: "CREATE INDEX CONCURRENTLY users_email_idx ON users (email)", DurationMS: 9.5, Executed: true,
								Emulated: true, EmulatedAs: "CREATE INDEX users_email_idx ON users (email)",
								Locks:     []DryRunLock{{Relation: "users", Mode: "ShareLock"}},
								RealLocks: []DryRunLock{{Relation: "users", Mode: "ShareUpdateExclusiveLock"}},
								StartMS:   793, Transaction: 3, HeldMS: 9.5,
							},
							{Line: 5, SQL: "VACUUM users", Skipped: "VACUUM cannot run inside a transaction block; not executed"},
							{
								Line: 6, SQL: "CREATE TABLE audit (id int)", DurationMS: 1.5, Executed: true, StartMS: 803, Transaction: 4, HeldMS: 1.5,
								Locks: []DryRunLock{{Relation: "audit", Mode: "AccessExclusiveLock"}},
								Blocks: []DryRunBlock{
									{Table: "audit", Mode: "AccessExclusiveLock", Blocks: []string{}, Bytes: 0, New: true},
									{Table: "users", Mode: "AccessExclusiveLock", Blocks: DryRunBlocked, Bytes: 8192, Inferred: true},
								},
							},
						},
					},
					{
						Phase: PhaseAfterDDL, DurationMS: 0.1,
						Hooks: []DryRunHookReport{
							{Name: "backfill.email", Hook: "backfill", DurationMS: 1000.5, Rows: 52000, Executed: true, Sampled: true,
								Message: "sampled 9 batch(es): 52000 row(s) in 1000 ms, 52000 rows/s (longest batch 190 ms); about 4000000 row(s) to do in users: about 1m17s"},
							{Name: "notify", Hook: "notify-slack", Skipped: "not executed: the hook does not run inside the migration transaction"},
							{Name: "check_emails", Hook: "assert", DurationMS: 0.05, Error: "assertion failed: every user has an email"},
						},
					},
				},
			},
			{
				Version: "20240602090000", Name: "orders_fk", Success: false, DurationMS: 2001,
				Error: "ddl: line 2: ERROR: canceling statement due to lock timeout (SQLSTATE 55P03): pid 4242 holds AccessExclusiveLock on orders",
				Phases: []DryRunPhaseReport{{
					Phase: PhaseDDL, DurationMS: 2000.9,
					Statements: []DryRunStatementReport{{
						Line: 2, SQL: "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users", DurationMS: 2000.4,
						Error: "ERROR: canceling statement due to lock timeout (SQLSTATE 55P03): pid 4242 holds AccessExclusiveLock on orders",
					}},
				}},
			},
		},
		Warnings: []DryRunWarning{
			{Severity: DryRunSeverityWarning, Code: DryRunCodeTableRewrite, Message: "table users is rewritten", Migration: "20240601120000_add_email", Phase: PhaseDDL, Line: 1},
			{Severity: DryRunSeverityInfo, Code: DryRunCodeBackfillEstimate, Message: "hook backfill.email (backfill) sampled 9 batch(es): 52000 row(s) in 1000 ms", Migration: "20240601120000_add_email", Phase: PhaseAfterDDL, Hook: "backfill.email"},
			{Severity: DryRunSeverityInfo, Code: DryRunCodeHookNotExecuted, Message: "hook notify (notify-slack) not executed", Migration: "20240601120000_add_email", Phase: PhaseAfterDDL, Hook: "notify"},
			{Severity: DryRunSeverityError, Code: DryRunCodeLockTimeout, Message: "line 2: would wait for pid 4242", Migration: "20240602090000_orders_fk", Phase: PhaseDDL, Line: 2},
		},
		Thresholds: &DryRunThresholds{LargeTableBytes: 100 << 20, BlockTableBytes: 0, BlockMS: 1000},
	}
}

func TestDryRunTypesMatchSchema(t *testing.T) {
	t.Parallel()
	doc := loadSchema(t, DryRunReportSchemaFile)
	types := []reflect.Type{
		reflect.TypeFor[DryRunMigrationReport](), reflect.TypeFor[DryRunPhaseReport](),
		reflect.TypeFor[DryRunStatementReport](), reflect.TypeFor[DryRunHookReport](),
		reflect.TypeFor[DryRunLock](), reflect.TypeFor[DryRunTableStat](), reflect.TypeFor[DryRunWarning](),
		reflect.TypeFor[DryRunThresholds](), reflect.TypeFor[DryRunBlock](),
	}
	t.Run("DryRunReport", func(t *testing.T) {
		t.Parallel()
		requireTypeMatchesSchema(t, "DryRunReport", reflect.TypeFor[DryRunReport](), doc, doc)
	})
	var names []string
	for _, typ := range types {
		names = append(names, typ.Name())
		t.Run(typ.Name(), func(t *testing.T) {
			t.Parallel()
			requireTypeMatchesSchema(t, typ.Name(), typ, doc, def(t, doc, typ.Name()))
		})
	}
	// Every $defs entry mirrors one of the types: none is left without a Go type.
	var defs []string
	for name := range doc["$defs"].(map[string]any) {
		defs = append(defs, name)
	}
	require.ElementsMatch(t, names, defs, "$defs of %s vs the DryRun* types", DryRunReportSchemaFile)
}

func TestDryRunSchemaEnumsMatchGo(t *testing.T) {
	t.Parallel()
	doc := loadSchema(t, DryRunReportSchemaFile)
	props := doc["properties"].(map[string]any)
	require.Equal(t, []string{DirectionUp, DirectionDown}, stringList(t, props["direction"].(map[string]any)["enum"]))

	warn := def(t, doc, "DryRunWarning")["properties"].(map[string]any)
	require.Equal(t, goConstantsIn(t, "dryrun.go", "DryRunSeverity"), DryRunSeverities, "DryRunSeverities vs the DryRunSeverity constants, mildest first")
	require.Equal(t, DryRunSeverities, stringList(t, warn["severity"].(map[string]any)["enum"]), "severities")
	require.Equal(t, goConstantsIn(t, "dryrun.go", "DryRunCode"), DryRunWarningCodes, "DryRunWarningCodes vs the DryRunCode constants")
	require.Equal(t, DryRunWarningCodes, stringList(t, warn["code"].(map[string]any)["enum"]), "warning codes")
	for _, code := range DryRunWarningCodes {
		require.Contains(t, warn["code"].(map[string]any)["description"], code+" (", "the description explains %s", code)
	}

	mode := def(t, doc, "DryRunLock")["properties"].(map[string]any)["mode"].(map[string]any)
	require.Equal(t, DryRunLockModes, stringList(t, mode["enum"])[:len(DryRunLockModes)], "DryRunLockModes vs the schema's modes, weakest first")
	block := def(t, doc, "DryRunBlock")["properties"].(map[string]any)
	require.Equal(t, goConstantsIn(t, "dryrun.go", "DryRunBlocks"), DryRunBlocked, "DryRunBlocked vs the DryRunBlocks constants")
	require.Equal(t, DryRunBlocked, stringList(t, block["blocks"].(map[string]any)["items"].(map[string]any)["enum"]), "blocked operations")

	// A dry-run runs every phase but on_error.
	var run []string
	for _, p := range Phases {
		if p != PhaseOnError {
			run = append(run, p)
		}
	}
	require.Equal(t, run, stringList(t, def(t, doc, "DryRunPhaseReport")["properties"].(map[string]any)["phase"].(map[string]any)["enum"]))
	require.Equal(t, run, stringList(t, warn["phase"].(map[string]any)["enum"]))

	for sev, rank := range map[string]int{DryRunSeverityInfo: 0, DryRunSeverityWarning: 1, DryRunSeverityError: 2, "fatal": -1, "": -1} {
		require.Equal(t, rank, DryRunSeverityRank(sev), sev)
	}
}

func TestFullDryRunReportValidates(t *testing.T) {
	t.Parallel()
	want := fullDryRunReport()
	requireEveryFieldCovered(t, want)
	data := mustJSON(t, want)
	require.NoError(t, ValidateDryRunReport(data))
	got, err := DecodeDryRunReport(data)
	require.NoError(t, err)
	require.Equal(t, want, got)

	// As the data of a dryrun.report event.
	ev := fullEvent(KindDryRunReport)
	ev.Error = nil
	ev.Data = data
	require.NoError(t, ValidateEvent(mustJSON(t, ev)))
}

func TestMinimalDryRunReportValidates(t *testing.T) {
	t.Parallel()
	rep := &DryRunReport{Schema: DryRunReportSchemaV2, Direction: DirectionDown, Success: true, Migrations: []DryRunMigrationReport{}, Warnings: []DryRunWarning{}}
	data := mustJSON(t, rep)
	require.JSONEq(t, `{"schema":"confiture.dryrun-report.v2","direction":"down","success":true,"duration_ms":0,"migrations":[],"warnings":[]}`, string(data))
	require.NoError(t, ValidateDryRunReport(data))
}

// A version-1 report, as older workers write it (no schema field), still validates, against
// dryrun-report.v1.json: a field of version 2 in it is refused there.
func TestVersion1DryRunReportValidates(t *testing.T) {
	t.Parallel()
	v1 := `{"direction":"up","success":true,"duration_ms":12.5,"migrations":[{"version":"001","name":"users","success":true,"duration_ms":12,
		"phases":[{"phase":"ddl","duration_ms":11,"statements":[{"line":1,"sql":"CREATE INDEX CONCURRENTLY i ON users (a)","duration_ms":0,"rows":0,"executed":false,
		"skipped":"CREATE INDEX CONCURRENTLY cannot run inside a transaction block; not executed"}]}]}],
		"warnings":[{"severity":"warning","code":"not_transactional","message":"line 1: not executed"}]}`
	require.NoError(t, ValidateDryRunReport([]byte(v1)))
	rep, err := DecodeDryRunReport([]byte(v1))
	require.NoError(t, err)
	require.Empty(t, rep.Schema)
	require.Equal(t, "001_users", rep.Migrations[0].ID())

	withV2Field := strings.Replace(v1, `"executed":false,`, `"executed":false,"emulated":true,`, 1)
	err = ValidateDryRunReport([]byte(withV2Field))
	var de *DecodeError
	require.ErrorAs(t, err, &de)
	require.Contains(t, de.Message, `unknown property "emulated"`)

	// A version-2 report must say so, and no other version is taken for one.
	for _, schema := range []string{`"confiture.dryrun-report.v3"`, `""`, `null`} {
		other := strings.Replace(v1, `{"direction"`, `{"schema":`+schema+`,"direction"`, 1)
		require.Error(t, ValidateDryRunReport([]byte(other)), schema)
	}
}

func TestInvalidDryRunReports(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(m map[string]any)
		raw    string
		msg    string
	}{
		{name: "empty", raw: " ", msg: "malformed JSON: empty message"},
		{name: "not an object", raw: `[]`, msg: "dry-run report must be a JSON object, got array"},
		{name: "unknown field", mutate: func(m map[string]any) { m["dsn"] = "postgres://admin:s3cret@db/prod" }, msg: `(root): unknown property "dsn"`},
		{name: "missing success", mutate: func(m map[string]any) { delete(m, "success") }, msg: `(root): missing property "success"`},
		{name: "null warnings", mutate: func(m map[string]any) { m["warnings"] = nil }, msg: "/warnings: must be array, got null"},
		{name: "negative duration", mutate: func(m map[string]any) { m["duration_ms"] = -1 }, msg: "/duration_ms: minimum"},
		{name: "bad direction", mutate: func(m map[string]any) { m["direction"] = "sideways" }, msg: "/direction: value must be one of"},
		{name: "bad severity", mutate: func(m map[string]any) { warning(m, 0)["severity"] = "fatal" }, msg: "/warnings/0/severity: value must be one of"},
		{name: "unknown code", mutate: func(m map[string]any) { warning(m, 1)["code"] = "scary" }, msg: "/warnings/1/code: value must be one of"},
		{name: "on_error phase", mutate: func(m map[string]any) { phaseOf(m, 0, 0)["phase"] = PhaseOnError }, msg: "/migrations/0/phases/0/phase: value must be one of"},
		{name: "bad lock mode", mutate: func(m map[string]any) {
			phaseOf(m, 0, 1)["statements"].([]any)[0].(map[string]any)["locks"] = []any{map[string]any{"relation": "users", "mode": "exclusive"}}
		}, msg: "/migrations/0/phases/1/statements/0/locks/0/mode: value must be one of"},
		{name: "line 0", mutate: func(m map[string]any) {
			phaseOf(m, 0, 1)["statements"].([]any)[0].(map[string]any)["line"] = 0
		}, msg: "/migrations/0/phases/1/statements/0/line: minimum"},
		{name: "statement field on a hook", mutate: func(m map[string]any) {
			phaseOf(m, 0, 0)["hooks"].([]any)[0].(map[string]any)["sql"] = "SELECT 1"
		}, msg: `/migrations/0/phases/0/hooks/0: unknown property "sql"`},
		{name: "unknown blocked operation", mutate: func(m map[string]any) {
			phaseOf(m, 0, 1)["statements"].([]any)[0].(map[string]any)["blocks"].([]any)[0].(map[string]any)["blocks"] = []any{"coffee"}
		}, msg: "/migrations/0/phases/1/statements/0/blocks/0/blocks/0: value must be one of"},
		{name: "fractional rows", mutate: func(m map[string]any) {
			phaseOf(m, 0, 1)["statements"].([]any)[0].(map[string]any)["rows"] = 1.5
		}, msg: "/migrations/0/phases/1/statements/0/rows: must be integer, got number"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := []byte(tc.raw)
			if tc.raw == "" {
				var m map[string]any
				require.NoError(t, json.Unmarshal(mustJSON(t, fullDryRunReport()), &m))
				tc.mutate(m)
				data = mustJSON(t, m)
			}
			err := ValidateDryRunReport(data)
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			require.Equal(t, CodeInvalidRequest, de.Code)
			require.Contains(t, de.Message, tc.msg)
			require.NotContains(t, de.Message, "s3cret")
			rep, err := DecodeDryRunReport(data)
			require.Nil(t, rep)
			require.Error(t, err)
		})
	}
}

func warning(m map[string]any, i int) map[string]any {
	return m["warnings"].([]any)[i].(map[string]any)
}

func phaseOf(m map[string]any, mig, phase int) map[string]any {
	return m["migrations"].([]any)[mig].(map[string]any)["phases"].([]any)[phase].(map[string]any)
}

func TestDryRunMigrationReportID(t *testing.T) {
	t.Parallel()
	m := DryRunMigrationReport{Version: "001", Name: "create_users"}
	require.Equal(t, "001_create_users", m.ID())
	require.True(t, strings.HasPrefix(fullDryRunReport().Warnings[0].Migration, fullDryRunReport().Migrations[0].ID()))
}
