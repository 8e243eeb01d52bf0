package toolrun

import (
	"bufio"
	"bytes"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// writeFiles writes files (path relative to a new directory: contents) and returns the
// directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, contents := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(contents), 0o644))
	}
	return dir
}

func TestFlywayVersionOrder(t *testing.T) {
	t.Parallel()
	var versions []flywayVersion
	for _, s := range []string{"10", "1_2", "20240101120000", "2", "1.10", "1", "3.0.1", "1.1", "9", "2.1", "3"} {
		v, err := parseFlywayVersion(s)
		require.NoError(t, err, s)
		versions = append(versions, v)
	}
	slices.SortFunc(versions, flywayVersion.compare)
	var texts []string
	for _, v := range versions {
		texts = append(texts, v.text)
	}
	require.Equal(t, []string{"1", "1.1", "1.2", "1.10", "2", "2.1", "3", "3.0.1", "9", "10", "20240101120000"}, texts)

	one, _ := parseFlywayVersion("1")
	for _, same := range []string{"1.0", "001", "1_0_0", "01.00"} {
		v, err := parseFlywayVersion(same)
		require.NoError(t, err)
		require.Zero(t, v.compare(one), same)
	}
	for _, bad := range []string{"", "1.a", "1..2", "1.", "v1", "1-2"} {
		_, err := parseFlywayVersion(bad)
		require.Error(t, err, bad)
	}
}

func TestFlywayChecksum(t *testing.T) {
	t.Parallel()
	abc := int32(crc32.ChecksumIEEE([]byte("abc")))
	require.Equal(t, int32(891568578), abc)
	for _, s := range []string{"abc", "abc\n", "abc\r\n", "a\rb\nc\r\n", "\uFEFFabc\n", "\n\na\r\n\r\nbc"} {
		require.Equal(t, abc, FlywayChecksum([]byte(s)), "%q", s)
	}
	require.Zero(t, FlywayChecksum(nil))
	// The BOM goes only at the very start.
	require.Equal(t, int32(crc32.ChecksumIEEE([]byte("a\uFEFFb"))), FlywayChecksum([]byte("a\n\uFEFFb")))
	// A sum with the high bit set is negative, as Java's (int) cast makes it.
	require.Equal(t, int32(-714045419), FlywayChecksum([]byte("SELECT 8;\r\n")))
}

// TestFlywayChecksumMatchesJava checks FlywayChecksum, and the hash in Flyway's lock number,
// against the JDK itself: testdata/FlywayChecksum.java reads files with BufferedReader.readLine
// and CRC32, as Flyway does.
func TestFlywayChecksumMatchesJava(t *testing.T) {
	t.Parallel()
	java, err := exec.LookPath("java")
	if err != nil {
		t.Skip("java is not installed: FlywayChecksum is not checked against the JDK")
	}
	tricky := writeFiles(t, map[string]string{
		"crlf.sql":     "CREATE TABLE a (id int);\r\nCREATE TABLE b (id int);\r\n",
		"cr.sql":       "SELECT 1;\rSELECT 2;\r",
		"bom.sql":      "\uFEFFSELECT 'bom';\n",
		"no-eol.sql":   "SELECT 'no newline at the end';",
		"unicode.sql":  "COMMENT ON TABLE t IS 'naïve café — 日本語 😀';\n\n\n",
		"blank.sql":    "\n\n\n",
		"empty.sql":    "",
		"mixed.sql":    "a\r\n\rb\n\r\nc",
		"trailing.sql": "SELECT 1;   \t\n",
	})
	var files []string
	for _, dir := range []string{Fixture("flyway"), tricky} {
		require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, path)
			}
			return err
		}))
	}
	cmd := exec.CommandContext(testContext(t), java, append([]string{"testdata/FlywayChecksum.java"}, files...)...)
	out, err := cmd.Output()
	require.NoError(t, err, "java: %s", out)
	sc := bufio.NewScanner(bytes.NewReader(out))
	n := 0
	for sc.Scan() {
		sum, path, ok := strings.Cut(sc.Text(), " ")
		require.True(t, ok, sc.Text())
		want, err := strconv.ParseInt(sum, 10, 32)
		require.NoError(t, err)
		contents, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, int32(want), FlywayChecksum(contents), path)
		n++
	}
	require.Equal(t, len(files), n)

	names := []string{`"public"."flyway_schema_history"`, "hello", "", "naïve 😀"}
	out, err = exec.CommandContext(testContext(t), java, append([]string{"testdata/FlywayChecksum.java", "--hash"}, names...)...).Output()
	require.NoError(t, err, "java: %s", out)
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	require.Len(t, lines, len(names))
	for i, l := range lines {
		hash, _, _ := strings.Cut(l, " ")
		require.Equal(t, hash, strconv.Itoa(int(javaStringHash(names[i]))), names[i])
	}
}

func TestParseFlywayScript(t *testing.T) {
	t.Parallel()
	type st struct {
		sql   string
		line  int
		nonTx bool
	}
	for _, tt := range []struct {
		name, script string
		want         []st
	}{
		{"two lines", "CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\n", []st{{"CREATE TABLE a (x int)", 1, false}, {"INSERT INTO a VALUES (1)", 2, false}}},
		{"no final semicolon", "SELECT 1;\n\nSELECT 2\n-- the end\n", []st{{"SELECT 1", 1, false}, {"SELECT 2\n-- the end", 3, false}}},
		{"comments first", "-- a;\n/* b; /* nested; */ still; */\n\nSELECT ';' -- c;\n;", []st{{"-- a;\n/* b; /* nested; */ still; */\n\nSELECT ';' -- c;", 4, false}}},
		{"quotes", `SELECT 'it''s;', E'\';', "a;""b" FROM t;SELECT 2;`, []st{{`SELECT 'it''s;', E'\';', "a;""b" FROM t`, 1, false}, {"SELECT 2", 1, false}}},
		{"dollar quotes", "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\nBEGIN\n  EXECUTE $q$SELECT 1;$q$;\n  RETURN $1;\nEND;\n$body$;\nSELECT $$;$$;",
			[]st{{"CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\nBEGIN\n  EXECUTE $q$SELECT 1;$q$;\n  RETURN $1;\nEND;\n$body$", 1, false}, {"SELECT $$;$$", 7, false}}},
		{"begin atomic", "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\nSELECT 3;",
			[]st{{"CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND", 1, false}, {"SELECT 3", 6, false}}},
		{"a transaction block is a statement like any", "BEGIN;\nCREATE TABLE a (x int);\nCOMMIT;", []st{{"BEGIN", 1, false}, {"CREATE TABLE a (x int)", 2, false}, {"COMMIT", 3, false}}},
		{"non-transactional", "create unique index concurrently if not exists i on t (x);\n-- drop\nDROP INDEX CONCURRENTLY i;\nVACUUM t;\nREINDEX SCHEMA public;\nALTER SYSTEM SET work_mem = '8MB';\nDISCARD ALL;\nCREATE DATABASE d;",
			[]st{{"create unique index concurrently if not exists i on t (x)", 1, true}, {"-- drop\nDROP INDEX CONCURRENTLY i", 3, true}, {"VACUUM t", 4, true}, {"REINDEX SCHEMA public", 5, true}, {"ALTER SYSTEM SET work_mem = '8MB'", 6, true}, {"DISCARD ALL", 7, true}, {"CREATE DATABASE d", 8, true}}},
		{"transactional look-alikes", "CREATE INDEX i ON t (x);\nREINDEX TABLE CONCURRENTLY t;\nALTER TYPE e ADD VALUE 'v';\nCREATE TABLE concurrently (x int);\nSELECT 'VACUUM';",
			[]st{{"CREATE INDEX i ON t (x)", 1, false}, {"REINDEX TABLE CONCURRENTLY t", 2, false}, {"ALTER TYPE e ADD VALUE 'v'", 3, false}, {"CREATE TABLE concurrently (x int)", 4, false}, {"SELECT 'VACUUM'", 5, false}}},
		{"only comments", "-- nothing\n/* at all; */\n", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stmts, err := parseFlywayScript(tt.script)
			require.NoError(t, err)
			var got []st
			for _, s := range stmts {
				got = append(got, st{s.sql, s.line, s.nonTransactional})
			}
			require.Equal(t, tt.want, got)
		})
	}
	for _, bad := range []string{"SELECT 'open;", "SELECT $x$ open;", "/* open; ", `SELECT "open;`, "COPY t (x) FROM STDIN;\n1\n\\.\n"} {
		_, err := parseFlywayScript(bad)
		require.Error(t, err, bad)
	}
}

// flywayFixtureScripts are the fixture's migrations in Flyway's order, with the description
// Flyway records for each.
var flywayFixtureScripts = []struct{ script, description string }{
	{"V1__init_accounts.sql", "init accounts"},
	{"V1.1__users.sql", "users"},
	{"V1_2__invoice_number_seq.sql", "invoice number seq"},
	{"V1.10__updated_at_triggers.sql", "updated at triggers"},
	{"V2__orders.sql", "orders"},
	{"v2/V2.1__order_items.sql", "order items"},
	{"v2/V2_2__invoices.sql", "invoices"},
	{"V3__audit_log.sql", "audit log"},
	{"V3.0.1__audit_triggers.sql", "audit triggers"},
	{"V4__order_status_refunded.sql", "order status refunded"},
	{"V5__rename_full_name.sql", "rename full name"},
	{"V6__drop_legacy_code.sql", "drop legacy code"},
	{"V7__account_revenue_view.sql", "account revenue view"},
	{"V8__monthly_revenue_matview.sql", "monthly revenue matview"},
	{"V9__orders_status_index.sql", "orders status index"},
	{"V10__plans.sql", "plans"},
	{"V11__invoice_functions.sql", "invoice functions"},
	{"V12__payments.sql", "payments"},
	{"V13__email_domain.sql", "email domain"},
	{"V14__audit_log_2026.sql", "audit log 2026"},
	{"V15__order_item_totals.sql", "order item totals"},
	{"V16__invoice_balance.sql", "invoice balance"},
	{"V17__reporting_schema.sql", "reporting schema"},
}

// TestFlywayRecordsTheFixtureAsFlywayDoes checks the stand-in's history against Flyway's: its
// table's DDL, and a row per migration in Flyway's version order with Flyway's version,
// description, script, type, checksum and user.
func TestFlywayRecordsTheFixtureAsFlywayDoes(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	db := testdb.New(t)
	out, err := Flyway(ctx, Fixture("flyway"), db)
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), `Creating Schema History table "public"."flyway_schema_history" ...`)
	require.Contains(t, string(out), `Migrating schema "public" to version "1 - init accounts"`+"\n")
	require.Contains(t, string(out), `Migrating schema "public" to version "4 - order status refunded" [non-transactional]`)
	require.Contains(t, string(out), `Migrating schema "public" to version "9 - orders status index" [non-transactional]`)
	require.Contains(t, string(out), `Successfully applied 23 migrations to schema "public", now at version v17`)

	conn, err := pgx.Connect(ctx, db)
	require.NoError(t, err)
	defer conn.Close(ctx)

	rows, err := conn.Query(ctx, `SELECT column_name || ' ' || data_type || coalesce('(' || character_maximum_length || ')', '')
		|| CASE WHEN is_nullable = 'NO' THEN ' NOT NULL' ELSE '' END || coalesce(' DEFAULT ' || column_default, '')
		FROM information_schema.columns WHERE table_name = 'flyway_schema_history' ORDER BY ordinal_position`)
	require.NoError(t, err)
	columns, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{
		"installed_rank integer NOT NULL",
		"version character varying(50)",
		"description character varying(200) NOT NULL",
		"type character varying(20) NOT NULL",
		"script character varying(1000) NOT NULL",
		"checksum integer",
		"installed_by character varying(100) NOT NULL",
		"installed_on timestamp without time zone NOT NULL DEFAULT now()",
		"execution_time integer NOT NULL",
		"success boolean NOT NULL",
	}, columns)
	rows, err = conn.Query(ctx, `SELECT indexdef FROM pg_indexes WHERE tablename = 'flyway_schema_history' ORDER BY indexname`)
	require.NoError(t, err)
	indexes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{
		"CREATE UNIQUE INDEX flyway_schema_history_pk ON public.flyway_schema_history USING btree (installed_rank)",
		"CREATE INDEX flyway_schema_history_s_idx ON public.flyway_schema_history USING btree (success)",
	}, indexes)

	type row struct {
		Rank                               int32
		Version, Description, Type, Script string
		Checksum                           int32
		InstalledBy                        bool
		Success                            bool
	}
	rows, err = conn.Query(ctx, `SELECT installed_rank, version, description, type, script, checksum,
		installed_by = current_user, success FROM flyway_schema_history ORDER BY installed_rank`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	require.NoError(t, err)
	var want []row
	for i, m := range flywayFixtureScripts {
		contents, err := os.ReadFile(filepath.Join(Fixture("flyway"), m.script))
		require.NoError(t, err)
		want = append(want, row{int32(i + 1), flywayFixtureVersions[i], m.description, "SQL", m.script, FlywayChecksum(contents), true, true})
	}
	require.Equal(t, want, got)

	out, err = Flyway(ctx, Fixture("flyway"), db)
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), `Successfully validated 23 migrations`)
	require.Contains(t, string(out), `Schema "public" is up to date. No migration necessary.`)
}

func TestFlywayFailures(t *testing.T) {
	t.Parallel()

	exists := func(t *testing.T, db, relation string) bool {
		t.Helper()
		ctx := testContext(t)
		conn, err := pgx.Connect(ctx, db)
		require.NoError(t, err)
		defer conn.Close(ctx)
		var ok bool
		require.NoError(t, conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, relation).Scan(&ok))
		return ok
	}
	history := func(t *testing.T, db string) []string {
		t.Helper()
		ctx := testContext(t)
		conn, err := pgx.Connect(ctx, db)
		require.NoError(t, err)
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, `SELECT version || CASE WHEN success THEN '' ELSE ' failed' END FROM flyway_schema_history ORDER BY installed_rank`)
		require.NoError(t, err)
		versions, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return versions
	}

	t.Run("a transactional migration rolls back with its row", func(t *testing.T) {
		t.Parallel()
		ctx, db := testContext(t), testdb.New(t)
		dir := writeFiles(t, map[string]string{"V1__a.sql": "CREATE TABLE a (id int);", "V2__b.sql": "CREATE TABLE b (id int);\nCREATE TABLE a (id int);\n"})
		out, err := Flyway(ctx, dir, db)
		var me *FlywayMigrationError
		require.ErrorAs(t, err, &me)
		require.Equal(t, "V2__b.sql", me.Script)
		require.Equal(t, 2, me.Line)
		require.Equal(t, "CREATE TABLE a (id int)", me.Statement)
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "42P07", pe.Code)
		require.Contains(t, string(out), `Migration of schema "public" to version "2 - b" failed! Changes successfully rolled back.`)
		require.Contains(t, err.Error(), "SQL State  : 42P07")
		require.Equal(t, []string{"1"}, history(t, db))
		require.False(t, exists(t, db, "b"), "the failed migration's first statement is rolled back")
	})

	t.Run("a non-transactional migration keeps what ran and a failed row", func(t *testing.T) {
		t.Parallel()
		ctx, db := testContext(t), testdb.New(t)
		dir := writeFiles(t, map[string]string{"V1__a.sql": "CREATE TABLE a (id int);", "V2__b.sql": "CREATE TABLE b (id int);\nCREATE TABLE a (id int);\n",
			"V2__b.sql.conf": "# runs statement by statement\nexecuteInTransaction=false\n"})
		out, err := Flyway(ctx, dir, db)
		require.Error(t, err)
		require.Contains(t, string(out), `"2 - b" [non-transactional] failed! Please restore backups and roll back database and code!`)
		require.Equal(t, []string{"1", "2 failed"}, history(t, db))
		require.True(t, exists(t, db, "b"))
		_, err = Flyway(ctx, dir, db)
		require.ErrorContains(t, err, "Detected failed migration to version 2 (b).")
	})

	t.Run("validation on migrate", func(t *testing.T) {
		t.Parallel()
		ctx, db := testContext(t), testdb.New(t)
		dir := writeFiles(t, map[string]string{"V1__a.sql": "CREATE TABLE a (id int);\n", "V2__b.sql": "CREATE TABLE b (id int);\n", "V3__c.sql": "CREATE TABLE c (id int);\n"})
		out, err := Flyway(ctx, dir, db)
		require.NoError(t, err, "%s", out)

		// Line endings are not part of the checksum.
		require.NoError(t, os.WriteFile(filepath.Join(dir, "V1__a.sql"), []byte("CREATE TABLE a (id int);\r\n"), 0o644))
		out, err = Flyway(ctx, dir, db)
		require.NoError(t, err, "%s", out)

		require.NoError(t, os.WriteFile(filepath.Join(dir, "V1__a.sql"), []byte("CREATE TABLE a (id bigint);\n"), 0o644))
		_, err = Flyway(ctx, dir, db)
		require.ErrorContains(t, err, "Migration checksum mismatch for migration version 1\n-> Applied to database : ")
		require.NoError(t, os.WriteFile(filepath.Join(dir, "V1__a.sql"), []byte("CREATE TABLE a (id int);\n"), 0o644))

		require.NoError(t, os.WriteFile(filepath.Join(dir, "V1.5__late.sql"), []byte("SELECT 1;\n"), 0o644))
		_, err = Flyway(ctx, dir, db)
		require.ErrorContains(t, err, "Detected resolved migration not applied to database: 1.5. To ignore this migration")
		require.NoError(t, os.Remove(filepath.Join(dir, "V1.5__late.sql")))

		require.NoError(t, os.Rename(filepath.Join(dir, "V2__b.sql"), filepath.Join(dir, "V2__renamed.sql")))
		_, err = Flyway(ctx, dir, db)
		require.ErrorContains(t, err, "Migration description mismatch for migration version 2")
		require.NoError(t, os.Rename(filepath.Join(dir, "V2__renamed.sql"), filepath.Join(dir, "V2__b.sql")))

		// The newest applied migration gone from disk is a future one, which Flyway ignores;
		// one below the newest on disk is missing, which it refuses.
		require.NoError(t, os.Rename(filepath.Join(dir, "V3__c.sql"), filepath.Join(t.TempDir(), "V3__c.sql")))
		out, err = Flyway(ctx, dir, db)
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), `WARNING: Schema "public" has a version (3) that is newer than the latest available migration (2) !`)
		require.Contains(t, string(out), `Schema "public" is up to date.`)
		require.NoError(t, os.Remove(filepath.Join(dir, "V2__b.sql")))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "V3__c.sql"), []byte("CREATE TABLE c (id int);\n"), 0o644))
		_, err = Flyway(ctx, dir, db)
		require.ErrorContains(t, err, "Detected applied migration not resolved locally: 2.")
	})

	t.Run("validate, and migrate to a target", func(t *testing.T) {
		t.Parallel()
		ctx, db := testContext(t), testdb.New(t)
		dir := writeFiles(t, map[string]string{"V1__a.sql": "CREATE TABLE a (id int);", "V2__b.sql": "CREATE TABLE b (id int);", "V3__c.sql": "CREATE TABLE c (id int);"})
		_, err := Flyway(ctx, dir, db, "validate")
		require.ErrorContains(t, err, "Detected resolved migration not applied to database: 1. To fix this error, either run migrate")
		out, err := Flyway(ctx, dir, db, "migrate", "-target=2")
		require.NoError(t, err, "%s", out)
		require.Equal(t, []string{"1", "2"}, history(t, db))
		_, err = Flyway(ctx, dir, db, "validate")
		require.ErrorContains(t, err, "Detected resolved migration not applied to database: 3.")
		out, err = Flyway(ctx, dir, db)
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), `Current version of schema "public": 2`)
		out, err = Flyway(ctx, dir, db, "validate")
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "Successfully validated 3 migrations")
	})

	t.Run("a non-empty schema without a history is refused", func(t *testing.T) {
		t.Parallel()
		ctx, db := testContext(t), testdb.New(t)
		conn, err := pgx.Connect(ctx, db)
		require.NoError(t, err)
		_, err = conn.Exec(ctx, `CREATE TYPE mood AS ENUM ('ok')`)
		require.NoError(t, err)
		require.NoError(t, conn.Close(ctx))
		_, err = Flyway(ctx, writeFiles(t, map[string]string{"V1__a.sql": "SELECT 1;"}), db)
		require.ErrorContains(t, err, `Found non-empty schema(s) "public" but no schema history table.`)
	})

	t.Run("transactional and non-transactional statements do not mix", func(t *testing.T) {
		t.Parallel()
		ctx, db := testContext(t), testdb.New(t)
		files := map[string]string{"V1__a.sql": "CREATE TABLE a (id int);\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n"}
		_, err := Flyway(ctx, writeFiles(t, files), db)
		require.ErrorContains(t, err, "Detected both transactional and non-transactional statements within the same migration (even though mixed is false). Offending statement found at line 2: CREATE INDEX CONCURRENTLY a_id ON a (id) [non-transactional]")
		files["V1__a.sql.conf"] = "executeInTransaction=false"
		out, err := Flyway(ctx, writeFiles(t, files), db)
		require.NoError(t, err, "%s", out)
		require.True(t, exists(t, db, "a_id"))
	})

	t.Run("placeholders", func(t *testing.T) {
		t.Parallel()
		ctx, db := testContext(t), testdb.New(t)
		dir := writeFiles(t, map[string]string{"V1__a.sql": "CREATE TABLE ${flyway:defaultSchema}.a (id int);\n-- ${flyway:user}\nCOMMENT ON TABLE a IS '${flyway:table} in ${flyway:database}';"})
		out, err := Flyway(ctx, dir, db)
		require.NoError(t, err, "%s", out)
		conn, err := pgx.Connect(ctx, db)
		require.NoError(t, err)
		defer conn.Close(ctx)
		var comment, database string
		require.NoError(t, conn.QueryRow(ctx, `SELECT obj_description('public.a'::regclass), current_database()`).Scan(&comment, &database))
		require.Equal(t, "flyway_schema_history in "+database, comment)

		require.NoError(t, os.WriteFile(filepath.Join(dir, "V2__b.sql"), []byte("-- costs ${price}\nSELECT 1;"), 0o644))
		_, err = Flyway(ctx, dir, db)
		require.ErrorContains(t, err, "No value provided for placeholder: ${price}.")
		require.NoError(t, os.WriteFile(filepath.Join(dir, "V2__b.sql.conf"), []byte("placeholderReplacement=false"), 0o644))
		out, err = Flyway(ctx, dir, db)
		require.NoError(t, err, "%s", out)
	})

	t.Run("each migration starts from the session the run began with", func(t *testing.T) {
		t.Parallel()
		ctx, db := testContext(t), testdb.New(t)
		dir := writeFiles(t, map[string]string{"V1__a.sql": "CREATE SCHEMA other;\nSET search_path TO other;\nCREATE TABLE inside (id int);", "V2__b.sql": "CREATE TABLE outside (id int);"})
		out, err := Flyway(ctx, dir, db)
		require.NoError(t, err, "%s", out)
		require.True(t, exists(t, db, "other.inside"))
		require.True(t, exists(t, db, "public.outside"))
	})

	t.Run("what the stand-in does not reproduce is refused", func(t *testing.T) {
		t.Parallel()
		for _, files := range []map[string]string{
			{"V1__a.sql": "SELECT 1;", "R__view.sql": "SELECT 1;"},
			{"V1__a.sql": "SELECT 1;", "afterMigrate.sql": "SELECT 1;"},
			{"V1__a.sql": "SELECT 1;", "V1__a.sql.conf": "shouldExecute=false"},
			{"V1__a.sql": "SELECT 1;", "V1.0__b.sql": "SELECT 1;"},
		} {
			_, _, err := flywayResolve(writeFiles(t, files))
			require.Error(t, err, "%v", files)
		}
		migrations, skipped, err := flywayResolve(writeFiles(t, map[string]string{"V1__a.sql": "SELECT 1;", "Vx__bad.sql": "", "V2.sql": "", "U1__a.sql": "", "notes.txt": ""}))
		require.NoError(t, err)
		require.Len(t, migrations, 1)
		require.Len(t, skipped, 2)
	})
}

func TestFlywayLockNumber(t *testing.T) {
	t.Parallel()
	require.Equal(t, int32(99162322), javaStringHash("hello"))
	require.Equal(t, int64(0x466C79776179)+int64(javaStringHash(`"public"."flyway_schema_history"`)), flywayLockNumber(`"public"."flyway_schema_history"`))
}

func TestFlywayMigrationErrorReadsAsFlywaysWithoutAServerError(t *testing.T) {
	t.Parallel()
	err := &FlywayMigrationError{Script: "V1__a.sql", Path: "/m/V1__a.sql", Line: 3, Statement: "SELECT 1", Err: errors.New("conn closed")}
	require.Contains(t, err.Error(), "Migration V1__a.sql failed\n"+strings.Repeat("-", len("Migration V1__a.sql failed"))+"\nSQL State  : \n")
	require.Contains(t, err.Error(), "Message    : conn closed\nLocation   : V1__a.sql (/m/V1__a.sql)\nLine       : 3\nStatement  : SELECT 1")
}
