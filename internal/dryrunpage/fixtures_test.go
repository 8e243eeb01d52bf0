package dryrunpage

import (
	"fmt"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// Hand-made reports, as the worker's dry-run makes them.

var (
	blocksAccessExclusive = []string{"reads", "writes", "row_locks", "maintenance", "ddl"}
	blocksShare           = []string{"writes", "maintenance", "ddl"}
	blocksShareUpdateExcl = []string{"maintenance", "ddl"}
	blocksRowExclusive    = []string{"ddl"}
)

const mib = 1 << 20

// sample is a migration that rewrites users (150 MiB) under ACCESS EXCLUSIVE, indexes it, builds
// an index on orders concurrently (emulated), with hooks before and after: three tables, each
// class of bar, five warnings.
func sample() *contract.DryRunReport {
	users := func(mode string, blocks []string) contract.DryRunBlock {
		return contract.DryRunBlock{Table: "users", Mode: mode, Blocks: blocks, Bytes: 150 * mib, EstimatedRows: 2_000_000}
	}
	return &contract.DryRunReport{
		Schema: contract.DryRunReportSchemaV2, Run: "5f0c2b0e-5d1a-4c57-9a53-3f0c1e7d2a41", RequestID: "deploy-42", Target: "default",
		Direction: "up", Success: true, DurationMS: 2250,
		Thresholds: &contract.DryRunThresholds{LargeTableBytes: 100 * mib, BlockTableBytes: 10 * mib, BlockMS: 1000},
		Migrations: []contract.DryRunMigrationReport{{
			Version: "001", Name: "add_email", Success: true, DurationMS: 2240,
			Phases: []contract.DryRunPhaseReport{
				{Phase: "before_validation", StartMS: 2, DurationMS: 3, Hooks: []contract.DryRunHookReport{{
					Name: "users_exist", Hook: "assert", DurationMS: 0.6, Rows: 1, Executed: true, StartMS: 2.2, Transaction: 1, HeldMS: 2.5,
					Locks:  []contract.DryRunLock{{Relation: "users", Mode: "AccessShareLock"}},
					Blocks: []contract.DryRunBlock{users("AccessShareLock", []string{"ddl"})},
				}}},
				{Phase: "before_ddl", StartMS: 5.2, DurationMS: 0.1},
				{Phase: "ddl", StartMS: 5.5, DurationMS: 1200, Statements: []contract.DryRunStatementReport{
					{Line: 1, SQL: "ALTER TABLE users ADD COLUMN email text DEFAULT md5(random()::text)", DurationMS: 1100, Executed: true,
						StartMS: 6, Transaction: 2, HeldMS: 1199, Rewrites: []string{"users"},
						Locks:  []contract.DryRunLock{{Relation: "users", Mode: "AccessExclusiveLock"}},
						Tables: []contract.DryRunTableStat{{Name: "users", Bytes: 150 * mib, EstimatedRows: 2_000_000}},
						Blocks: []contract.DryRunBlock{users("AccessExclusiveLock", blocksAccessExclusive)}},
					{Line: 3, SQL: "CREATE INDEX users_email_idx ON users (email)", DurationMS: 40, Executed: true,
						StartMS: 1106, Transaction: 2, HeldMS: 99, Created: []string{"users_email_idx (index)"},
						Locks:  []contract.DryRunLock{{Relation: "users", Mode: "ShareLock"}, {Relation: "users_email_idx", Mode: "AccessExclusiveLock"}},
						Blocks: []contract.DryRunBlock{users("ShareLock", blocksShare)}},
					{Line: 5, SQL: "CREATE INDEX CONCURRENTLY orders_user_idx ON orders (user_id)", DurationMS: 55, Executed: true,
						StartMS: 1146, Transaction: 3, HeldMS: 55, Emulated: true, EmulatedAs: "CREATE INDEX",
						Locks:     []contract.DryRunLock{{Relation: "orders", Mode: "ShareLock"}},
						RealLocks: []contract.DryRunLock{{Relation: "orders", Mode: "ShareUpdateExclusiveLock"}},
						Blocks:    []contract.DryRunBlock{{Table: "orders", Mode: "ShareUpdateExclusiveLock", Blocks: blocksShareUpdateExcl, Bytes: 40 * mib, EstimatedRows: 500_000}}},
					{Line: 7, SQL: "VACUUM users", Skipped: "VACUUM cannot run inside a transaction block; not executed"},
				}},
				{Phase: "after_ddl", StartMS: 1206, DurationMS: 1030, Hooks: []contract.DryRunHookReport{
					{Name: "fill_email", Hook: "backfill", DurationMS: 1000, Rows: 41000, Executed: true, Sampled: true,
						Message: "sampled 8 batch(es): 41000 row(s) in 1000 ms; about 48.8s for 2000000 rows",
						StartMS: 1207, Transaction: 4, HeldMS: 1000,
						Locks:  []contract.DryRunLock{{Relation: "users", Mode: "RowExclusiveLock"}, {Relation: "audit_log", Mode: "RowExclusiveLock"}},
						Blocks: []contract.DryRunBlock{users("RowExclusiveLock", blocksRowExclusive), {Table: "audit_log", Mode: "RowExclusiveLock", Blocks: blocksRowExclusive, Bytes: 8192}}},
					{Name: "notify", Hook: "notify-slack", Skipped: "not executed: the hook does not run inside the migration transaction"},
				}},
				{Phase: "after_validation", StartMS: 2236, DurationMS: 0.1},
				{Phase: "cleanup", StartMS: 2236.2, DurationMS: 0.1},
			},
		}},
		Warnings: []contract.DryRunWarning{
			{Severity: "warning", Code: "table_rewrite", Message: "table users is rewritten (its storage replaced) under an exclusive lock", Migration: "001_add_email", Phase: "ddl", Line: 1},
			{Severity: "warning", Code: "blocks_application", Message: "reads and writes of users (150.0 MiB) would wait 1.2 s", Migration: "001_add_email", Phase: "ddl", Line: 1},
			{Severity: "info", Code: "emulated", Message: "line 5: ran as CREATE INDEX; orders would take ShareUpdateExclusiveLock", Migration: "001_add_email", Phase: "ddl", Line: 5},
			{Severity: "warning", Code: "not_transactional", Message: "line 7: VACUUM users: not executed by the dry-run (VACUUM)", Migration: "001_add_email", Phase: "ddl", Line: 7},
			{Severity: "info", Code: "backfill_estimate", Message: "hook fill_email (backfill) sampled 8 batch(es)", Migration: "001_add_email", Phase: "after_ddl", Hook: "fill_email"},
			{Severity: "info", Code: "hook_not_executed", Message: "hook notify (notify-slack) not executed", Migration: "001_add_email", Phase: "after_ddl", Hook: "notify"},
		},
	}
}

// failed is a report whose second statement failed on a lock timeout.
func failed() *contract.DryRunReport {
	return &contract.DryRunReport{
		Schema: contract.DryRunReportSchemaV2, Target: "default", Direction: "up", Success: false, DurationMS: 2010,
		Migrations: []contract.DryRunMigrationReport{{
			Version: "002", Name: "orders_fk", Success: false, DurationMS: 2005,
			Error: "line 2: ERROR: canceling statement due to lock timeout (SQLSTATE 55P03)",
			Phases: []contract.DryRunPhaseReport{{Phase: "ddl", StartMS: 1, DurationMS: 2004, Statements: []contract.DryRunStatementReport{
				{Line: 1, SQL: "ALTER TABLE orders ADD COLUMN note text", DurationMS: 0.42, Executed: true, StartMS: 1.2, Transaction: 1, HeldMS: 2003,
					Locks:  []contract.DryRunLock{{Relation: "orders", Mode: "AccessExclusiveLock"}},
					Blocks: []contract.DryRunBlock{{Table: "orders", Mode: "AccessExclusiveLock", Blocks: blocksAccessExclusive, Bytes: 16384}}},
				{Line: 2, SQL: "ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users", DurationMS: 2000, StartMS: 2,
					Error: "ERROR: canceling statement due to lock timeout (SQLSTATE 55P03): would wait for a lock held by pid 4242"},
			}}},
		}},
		Warnings: []contract.DryRunWarning{{Severity: "error", Code: "lock_timeout", Message: "line 2: would wait for a lock held by pid 4242 running \"BEGIN; LOCK orders\"",
			Migration: "002_orders_fk", Phase: "ddl", Line: 2}},
	}
}

// nothingPending is the report of a request whose migrations are all applied.
func nothingPending() *contract.DryRunReport {
	return &contract.DryRunReport{Schema: contract.DryRunReportSchemaV2, Target: "default", Direction: "up", Success: true, DurationMS: 1.5,
		Migrations: []contract.DryRunMigrationReport{}, Warnings: []contract.DryRunWarning{}}
}

// fifty is one migration of 50 statements over ten tables in one transaction: each adds a
// column (ACCESS EXCLUSIVE) or creates an index (SHARE), every tenth with a warning.
func fifty() *contract.DryRunReport {
	rep := &contract.DryRunReport{Schema: contract.DryRunReportSchemaV2, Target: "default", Direction: "up", Success: true, DurationMS: 520}
	var stmts []contract.DryRunStatementReport
	for i := range 50 {
		table := fmt.Sprintf("table_%02d", i%10)
		s := contract.DryRunStatementReport{Line: 2*i + 1, DurationMS: 9.5, Executed: true, StartMS: 10 + float64(i)*10, Transaction: 1, HeldMS: 500 - float64(i)*10}
		if i%2 == 0 {
			s.SQL = fmt.Sprintf("ALTER TABLE %s ADD COLUMN c%d integer", table, i)
			s.Locks = []contract.DryRunLock{{Relation: table, Mode: "AccessExclusiveLock"}}
			s.Blocks = []contract.DryRunBlock{{Table: table, Mode: "AccessExclusiveLock", Blocks: blocksAccessExclusive, Bytes: int64(i+1) * mib, EstimatedRows: int64(i+1) * 10_000}}
		} else {
			s.SQL = fmt.Sprintf("CREATE INDEX %s_c%d_idx ON %s (c%d)", table, i-1, table, i-1)
			s.Locks = []contract.DryRunLock{{Relation: table, Mode: "ShareLock"}}
			s.Blocks = []contract.DryRunBlock{{Table: table, Mode: "ShareLock", Blocks: blocksShare, Bytes: int64(i+1) * mib, EstimatedRows: int64(i+1) * 10_000}}
			s.Created = []string{fmt.Sprintf("%s_c%d_idx (index)", table, i-1)}
		}
		stmts = append(stmts, s)
		if i%10 == 0 {
			rep.Warnings = append(rep.Warnings, contract.DryRunWarning{Severity: "warning", Code: "blocks_application",
				Message: fmt.Sprintf("reads and writes of %s would wait %d ms", table, 500-i*10), Migration: "001_fifty", Phase: "ddl", Line: s.Line})
		}
	}
	rep.Migrations = []contract.DryRunMigrationReport{{Version: "001", Name: "fifty", Success: true, DurationMS: 515,
		Phases: []contract.DryRunPhaseReport{{Phase: "ddl", StartMS: 5, DurationMS: 510, Statements: stmts}}}}
	return rep
}
