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
	// Schema is DryRunReportSchemaV2 in a report of this version; a version-1 report has none.
	Schema    string `json:"schema"`
	Run       string `json:"run,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Target    string `json:"target,omitempty"`
	Direction string `json:"direction"`
	// Success is false when a statement or hook failed (that migration's Error says which).
	Success    bool                    `json:"success"`
	DurationMS float64                 `json:"duration_ms"`
	Migrations []DryRunMigrationReport `json:"migrations"`
	Warnings   []DryRunWarning         `json:"warnings"`
	// Thresholds are the limits the warnings were judged against.
	Thresholds *DryRunThresholds `json:"thresholds,omitempty"`
}

// DryRunReportSchemaV2 identifies a report of schemas/dryrun-report.v2.json.
const DryRunReportSchemaV2 = "confiture.dryrun-report.v2"

// DryRunThresholds are the limits a dry-run judged its warnings against, from the worker's
// configuration.
type DryRunThresholds struct {
	// LargeTableBytes: ACCESS EXCLUSIVE on a larger table is access_exclusive_large_table.
	LargeTableBytes int64 `json:"large_table_bytes"`
	// BlockTableBytes and BlockMS: reads or writes blocked longer than BlockMS on a table
	// larger than BlockTableBytes is blocks_application.
	BlockTableBytes int64   `json:"block_table_bytes"`
	BlockMS         float64 `json:"block_ms"`
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

// Failed returns the first migration of the report that failed, or nil.
func (r *DryRunReport) Failed() *DryRunMigrationReport {
	for i := range r.Migrations {
		if !r.Migrations[i].Success {
			return &r.Migrations[i]
		}
	}
	return nil
}

// ID is the migration's display identifier, "<version>_<name>".
func (m *DryRunMigrationReport) ID() string { return m.Version + "_" + m.Name }

// DryRunPhaseReport is one phase of a migration: the statements of the ddl phase, the hooks of
// the others.
type DryRunPhaseReport struct {
	Phase string `json:"phase"`
	// StartMS is when the phase began, in milliseconds from the start of the dry-run.
	StartMS    float64                 `json:"start_ms,omitempty"`
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
	// Emulated is set for a statement that cannot run in a transaction block and ran as its
	// transactional equivalent, EmulatedAs (CREATE INDEX for CREATE INDEX CONCURRENTLY, ...):
	// Locks are the emulation's, RealLocks those the PostgreSQL documentation gives for the
	// statement as written, and DurationMS is an estimate.
	Emulated   bool         `json:"emulated,omitempty"`
	EmulatedAs string       `json:"emulated_as,omitempty"`
	RealLocks  []DryRunLock `json:"real_locks,omitempty"`
	// StartMS is when it began, in milliseconds from the start of the dry-run.
	StartMS float64 `json:"start_ms,omitempty"`
	// Transaction numbers the transactions of a real run, from 1 across the report: steps with
	// the same number would commit together, and hold their locks until then. 0 when it was
	// not executed.
	Transaction int `json:"transaction,omitempty"`
	// HeldMS is how long its locks would be held in a real run: from its start to the end of
	// its transaction, as measured in the dry-run.
	HeldMS float64 `json:"held_ms,omitempty"`
	// Blocks says, per table it locked, what other sessions could not do meanwhile.
	Blocks []DryRunBlock `json:"blocks,omitempty"`
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
	// StartMS is when it began, in milliseconds from the start of the dry-run.
	StartMS float64 `json:"start_ms,omitempty"`
	// Transaction numbers the transactions of a real run, from 1 across the report: steps with
	// the same number would commit together, and hold their locks until then. 0 when it was
	// not executed.
	Transaction int `json:"transaction,omitempty"`
	// HeldMS is how long its locks would be held in a real run: from its start to the end of
	// its transaction, as measured in the dry-run.
	HeldMS float64 `json:"held_ms,omitempty"`
	// Blocks says, per table it locked, what other sessions could not do meanwhile.
	Blocks []DryRunBlock `json:"blocks,omitempty"`
}

// DryRunLock is a relation lock taken by a statement or a hook.
type DryRunLock struct {
	Relation string `json:"relation"`
	// Mode is PostgreSQL's name for it, as in pg_locks: AccessExclusiveLock, ShareLock, ...
	Mode string `json:"mode"`
}

// DryRunLockModes are PostgreSQL's table lock modes, from the weakest, as pg_locks names them
// (DryRunLock.Mode, DryRunBlock.Mode).
var DryRunLockModes = []string{
	"AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
	"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock",
}

// DryRunTableStat is the size of a table a statement touched, measured inside the dry-run.
type DryRunTableStat struct {
	Name          string `json:"name"`
	Bytes         int64  `json:"bytes"`
	EstimatedRows int64  `json:"estimated_rows"`
}

// DryRunBlock is what a step's locks on one table keep other sessions from doing.
type DryRunBlock struct {
	Table string `json:"table"`
	// Mode is the strongest lock the step took on the table (for an emulated statement, the
	// one the real statement takes).
	Mode string `json:"mode"`
	// Blocks lists the operations of other sessions that wait for it, among DryRunBlocked.
	Blocks        []string `json:"blocks"`
	Bytes         int64    `json:"bytes"`
	EstimatedRows int64    `json:"estimated_rows"`
	// New says the dry-run created the table: no application uses it yet, so Blocks is empty.
	New bool `json:"new,omitempty"`
	// Inferred says the mode was not seen but inferred: the statement named a table whose lock
	// the dry-run already held from an earlier transaction of a real run, where PostgreSQL
	// lists a lock requested again only once.
	Inferred bool `json:"inferred,omitempty"`
}

// Operations of other sessions a lock can block, in DryRunBlock.Blocks.
const (
	// DryRunBlocksReads: SELECT (ACCESS SHARE).
	DryRunBlocksReads = "reads"
	// DryRunBlocksWrites: INSERT, UPDATE, DELETE, MERGE (ROW EXCLUSIVE).
	DryRunBlocksWrites = "writes"
	// DryRunBlocksRowLocks: SELECT ... FOR UPDATE / FOR SHARE (ROW SHARE).
	DryRunBlocksRowLocks = "row_locks"
	// DryRunBlocksMaintenance: VACUUM (and autovacuum), ANALYZE, CREATE INDEX CONCURRENTLY
	// (SHARE UPDATE EXCLUSIVE).
	DryRunBlocksMaintenance = "maintenance"
	// DryRunBlocksDDL: ALTER TABLE, DROP, TRUNCATE (ACCESS EXCLUSIVE).
	DryRunBlocksDDL = "ddl"
)

// DryRunBlocked lists the operations of DryRunBlock.Blocks in this order.
var DryRunBlocked = []string{DryRunBlocksReads, DryRunBlocksWrites, DryRunBlocksRowLocks, DryRunBlocksMaintenance, DryRunBlocksDDL}

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
	// DryRunCodeEmulated: a statement that cannot run in a transaction block ran as its
	// transactional equivalent; its locks are reported as the real statement takes them.
	DryRunCodeEmulated = "emulated"
	// DryRunCodeBlocksApplication: reads or writes on a table above the block size threshold
	// would wait longer than the block time threshold.
	DryRunCodeBlocksApplication = "blocks_application"
)

// DryRunWarningCodes lists every warning code this version reports.
var DryRunWarningCodes = []string{
	DryRunCodeAccessExclusiveLarge, DryRunCodeTableRewrite, DryRunCodeFullScanUnderLock,
	DryRunCodeNotTransactional, DryRunCodeTxControl, DryRunCodeEnumValueUsed,
	DryRunCodeHookNotExecuted, DryRunCodeLockTimeout, DryRunCodeBackfillEstimate,
	DryRunCodeEmulated, DryRunCodeBlocksApplication,
}
