package dryrun

import (
	"fmt"
	"slices"
	"strings"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/units"
)

// lockModes are PostgreSQL's table lock modes, from the weakest.
var lockModes = contract.DryRunLockModes

// conflicts is the table of conflicting lock modes of "Explicit Locking" (PostgreSQL 15,
// section 13.3.1, table 13.2): conflicts[m] lists the modes that cannot be granted while
// another session holds m.
var conflicts = map[string][]string{
	"AccessShareLock":          {"AccessExclusiveLock"},
	"RowShareLock":             {"ExclusiveLock", "AccessExclusiveLock"},
	"RowExclusiveLock":         {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"},
	"ShareUpdateExclusiveLock": {"ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"},
	"ShareLock":                {"RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"},
	"ShareRowExclusiveLock":    {"RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"},
	"ExclusiveLock":            {"RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"},
	"AccessExclusiveLock":      lockModes,
}

// operationLock is the lock each operation of contract.DryRunBlocked takes on its table.
var operationLock = map[string]string{
	contract.DryRunBlocksReads:       "AccessShareLock",          // SELECT
	contract.DryRunBlocksRowLocks:    "RowShareLock",             // SELECT ... FOR UPDATE / FOR SHARE
	contract.DryRunBlocksWrites:      "RowExclusiveLock",         // INSERT, UPDATE, DELETE, MERGE
	contract.DryRunBlocksMaintenance: "ShareUpdateExclusiveLock", // VACUUM, ANALYZE, CREATE INDEX CONCURRENTLY
	contract.DryRunBlocksDDL:         "AccessExclusiveLock",      // ALTER TABLE, DROP, TRUNCATE
}

// blockedBy returns the operations of other sessions that wait while mode is held on their
// table, in the order of contract.DryRunBlocked; nil for a mode that is not a table lock mode
// (SIReadLock).
func blockedBy(mode string) []string {
	held, ok := conflicts[mode]
	if !ok {
		return nil
	}
	out := []string{}
	for _, op := range contract.DryRunBlocked {
		if slices.Contains(held, operationLock[op]) {
			out = append(out, op)
		}
	}
	return out
}

// stronger reports whether lock mode a blocks more than b (later in lockModes).
func stronger(a, b string) bool { return slices.Index(lockModes, a) > slices.Index(lockModes, b) }

// blocks returns, per table among tables that a lock of locks is on, the strongest mode and
// what it blocks. Tables in created (by the dry-run itself) block nothing: no application uses
// them yet. Relations that are not tables (indexes, sequences) are left out.
func blocks(locks []contract.DryRunLock, tables []contract.DryRunTableStat, created map[string]bool) []contract.DryRunBlock {
	var out []contract.DryRunBlock
	for _, t := range tables {
		mode := ""
		for _, l := range locks {
			if l.Relation == t.Name && conflicts[l.Mode] != nil && (mode == "" || stronger(l.Mode, mode)) {
				mode = l.Mode
			}
		}
		if mode == "" {
			continue
		}
		b := contract.DryRunBlock{Table: t.Name, Mode: mode, Blocks: blockedBy(mode), Bytes: t.Bytes, EstimatedRows: t.EstimatedRows}
		if created[t.Name] {
			b.Blocks, b.New = []string{}, true
		}
		out = append(out, b)
	}
	return out
}

// blockedWords says what a block keeps applications from doing, for a warning: "reads and
// writes", "writes", or "" when neither.
func blockedWords(b contract.DryRunBlock) string {
	var ws []string
	for _, op := range []string{contract.DryRunBlocksReads, contract.DryRunBlocksWrites} {
		if slices.Contains(b.Blocks, op) {
			ws = append(ws, op)
		}
	}
	return strings.Join(ws, " and ")
}

// blockWarning is the blocks_application warning for a step that holds b for heldMS, or false
// when the step blocks neither reads nor writes there, or not for long enough, or the table is
// not larger than the threshold.
func (r *runner) blockWarning(base contract.DryRunWarning, b contract.DryRunBlock, heldMS float64, until string) (contract.DryRunWarning, bool) {
	what := blockedWords(b)
	if what == "" || heldMS <= float64(r.opts.BlockTime.Microseconds())/1000 || b.Bytes <= r.opts.BlockTableSize {
		return contract.DryRunWarning{}, false
	}
	w := base
	w.Severity, w.Code = contract.DryRunSeverityWarning, contract.DryRunCodeBlocksApplication
	w.Message = fmt.Sprintf("%s on %s (%s, about %d rows) would wait about %s: %s held until %s",
		what, b.Table, units.Bytes(b.Bytes), b.EstimatedRows, units.Millis(heldMS), b.Mode, until)
	return w, true
}
