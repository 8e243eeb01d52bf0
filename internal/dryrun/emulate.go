package dryrun

import (
	"strings"

	"github.com/confiture-io/confiture-worker/internal/sqlscript"
)

// emulation returns the transactional equivalent of a statement that cannot run in a
// transaction block, which the dry-run runs in its place so that every later statement and
// hook sees its effect; ok is false when there is none (VACUUM, CLUSTER without a table,
// REINDEX SCHEMA|DATABASE|SYSTEM, CREATE DATABASE, ...), and the statement is then described,
// not executed. The equivalent is the statement without CONCURRENTLY:
//
//   - CREATE [UNIQUE] INDEX CONCURRENTLY ... as CREATE INDEX ... (SHARE instead of SHARE UPDATE
//     EXCLUSIVE on the table);
//   - DROP INDEX CONCURRENTLY ... as DROP INDEX ... (ACCESS EXCLUSIVE on the table);
//   - REINDEX {TABLE|INDEX} CONCURRENTLY ..., and REINDEX (CONCURRENTLY, ...) {TABLE|INDEX} ...,
//     as REINDEX {TABLE|INDEX} ... (SHARE on the table, ACCESS EXCLUSIVE on its indexes);
//   - ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY as ALTER TABLE ... DETACH PARTITION ...
//     (ACCESS EXCLUSIVE on the parent).
//
// Each builds or drops the same objects; only the locks and the time differ, which the report
// says.
func emulation(sql string) (string, bool) {
	tk := sqlscript.Tokens(sql)
	word := func(i int) string {
		if i >= 0 && i < len(tk) && tk[i].Word {
			return strings.ToLower(tk[i].Text)
		}
		return ""
	}
	cut := func(from, to int) string { // the statement without the bytes of tokens [from, to]
		return strings.TrimSpace(sql[:tk[from].Start] + strings.TrimLeft(sql[tk[to].End:], " \t\r\n"))
	}
	switch word(0) {
	case "create":
		i := 1
		if word(i) == "unique" {
			i++
		}
		if word(i) == "index" && word(i+1) == "concurrently" {
			return cut(i+1, i+1), true
		}
	case "drop":
		if word(1) == "index" && word(2) == "concurrently" {
			return cut(2, 2), true
		}
	case "reindex":
		i := 1
		option, open, closing, others := -1, -1, -1, 0
		if i < len(tk) && tk[i].Text == "(" {
			opts, end := parenthesized(tk, i)
			if end > len(tk) || tk[end-1].Text != ")" {
				return "", false
			}
			open, closing, i = 1, end-1, end
			if _, ok := opts["concurrently"]; ok {
				others = len(opts) - 1
				for k := open + 1; k < closing; k++ {
					if strings.EqualFold(tk[k].Text, "concurrently") && (tk[k-1].Text == "(" || tk[k-1].Text == ",") {
						option = k
					}
				}
			}
		}
		what := word(i)
		if what != "table" && what != "index" {
			return "", false // SCHEMA, DATABASE and SYSTEM cannot run in a transaction block at all
		}
		if word(i+1) == "concurrently" {
			return cut(i+1, i+1), true
		}
		if option < 0 {
			return "", false
		}
		if others == 0 { // REINDEX (CONCURRENTLY) TABLE t: drop the whole list
			return cut(open, closing), true
		}
		// Drop the option, its value if it has one, and one comma beside it.
		from, to := option, option
		if to+1 < closing && tk[to+1].Text != "," {
			to++ // CONCURRENTLY true
		}
		if to+1 < closing && tk[to+1].Text == "," {
			to++
		} else if tk[from-1].Text == "," {
			from--
		}
		return cut(from, to), true
	case "alter":
		// ALTER TABLE ... DETACH PARTITION name CONCURRENTLY: CONCURRENTLY is the last token.
		if word(1) == "table" && len(tk) > 0 && word(len(tk)-1) == "concurrently" {
			for i := range tk {
				if word(i) == "detach" && word(i+1) == "partition" {
					return cut(len(tk)-1, len(tk)-1), true
				}
			}
		}
	}
	return "", false
}
