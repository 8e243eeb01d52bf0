package dryrun

import "github.com/confiture-io/confiture-worker/internal/contract"

// The report types are part of the public contract (schemas/dryrun-report.v1.json) and live
// in package contract, so that clients such as submit read them without depending on the
// worker. This package fills them directly; the aliases below only keep older callers
// compiling. New code should name the contract types.
type (
	// Report is contract.DryRunReport.
	Report = contract.DryRunReport
	// MigrationReport is contract.DryRunMigrationReport.
	MigrationReport = contract.DryRunMigrationReport
	// PhaseReport is contract.DryRunPhaseReport.
	PhaseReport = contract.DryRunPhaseReport
	// StatementReport is contract.DryRunStatementReport.
	StatementReport = contract.DryRunStatementReport
	// HookReport is contract.DryRunHookReport.
	HookReport = contract.DryRunHookReport
	// Lock is contract.DryRunLock.
	Lock = contract.DryRunLock
	// TableStat is contract.DryRunTableStat.
	TableStat = contract.DryRunTableStat
	// Warning is contract.DryRunWarning.
	Warning = contract.DryRunWarning
)
