package dryrun_test

import (
	"context"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/dryrun"
)

// PostgreSQL's lock modes, weakest first: the order of lock.h, and of the documentation's
// list of table-level lock modes.
const (
	accessShare          = "AccessShareLock"
	rowShare             = "RowShareLock"
	rowExclusive         = "RowExclusiveLock"
	shareUpdateExclusive = "ShareUpdateExclusiveLock"
	share                = "ShareLock"
	shareRowExclusive    = "ShareRowExclusiveLock"
	exclusive            = "ExclusiveLock"
	accessExclusive      = "AccessExclusiveLock"
)

// lockModes and conflicts are the package's: PostgreSQL's modes, weakest first, and the
// documentation's Table 13.2 (Conflicting Lock Modes), which TestBlockingMatrix checks against
// a second session really waiting.
var (
	lockModes = dryrun.LockModes
	conflicts = dryrun.Conflicts
)

// blocked returns the modes that conflict with at least one of modes, sorted.
func blocked(modes ...string) []string {
	set := map[string]bool{}
	for _, m := range modes {
		for _, c := range conflicts[m] {
			set[c] = true
		}
	}
	var out []string
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

func strongest(modes []string) string {
	best := -1
	for _, m := range modes {
		best = max(best, slices.Index(lockModes, m))
	}
	if best < 0 {
		return ""
	}
	return lockModes[best]
}

// fidelitySchema is the small populated schema every row of the fidelity table runs on, each
// on a database of its own.
const fidelitySchema = `
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE TABLE users (id int PRIMARY KEY, email varchar(10), name text NOT NULL, n int, created timestamptz);
INSERT INTO users SELECT g, 'u' || g, 'name ' || g, g, now() FROM generate_series(1, 1000) g;
CREATE INDEX users_n ON users (n);
CREATE TABLE orders (id int PRIMARY KEY, user_id int, total numeric, m mood);
INSERT INTO orders SELECT g, g % 1000 + 1, g, 'ok' FROM generate_series(1, 2000) g;
ALTER TABLE orders ADD CONSTRAINT orders_total_pos CHECK (total > 0) NOT VALID;
CREATE TABLE reviews (id int PRIMARY KEY, user_id int, body text);
INSERT INTO reviews SELECT g, g % 1000 + 1, 'ok' FROM generate_series(1, 500) g;
ALTER TABLE reviews ADD CONSTRAINT reviews_user_fk FOREIGN KEY (user_id) REFERENCES users NOT VALID;
CREATE TABLE audit (id int PRIMARY KEY, msg text);
INSERT INTO audit SELECT g, 'm' FROM generate_series(1, 100) g;
CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
INSERT INTO events SELECT g, date '2023-01-01' + g % 300 FROM generate_series(1, 500) g;
CREATE TABLE events_2024 (id int, at date);
INSERT INTO events_2024 SELECT g, date '2024-01-01' + g % 300 FROM generate_series(1, 500) g;
CREATE MATERIALIZED VIEW user_totals AS SELECT user_id, sum(total) AS total FROM orders GROUP BY user_id;
CREATE UNIQUE INDEX user_totals_user ON user_totals (user_id);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
ANALYZE;`

// fidelityTables are the tables (and the materialized view) of fidelitySchema. A statement
// must lock none of them but those its row expects.
var fidelityTables = []string{"users", "orders", "reviews", "audit", "events", "events_2023", "events_2024", "user_totals"}

// fidelityFingerprint adds to fingerprint what the statements of the table change and it
// does not look at: comments, triggers, rules, extended statistics, storage and column
// options, partitions, persistence, row security.
func fidelityFingerprint(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	extra := []string{
		`SELECT objoid::regclass::text || ' ' || objsubid || ' ' || description FROM pg_description WHERE classoid = 'pg_class'::regclass ORDER BY 1`,
		`SELECT tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text FROM pg_trigger ORDER BY 1`,
		`SELECT ev_class::regclass::text || ' ' || rulename || ' ' || ev_enabled::text FROM pg_rewrite WHERE ev_class::regclass::text NOT LIKE 'pg\_%' ORDER BY 1`,
		`SELECT stxname FROM pg_statistic_ext ORDER BY 1`,
		`SELECT c.relname || ' ' || coalesce(c.reloptions::text, '') || ' ' || c.relpersistence::text || ' ' || c.relrowsecurity || ' ' || c.relispartition || ' ' || coalesce(pg_get_expr(c.relpartbound, c.oid), '')
		 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1`,
		`SELECT attrelid::regclass::text || '.' || attname || ' ' || attstattarget || ' ' || coalesce(attoptions::text, '') || ' ' || attstorage::text::text
		 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = 'public' AND attnum > 0 ORDER BY 1`,
		`SELECT inhrelid::regclass::text || ' ' || inhparent::regclass::text FROM pg_inherits ORDER BY 1`,
		`SELECT indexrelid::regclass::text || ' ' || indisclustered || ' ' || indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1`,
	}
	var sb strings.Builder
	sb.WriteString(fingerprint(t, conn, fidelityTables...))
	for _, q := range extra {
		rows, err := conn.Query(context.Background(), q)
		require.NoError(t, err, q)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err, q)
		sb.WriteString(strings.Join(lines, "\n") + "\n--\n")
	}
	return sb.String()
}

// fidelityCase is one DDL statement with the locks and rewrites the PostgreSQL 15
// documentation gives for it. doc quotes or names the page that says so.
type fidelityCase struct {
	name string
	sql  string
	// locks is, per relation, the strongest lock mode the statement takes on it. Every
	// relation listed must be locked in exactly that mode at its strongest, and no table of
	// fidelitySchema that is not listed may be locked at all (indexes may be, unlisted: a
	// statement that reads or builds an index locks it too).
	locks map[string]string
	// rewrites are the tables whose storage the statement replaces.
	rewrites []string
	// wouldTake is set for a statement that cannot run in a transaction block: the report
	// must give, from the documentation, the lock it takes: as its real_locks when it ran as
	// its transactional equivalent (emulated), else saying it was not executed and "would take
	// <wouldTake>" (noEquivalent).
	wouldTake    string
	noEquivalent bool
	doc          string
}

// The fidelity table: each row is dry-run alone on a fresh database with fidelitySchema.
//
// Locks: a statement often takes weaker locks on a relation on its way to the strongest
// (TRUNCATE takes SHARE then ACCESS EXCLUSIVE; the query that validates a foreign key takes
// ACCESS SHARE and ROW SHARE beside SHARE ROW EXCLUSIVE). Locks are held until the end of the
// transaction, so what other sessions wait for is the union of what each held mode conflicts
// with. The test therefore checks, per relation, that the strongest mode reported is the
// documented one AND that the reported modes together block exactly what the documented mode
// blocks (Table 13.2): an extra weaker lock is allowed only if it blocks nothing more.
var fidelityCases = []fidelityCase{
	{
		name: "add column, nullable, no default", sql: `ALTER TABLE users ADD COLUMN note text`,
		locks: map[string]string{"users": accessExclusive},
		doc:   `ALTER TABLE: "An ACCESS EXCLUSIVE lock is acquired unless explicitly noted"; "If no DEFAULT is specified, NULL is used. In neither case is a rewrite of the table required."`,
	},
	{
		name: "add column, constant default", sql: `ALTER TABLE users ADD COLUMN active boolean NOT NULL DEFAULT true`,
		locks: map[string]string{"users": accessExclusive},
		doc:   `ALTER TABLE: "When a column is added with ADD COLUMN and a non-volatile DEFAULT is specified, the default is evaluated at the time of the statement ... In neither case is a rewrite of the table required." (since PostgreSQL 11)`,
	},
	{
		name: "add column, stable default now()", sql: `ALTER TABLE users ADD COLUMN seen timestamptz DEFAULT now()`,
		locks: map[string]string{"users": accessExclusive},
		doc:   `ALTER TABLE, as above: now() is STABLE, not volatile, so no rewrite`,
	},
	{
		name: "add column, volatile default clock_timestamp()", sql: `ALTER TABLE users ADD COLUMN seen timestamptz DEFAULT clock_timestamp()`,
		locks: map[string]string{"users": accessExclusive}, rewrites: []string{"users"},
		doc: `ALTER TABLE: "Adding a column with a volatile DEFAULT ... will require the entire table and its indexes to be rewritten."`,
	},
	{
		name: "add column, volatile default random()", sql: `ALTER TABLE users ADD COLUMN r float8 DEFAULT random()`,
		locks: map[string]string{"users": accessExclusive}, rewrites: []string{"users"},
		doc: `ALTER TABLE, as above`,
	},
	{
		name: "alter column type int to bigint", sql: `ALTER TABLE users ALTER COLUMN n TYPE bigint`,
		locks: map[string]string{"users": accessExclusive}, rewrites: []string{"users"},
		doc: `ALTER TABLE: "changing the type of an existing column will require the entire table and its indexes to be rewritten"`,
	},
	{
		name: "alter column type varchar(10) to varchar(20)", sql: `ALTER TABLE users ALTER COLUMN email TYPE varchar(20)`,
		locks: map[string]string{"users": accessExclusive},
		doc:   `ALTER TABLE: "if the USING clause does not change the column contents and the old type is either binary coercible to the new type ..., a table rewrite is not needed"`,
	},
	{
		name: "alter column type varchar to text", sql: `ALTER TABLE users ALTER COLUMN email TYPE text`,
		locks: map[string]string{"users": accessExclusive},
		doc:   `ALTER TABLE, as above (varchar is binary coercible to text)`,
	},
	{
		name: "set not null", sql: `ALTER TABLE users ALTER COLUMN n SET NOT NULL`,
		locks: map[string]string{"users": accessExclusive},
		doc:   `ALTER TABLE: not noted, so ACCESS EXCLUSIVE; "Adding a CHECK or NOT NULL constraint requires scanning the table ..., but does not require a table rewrite."`,
	},
	{
		name: "drop not null", sql: `ALTER TABLE users ALTER COLUMN name DROP NOT NULL`,
		locks: map[string]string{"users": accessExclusive},
		doc:   `ALTER TABLE: not noted, so ACCESS EXCLUSIVE`,
	},
	{
		name: "set default", sql: `ALTER TABLE users ALTER COLUMN n SET DEFAULT 0`,
		locks: map[string]string{"users": accessExclusive},
		doc:   `ALTER TABLE: not noted, so ACCESS EXCLUSIVE`,
	},
	{
		name: "drop column", sql: `ALTER TABLE users DROP COLUMN created`,
		locks: map[string]string{"users": accessExclusive},
		doc:   `ALTER TABLE: not noted, so ACCESS EXCLUSIVE; "The DROP COLUMN form does not physically remove the column"`,
	},
	{
		name: "add check constraint not valid", sql: `ALTER TABLE users ADD CONSTRAINT n_pos CHECK (n > 0) NOT VALID`,
		locks: map[string]string{"users": accessExclusive},
		doc:   `ALTER TABLE: "most forms of ADD table_constraint require an ACCESS EXCLUSIVE lock"`,
	},
	{
		name: "add check constraint", sql: `ALTER TABLE users ADD CONSTRAINT n_pos CHECK (n > 0)`,
		locks: map[string]string{"users": accessExclusive},
		doc:   `ALTER TABLE, as above; scans but does not rewrite`,
	},
	{
		name: "add unique constraint", sql: `ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)`,
		locks: map[string]string{"users": accessExclusive, "users_email_key": accessExclusive},
		doc:   `ALTER TABLE, as above`,
	},
	{
		name: "validate check constraint", sql: `ALTER TABLE orders VALIDATE CONSTRAINT orders_total_pos`,
		locks: map[string]string{"orders": shareUpdateExclusive},
		doc:   `ALTER TABLE, VALIDATE CONSTRAINT: "This command acquires a SHARE UPDATE EXCLUSIVE lock."`,
	},
	{
		name: "validate foreign key", sql: `ALTER TABLE reviews VALIDATE CONSTRAINT reviews_user_fk`,
		locks: map[string]string{"reviews": shareUpdateExclusive, "users": rowShare},
		doc:   `ALTER TABLE, Notes: "validation acquires only a SHARE UPDATE EXCLUSIVE lock on the table being altered. (If the constraint is a foreign key then a ROW SHARE lock is also required on the table referenced by the constraint.)"`,
	},
	{
		name: "add foreign key", sql: `ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id)`,
		locks: map[string]string{"orders": shareRowExclusive, "users": shareRowExclusive},
		doc:   `ALTER TABLE: "ADD FOREIGN KEY requires only a SHARE ROW EXCLUSIVE lock" and "also acquires a SHARE ROW EXCLUSIVE lock on the referenced table"`,
	},
	{
		name: "add foreign key not valid", sql: `ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID`,
		locks: map[string]string{"orders": shareRowExclusive, "users": shareRowExclusive},
		doc:   `ALTER TABLE, as above`,
	},
	{
		name: "create table with a foreign key", sql: `CREATE TABLE items (id int PRIMARY KEY, order_id int REFERENCES orders)`,
		locks: map[string]string{"orders": shareRowExclusive, "items": accessExclusive},
		doc:   `CREATE TABLE: "The addition of a foreign key constraint requires a SHARE ROW EXCLUSIVE lock on the referenced table."`,
	},
	{
		name: "create index", sql: `CREATE INDEX users_email ON users (email)`,
		locks: map[string]string{"users": share},
		doc:   `Explicit Locking, SHARE: "Acquired by CREATE INDEX (without CONCURRENTLY)."`,
	},
	{
		name: "create index concurrently", sql: `CREATE INDEX CONCURRENTLY users_email ON users (email)`,
		wouldTake: "ShareUpdateExclusiveLock on users",
		doc:       `Explicit Locking, SHARE UPDATE EXCLUSIVE: "Acquired by ... CREATE INDEX CONCURRENTLY"`,
	},
	{
		name: "drop index", sql: `DROP INDEX users_n`,
		locks: map[string]string{"users": accessExclusive, "users_n": accessExclusive},
		doc:   `DROP INDEX: "A normal DROP INDEX acquires an ACCESS EXCLUSIVE lock on the table"`,
	},
	{
		name: "drop index concurrently", sql: `DROP INDEX CONCURRENTLY users_n`,
		wouldTake: "ShareUpdateExclusiveLock on users",
		doc:       `DROP INDEX: CONCURRENTLY drops "without locking out concurrent selects, inserts, updates, and deletes on the index's table" (the mode is not named; index_drop takes ShareUpdateExclusiveLock)`,
	},
	{
		name: "rename column", sql: `ALTER TABLE users RENAME COLUMN name TO full_name`,
		locks: map[string]string{"users": accessExclusive},
		doc:   `ALTER TABLE: not noted, so ACCESS EXCLUSIVE`,
	},
	{
		// The report names a relation as it is after the statement.
		name: "rename table", sql: `ALTER TABLE users RENAME TO people`,
		locks: map[string]string{"people": accessExclusive},
		doc:   `ALTER TABLE: not noted, so ACCESS EXCLUSIVE`,
	},
	{
		name: "rename index", sql: `ALTER INDEX users_n RENAME TO users_n_idx`,
		locks: map[string]string{"users_n_idx": shareUpdateExclusive},
		doc:   `ALTER INDEX: "Renaming an index acquires a SHARE UPDATE EXCLUSIVE lock."`,
	},
	{
		name: "truncate", sql: `TRUNCATE orders`,
		locks: map[string]string{"orders": accessExclusive}, rewrites: []string{"orders"},
		doc: `TRUNCATE: "acquires an ACCESS EXCLUSIVE lock on each table it operates on"; "it reclaims disk space immediately" (new, empty storage)`,
	},
	{
		name: "drop table", sql: `DROP TABLE audit`,
		locks: map[string]string{"audit": accessExclusive, "audit_pkey": accessExclusive},
		doc:   `Explicit Locking, ACCESS EXCLUSIVE: "Acquired by the DROP TABLE ... commands"`,
	},
	{
		name: "vacuum", sql: `VACUUM users`, noEquivalent: true,
		wouldTake: "ShareUpdateExclusiveLock on users",
		doc:       `Explicit Locking, SHARE UPDATE EXCLUSIVE: "Acquired by VACUUM (without FULL)"`,
	},
	{
		name: "vacuum full", sql: `VACUUM (FULL, ANALYZE) orders, audit (msg)`, noEquivalent: true,
		wouldTake: "AccessExclusiveLock on orders, audit",
		doc:       `VACUUM: FULL "requires an ACCESS EXCLUSIVE lock on each table while it is being processed"`,
	},
	{
		name: "vacuum database", sql: `VACUUM`, noEquivalent: true,
		wouldTake: "ShareUpdateExclusiveLock on each table of the database, one at a time",
		doc:       `VACUUM: "Without a table_and_columns list, VACUUM processes every table and materialized view in the current database"`,
	},
	{
		name: "create trigger", sql: `CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch()`,
		locks: map[string]string{"users": shareRowExclusive},
		doc:   `Explicit Locking, SHARE ROW EXCLUSIVE: "Acquired by CREATE TRIGGER and some forms of ALTER TABLE."`,
	},
	{
		name: "disable trigger", sql: `ALTER TABLE users DISABLE TRIGGER ALL`,
		locks: map[string]string{"users": shareRowExclusive},
		doc:   `ALTER TABLE, DISABLE/ENABLE TRIGGER: "This command acquires a SHARE ROW EXCLUSIVE lock."`,
	},
	{
		// Runs in a transaction since PostgreSQL 12. It locks the type, not a table: no
		// relation lock, not even on orders, whose column has the type.
		name: "alter type add value", sql: `ALTER TYPE mood ADD VALUE 'happy'`,
		locks: map[string]string{},
		doc:   `ALTER TYPE: ADD VALUE changes the enum type only; no table lock is documented`,
	},
	{
		name: "set statistics", sql: `ALTER TABLE users ALTER COLUMN n SET STATISTICS 500`,
		locks: map[string]string{"users": shareUpdateExclusive},
		doc:   `ALTER TABLE: "SET STATISTICS acquires a SHARE UPDATE EXCLUSIVE lock."`,
	},
	{
		name: "set column option", sql: `ALTER TABLE users ALTER COLUMN n SET (n_distinct = 100)`,
		locks: map[string]string{"users": shareUpdateExclusive},
		doc:   `ALTER TABLE: "Changing per-attribute options acquires a SHARE UPDATE EXCLUSIVE lock."`,
	},
	{
		name: "set fillfactor", sql: `ALTER TABLE users SET (fillfactor = 70)`,
		locks: map[string]string{"users": shareUpdateExclusive},
		doc:   `ALTER TABLE: "SHARE UPDATE EXCLUSIVE lock will be taken for fillfactor, toast and autovacuum storage parameters"`,
	},
	{
		name: "cluster on", sql: `ALTER TABLE users CLUSTER ON users_pkey`,
		locks: map[string]string{"users": shareUpdateExclusive, "users_pkey": shareUpdateExclusive},
		doc:   `ALTER TABLE, CLUSTER ON: "Changing cluster options acquires a SHARE UPDATE EXCLUSIVE lock."`,
	},
	{
		name: "cluster", sql: `CLUSTER users USING users_pkey`,
		locks: map[string]string{"users": accessExclusive}, rewrites: []string{"users"},
		doc: `CLUSTER: "When a table is being clustered, an ACCESS EXCLUSIVE lock is acquired on it."`,
	},
	{
		name: "cluster all", sql: `CLUSTER`, noEquivalent: true,
		wouldTake: "AccessExclusiveLock on each table clustered before, one at a time",
		doc:       `CLUSTER, as above; without a table name it reclusters the tables clustered before`,
	},
	{
		// The documentation disagrees with itself: Explicit Locking lists REINDEX under ACCESS
		// EXCLUSIVE, the REINDEX page says "REINDEX locks out writes but not reads of the
		// index's parent table. It also takes an ACCESS EXCLUSIVE lock on the specific index
		// being processed". PostgreSQL does the latter: SHARE on the table.
		name: "reindex table", sql: `REINDEX TABLE users`,
		locks: map[string]string{"users": share, "users_pkey": accessExclusive, "users_n": accessExclusive},
		doc:   `REINDEX, Notes (see the comment)`,
	},
	{
		name: "reindex index", sql: `REINDEX INDEX users_n`,
		locks: map[string]string{"users": share, "users_n": accessExclusive},
		doc:   `REINDEX, Notes, as above`,
	},
	{
		name: "reindex table concurrently", sql: `REINDEX TABLE CONCURRENTLY users`,
		wouldTake: "ShareUpdateExclusiveLock on users",
		doc:       `REINDEX: "A SHARE UPDATE EXCLUSIVE lock at session level is taken on the indexes being reindexed as well as their associated tables"`,
	},
	{
		name: "reindex index concurrently", sql: `REINDEX (VERBOSE, CONCURRENTLY) INDEX users_n`,
		wouldTake: "ShareUpdateExclusiveLock on users",
		doc:       `REINDEX, as above`,
	},
	{
		name: "reindex schema", sql: `REINDEX SCHEMA public`, noEquivalent: true,
		wouldTake: "ShareLock on each table of schema public, one at a time",
		doc:       `REINDEX, Notes: "REINDEX locks out writes but not reads of the index's parent table"`,
	},
	{
		name: "attach partition", sql: `ALTER TABLE events ATTACH PARTITION events_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`,
		locks: map[string]string{"events": shareUpdateExclusive, "events_2024": accessExclusive},
		doc:   `ALTER TABLE: "Attaching a partition acquires a SHARE UPDATE EXCLUSIVE lock on the parent table, in addition to the ACCESS EXCLUSIVE locks on the table being attached"`,
	},
	{
		name: "detach partition", sql: `ALTER TABLE events DETACH PARTITION events_2023`,
		locks: map[string]string{"events": accessExclusive, "events_2023": accessExclusive},
		doc:   `ALTER TABLE: not noted (only CONCURRENTLY is), so ACCESS EXCLUSIVE`,
	},
	{
		name: "detach partition concurrently", sql: `ALTER TABLE events DETACH PARTITION events_2023 CONCURRENTLY`,
		wouldTake: "ShareUpdateExclusiveLock on events, events_2023",
		doc:       `ALTER TABLE: "a SHARE UPDATE EXCLUSIVE lock is taken on both parent table and partition"`,
	},
	{
		name: "comment on table", sql: `COMMENT ON TABLE users IS 'people'`,
		locks: map[string]string{"users": shareUpdateExclusive},
		doc:   `COMMENT: "A SHARE UPDATE EXCLUSIVE lock is acquired on the object to be commented."`,
	},
	{
		// Not documented; DefineQueryRewrite (rewriteDefine.c) takes AccessExclusiveLock.
		name: "create rule", sql: `CREATE RULE audit_no_delete AS ON DELETE TO audit DO INSTEAD NOTHING`,
		locks: map[string]string{"audit": accessExclusive},
		doc:   `CREATE RULE: no lock documented (see the comment)`,
	},
	{
		name: "create statistics", sql: `CREATE STATISTICS users_stats ON n, email FROM users`,
		locks: map[string]string{"users": shareUpdateExclusive},
		doc:   `Explicit Locking, SHARE UPDATE EXCLUSIVE: "Acquired by ... CREATE STATISTICS"`,
	},
	{
		// The ANALYZE page says it "requires only a read lock on the target table"; Explicit
		// Locking names the mode: SHARE UPDATE EXCLUSIVE, which blocks no reads or writes.
		name: "analyze", sql: `ANALYZE users`,
		locks: map[string]string{"users": shareUpdateExclusive},
		doc:   `Explicit Locking, SHARE UPDATE EXCLUSIVE: "Acquired by ... ANALYZE"`,
	},
	{
		name: "refresh materialized view", sql: `REFRESH MATERIALIZED VIEW user_totals`,
		locks: map[string]string{"user_totals": accessExclusive, "orders": accessShare}, rewrites: []string{"user_totals"},
		doc: `Explicit Locking, ACCESS EXCLUSIVE: "REFRESH MATERIALIZED VIEW (without CONCURRENTLY)"; it "completely replaces the contents"`,
	},
	{
		name: "refresh materialized view concurrently", sql: `REFRESH MATERIALIZED VIEW CONCURRENTLY user_totals`,
		locks: map[string]string{"user_totals": exclusive, "orders": accessShare},
		doc:   `Explicit Locking, EXCLUSIVE: "Acquired by REFRESH MATERIALIZED VIEW CONCURRENTLY."`,
	},
}

var wouldTakeRE = regexp.MustCompile(`would take (\w+Lock) on (.+)$`)

func TestFidelity(t *testing.T) {
	t.Parallel()
	require.GreaterOrEqual(t, len(fidelityCases), 22)
	for _, tc := range fidelityCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, fidelitySchema)
			before := fidelityFingerprint(t, b.conn)
			rep := b.run(t, dryrun.Options{}, mig("0001", tc.sql))
			require.Equal(t, before, fidelityFingerprint(t, b.conn), "the target changed")
			require.True(t, rep.Success, "%+v", rep)
			require.Len(t, rep.Migrations, 1)
			st := findStmt(t, rep, strings.Fields(tc.sql)[0])
			t.Logf("%s: locks %v rewrites %v skipped %q (%s)", tc.sql, st.Locks, st.Rewrites, st.Skipped, tc.doc)

			if tc.wouldTake != "" {
				if st.Emulated {
					// Run as its transactional equivalent; the report gives the real lock beside.
					require.True(t, st.Executed, "%+v", st)
					require.NotContains(t, strings.ToLower(st.EmulatedAs), "concurrently")
					var real []string
					for _, l := range st.RealLocks {
						real = append(real, l.Relation)
						require.Equal(t, strings.Fields(tc.wouldTake)[0], l.Mode)
					}
					require.Equal(t, tc.wouldTake, st.RealLocks[0].Mode+" on "+strings.Join(real, ", "))
					require.NotEmpty(t, st.Locks, "the emulation's own locks")
					require.NotEmpty(t, st.Blocks, "what the real statement blocks")
					for _, b := range st.Blocks {
						require.Equal(t, st.RealLocks[0].Mode, b.Mode)
					}
					w := hasWarning(rep, contract.DryRunCodeEmulated)
					require.NotNil(t, w)
					require.Contains(t, w.Message, "takes "+tc.wouldTake)
					require.Nil(t, hasWarning(rep, contract.DryRunCodeNotTransactional))
					return
				}
				require.True(t, tc.noEquivalent, "%s has a transactional equivalent but was not emulated", tc.sql)
				require.False(t, st.Executed)
				require.Empty(t, st.Locks)
				require.Contains(t, st.Skipped, "cannot run inside a transaction block; not executed")
				m := wouldTakeRE.FindStringSubmatch(st.Skipped)
				require.NotNil(t, m, "skipped does not say which lock it would take: %q", st.Skipped)
				require.Equal(t, tc.wouldTake, m[1]+" on "+m[2])
				w := hasWarning(rep, contract.DryRunCodeNotTransactional)
				require.NotNil(t, w)
				require.Contains(t, w.Message, "would take "+tc.wouldTake)
				return
			}

			require.True(t, st.Executed, "%+v", st)
			byRel := map[string][]string{}
			for _, l := range st.Locks {
				require.NotRegexp(t, `^\d+$`, l.Relation, "a lock on a relation the report cannot name: %v", st.Locks)
				byRel[l.Relation] = append(byRel[l.Relation], l.Mode)
			}
			for rel, mode := range tc.locks {
				got := byRel[rel]
				require.Equal(t, mode, strongest(got), "strongest lock on %s (all locks: %v)", rel, st.Locks)
				require.Equal(t, blocked(mode), blocked(got...), "the locks on %s block more than %s does: %v", rel, mode, got)
			}
			for _, tbl := range fidelityTables {
				if _, ok := tc.locks[tbl]; !ok {
					require.Empty(t, byRel[tbl], "unexpected lock on %s (all locks: %v)", tbl, st.Locks)
				}
			}
			require.ElementsMatch(t, tc.rewrites, st.Rewrites, "rewrites")
			if len(tc.rewrites) > 0 {
				require.NotNil(t, hasWarning(rep, contract.DryRunCodeTableRewrite))
			} else {
				require.Nil(t, hasWarning(rep, contract.DryRunCodeTableRewrite))
			}
		})
	}
}
