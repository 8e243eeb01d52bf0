package sqlscript

import (
	"slices"
	"strings"
)

// Unwrap drops the BEGIN at the start of a script and the COMMIT at its end when they wrap
// the whole of it, as migrations written for golang-migrate often do (that tool does not run a
// migration in a transaction of its own). The worker runs a migration in a transaction anyway,
// so the pair means nothing more. Only the plain forms count (BEGIN, BEGIN WORK|TRANSACTION,
// START TRANSACTION; COMMIT or END, with WORK or TRANSACTION): BEGIN ISOLATION LEVEL ..., a
// ROLLBACK at the end, or transaction control anywhere else is left in place, for the caller
// to refuse. wrapped says whether the pair was dropped.
func Unwrap(stmts []Statement) (inner []Statement, wrapped bool) {
	if len(stmts) < 2 || !plainBegin(stmts[0]) || !plainCommit(stmts[len(stmts)-1]) {
		return stmts, false
	}
	inner = stmts[1 : len(stmts)-1]
	if slices.ContainsFunc(inner, func(s Statement) bool { return s.Class == TxControl }) {
		return stmts, false
	}
	return inner, true
}

func plainBegin(s Statement) bool {
	if s.Class != TxControl {
		return false
	}
	w := words(s.SQL)
	return slices.Equal(w, []string{"begin"}) || slices.Equal(w, []string{"begin", "work"}) ||
		slices.Equal(w, []string{"begin", "transaction"}) || slices.Equal(w, []string{"start", "transaction"})
}

func plainCommit(s Statement) bool {
	if s.Class != TxControl {
		return false
	}
	w := words(s.SQL)
	return len(w) >= 1 && len(w) <= 2 && (w[0] == "commit" || w[0] == "end") &&
		(len(w) == 1 || w[1] == "work" || w[1] == "transaction")
}

// words is the statement's words in lower case, comments left out.
func words(sql string) []string {
	var out []string
	for _, line := range strings.Split(sql, "\n") {
		line, _, _ = strings.Cut(line, "--")
		out = append(out, strings.Fields(strings.ToLower(line))...)
	}
	if len(out) == 0 || strings.Contains(sql, "/*") {
		return nil
	}
	return out
}
