package dryrun

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/sqlscript"
)

var (
	savepointControlRE = regexp.MustCompile(`(?i)^\s*(SAVEPOINT|RELEASE|ROLLBACK\s+(WORK\s+|TRANSACTION\s+)?TO)\b`)
	alterTableRE       = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\b`)
	// A constraint whose validation scans the table: CHECK or FOREIGN KEY (or a column
	// REFERENCES) added without NOT VALID, or SET NOT NULL.
	scanConstraintRE = regexp.MustCompile(`(?is)\bADD\s+(CONSTRAINT\s+\S+\s+)?(CHECK|FOREIGN\s+KEY)\b|\bADD\s+(COLUMN\s+)?\S+\s+.*\bREFERENCES\b`)
	notValidRE       = regexp.MustCompile(`(?is)\bNOT\s+VALID\b`)
	setNotNullRE     = regexp.MustCompile(`(?is)\bSET\s+NOT\s+NULL\b`)
	addValueRE       = regexp.MustCompile(`(?is)^\s*ALTER\s+TYPE\s+(\S+)\s+ADD\s+VALUE\s+(?:IF\s+NOT\s+EXISTS\s+)?'((?:[^']|'')*)'`)
)

// isSavepointControl reports whether sql is SAVEPOINT, RELEASE or ROLLBACK TO: those run
// without a savepoint of the dry-run around them, which releasing would release theirs too.
func isSavepointControl(sql string) bool { return savepointControlRE.MatchString(sql) }

// strongLocks are the modes under which a table scan blocks writes.
var strongLocks = map[string]bool{
	"AccessExclusiveLock": true, "ExclusiveLock": true, "ShareRowExclusiveLock": true, "ShareLock": true,
}

// scanWarning flags a statement that scans a non-empty table to validate a constraint while
// holding a strong lock on it. It is a heuristic on the statement's text.
func (r *runner) scanWarning(ctx context.Context, tx pgx.Tx, base contract.DryRunWarning, s sqlscript.Statement, m measured) error {
	if !alterTableRE.MatchString(s.SQL) {
		return nil
	}
	var what string
	switch {
	case setNotNullRE.MatchString(s.SQL):
		what = "SET NOT NULL scans the whole table to check it; consider a CHECK (col IS NOT NULL) NOT VALID constraint, VALIDATE CONSTRAINT, then SET NOT NULL"
	case scanConstraintRE.MatchString(s.SQL) && !notValidRE.MatchString(s.SQL):
		what = "adding a CHECK or FOREIGN KEY constraint without NOT VALID scans the whole table; add it NOT VALID, then VALIDATE CONSTRAINT"
	default:
		return nil
	}
	for oid, modes := range m.held {
		rel, ok := m.before.relations[oid]
		if !ok || rel.kind != "r" {
			continue
		}
		strong := false
		for _, mode := range modes {
			strong = strong || strongLocks[mode]
		}
		if !strong {
			continue
		}
		full, err := nonEmpty(ctx, tx, oid)
		if err != nil {
			return fmt.Errorf("dryrun: count rows of %s: %w", rel.name, err)
		}
		if !full {
			continue
		}
		w := base
		w.Severity, w.Code = contract.DryRunSeverityWarning, contract.DryRunCodeFullScanUnderLock
		w.Message = fmt.Sprintf("line %d: %s holds a strong lock on %s while scanning it: %s", s.Line, s.Summary(), rel.name, what)
		r.warn(w)
	}
	return nil
}

// enumWarnings flags a value added with ALTER TYPE ... ADD VALUE that a later statement of the
// same migration uses: PostgreSQL refuses to use it before the transaction that added it
// commits ("unsafe use of new value").
//
// A no_transaction migration commits the ADD VALUE before its next statement in a real run, so
// there the use is fine; but the dry-run, in one transaction, cannot run it, and says so.
func (r *runner) enumWarnings(migration string, noTx bool, stmts []sqlscript.Statement) {
	for i, s := range stmts {
		sub := addValueRE.FindStringSubmatch(s.SQL)
		if sub == nil {
			continue
		}
		literal := "'" + sub[2] + "'"
		for _, later := range stmts[i+1:] {
			if !strings.Contains(later.SQL, literal) {
				continue
			}
			msg := fmt.Sprintf("line %d uses %s, added to %s at line %d in the same transaction: the new value cannot be used before it commits; move the ALTER TYPE ... ADD VALUE to an earlier migration",
				later.Line, literal, sub[1], s.Line)
			if noTx {
				msg = fmt.Sprintf("line %d uses %s, added to %s at line %d: a real run of this no_transaction migration commits line %d first, so it can, but the dry-run runs in one transaction and cannot; to dry-run what follows, move the ALTER TYPE ... ADD VALUE to a migration of its own",
					later.Line, literal, sub[1], s.Line, s.Line)
			}
			r.warn(contract.DryRunWarning{
				Severity: contract.DryRunSeverityError, Code: contract.DryRunCodeEnumValueUsed, Migration: migration, Phase: "ddl", Line: later.Line,
				Message: msg,
			})
		}
	}
}
