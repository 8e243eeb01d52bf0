package contract

// The dry-run report: the data of a dryrun.report event. schemas/dryrun-report.v1.json is the
// source of truth for every field; tests check that these types and the schema agree.
//
// The worker (package dryrun) fills these types; clients such as submit read them, depending on
// this package only.

// DryRunReport is the outcome of one dry-run: every pending migration of a request, run for
// real inside one transaction on the target, measured, then rolled back. It is the data of the
// dryrun.report event.
type DryRunReport struct {
	Run       string `json:"run,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Target    string `json:"target,omitempty"`
	Direction string `json:"direction"`
	// Success is false when a statement or hook failed (that migration's Error says which).
	Success    bool                    `json:"success"`
	DurationMS float64                 `json:"duration_ms"`
	Migrations []DryRunMigrationReport `json:"migrations"`
	Warnings   []DryRunWarning         `json:"warnings"`
}

// DryRunMigrationReport is what the dry-run of one migration did.
type DryRunMigrationReport struct {
	Version    string              `json:"version"`
	Name       string              `json:"name"`
	Success    bool                `json:"success"`
	Error      string              `json:"error,omitempty"`
	DurationMS float64             `json:"duration_ms"`
	Phases     []DryRunPhaseReport `json:"phases"`
}

// ID is the migration's display identifier, "<version>_<name>".
func (m *DryRunMigrationReport) ID() string { return m.Version + "_" + m.Name }

// DryRunPhaseReport is one phase of a migration: the statements of the ddl phase, the hooks of
// the others.
type DryRunPhaseReport struct {
	Phase      string                  `json:"phase"`
	DurationMS float64                 `json:"duration_ms"`
	Statements []DryRunStatementReport `json:"statements,omitempty"`
	Hooks      []DryRunHookReport      `json:"hooks,omitempty"`
}

// DryRunStatementReport measures one statement of a migration body.
type DryRunStatementReport struct {
	// Line is the 1-based line of the statement in the migration's SQL.
	Line int `json:"line"`
	// SQL is the statement's summary (whitespace collapsed, cut to about 80 characters).
	SQL        string  `json:"sql"`
	DurationMS float64 `json:"duration_ms"`
	Rows       int64   `json:"rows"`
	// Locks are the relation locks the statement acquired, in relations outside the system
	// schemas.
	Locks []DryRunLock `json:"locks,omitempty"`
	// Rewrites names the tables whose storage (relfilenode) the statement replaced.
	Rewrites []string `json:"rewrites,omitempty"`
	// Created and Dropped name the relations and functions the statement created or dropped,
	// as "schema.name (kind)".
	Created []string `json:"created,omitempty"`
	Dropped []string `json:"dropped,omitempty"`
	// Tables are the ordinary tables the statement locked, measured after it ran.
	Tables   []DryRunTableStat `json:"tables,omitempty"`
	Executed bool              `json:"executed"`
	// Skipped says why the statement was not executed.
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// DryRunHookReport measures one hook of a hook phase.
type DryRunHookReport struct {
	// Name is the declared name of the hook, Hook its type.
	Name       string  `json:"name"`
	Hook       string  `json:"hook"`
	DurationMS float64 `json:"duration_ms"`
	Rows       int64   `json:"rows"`
	Executed   bool    `json:"executed"`
	// Skipped says why the hook was not executed and what it would have done.
	Skipped string `json:"skipped,omitempty"`
	// Sampled is set for a batched hook (a backfill), which the dry-run runs only for its first
	// batches; Message then holds the measured rate and the extrapolated duration.
	Sampled bool `json:"sampled,omitempty"`
	// Message is the hook's own summary of what it did.
	Message  string            `json:"message,omitempty"`
	Error    string            `json:"error,omitempty"`
	Locks    []DryRunLock      `json:"locks,omitempty"`
	Rewrites []string          `json:"rewrites,omitempty"`
	Created  []string          `json:"created,omitempty"`
	Dropped  []string          `json:"dropped,omitempty"`
	Tables   []DryRunTableStat `json:"tables,omitempty"`
}

// DryRunLock is a relation lock taken by a statement or a hook.
type DryRunLock struct {
	Relation string `json:"relation"`
	// Mode is PostgreSQL's name for it, as in pg_locks: AccessExclusiveLock, ShareLock, ...
	Mode string `json:"mode"`
}

// DryRunTableStat is the size of a table a statement touched, measured inside the dry-run.
type DryRunTableStat struct {
	Name          string `json:"name"`
	Bytes         int64  `json:"bytes"`
	EstimatedRows int64  `json:"estimated_rows"`
}

// DryRunWarning is something a person should look at before running the migration for real.
type DryRunWarning struct {
	Severity  string `json:"severity"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	Migration string `json:"migration,omitempty"`
	Phase     string `json:"phase,omitempty"`
	// Line of the statement in the migration's SQL, when a statement caused it.
	Line int `json:"line,omitempty"`
	// Hook names the hook that caused it, when one did.
	Hook string `json:"hook,omitempty"`
}

// Severities of a DryRunWarning, from the mildest.
const (
	DryRunSeverityInfo    = "info"
	DryRunSeverityWarning = "warning"
	DryRunSeverityError   = "error"
)

// DryRunSeverities lists the severities from the mildest to the gravest.
var DryRunSeverities = []string{DryRunSeverityInfo, DryRunSeverityWarning, DryRunSeverityError}

// DryRunSeverityRank orders severities: 0 for info, 1 for warning, 2 for error, and -1 for a
// severity this version does not know.
func DryRunSeverityRank(severity string) int {
	for i, s := range DryRunSeverities {
		if s == severity {
			return i
		}
	}
	return -1
}

// Codes of a DryRunWarning.
const (
	// DryRunCodeAccessExclusiveLarge: ACCESS EXCLUSIVE on a table above the size threshold.
	DryRunCodeAccessExclusiveLarge = "access_exclusive_large_table"
	// DryRunCodeTableRewrite: the statement rewrote a table.
	DryRunCodeTableRewrite = "table_rewrite"
	// DryRunCodeFullScanUnderLock: the statement scans a non-empty table while holding a
	// strong lock (a CHECK or FOREIGN KEY without NOT VALID, SET NOT NULL).
	DryRunCodeFullScanUnderLock = "full_scan_under_lock"
	// DryRunCodeNotTransactional: the statement cannot run in a transaction block; not
	// executed.
	DryRunCodeNotTransactional = "not_transactional"
	// DryRunCodeTxControl: the migration controls the transaction itself; refused.
	DryRunCodeTxControl = "transaction_control"
	// DryRunCodeEnumValueUsed: a value added with ALTER TYPE ... ADD VALUE is used later in
	// the same migration, before it could have been committed.
	DryRunCodeEnumValueUsed = "enum_value_used_before_commit"
	// DryRunCodeHookNotExecuted: a non-transactional hook was described, not executed.
	DryRunCodeHookNotExecuted = "hook_not_executed"
	// DryRunCodeLockTimeout: a statement would have waited for a lock held by another session.
	DryRunCodeLockTimeout = "lock_timeout"
	// DryRunCodeBackfillEstimate: a batched backfill was sampled; the message holds its
	// measured rate and extrapolated duration.
	DryRunCodeBackfillEstimate = "backfill_estimate"
)

// DryRunWarningCodes lists every warning code this version reports.
var DryRunWarningCodes = []string{
	DryRunCodeAccessExclusiveLarge, DryRunCodeTableRewrite, DryRunCodeFullScanUnderLock,
	DryRunCodeNotTransactional, DryRunCodeTxControl, DryRunCodeEnumValueUsed,
	DryRunCodeHookNotExecuted, DryRunCodeLockTimeout, DryRunCodeBackfillEstimate,
}
