package sqlscript

import (
	"fmt"
	"strings"
)

// Class says how a statement must be run.
type Class int

const (
	// Transactional statements run inside the migration transaction.
	Transactional Class = iota
	// NonTransactional statements cannot run inside a transaction block and must be run
	// outside one, in order.
	NonTransactional
	// TxControl statements (BEGIN, COMMIT, ROLLBACK, ...) control the transaction itself and
	// are not allowed in a migration.
	TxControl
)

func (c Class) String() string {
	switch c {
	case Transactional:
		return "transactional"
	case NonTransactional:
		return "non-transactional"
	case TxControl:
		return "transaction-control"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Classify classifies one statement for a server whose server_version_num is
// serverVersionNum (150000 for PostgreSQL 15.0; a value of 0 or less is treated as older than
// any version Classify knows about). It looks at the statement's leading keywords only,
// case-insensitively, skipping comments and whitespace, so a keyword inside a string, a quoted
// identifier or a longer name never counts. The reason is a human-readable explanation for
// NonTransactional and TxControl, and empty for Transactional.
//
// TxControl: BEGIN (not BEGIN ATOMIC), START TRANSACTION, COMMIT, COMMIT PREPARED, END,
// ROLLBACK, ROLLBACK PREPARED, ABORT and PREPARE TRANSACTION. SAVEPOINT, RELEASE and ROLLBACK
// TO [SAVEPOINT] are Transactional.
//
// NonTransactional, because the server refuses to run them inside a transaction block:
// CREATE [UNIQUE] INDEX CONCURRENTLY, DROP INDEX CONCURRENTLY, REINDEX ... CONCURRENTLY
// (including REINDEX (CONCURRENTLY) ...), REINDEX SCHEMA|DATABASE|SYSTEM, VACUUM, CLUSTER
// without a table name, CREATE|DROP DATABASE, ALTER DATABASE ... SET TABLESPACE, CREATE|DROP
// TABLESPACE, ALTER SYSTEM, DISCARD ALL, ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY,
// CREATE SUBSCRIPTION, DROP SUBSCRIPTION, ALTER SUBSCRIPTION ... REFRESH and ALTER
// SUBSCRIPTION ... SET|ADD|DROP PUBLICATION (unless WITH (refresh = false)), and before
// PostgreSQL 12 ALTER TYPE ... ADD VALUE.
//
// CREATE SUBSCRIPTION and DROP SUBSCRIPTION only need to run outside a transaction block when
// they create or drop a replication slot, which cannot be told from the text (DROP depends on
// the subscription's state); running them outside one is always allowed, so they always are.
func Classify(sql string, serverVersionNum int) (Class, string) {
	k := &keywords{sc: newScanner(sql)}
	switch k.word(0) {
	case "begin":
		if k.word(1) == "atomic" {
			return Transactional, ""
		}
		return txControl("BEGIN")
	case "start":
		if k.word(1) == "transaction" {
			return txControl("START TRANSACTION")
		}
	case "commit":
		if k.word(1) == "prepared" {
			return txControl("COMMIT PREPARED")
		}
		return txControl("COMMIT")
	case "end":
		return txControl("END")
	case "abort":
		return txControl("ABORT")
	case "rollback":
		if k.word(1) == "prepared" {
			return txControl("ROLLBACK PREPARED")
		}
		i := 1
		if w := k.word(i); w == "work" || w == "transaction" {
			i++
		}
		if k.word(i) == "to" { // ROLLBACK TO [SAVEPOINT] name
			return Transactional, ""
		}
		return txControl("ROLLBACK")
	case "prepare":
		// PREPARE TRANSACTION 'id', not PREPARE transaction [(types)] AS ... (a prepared
		// statement that happens to be named "transaction").
		if k.word(1) == "transaction" && k.word(2) != "as" && !k.isOp(2, '(') {
			return txControl("PREPARE TRANSACTION")
		}
	case "vacuum":
		return nonTx("VACUUM")
	case "create":
		return k.classifyCreate()
	case "drop":
		return k.classifyDrop()
	case "alter":
		return k.classifyAlter(serverVersionNum)
	case "reindex":
		return k.classifyReindex()
	case "cluster":
		i := 1
		if k.isOp(i, '(') {
			i = k.skipParens(i)
		} else if k.word(i) == "verbose" {
			i++
		}
		if k.at(i).kind == tokEOF {
			return nonTx("CLUSTER without a table name")
		}
	case "discard":
		if k.word(1) == "all" {
			return nonTx("DISCARD ALL")
		}
	}
	return Transactional, ""
}

func txControl(what string) (Class, string) {
	return TxControl, what + " is transaction control; a migration runs in a transaction the worker manages and must not contain it"
}

func nonTx(what string) (Class, string) {
	return NonTransactional, what + " cannot run inside a transaction block"
}

func (k *keywords) classifyCreate() (Class, string) {
	i := 1
	if k.word(i) == "unique" {
		i++
	}
	if k.word(i) == "index" {
		if k.word(i+1) == "concurrently" {
			return nonTx("CREATE INDEX CONCURRENTLY")
		}
		return Transactional, ""
	}
	switch k.word(1) {
	case "database":
		return nonTx("CREATE DATABASE")
	case "tablespace":
		return nonTx("CREATE TABLESPACE")
	case "subscription":
		return NonTransactional, "CREATE SUBSCRIPTION cannot run inside a transaction block when it creates a replication slot (the default)"
	}
	return Transactional, ""
}

func (k *keywords) classifyDrop() (Class, string) {
	switch k.word(1) {
	case "index":
		if k.word(2) == "concurrently" {
			return nonTx("DROP INDEX CONCURRENTLY")
		}
	case "database":
		return nonTx("DROP DATABASE")
	case "tablespace":
		return nonTx("DROP TABLESPACE")
	case "subscription":
		return NonTransactional, "DROP SUBSCRIPTION cannot run inside a transaction block when the subscription has a replication slot"
	}
	return Transactional, ""
}

func (k *keywords) classifyAlter(serverVersionNum int) (Class, string) {
	switch k.word(1) {
	case "system":
		return nonTx("ALTER SYSTEM")
	case "type":
		i := k.skipQualifiedName(2)
		if k.word(i) == "add" && k.word(i+1) == "value" && serverVersionNum < 120000 {
			return NonTransactional, "ALTER TYPE ... ADD VALUE cannot run inside a transaction block before PostgreSQL 12"
		}
	case "database":
		i := k.skipQualifiedName(2)
		if k.word(i) == "set" && k.word(i+1) == "tablespace" {
			return nonTx("ALTER DATABASE ... SET TABLESPACE")
		}
	case "table":
		// ALTER TABLE [IF EXISTS] [ONLY] name DETACH PARTITION name CONCURRENTLY
		depth := 0
		for i := 2; k.at(i).kind != tokEOF; i++ {
			switch {
			case k.isOp(i, '('):
				depth++
			case k.isOp(i, ')'):
				depth--
			case depth == 0 && k.word(i) == "detach" && k.word(i+1) == "partition":
				if k.word(k.skipQualifiedName(i+2)) == "concurrently" {
					return nonTx("ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY")
				}
			}
		}
	case "subscription":
		i := k.skipQualifiedName(2)
		switch k.word(i) {
		case "refresh":
			return nonTx("ALTER SUBSCRIPTION ... REFRESH")
		case "set", "add", "drop":
			if k.word(i+1) != "publication" {
				break
			}
			for j := i + 2; k.at(j).kind != tokEOF; j++ {
				if k.word(j) == "refresh" && k.optionFalse(j+1) {
					return Transactional, ""
				}
			}
			return NonTransactional, "ALTER SUBSCRIPTION ... " + strings.ToUpper(k.word(i)) +
				" PUBLICATION cannot run inside a transaction block unless WITH (refresh = false)"
		}
	}
	return Transactional, ""
}

func (k *keywords) classifyReindex() (Class, string) {
	i := 1
	concurrently := false
	if k.isOp(i, '(') {
		end := k.skipParens(i)
		for j := i + 1; j < end; j++ {
			if k.word(j) == "concurrently" && !k.optionFalse(j+1) {
				concurrently = true
			}
		}
		i = end
	}
	switch kind := k.word(i); kind {
	case "schema", "database", "system":
		return nonTx("REINDEX " + strings.ToUpper(kind))
	case "index", "table":
		if k.word(i+1) == "concurrently" {
			concurrently = true
		}
	}
	if concurrently {
		return nonTx("REINDEX CONCURRENTLY")
	}
	return Transactional, ""
}

// keywords is a lazily filled token stream over the start of one statement; it ends at the
// first semicolon. Words are lowercased.
type keywords struct {
	sc   *scanner
	toks []kwToken
	done bool
}

type kwToken struct {
	token
	text string // lowercased word, raw text of other tokens
}

// maxKeyword bounds the length of a word worth lowercasing: no keyword is longer.
const maxKeyword = 32

func (k *keywords) at(i int) kwToken {
	for len(k.toks) <= i && !k.done {
		t := k.sc.next()
		if t.kind == tokEOF || (t.kind == tokOp && k.sc.src[t.start] == ';') {
			k.done = true
			break
		}
		text := k.sc.src[t.start:t.end]
		if t.kind == tokWord {
			if len(text) > maxKeyword {
				text = ""
			} else {
				text = strings.ToLower(text)
			}
		}
		k.toks = append(k.toks, kwToken{token: t, text: text})
	}
	if i < len(k.toks) {
		return k.toks[i]
	}
	return kwToken{}
}

// word returns token i if it is a word (lowercased), and "" otherwise.
func (k *keywords) word(i int) string {
	if t := k.at(i); t.kind == tokWord {
		return t.text
	}
	return ""
}

func (k *keywords) isOp(i int, c byte) bool {
	t := k.at(i)
	return t.kind == tokOp && t.text[0] == c
}

// skipParens returns the index after the parenthesis that closes the one at i.
func (k *keywords) skipParens(i int) int {
	depth := 0
	for ; k.at(i).kind != tokEOF; i++ {
		switch {
		case k.isOp(i, '('):
			depth++
		case k.isOp(i, ')'):
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return i
}

// skipQualifiedName returns the index after the (possibly quoted, possibly dotted) name at i.
func (k *keywords) skipQualifiedName(i int) int {
	for {
		if t := k.at(i); t.kind != tokWord && t.kind != tokIdent {
			return i
		}
		i++
		if !k.isOp(i, '.') {
			return i
		}
		i++
	}
}

// optionFalse reports whether the value of a boolean option, at i after an optional "=", is
// false the way the server's defGetBoolean reads it: false, off or 0. A missing value is true.
func (k *keywords) optionFalse(i int) bool {
	if k.isOp(i, '=') {
		i++
	}
	t := k.at(i)
	switch t.kind {
	case tokWord:
		return t.text == "false" || t.text == "off"
	case tokNumber:
		return t.text == "0"
	case tokString:
		v := strings.ToLower(t.text)
		return v == "'false'" || v == "'off'"
	}
	return false
}
