package dryrun

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/confiture-io/confiture-worker/internal/sqlscript"
)

// A statement that cannot run in a transaction block is not executed by a dry-run, so its
// locks cannot be measured. The report gives instead the lock the PostgreSQL documentation
// says it takes on the tables of the database, from the table below, keyed on the kind of
// statement. Each such statement processes its tables in transactions of its own, one table
// at a time; the lock is held on each table while that table is processed.
var nonTxLocks = map[string]string{
	// CREATE INDEX: CONCURRENTLY builds "without taking any locks that prevent concurrent
	// inserts, updates, or deletes"; Explicit Locking lists CREATE INDEX CONCURRENTLY under
	// SHARE UPDATE EXCLUSIVE.
	"create index concurrently": "ShareUpdateExclusiveLock",
	// DROP INDEX: CONCURRENTLY drops "without locking out concurrent selects, inserts,
	// updates, and deletes on the index's table"; the mode is ShareUpdateExclusiveLock on the
	// table (index_drop in src/backend/catalog/index.c).
	"drop index concurrently": "ShareUpdateExclusiveLock",
	// REINDEX: "A SHARE UPDATE EXCLUSIVE lock at session level is taken on the indexes being
	// reindexed as well as their associated tables"; Explicit Locking lists REINDEX
	// CONCURRENTLY under SHARE UPDATE EXCLUSIVE.
	"reindex concurrently": "ShareUpdateExclusiveLock",
	// REINDEX SCHEMA|DATABASE|SYSTEM without CONCURRENTLY: "REINDEX locks out writes but not
	// reads of the index's parent table" (SHARE), plus ACCESS EXCLUSIVE on each index.
	"reindex": "ShareLock",
	// VACUUM: without FULL, SHARE UPDATE EXCLUSIVE (Explicit Locking); "an exclusive lock is
	// not obtained".
	"vacuum": "ShareUpdateExclusiveLock",
	// VACUUM: FULL "requires an ACCESS EXCLUSIVE lock on each table while it is being
	// processed".
	"vacuum full": "AccessExclusiveLock",
	// CLUSTER: "When a table is being clustered, an ACCESS EXCLUSIVE lock is acquired on it."
	// Without a table name it reclusters every table clustered before.
	"cluster": "AccessExclusiveLock",
	// ALTER TABLE: with DETACH PARTITION ... CONCURRENTLY, "a SHARE UPDATE EXCLUSIVE lock is
	// taken on both parent table and partition".
	"detach partition concurrently": "ShareUpdateExclusiveLock",
}

// target says which relations a non-transactional statement locks: names (of tables, or of
// indexes whose tables are meant), or a scope in words when it has no names.
type target struct {
	kind    string
	names   []string
	indexes bool
	scope   string
}

// docLock is the lock the documentation says a statement that cannot run in a transaction
// block takes: mode on relations (tables, resolved as the report names them), or on a scope
// in words when it names none.
type docLock struct {
	mode      string
	relations []string
	scope     string
}

// String reads "ShareUpdateExclusiveLock on users"; "" for no lock.
func (d docLock) String() string {
	if d.mode == "" {
		return ""
	}
	if len(d.relations) == 0 {
		return d.mode + " on " + d.scope
	}
	return d.mode + " on " + strings.Join(d.relations, ", ")
}

// nonTxLock returns, for a statement that cannot run in a transaction block, what it would
// lock according to the documentation; the zero docLock when it takes no lock on a table of
// this database that the table above knows (CREATE DATABASE, ALTER SYSTEM, subscriptions,
// ...). Names are resolved in tx, as the report names relations.
func nonTxLock(ctx context.Context, tx pgx.Tx, sql string) (docLock, error) {
	t, ok := parseNonTx(sql)
	if !ok {
		return docLock{}, nil
	}
	d := docLock{mode: nonTxLocks[t.kind], scope: t.scope}
	for _, n := range t.names {
		name, err := resolve(ctx, tx, n, t.indexes)
		if err != nil {
			return docLock{}, err
		}
		d.relations = append(d.relations, name)
	}
	return d, nil
}

// resolve names the table n (or the table of index n) as the report does; when it does not
// exist (yet), or the name is not one PostgreSQL can parse, n is returned as written. The
// look-up runs in a savepoint of its own, so that it never aborts the dry-run's transaction.
func resolve(ctx context.Context, tx pgx.Tx, n string, index bool) (string, error) {
	q := `SELECT to_regclass($1)::text`
	if index {
		q = `SELECT i.indrelid::regclass::text FROM pg_index i WHERE i.indexrelid = to_regclass($1)`
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("dryrun: savepoint: %w", err)
	}
	var name *string
	err = sp.QueryRow(ctx, q, n).Scan(&name)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		if rerr := sp.Rollback(ctx); rerr != nil {
			return "", fmt.Errorf("dryrun: rollback to savepoint: %w", rerr)
		}
		name = nil
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		_ = sp.Rollback(ctx)
		return "", fmt.Errorf("dryrun: resolve %s: %w", n, err)
	default:
		if err := sp.Commit(ctx); err != nil {
			return "", fmt.Errorf("dryrun: release savepoint: %w", err)
		}
	}
	switch {
	case name != nil:
		return *name, nil
	case index:
		return "the table of index " + n, nil
	}
	return n, nil
}

// parseNonTx recognises the statements of nonTxLocks from their leading tokens.
func parseNonTx(sql string) (target, bool) {
	tk := sqlscript.Tokens(sql)
	word := func(i int) string {
		if i < len(tk) && tk[i].Word {
			return strings.ToLower(tk[i].Text)
		}
		return ""
	}
	switch word(0) {
	case "create":
		i := 1
		if word(i) == "unique" {
			i++
		}
		if word(i) != "index" || word(i+1) != "concurrently" {
			return target{}, false
		}
		for i += 2; i < len(tk); i++ {
			if word(i) == "on" {
				i++
				if word(i) == "only" {
					i++
				}
				if n, _ := qualifiedName(tk, i); n != "" {
					return target{kind: "create index concurrently", names: []string{n}}, true
				}
				break
			}
		}
	case "drop":
		if word(1) != "index" || word(2) != "concurrently" {
			return target{}, false
		}
		i := 3
		if word(i) == "if" && word(i+1) == "exists" {
			i += 2
		}
		t := target{kind: "drop index concurrently", indexes: true}
		for {
			n, next := qualifiedName(tk, i)
			if n == "" {
				break
			}
			t.names = append(t.names, n)
			if next >= len(tk) || tk[next].Text != "," {
				break
			}
			i = next + 1
		}
		return t, len(t.names) > 0
	case "reindex":
		i, concurrently := 1, false
		if i < len(tk) && tk[i].Text == "(" {
			opts, end := parenthesized(tk, i)
			concurrently = opts["concurrently"]
			i = end
		}
		what := word(i)
		i++
		if word(i) == "concurrently" {
			concurrently = true
			i++
		}
		kind := "reindex"
		if concurrently {
			kind = "reindex concurrently"
		}
		switch what {
		case "table", "index":
			if n, _ := qualifiedName(tk, i); n != "" {
				return target{kind: kind, names: []string{n}, indexes: what == "index"}, true
			}
		case "schema":
			if n, _ := qualifiedName(tk, i); n != "" {
				return target{kind: kind, scope: "each table of schema " + n + ", one at a time"}, true
			}
		case "database", "system":
			return target{kind: kind, scope: "each table of the database, one at a time"}, true
		}
	case "vacuum":
		i, full := 1, false
		if i < len(tk) && tk[i].Text == "(" {
			opts, end := parenthesized(tk, i)
			full = opts["full"]
			i = end
		} else {
			for ; ; i++ {
				w := word(i)
				if w != "full" && w != "freeze" && w != "verbose" && w != "analyze" && w != "analyse" {
					break
				}
				full = full || w == "full"
			}
		}
		t := target{kind: "vacuum", scope: "each table of the database, one at a time"}
		if full {
			t.kind = "vacuum full"
		}
		for {
			n, next := qualifiedName(tk, i)
			if n == "" {
				break
			}
			t.names = append(t.names, n)
			if next < len(tk) && tk[next].Text == "(" { // the columns of VACUUM ANALYZE
				_, next = parenthesized(tk, next)
			}
			if next >= len(tk) || tk[next].Text != "," {
				break
			}
			i = next + 1
		}
		return t, true
	case "cluster":
		// Only CLUSTER without a table name cannot run in a transaction block.
		return target{kind: "cluster", scope: "each table clustered before, one at a time"}, true
	case "alter":
		if word(1) != "table" {
			return target{}, false
		}
		i := 2
		if word(i) == "if" && word(i+1) == "exists" {
			i += 2
		}
		if word(i) == "only" {
			i++
		}
		parent, next := qualifiedName(tk, i)
		if parent == "" || word(next) != "detach" || word(next+1) != "partition" {
			return target{}, false
		}
		part, _ := qualifiedName(tk, next+2)
		if part == "" {
			return target{}, false
		}
		return target{kind: "detach partition concurrently", names: []string{parent, part}}, true
	}
	return target{}, false
}

// qualifiedName returns the dotted name at tk[i] as written, and the index after it; "" when
// there is none.
func qualifiedName(tk []sqlscript.Token, i int) (string, int) {
	var parts []string
	for i < len(tk) && tk[i].Word {
		parts = append(parts, tk[i].Text)
		i++
		if i+1 < len(tk) && tk[i].Text == "." && tk[i+1].Word {
			i++
			continue
		}
		break
	}
	return strings.Join(parts, "."), i
}

// parenthesized reads the option list opening at tk[i] ("(FULL, ANALYZE false)") and returns
// the options set to true, and the index after the closing parenthesis.
func parenthesized(tk []sqlscript.Token, i int) (map[string]bool, int) {
	opts := map[string]bool{}
	depth := 0
	for ; i < len(tk); i++ {
		switch tk[i].Text {
		case "(":
			depth++
			continue
		case ")":
			depth--
			if depth == 0 {
				return opts, i + 1
			}
			continue
		}
		if depth == 1 && tk[i].Word && (i == 0 || tk[i-1].Text == "(" || tk[i-1].Text == ",") {
			on := true
			if i+1 < len(tk) {
				switch v := strings.ToLower(strings.Trim(tk[i+1].Text, "'")); v {
				case "false", "off", "0":
					on = false
				}
			}
			opts[strings.ToLower(tk[i].Text)] = on
		}
	}
	return opts, i
}
