// Package sqlscript splits a PostgreSQL migration script (an up.sql body) into statements and
// classifies each one, so that the worker can run a migration statement by statement.
//
// A migration body runs inside a transaction, but some statements cannot run inside a
// transaction block (CREATE INDEX CONCURRENTLY, VACUUM, ...): those are classified
// NonTransactional and must be run outside one, in order. Transaction control statements
// (BEGIN, COMMIT, ROLLBACK, ...) are classified TxControl: the worker owns the transaction, so
// a migration that contains one must be refused.
//
// Split is a lexer-level splitter, not a parser. It knows PostgreSQL's quoting rules ('...'
// strings, E'...' strings with backslash escapes, U&'...' strings, $tag$ dollar quotes, "..."
// identifiers, -- and nested /* */ comments) so that a semicolon inside any of them does not
// end a statement. Like psql, it also does not split on a semicolon inside parentheses (CREATE
// RULE ... DO (a; b)) or inside the BEGIN ATOMIC ... END body of a CREATE FUNCTION or CREATE
// PROCEDURE. It assumes standard_conforming_strings = on (the default since PostgreSQL 9.1),
// so a backslash in a plain '...' string is an ordinary character.
//
// Classify looks at the leading keywords of one statement only. It cannot see inside DO
// blocks or procedures called with CALL, nor know whether REINDEX TABLE targets a partitioned
// table, so those are Transactional; if such a statement does need to run outside a
// transaction, the server says so when the migration runs.
package sqlscript

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultServerVersionNum is the server_version_num Split classifies statements for.
const DefaultServerVersionNum = 150000

// Statement is one statement of a script.
type Statement struct {
	// SQL is the statement text from its first token to its last, without the terminating
	// semicolon. Comments inside the statement are kept; comments before its first token and
	// after its last are not.
	SQL string
	// Line is the 1-based line of the statement's first token in the script.
	Line int
	// Class says whether the statement can run inside the migration transaction.
	Class Class
	// Reason explains Class; it is empty for Transactional statements.
	Reason string
}

// SyntaxError reports a script that cannot be split: an unterminated quoted string, quoted
// identifier, dollar quote, comment, parenthesis or BEGIN ATOMIC body (Line is where it
// started), or a psql meta-command.
type SyntaxError struct {
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("sql script: line %d: %s", e.Line, e.Msg)
}

// Split splits script into statements, classified for DefaultServerVersionNum.
func Split(script string) ([]Statement, error) {
	return SplitFor(script, DefaultServerVersionNum)
}

// SplitFor splits script into statements and classifies each one for a server whose
// server_version_num is serverVersionNum (see Classify).
//
// Statements are separated by semicolons outside quotes, comments, parentheses and BEGIN
// ATOMIC bodies; the last statement needs no semicolon. Empty statements are dropped, so a
// script of only comments and semicolons has no statements. A psql meta-command (a backslash
// outside quotes and comments, such as \connect or \set) is an error: the script is run by
// the worker, not by psql, and the server would reject it anyway.
//
// On error SplitFor returns no statements and a *SyntaxError.
func SplitFor(script string, serverVersionNum int) ([]Statement, error) {
	sc := newScanner(script)
	var out []Statement
	var cur stmtState
	for {
		tok := sc.next()
		if sc.err != nil {
			return nil, sc.err
		}
		if tok.kind == tokEOF {
			break
		}
		if tok.kind == tokOp {
			switch script[tok.start] {
			case '\\':
				return nil, metaCommandError(script, tok)
			case ';':
				if cur.parens == 0 && cur.atomic == 0 {
					if cur.ntok > 0 {
						out = append(out, cur.statement(script, serverVersionNum))
					}
					cur = stmtState{}
					continue
				}
			case '(':
				if cur.parens == 0 {
					cur.parenLine = tok.line
				}
				cur.parens++
			case ')':
				if cur.parens > 0 {
					cur.parens--
				}
			}
		}
		cur.add(script, tok)
	}
	if cur.ntok > 0 {
		switch {
		case cur.atomic > 0:
			return nil, &SyntaxError{Line: cur.atomicLine, Msg: "unterminated BEGIN ATOMIC body (missing END)"}
		case cur.parens > 0:
			return nil, &SyntaxError{Line: cur.parenLine, Msg: "unterminated parenthesis (missing \")\")"}
		}
		out = append(out, cur.statement(script, serverVersionNum))
	}
	return out, nil
}

// stmtState tracks the statement being split.
type stmtState struct {
	ntok       int // tokens so far
	start, end int // byte range from the first token's start to the last token's end
	line       int // line of the first token
	parens     int // open parentheses
	parenLine  int // line of the outermost open parenthesis
	// lead tracks the leading words CREATE [OR REPLACE] {FUNCTION | PROCEDURE}:
	// 0 start, 1 after CREATE, 2 after OR, 3 after REPLACE, -1 done.
	lead       int
	routine    bool // the statement is CREATE [OR REPLACE] FUNCTION/PROCEDURE
	atomic     int  // depth of BEGIN ATOMIC ... END and of CASE ... END inside it
	atomicLine int  // line of the BEGIN of the open BEGIN ATOMIC
	prevBegin  bool // the previous token is the word BEGIN, outside parentheses
	beginLine  int  // line of that BEGIN
	prevDot    bool // the previous token is "."
}

func (st *stmtState) add(src string, tok token) {
	if st.ntok == 0 {
		st.start, st.line = tok.start, tok.line
	}
	st.ntok++
	st.end = tok.end

	word := ""
	if tok.kind == tokWord {
		word = src[tok.start:tok.end]
	}
	if st.lead >= 0 {
		st.lead = nextLead(st.lead, word)
		if st.lead == 4 {
			st.routine, st.lead = true, -1
		}
	}
	// The heuristic psql uses: in CREATE FUNCTION/PROCEDURE, outside parentheses, BEGIN ATOMIC
	// opens a body that END closes, and inside it CASE also pairs with an END. A keyword after
	// "." is a column label (t.end), not a keyword.
	if st.routine && word != "" && st.parens == 0 && !st.prevDot {
		switch {
		case st.atomic == 0:
			if st.prevBegin && strings.EqualFold(word, "atomic") {
				st.atomic, st.atomicLine = 1, st.beginLine
			}
		case strings.EqualFold(word, "case"):
			st.atomic++
		case strings.EqualFold(word, "end"):
			st.atomic--
		}
	}
	st.prevBegin = word != "" && st.parens == 0 && strings.EqualFold(word, "begin")
	if st.prevBegin {
		st.beginLine = tok.line
	}
	st.prevDot = tok.kind == tokOp && src[tok.start] == '.'
}

// nextLead advances the CREATE [OR REPLACE] {FUNCTION | PROCEDURE} recognizer; 4 means
// recognized and -1 means not this statement.
func nextLead(state int, word string) int {
	switch {
	case state == 0 && strings.EqualFold(word, "create"):
		return 1
	case state == 1 && strings.EqualFold(word, "or"):
		return 2
	case state == 2 && strings.EqualFold(word, "replace"):
		return 3
	case (state == 1 || state == 3) &&
		(strings.EqualFold(word, "function") || strings.EqualFold(word, "procedure")):
		return 4
	}
	return -1
}

func (st *stmtState) statement(src string, serverVersionNum int) Statement {
	sql := src[st.start:st.end]
	class, reason := Classify(sql, serverVersionNum)
	return Statement{SQL: sql, Line: st.line, Class: class, Reason: reason}
}

func metaCommandError(src string, tok token) *SyntaxError {
	const maxName = 32
	end := tok.end
	for end < len(src) && end-tok.end < maxName && !isSpace(src[end]) && src[end] != '\\' {
		end++
	}
	name := strings.ToValidUTF8(src[tok.start:end], "")
	return &SyntaxError{Line: tok.line, Msg: fmt.Sprintf("psql meta-command %s is not supported", name)}
}

// summaryRunes is how many characters Summary keeps.
const summaryRunes = 80

// Summary returns the statement for logs: whitespace runs collapsed to one space and cut to
// about 80 characters, with "..." marking a cut.
func (s Statement) Summary() string {
	var b strings.Builder
	n := 0
	pendingSpace := false
	for i := 0; i < len(s.SQL); {
		r, size := utf8.DecodeRuneInString(s.SQL[i:])
		i += size
		if unicode.IsSpace(r) {
			pendingSpace = n > 0
			continue
		}
		if n >= summaryRunes || (pendingSpace && n+1 >= summaryRunes) {
			b.WriteString("...")
			break
		}
		if pendingSpace {
			b.WriteByte(' ')
			n++
			pendingSpace = false
		}
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s.SQL[i-size : i])
		}
		n++
	}
	return b.String()
}
