package dryrun

// Report is the outcome of one dry-run. It marshals to the data of the dryrun.report event.
type Report struct {
	Run        string            `json:"run,omitempty"`
	RequestID  string            `json:"request_id,omitempty"`
	Target     string            `json:"target,omitempty"`
	Direction  string            `json:"direction"`
	Success    bool              `json:"success"`
	DurationMS float64           `json:"duration_ms"`
	Migrations []MigrationReport `json:"migrations"`
	Warnings   []Warning         `json:"warnings"`
}

// MigrationReport is what the dry-run of one migration did.
type MigrationReport struct {
	Version    string        `json:"version"`
	Name       string        `json:"name"`
	Success    bool          `json:"success"`
	Error      string        `json:"error,omitempty"`
	DurationMS float64       `json:"duration_ms"`
	Phases     []PhaseReport `json:"phases"`
}

// PhaseReport is one phase of a migration: the statements of the ddl phase, the hooks of the
// others.
type PhaseReport struct {
	Phase      string            `json:"phase"`
	DurationMS float64           `json:"duration_ms"`
	Statements []StatementReport `json:"statements,omitempty"`
	Hooks      []HookReport      `json:"hooks,omitempty"`
}

// StatementReport measures one statement of a migration body.
type StatementReport struct {
	// Line is the 1-based line of the statement in the migration's SQL.
	Line int `json:"line"`
	// SQL is the statement's summary (whitespace collapsed, cut to about 80 characters).
	SQL        string  `json:"sql"`
	DurationMS float64 `json:"duration_ms"`
	Rows       int64   `json:"rows"`
	// Locks are the relation locks the statement acquired, in relations outside the system
	// schemas.
	Locks []Lock `json:"locks,omitempty"`
	// Rewrites names the tables whose storage (relfilenode) the statement replaced.
	Rewrites []string `json:"rewrites,omitempty"`
	// Created and Dropped name the relations and functions the statement created or dropped,
	// as "schema.name (kind)".
	Created []string `json:"created,omitempty"`
	Dropped []string `json:"dropped,omitempty"`
	// Tables are the ordinary tables the statement locked, measured after it ran.
	Tables   []TableStat `json:"tables,omitempty"`
	Executed bool        `json:"executed"`
	// Skipped says why the statement was not executed.
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// HookReport measures one hook of a hook phase.
type HookReport struct {
	// Name is the declared name of the hook, Hook its type.
	Name       string  `json:"name"`
	Hook       string  `json:"hook"`
	DurationMS float64 `json:"duration_ms"`
	Rows       int64   `json:"rows"`
	Executed   bool    `json:"executed"`
	// Skipped says why the hook was not executed and what it would have done.
	Skipped  string      `json:"skipped,omitempty"`
	Error    string      `json:"error,omitempty"`
	Locks    []Lock      `json:"locks,omitempty"`
	Rewrites []string    `json:"rewrites,omitempty"`
	Created  []string    `json:"created,omitempty"`
	Dropped  []string    `json:"dropped,omitempty"`
	Tables   []TableStat `json:"tables,omitempty"`
}

// Lock is a relation lock taken by a statement or a hook.
type Lock struct {
	Relation string `json:"relation"`
	// Mode is PostgreSQL's name for it, as in pg_locks: AccessExclusiveLock, ShareLock, ...
	Mode string `json:"mode"`
}

// TableStat is the size of a table a statement touched, measured inside the dry-run.
type TableStat struct {
	Name          string `json:"name"`
	Bytes         int64  `json:"bytes"`
	EstimatedRows int64  `json:"estimated_rows"`
}

// Severities of a Warning.
const (
	SeverityInfo    = "info"
	SeverityWarning = "warning"
	SeverityError   = "error"
)

// Codes of a Warning.
const (
	// CodeAccessExclusiveLarge: ACCESS EXCLUSIVE on a table above Options.LargeTable.
	CodeAccessExclusiveLarge = "access_exclusive_large_table"
	// CodeTableRewrite: the statement rewrote a table.
	CodeTableRewrite = "table_rewrite"
	// CodeFullScanUnderLock: the statement scans a non-empty table while holding a strong lock
	// (a CHECK or FOREIGN KEY without NOT VALID, SET NOT NULL).
	CodeFullScanUnderLock = "full_scan_under_lock"
	// CodeNotTransactional: the statement cannot run in a transaction block; not executed.
	CodeNotTransactional = "not_transactional"
	// CodeTxControl: the migration controls the transaction itself; refused.
	CodeTxControl = "transaction_control"
	// CodeEnumValueUsed: a value added with ALTER TYPE ... ADD VALUE is used later in the same
	// migration, before it could have been committed.
	CodeEnumValueUsed = "enum_value_used_before_commit"
	// CodeHookNotExecuted: a non-transactional hook was described, not executed.
	CodeHookNotExecuted = "hook_not_executed"
	// CodeLockTimeout: a statement would have waited for a lock held by another session.
	CodeLockTimeout = "lock_timeout"
)

// Warning is something a person should look at before running the migration for real.
type Warning struct {
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
