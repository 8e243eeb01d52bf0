package sqlscript

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// st is the part of a Statement the split tests compare.
type st struct {
	SQL  string
	Line int
}

func project(stmts []Statement) []st {
	out := make([]st, 0, len(stmts))
	for _, s := range stmts {
		out = append(out, st{SQL: s.SQL, Line: s.Line})
	}
	return out
}

func TestSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		want   []st
	}{
		{"empty", "", []st{}},
		{"whitespace only", " \n\t\r\n ", []st{}},
		{"comments only", "-- one\n/* two\n */\n-- three", []st{}},
		{"empty statements", ";;\n ; -- x\n;", []st{}},
		{"single without semicolon", "SELECT 1", []st{{"SELECT 1", 1}}},
		{"single with semicolon", "  SELECT 1 ;  ", []st{{"SELECT 1", 1}}},
		{"two on one line", "SELECT 1;SELECT 2;", []st{{"SELECT 1", 1}, {"SELECT 2", 1}}},
		{
			"multi-line with lines",
			"\n\nCREATE TABLE t (\n  id int\n);\n\n-- add an index\nCREATE INDEX ON t (id);\n",
			[]st{{"CREATE TABLE t (\n  id int\n)", 3}, {"CREATE INDEX ON t (id)", 8}},
		},
		{
			"leading comment dropped, interior kept, trailing dropped",
			"/* header */ -- more\nSELECT 1 /* mid; */ + 2 -- tail; \n; -- after",
			[]st{{"SELECT 1 /* mid; */ + 2", 2}},
		},
		{
			"semicolon in plain string with doubled quote",
			"INSERT INTO t VALUES ('a;b', 'it''s; fine');SELECT 2",
			[]st{{"INSERT INTO t VALUES ('a;b', 'it''s; fine')", 1}, {"SELECT 2", 1}},
		},
		{
			"backslash is ordinary in plain string",
			`SELECT 'C:\';SELECT 2`,
			[]st{{`SELECT 'C:\'`, 1}, {"SELECT 2", 1}},
		},
		{
			"escape string with backslash quote",
			`SELECT E'it\'s; \\';SELECT e'x\';y';SELECT 3`,
			[]st{{`SELECT E'it\'s; \\'`, 1}, {`SELECT e'x\';y'`, 1}, {"SELECT 3", 1}},
		},
		{
			"escape string with doubled quote",
			`SELECT E'a'';b';SELECT 2`,
			[]st{{`SELECT E'a'';b'`, 1}, {"SELECT 2", 1}},
		},
		{
			"word ending in e is not an escape prefix",
			`SELECT type'a\';SELECT 2`,
			[]st{{`SELECT type'a\'`, 1}, {"SELECT 2", 1}},
		},
		{
			"unicode string and identifier",
			`SELECT U&'d\0061t;a' UESCAPE '!', u&"ta;b""x";SELECT 2`,
			[]st{{`SELECT U&'d\0061t;a' UESCAPE '!', u&"ta;b""x"`, 1}, {"SELECT 2", 1}},
		},
		{
			"bit, hex and national strings",
			`SELECT B'1;0', X'1;F', N'a;b';SELECT 2`,
			[]st{{`SELECT B'1;0', X'1;F', N'a;b'`, 1}, {"SELECT 2", 1}},
		},
		{
			"quoted identifier with semicolon and doubled quote",
			`CREATE TABLE "we;ird""name" (x int);SELECT 2`,
			[]st{{`CREATE TABLE "we;ird""name" (x int)`, 1}, {"SELECT 2", 1}},
		},
		{
			"empty dollar quote",
			"CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 'x'; $$ LANGUAGE sql;\nSELECT 2",
			[]st{{"CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 'x'; $$ LANGUAGE sql", 1}, {"SELECT 2", 2}},
		},
		{
			"tagged dollar quote containing other tags",
			"DO $body$\nBEGIN\n  PERFORM $$;$$; -- ;\n  RAISE NOTICE 'x;';\nEND\n$body$;\nSELECT 2;",
			[]st{
				{"DO $body$\nBEGIN\n  PERFORM $$;$$; -- ;\n  RAISE NOTICE 'x;';\nEND\n$body$", 1},
				{"SELECT 2", 7},
			},
		},
		{
			"dollar quote with unmatched quote inside",
			"SELECT $q$it's; \"$q$;SELECT 2",
			[]st{{"SELECT $q$it's; \"$q$", 1}, {"SELECT 2", 1}},
		},
		{
			"positional parameters are not dollar quotes",
			"PREPARE p AS SELECT $1, $2;SELECT 2",
			[]st{{"PREPARE p AS SELECT $1, $2", 1}, {"SELECT 2", 1}},
		},
		{
			"dollar inside identifier is not a dollar quote",
			"SELECT a$b$, c$$ FROM t;SELECT 2",
			[]st{{"SELECT a$b$, c$$ FROM t", 1}, {"SELECT 2", 1}},
		},
		{
			"dollar quote right after number",
			"SELECT 1$$;$$;SELECT 2",
			[]st{{"SELECT 1$$;$$", 1}, {"SELECT 2", 1}},
		},
		{
			"line comment with semicolon and quote",
			"SELECT 1 -- don't; split\n+ 1;SELECT 2",
			[]st{{"SELECT 1 -- don't; split\n+ 1", 1}, {"SELECT 2", 2}},
		},
		{
			"line comment ends at carriage return",
			"SELECT 1 -- c\rSELECT 2;",
			[]st{{"SELECT 1 -- c\rSELECT 2", 1}},
		},
		{
			"block comment with semicolon and quote",
			"SELECT /* it's; */ 1;SELECT 2",
			[]st{{"SELECT /* it's; */ 1", 1}, {"SELECT 2", 1}},
		},
		{
			"nested block comments",
			"SELECT 1 /* a /* b; */ c; */ + 1;SELECT /*/ x; */ 2",
			[]st{{"SELECT 1 /* a /* b; */ c; */ + 1", 1}, {"SELECT /*/ x; */ 2", 1}},
		},
		{
			"comment starts inside operator",
			"SELECT 2*/*;*/3;SELECT 4",
			[]st{{"SELECT 2*/*;*/3", 1}, {"SELECT 4", 1}},
		},
		{
			"multi-line comment counts lines",
			"/*\n\n*/\n\nSELECT 1;\n/* x\n y */ SELECT 2",
			[]st{{"SELECT 1", 5}, {"SELECT 2", 7}},
		},
		{
			"multi-line strings count lines",
			"SELECT 'a\nb', E'c\nd', \"e\nf\", $$g\nh$$;\nSELECT 2",
			[]st{{"SELECT 'a\nb', E'c\nd', \"e\nf\", $$g\nh$$", 1}, {"SELECT 2", 6}},
		},
		{
			"CRLF line endings",
			"-- header\r\nCREATE TABLE t (\r\n  id int -- c\r\n);\r\n\r\nSELECT 'x;\r\ny';\r\nSELECT 3\r\n",
			[]st{
				{"CREATE TABLE t (\r\n  id int -- c\r\n)", 2},
				{"SELECT 'x;\r\ny'", 6},
				{"SELECT 3", 8},
			},
		},
		{
			"byte order mark",
			"\uFEFFSELECT 1;\nSELECT 2",
			[]st{{"SELECT 1", 1}, {"SELECT 2", 2}},
		},
		{
			"semicolons inside parentheses (CREATE RULE)",
			"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2));\nSELECT 2",
			[]st{{"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))", 1}, {"SELECT 2", 2}},
		},
		{
			"stray closing parenthesis",
			"SELECT 1);SELECT 2",
			[]st{{"SELECT 1)", 1}, {"SELECT 2", 1}},
		},
		{
			"BEGIN ATOMIC function",
			"CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT a + 1;\n  SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\nEND;\nSELECT f(1);",
			[]st{
				{"CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT a + 1;\n  SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\nEND", 1},
				{"SELECT f(1)", 6},
			},
		},
		{
			"BEGIN ATOMIC procedure, create or replace, lower case, nested case",
			"create or replace procedure p()\nbegin atomic\n insert into t values (case when true then case 1 when 1 then 2 end end);\n update t set x = case when x then 1 end;\n select t.end from t;\nend;\nselect 1",
			[]st{
				{"create or replace procedure p()\nbegin atomic\n insert into t values (case when true then case 1 when 1 then 2 end end);\n update t set x = case when x then 1 end;\n select t.end from t;\nend", 1},
				{"select 1", 7},
			},
		},
		{
			"empty BEGIN ATOMIC body",
			"CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC END; SELECT 2",
			[]st{{"CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC END", 1}, {"SELECT 2", 1}},
		},
		{
			"BEGIN outside a routine is a statement",
			"BEGIN;\nSELECT 1;\nCOMMIT;",
			[]st{{"BEGIN", 1}, {"SELECT 1", 2}, {"COMMIT", 3}},
		},
		{
			"quoted begin does not open a body",
			`CREATE FUNCTION "begin"() RETURNS int AS 'SELECT 1' LANGUAGE sql; SELECT "begin"()`,
			[]st{{`CREATE FUNCTION "begin"() RETURNS int AS 'SELECT 1' LANGUAGE sql`, 1}, {`SELECT "begin"()`, 1}},
		},
		{
			"dollar-quoted plpgsql function is not a BEGIN ATOMIC body",
			"CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql;\nSELECT 2",
			[]st{{"CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql", 1}, {"SELECT 2", 2}},
		},
		{
			"backslash inside strings and comments is fine",
			"SELECT '\\connect x', E'\\\\', $$\\set$$ -- \\i f\n, \"\\\";\n/* \\q */ SELECT 2",
			[]st{{"SELECT '\\connect x', E'\\\\', $$\\set$$ -- \\i f\n, \"\\\"", 1}, {"SELECT 2", 3}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Split(tt.script)
			require.NoError(t, err)
			require.Equal(t, tt.want, project(got))
		})
	}
}

func TestSplitErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		line   int
		msg    string
	}{
		{"unterminated string", "SELECT 1;\n\nSELECT 'abc;\nSELECT 2;", 3, "unterminated quoted string"},
		{"unterminated string ending in doubled quote", "SELECT 'abc''", 1, "unterminated quoted string"},
		{"unterminated escape string", "SELECT 1;\nSELECT E'abc\\';\n", 2, "unterminated quoted string"},
		{"unterminated escape string ending in backslash", "SELECT E'abc\\", 1, "unterminated quoted string"},
		{"unterminated unicode string", "\nSELECT U&'abc", 2, "unterminated quoted string"},
		{"unterminated identifier", "SELECT 1;\nSELECT \"abc\nFROM t;", 2, "unterminated quoted identifier"},
		{"unterminated dollar quote", "SELECT 1;\n\n\nDO $$\nBEGIN\nEND;\n", 4, "unterminated dollar-quoted string $$"},
		{"unterminated tagged dollar quote", "DO $fn$ SELECT 1; $other$", 1, "unterminated dollar-quoted string $fn$"},
		{"dollar quote tags are case-sensitive", "DO $a$ x $A$", 1, "unterminated dollar-quoted string $a$"},
		{"unterminated block comment", "SELECT 1;\n/* one\n two", 2, "unterminated /* comment"},
		{"unterminated nested block comment", "SELECT 1 /* a /* b */\n", 1, "unterminated /* comment"},
		{"unterminated BEGIN ATOMIC", "SELECT 1;\nCREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\nSELECT 1;\nSELECT 2;", 3, "unterminated BEGIN ATOMIC body (missing END)"},
		{"unterminated parenthesis", "SELECT 1;\nSELECT (1;\nSELECT 2;", 2, "unterminated parenthesis (missing \")\")"},
		{"meta-command at line start", "SELECT 1;\n\\connect other\nSELECT 2;", 2, `psql meta-command \connect is not supported`},
		{"indented meta-command", "  \\set ON_ERROR_STOP on\n", 1, `psql meta-command \set is not supported`},
		{"meta-command after statement", "SELECT 1;\nSELECT 2 \\gexec\n", 2, `psql meta-command \gexec is not supported`},
		{"meta-command in CRLF script", "SELECT 1;\r\n\\i other.sql\r\n", 2, `psql meta-command \i is not supported`},
		{"bare backslash", "SELECT 1;\n\\", 2, `psql meta-command \ is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Split(tt.script)
			require.Nil(t, got)
			var serr *SyntaxError
			require.ErrorAs(t, err, &serr)
			require.Equal(t, tt.line, serr.Line)
			require.Equal(t, tt.msg, serr.Msg)
			require.Contains(t, err.Error(), tt.msg)
		})
	}
}

func TestSplitClassifies(t *testing.T) {
	t.Parallel()
	script := "CREATE TABLE t (x int);\nCREATE INDEX CONCURRENTLY i ON t (x);\nCOMMIT;\nALTER TYPE e ADD VALUE 'b'"

	got, err := Split(script)
	require.NoError(t, err)
	require.Equal(t, []Statement{
		{SQL: "CREATE TABLE t (x int)", Line: 1, Class: Transactional},
		{SQL: "CREATE INDEX CONCURRENTLY i ON t (x)", Line: 2, Class: NonTransactional,
			Reason: "CREATE INDEX CONCURRENTLY cannot run inside a transaction block"},
		{SQL: "COMMIT", Line: 3, Class: TxControl,
			Reason: "COMMIT is transaction control; a migration runs in a transaction the worker manages and must not contain it"},
		{SQL: "ALTER TYPE e ADD VALUE 'b'", Line: 4, Class: Transactional},
	}, got)

	got, err = SplitFor(script, 110000)
	require.NoError(t, err)
	require.Equal(t, NonTransactional, got[3].Class)
	require.Equal(t, "ALTER TYPE ... ADD VALUE cannot run inside a transaction block before PostgreSQL 12", got[3].Reason)
}

func TestClassify(t *testing.T) {
	t.Parallel()
	const (
		T = Transactional
		N = NonTransactional
		X = TxControl
	)
	tests := []struct {
		sql     string
		version int
		want    Class
	}{
		// Transaction control.
		{"BEGIN", 0, X},
		{"begin", 0, X},
		{"BEGIN WORK", 0, X},
		{"BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE", 0, X},
		{"  -- c\n/* c */ Begin\n\tread only", 0, X},
		{"BEGIN ATOMIC SELECT 1; END", 0, T},
		{"START TRANSACTION", 0, X},
		{"start   transaction read write", 0, X},
		{"START", 0, T},
		{"COMMIT", 0, X},
		{"commit work", 0, X},
		{"COMMIT AND CHAIN", 0, X},
		{"COMMIT PREPARED 'tx1'", 0, X},
		{"END", 0, X},
		{"end transaction", 0, X},
		{"ROLLBACK", 0, X},
		{"rollback work", 0, X},
		{"ROLLBACK AND NO CHAIN", 0, X},
		{"ROLLBACK PREPARED 'tx1'", 0, X},
		{"ABORT", 0, X},
		{"abort transaction", 0, X},
		{"PREPARE TRANSACTION 'tx1'", 0, X},
		{"prepare transaction 'tx1'", 0, X},
		{"PREPARE transaction AS SELECT 1", 0, T},
		{"PREPARE transaction (int) AS SELECT $1", 0, T},
		{"PREPARE p AS SELECT 1", 0, T},
		// Allowed transaction statements.
		{"SAVEPOINT a", 0, T},
		{"RELEASE a", 0, T},
		{"RELEASE SAVEPOINT a", 0, T},
		{"ROLLBACK TO a", 0, T},
		{"rollback to savepoint a", 0, T},
		{"ROLLBACK WORK TO SAVEPOINT a", 0, T},
		{"ROLLBACK TRANSACTION TO a", 0, T},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", 0, T},
		// Indexes.
		{"CREATE INDEX CONCURRENTLY i ON t (x)", 0, N},
		{"create unique index concurrently i on t (x)", 0, N},
		{"CREATE INDEX\n  CONCURRENTLY IF NOT EXISTS i ON t (x)", 0, N},
		{"CREATE INDEX concurrently ON t (x)", 0, N},
		{"CREATE INDEX i ON t (x)", 0, T},
		{"CREATE INDEX idx_concurrently ON t(x)", 0, T},
		{`CREATE INDEX "concurrently" ON t(x)`, 0, T},
		{"CREATE INDEX /* CONCURRENTLY */ i ON t(x)", 0, T},
		{"CREATE UNIQUE INDEX i ON t (x)", 0, T},
		{"DROP INDEX CONCURRENTLY i", 0, N},
		{"drop index concurrently if exists i", 0, N},
		{"DROP INDEX i", 0, T},
		{"DROP INDEX concurrently_idx", 0, T},
		// REINDEX.
		{"REINDEX INDEX CONCURRENTLY i", 0, N},
		{"REINDEX TABLE CONCURRENTLY t", 0, N},
		{"reindex (verbose) table concurrently t", 0, N},
		{"REINDEX (VERBOSE, TABLESPACE ts) INDEX CONCURRENTLY i", 0, N},
		{"REINDEX (CONCURRENTLY) TABLE t", 0, N},
		{"REINDEX (CONCURRENTLY true, VERBOSE) TABLE t", 0, N},
		{"REINDEX (CONCURRENTLY false) TABLE t", 0, T},
		{"REINDEX (CONCURRENTLY off) TABLE t", 0, T},
		{"REINDEX (VERBOSE) TABLE t", 0, T},
		{"REINDEX TABLE t", 0, T},
		{"REINDEX INDEX i", 0, T},
		{"REINDEX TABLE concurrently_t", 0, T},
		{"REINDEX SYSTEM", 0, N},
		{"REINDEX SYSTEM db", 0, N},
		{"REINDEX DATABASE db", 0, N},
		{"REINDEX (VERBOSE) DATABASE", 0, N},
		{"REINDEX SCHEMA s", 0, N},
		// VACUUM and CLUSTER.
		{"VACUUM", 0, N},
		{"vacuum t", 0, N},
		{"VACUUM (ANALYZE, VERBOSE) t (x)", 0, N},
		{"VACUUM FULL", 0, N},
		{"-- comment\nVACUUM t", 0, N},
		{"/* a /* nested */ comment */ vacuum", 0, N},
		{"select 'vacuum'", 0, T},
		{"ANALYZE t", 0, T},
		{"CLUSTER", 0, N},
		{"cluster verbose", 0, N},
		{"CLUSTER (VERBOSE)", 0, N},
		{"CLUSTER -- all tables\n", 0, N},
		{"CLUSTER t", 0, T},
		{"CLUSTER VERBOSE t USING i", 0, T},
		{"CLUSTER (VERBOSE) t", 0, T},
		{"CLUSTER i ON t", 0, T},
		// Databases, tablespaces, system.
		{"CREATE DATABASE d", 0, N},
		{"DROP DATABASE d", 0, N},
		{"DROP DATABASE IF EXISTS d WITH (FORCE)", 0, N},
		{"ALTER DATABASE d SET TABLESPACE ts", 0, N},
		{"ALTER DATABASE d SET work_mem = '1MB'", 0, T},
		{"ALTER DATABASE d RENAME TO e", 0, T},
		{"CREATE TABLESPACE ts LOCATION '/x'", 0, N},
		{"DROP TABLESPACE ts", 0, N},
		{"ALTER TABLESPACE ts RENAME TO u", 0, T},
		{"ALTER SYSTEM SET work_mem = '1MB'", 0, N},
		{"DISCARD ALL", 0, N},
		{"DISCARD TEMP", 0, T},
		// Subscriptions.
		{"CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p", 0, N},
		{"DROP SUBSCRIPTION s", 0, N},
		{"DROP SUBSCRIPTION IF EXISTS s", 0, N},
		{"ALTER SUBSCRIPTION s REFRESH PUBLICATION", 0, N},
		{"alter subscription s refresh publication with (copy_data = false)", 0, N},
		{"ALTER SUBSCRIPTION s SET PUBLICATION p", 0, N},
		{"ALTER SUBSCRIPTION s ADD PUBLICATION p WITH (copy_data = false)", 0, N},
		{"ALTER SUBSCRIPTION s SET PUBLICATION p WITH (refresh = false)", 0, T},
		{"ALTER SUBSCRIPTION s DROP PUBLICATION p WITH (refresh = off)", 0, T},
		{"ALTER SUBSCRIPTION s SET PUBLICATION p WITH (refresh = true)", 0, N},
		{"ALTER SUBSCRIPTION s DISABLE", 0, T},
		{"ALTER SUBSCRIPTION s SET (slot_name = NONE)", 0, T},
		{"CREATE PUBLICATION p FOR ALL TABLES", 0, T},
		// ALTER TYPE ... ADD VALUE depends on the server version.
		{"ALTER TYPE mood ADD VALUE 'meh'", 110000, N},
		{"ALTER TYPE mood ADD VALUE 'meh'", 0, N},
		{"alter type public.mood add value if not exists 'meh' before 'ok'", 110022, N},
		{`ALTER TYPE "my schema"."My Type" ADD VALUE 'x'`, 90600, N},
		{"ALTER TYPE mood ADD VALUE 'meh'", 120000, T},
		{"ALTER TYPE mood ADD VALUE 'meh'", 150000, T},
		{"ALTER TYPE mood RENAME VALUE 'a' TO 'b'", 110000, T},
		{"ALTER TYPE comp ADD ATTRIBUTE x int", 110000, T},
		// DETACH PARTITION CONCURRENTLY.
		{"ALTER TABLE p DETACH PARTITION c CONCURRENTLY", 0, N},
		{"ALTER TABLE IF EXISTS ONLY s.p DETACH PARTITION s.c CONCURRENTLY", 0, N},
		{"ALTER TABLE p DETACH PARTITION c", 0, T},
		{"ALTER TABLE p DETACH PARTITION c FINALIZE", 0, T},
		{"ALTER TABLE t ADD COLUMN detach int", 0, T},
		{"ALTER TABLE t ADD CHECK (x <> 'DETACH PARTITION c CONCURRENTLY')", 0, T},
		// Everything else, and keywords that only look alike.
		{"", 0, T},
		{"-- only a comment", 0, T},
		{"SELECT 1", 0, T},
		{"CREATE TABLE vacuum_log (x int)", 0, T},
		{`"vacuum"`, 0, T},
		{"vacuumdb", 0, T},
		{"begins", 0, T},
		{"committed", 0, T},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END", 0, T},
		{"DO $$ BEGIN COMMIT; END $$", 0, T},
		{"INSERT INTO t VALUES ('BEGIN')", 0, T},
		{"'unterminated", 0, T},
		{"SELECT 1; VACUUM", 0, T},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			t.Parallel()
			got, reason := Classify(tt.sql, tt.version)
			require.Equal(t, tt.want, got, "reason: %q", reason)
			if got == Transactional {
				require.Empty(t, reason)
			} else {
				require.NotEmpty(t, reason)
			}
		})
	}
}

func TestClassifyReasons(t *testing.T) {
	t.Parallel()
	tests := []struct{ sql, reason string }{
		{"create index concurrently i on t (x)", "CREATE INDEX CONCURRENTLY cannot run inside a transaction block"},
		{"DROP INDEX CONCURRENTLY i", "DROP INDEX CONCURRENTLY cannot run inside a transaction block"},
		{"REINDEX (VERBOSE) TABLE CONCURRENTLY t", "REINDEX CONCURRENTLY cannot run inside a transaction block"},
		{"reindex system", "REINDEX SYSTEM cannot run inside a transaction block"},
		{"VACUUM t", "VACUUM cannot run inside a transaction block"},
		{"CLUSTER", "CLUSTER without a table name cannot run inside a transaction block"},
		{"ALTER SUBSCRIPTION s ADD PUBLICATION p", "ALTER SUBSCRIPTION ... ADD PUBLICATION cannot run inside a transaction block unless WITH (refresh = false)"},
		{"ROLLBACK", "ROLLBACK is transaction control; a migration runs in a transaction the worker manages and must not contain it"},
		{"commit prepared 'x'", "COMMIT PREPARED is transaction control; a migration runs in a transaction the worker manages and must not contain it"},
	}
	for _, tt := range tests {
		_, reason := Classify(tt.sql, DefaultServerVersionNum)
		require.Equal(t, tt.reason, reason, tt.sql)
	}
}

func TestClassString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "transactional", Transactional.String())
	require.Equal(t, "non-transactional", NonTransactional.String())
	require.Equal(t, "transaction-control", TxControl.String())
	require.Equal(t, "Class(7)", Class(7).String())
}

func TestSummary(t *testing.T) {
	t.Parallel()
	require.Equal(t, "", Statement{}.Summary())
	require.Equal(t, "SELECT 1", Statement{SQL: "SELECT 1"}.Summary())
	require.Equal(t, "CREATE TABLE t ( id int, name text )",
		Statement{SQL: "CREATE TABLE t (\r\n\tid   int,\n\tname text\n)"}.Summary())

	long := "INSERT INTO t VALUES\n" + strings.Repeat("(1, 'ünïcode'),\n", 20) + "(2, 'x')"
	sum := Statement{SQL: long}.Summary()
	require.True(t, strings.HasPrefix(sum, "INSERT INTO t VALUES (1, 'ünïcode'), (1, "), sum)
	require.True(t, strings.HasSuffix(sum, "..."), sum)
	require.Equal(t, summaryRunes+3, utf8.RuneCountInString(sum))
	require.True(t, utf8.ValidString(sum))

	exact := strings.Repeat("x", summaryRunes)
	require.Equal(t, exact, Statement{SQL: exact + "  \n"}.Summary())
	require.Equal(t, exact+"...", Statement{SQL: exact + " y"}.Summary())
	require.Equal(t, "a\uFFFDb", Statement{SQL: "a\xffb"}.Summary())
}

// TestSplitLargeInputs checks that adversarial inputs complete quickly (the splitter is
// linear) and do not panic.
func TestSplitLargeInputs(t *testing.T) {
	t.Parallel()
	const n = 200_000
	inputs := []string{
		strings.Repeat("/*", n),
		strings.Repeat("/*", n) + strings.Repeat("*/", n),
		strings.Repeat("$a", n),
		"$" + strings.Repeat("a", n) + "$" + strings.Repeat("$"+strings.Repeat("a", 50), n/50),
		strings.Repeat("'", 2*n),
		strings.Repeat("E'\\'", n),
		strings.Repeat("(", n),
		strings.Repeat(";", n),
		strings.Repeat("CREATE FUNCTION f() BEGIN ATOMIC CASE CASE CASE ", n/50),
		strings.Repeat("SELECT 1;\n", n),
	}
	for _, in := range inputs {
		stmts, err := Split(in)
		for _, s := range stmts {
			require.NotEmpty(t, s.SQL)
		}
		if err != nil {
			var serr *SyntaxError
			require.True(t, errors.As(err, &serr))
		}
	}
}

func FuzzSplit(f *testing.F) {
	seeds := []string{
		"",
		"SELECT 1; SELECT 2",
		"SELECT 'a;b', E'c\\';d', U&'e;f', \"g;\"\"h\";",
		"DO $x$ ; $y$ ; $x$; SELECT $1, a$b$",
		"/* a /* b */ ; */ -- c ;\nSELECT 1",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; SELECT 2",
		"CREATE RULE r AS ON INSERT TO t DO (INSERT INTO a VALUES (1); DELETE FROM b);",
		"SELECT 1;\r\n\\connect x\r\n",
		"'", "\"", "$$", "$a$", "/*", "E'\\", "(", "BEGIN ATOMIC", "\uFEFF;",
		"CREATE INDEX CONCURRENTLY i ON t (x); VACUUM; COMMIT; ROLLBACK TO a",
		"REINDEX (CONCURRENTLY) TABLE t; ALTER SUBSCRIPTION s SET PUBLICATION p WITH (refresh = false)",
		"ALTER TABLE p DETACH PARTITION c CONCURRENTLY; ALTER TYPE \"a\".b ADD VALUE 'x'",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script string) {
		stmts, err := SplitFor(script, 110000)
		if err != nil {
			require.Nil(t, stmts)
			var serr *SyntaxError
			require.ErrorAs(t, err, &serr)
			require.GreaterOrEqual(t, serr.Line, 1)
			require.LessOrEqual(t, serr.Line, strings.Count(script, "\n")+1)
			require.NotEmpty(t, serr.Msg)
			return
		}
		prevLine := 1
		for _, s := range stmts {
			require.NotEmpty(t, s.SQL)
			// Only ASCII whitespace is whitespace to the server: U+00A0 or U+0085 is part of
			// an identifier, so a statement may start or end with one.
			require.Equal(t, strings.Trim(s.SQL, " \t\n\r\f\v"), s.SQL)
			require.False(t, strings.HasSuffix(s.SQL, ";"), "statement %q", s.SQL)
			require.Contains(t, script, s.SQL)
			require.GreaterOrEqual(t, s.Line, prevLine)
			require.LessOrEqual(t, s.Line, strings.Count(script, "\n")+1)
			prevLine = s.Line
			class, reason := Classify(s.SQL, 110000)
			require.Equal(t, class, s.Class)
			require.Equal(t, reason, s.Reason)
			require.NotPanics(t, func() { _ = s.Summary() })
		}
	})
}
