package dryrun

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// The catalog queries of the dry-run, in one place. "User" objects are those outside
// pg_catalog, information_schema, pg_toast and temporary schemas.
const (
	userSchemaFilter = `n.nspname NOT IN ('pg_catalog', 'information_schema')
		AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'`

	// Relation locks of this session. Only relations in user schemas count (the dry-run's own
	// catalog queries lock pg_class and friends); a relation dropped by the statement has no
	// pg_class row any more and is named from the snapshot taken before it.
	locksSQL = `SELECT l.relation::oid, l.mode
		FROM pg_locks l
		LEFT JOIN pg_class c ON c.oid = l.relation
		LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE l.pid = pg_backend_pid() AND l.granted AND l.locktype = 'relation'
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND (c.oid IS NULL OR (` + userSchemaFilter + `))`

	classesSQL = `SELECT c.oid, c.oid::regclass::text, c.relkind::text, c.relfilenode::bigint
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE ` + userSchemaFilter

	procsSQL = `SELECT p.oid::regprocedure::text
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE ` + userSchemaFilter

	tableStatsSQL = `SELECT c.oid::regclass::text, pg_total_relation_size(c.oid), c.reltuples::bigint
		FROM pg_class c WHERE c.oid = ANY($1) AND c.relkind IN ('r', 'p', 'm')
		ORDER BY 1`

	// Sessions holding a granted lock on relations named by the failed statement. Modes are
	// ordered from the strongest, so the first row is the likeliest blocker.
	blockersSQL = `SELECT a.pid, coalesce(a.query, ''), l.relation::regclass::text, l.mode
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_backend_pid()
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND (cardinality($1::oid[]) = 0 OR l.relation = ANY($1))
		ORDER BY array_position(ARRAY['AccessExclusiveLock', 'ExclusiveLock',
		  'ShareRowExclusiveLock', 'ShareLock', 'ShareUpdateExclusiveLock', 'RowExclusiveLock',
		  'RowShareLock', 'AccessShareLock'], l.mode::text), a.pid
		LIMIT 1`
)

// relation is a pg_class row of a user schema.
type relation struct {
	name        string
	kind        string
	relfilenode int64
}

type lockKey struct {
	oid  uint32
	mode string
}

// snapshot is the state of the catalog and of the session's locks at one moment.
type snapshot struct {
	locks     map[lockKey]bool
	relations map[uint32]relation
	procs     map[string]bool
}

func takeSnapshot(ctx context.Context, tx pgx.Tx) (*snapshot, error) {
	return readSnapshot(ctx, tx, nil)
}

// readSnapshot reads the session's locks and, unless catalog is given, the relations and
// functions of the catalog too, in one round trip. With catalog, the snapshot shares its
// relations and functions (which must not be modified).
func readSnapshot(ctx context.Context, tx pgx.Tx, catalog *snapshot) (*snapshot, error) {
	s := &snapshot{locks: map[lockKey]bool{}}
	b := &pgx.Batch{}
	b.Queue(locksSQL)
	if catalog == nil {
		s.relations, s.procs = map[uint32]relation{}, map[string]bool{}
		b.Queue(classesSQL)
		b.Queue(procsSQL)
	} else {
		s.relations, s.procs = catalog.relations, catalog.procs
	}
	br := tx.SendBatch(ctx, b)
	defer br.Close()

	rows, _ := br.Query()
	var k lockKey
	if _, err := pgx.ForEachRow(rows, []any{&k.oid, &k.mode}, func() error {
		s.locks[k] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("dryrun: read locks: %w", err)
	}
	if catalog != nil {
		return s, br.Close()
	}
	rows, _ = br.Query()
	var oid uint32
	var r relation
	if _, err := pgx.ForEachRow(rows, []any{&oid, &r.name, &r.kind, &r.relfilenode}, func() error {
		s.relations[oid] = r
		return nil
	}); err != nil {
		return nil, fmt.Errorf("dryrun: read relations: %w", err)
	}
	rows, _ = br.Query()
	var proc string
	if _, err := pgx.ForEachRow(rows, []any{&proc}, func() error {
		s.procs[proc] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("dryrun: read functions: %w", err)
	}
	return s, br.Close()
}

var relkindNames = map[string]string{
	"r": "table", "p": "partitioned table", "i": "index", "I": "partitioned index",
	"S": "sequence", "v": "view", "m": "materialized view", "c": "type", "f": "foreign table",
}

func relkindName(k string) string {
	if n, ok := relkindNames[k]; ok {
		return n
	}
	return "relation"
}

// change is what happened between two snapshots.
type change struct {
	locks    []contract.DryRunLock
	lockOIDs map[uint32][]string // modes acquired per relation
	rewrites []string
	rewrote  map[uint32]bool
	created  []string
	dropped  []string
	tableIDs []uint32 // ordinary tables touched, for TableStat
	// held are the modes held after the step on the tables it touched: those it locked, and
	// those locked earlier in the transaction that its text names (a lock taken by an earlier
	// statement is not new, yet the table is still touched).
	held map[uint32][]string
	// createdTables names the tables and materialized views among created.
	createdTables []string
}

func diff(before, after *snapshot, sql string) change {
	c := change{lockOIDs: map[uint32][]string{}, rewrote: map[uint32]bool{}, held: map[uint32][]string{}}
	name := func(oid uint32) (string, string) {
		if r, ok := after.relations[oid]; ok {
			return r.name, r.kind
		}
		if r, ok := before.relations[oid]; ok {
			return r.name, r.kind
		}
		return fmt.Sprint(oid), ""
	}
	tables := map[uint32]bool{}
	for k := range after.locks {
		if before.locks[k] {
			continue
		}
		_, existed := before.relations[k.oid]
		_, exists := after.relations[k.oid]
		if !existed && !exists {
			// A relation in no user schema before or after the step: one PostgreSQL made and
			// dropped inside it (the new heap of a table rewrite, the temporary tables of
			// REFRESH MATERIALIZED VIEW CONCURRENTLY) or the TOAST table of a table it
			// dropped. Its lock is an implementation detail; the user's table has its own.
			continue
		}
		n, kind := name(k.oid)
		c.locks = append(c.locks, contract.DryRunLock{Relation: n, Mode: k.mode})
		c.lockOIDs[k.oid] = append(c.lockOIDs[k.oid], k.mode)
		if (kind == "r" || kind == "p" || kind == "m") && !tables[k.oid] {
			if _, exists := after.relations[k.oid]; exists {
				tables[k.oid] = true
				c.tableIDs = append(c.tableIDs, k.oid)
			}
		}
	}
	lower := strings.ToLower(sql)
	for k := range after.locks {
		r, ok := after.relations[k.oid]
		if !ok || (r.kind != "r" && r.kind != "p" && r.kind != "m") {
			continue
		}
		if !tables[k.oid] && sql != "" && containsIdent(lower, bareName(r.name)) {
			tables[k.oid] = true
			c.tableIDs = append(c.tableIDs, k.oid)
		}
		if tables[k.oid] {
			c.held[k.oid] = append(c.held[k.oid], k.mode)
		}
	}
	sort.Slice(c.locks, func(i, j int) bool {
		if c.locks[i].Relation != c.locks[j].Relation {
			return c.locks[i].Relation < c.locks[j].Relation
		}
		return c.locks[i].Mode < c.locks[j].Mode
	})
	for oid, a := range after.relations {
		b, ok := before.relations[oid]
		if !ok {
			c.created = append(c.created, fmt.Sprintf("%s (%s)", a.name, relkindName(a.kind)))
			if a.kind == "r" || a.kind == "p" || a.kind == "m" {
				c.createdTables = append(c.createdTables, a.name)
			}
			continue
		}
		if (a.kind == "r" || a.kind == "m") && b.relfilenode != 0 && a.relfilenode != b.relfilenode {
			c.rewrites = append(c.rewrites, a.name)
			c.rewrote[oid] = true
		}
	}
	for oid, b := range before.relations {
		if _, ok := after.relations[oid]; !ok {
			c.dropped = append(c.dropped, fmt.Sprintf("%s (%s)", b.name, relkindName(b.kind)))
		}
	}
	for p := range after.procs {
		if !before.procs[p] {
			c.created = append(c.created, p+" (function)")
		}
	}
	for p := range before.procs {
		if !after.procs[p] {
			c.dropped = append(c.dropped, p+" (function)")
		}
	}
	sort.Strings(c.rewrites)
	sort.Strings(c.created)
	sort.Strings(c.dropped)
	return c
}

func tableStats(ctx context.Context, tx pgx.Tx, oids []uint32) ([]contract.DryRunTableStat, error) {
	if len(oids) == 0 {
		return nil, nil
	}
	rows, _ := tx.Query(ctx, tableStatsSQL, oids)
	var out []contract.DryRunTableStat
	var t contract.DryRunTableStat
	_, err := pgx.ForEachRow(rows, []any{&t.Name, &t.Bytes, &t.EstimatedRows}, func() error {
		if t.EstimatedRows < 0 { // never vacuumed or analyzed (PostgreSQL 14+)
			t.EstimatedRows = 0
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dryrun: table sizes: %w", err)
	}
	return out, nil
}

// nonEmpty reports whether the table has at least one row visible to the transaction.
func nonEmpty(ctx context.Context, tx pgx.Tx, oid uint32) (bool, error) {
	var name string
	if err := tx.QueryRow(ctx, `SELECT $1::oid::regclass::text`, oid).Scan(&name); err != nil {
		return false, err
	}
	var ok bool
	err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+name+")").Scan(&ok)
	return ok, err
}

const blockerQueryMax = 200

// isLockTimeout reports whether err is PostgreSQL's lock_not_available (55P03).
func isLockTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// findBlocker names the session that most likely blocked a statement that hit lock_timeout:
// PostgreSQL's error does not say which lock it waited for, so the relations of the snapshot
// whose names appear in the statement are searched first, then any relation of the database.
func findBlocker(ctx context.Context, tx pgx.Tx, sql string, snap *snapshot) (string, error) {
	var oids []uint32
	if snap != nil {
		lower := strings.ToLower(sql)
		for oid, r := range snap.relations {
			if containsIdent(lower, bareName(r.name)) {
				oids = append(oids, oid)
			}
		}
	}
	var pid int32
	var query, rel, mode string
	err := tx.QueryRow(ctx, blockersSQL, oids).Scan(&pid, &query, &rel, &mode)
	if errors.Is(err, pgx.ErrNoRows) && len(oids) > 0 {
		err = tx.QueryRow(ctx, blockersSQL, []uint32{}).Scan(&pid, &query, &rel, &mode)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	query = strings.Join(strings.Fields(query), " ")
	if r := []rune(query); len(r) > blockerQueryMax {
		query = string(r[:blockerQueryMax]) + "..."
	}
	return fmt.Sprintf("would wait for a lock held by pid %d running %s (%s on %s)", pid, query, mode, rel), nil
}

// containsIdent reports whether ident occurs in s as a whole word.
func containsIdent(s, ident string) bool {
	if ident == "" {
		return false
	}
	for i := 0; ; {
		j := strings.Index(s[i:], ident)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(ident)
		if (j == 0 || !identChar(s[j-1])) && (end == len(s) || !identChar(s[end])) {
			return true
		}
		i = j + 1
	}
}

func identChar(b byte) bool {
	return b == '_' || b == '$' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 0x80
}

// bareName is a regclass text without its schema and quotes, lower-cased.
func bareName(n string) string {
	if i := strings.LastIndexByte(n, '.'); i >= 0 {
		n = n[i+1:]
	}
	return strings.ToLower(strings.Trim(n, `"`))
}
