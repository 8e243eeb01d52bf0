package toolrun

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// testContext bounds a test generously: the first test to need a tool builds it, which took
// about two minutes for goose here with an empty module cache.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// flywayFixtureVersions are the fixture's versions in the order Flyway applies them, which is
// not the order of their names as strings (V1.10 after V1_2, V10 after V9).
var flywayFixtureVersions = []string{"1", "1.1", "1.2", "1.10", "2", "2.1", "2.2", "3", "3.0.1", "4", "5", "6",
	"7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17"}

// fixtureVersions are the versions the tool's history should hold after applying dir, read
// from the file names as the tool reads them (golang-migrate keeps only the last).
func fixtureVersions(t *testing.T, format, dir string) []string {
	t.Helper()
	if format == "flyway" {
		if _, err := os.Stat(filepath.Join(dir, "V18__invoice_notes.sql")); err == nil { // FixtureNext's
			return append(slices.Clone(flywayFixtureVersions), "18")
		}
		return flywayFixtureVersions
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var versions []string
	for _, e := range entries {
		digits, _, ok := strings.Cut(e.Name(), "_")
		require.True(t, ok, e.Name())
		n, err := strconv.ParseUint(digits, 10, 64)
		require.NoError(t, err, e.Name())
		v := strconv.FormatUint(n, 10)
		if format == "dbmate" {
			v = digits // dbmate keeps the version as written
		}
		if format == "golang-migrate" && !strings.HasSuffix(e.Name(), ".up.sql") {
			continue
		}
		versions = append(versions, v)
	}
	// os.ReadDir sorts by name, which for these zero-padded names is the tools' order.
	if format == "golang-migrate" {
		return versions[len(versions)-1:]
	}
	return versions
}

// fixtureObjects are objects every fixture creates, as pg_dump prints them.
var fixtureObjects = []string{
	"CREATE TYPE public.account_status AS ENUM (\n    'trial',\n    'active',\n    'suspended',\n    'closed'\n);",
	"CREATE TYPE public.order_status AS ENUM (\n    'pending',\n    'paid',\n    'refunded',\n    'cancelled'\n);",
	"CREATE DOMAIN public.email_address AS text",
	"CREATE FUNCTION public.touch_updated_at() RETURNS trigger",
	"CREATE FUNCTION public.invoice_balance_cents(p_invoice_id bigint) RETURNS bigint",
	"BEGIN ATOMIC",
	"EXECUTE format($q$NOTIFY invoices_issued, %L$q$, v_invoice::text);",
	"CREATE SEQUENCE public.invoice_number_seq",
	"PARTITION BY RANGE (occurred_at);",
	"ALTER TABLE ONLY public.audit_log ATTACH PARTITION public.audit_log_2026 FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2027-01-01 00:00:00+00');",
	"CREATE VIEW reporting.account_revenue AS",
	"CREATE MATERIALIZED VIEW reporting.monthly_revenue AS",
	"CREATE INDEX orders_status_placed_idx ON public.orders USING btree (status, placed_at);",
	"CREATE INDEX invoices_unpaid_due_idx ON public.invoices USING btree (due_on) WHERE (amount_cents > 0);",
	"line_total_cents bigint GENERATED ALWAYS AS ((quantity * unit_price_cents)) STORED",
	"display_name text,",
	"plan_id smallint NOT NULL",
	"CONSTRAINT orders_refund_consistent CHECK (((status = 'refunded'::public.order_status) = (refunded_at IS NOT NULL)))",
	"CREATE TRIGGER orders_audit AFTER INSERT OR DELETE OR UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();",
	"ADD CONSTRAINT payments_invoice_id_fkey FOREIGN KEY (invoice_id) REFERENCES public.invoices(id);",
}

// revert takes dsn back down through every migration of dir with format's tool. Flyway
// Community has no undo.
func revert(t *testing.T, ctx context.Context, format, dir, dsn string) {
	t.Helper()
	switch format {
	case "goose":
		out, err := Goose(ctx, dir, dsn, "down-to", "0")
		require.NoError(t, err, "%s", out)
	case "golang-migrate":
		out, err := Migrate(ctx, dir, dsn, "down", "-all")
		require.NoError(t, err, "%s", out)
	case "dbmate":
		versions, err := HistoryVersions(ctx, format, dsn)
		require.NoError(t, err)
		for range versions {
			out, err := Dbmate(ctx, dir, dsn, "rollback")
			require.NoError(t, err, "%s", out)
		}
	default:
		t.Fatalf("%s has no down", format)
	}
}

// TestFixturesApplyAndRevert applies each fixture with its own tool, so the fixtures are
// valid in each tool's syntax: the history holds every version, the schema has the fixture's
// objects, a second run changes nothing, the -next fixture adds exactly one version, and going
// down through every migration (where the tool can) leaves the schema of an empty database.
func TestFixturesApplyAndRevert(t *testing.T) {
	t.Parallel()
	for _, format := range Formats {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			db := testdb.New(t)

			out, err := Apply(ctx, format, Fixture(format), db)
			require.NoError(t, err, "%s", out)
			want := fixtureVersions(t, format, Fixture(format))
			got, err := HistoryVersions(ctx, format, db)
			require.NoError(t, err)
			require.Equal(t, want, got)
			dump, err := SchemaDump(ctx, db)
			require.NoError(t, err)
			for _, object := range fixtureObjects {
				require.Contains(t, dump, object)
			}
			require.NotContains(t, dump, "legacy_code")
			require.NotContains(t, dump, "full_name")
			require.NotContains(t, dump, "notes")

			out, err = Apply(ctx, format, Fixture(format), db)
			require.NoError(t, err, "a second run: %s", out)
			got, err = HistoryVersions(ctx, format, db)
			require.NoError(t, err)
			require.Equal(t, want, got, "a second run")

			nextDir := FixtureNext(t, format)
			out, err = Apply(ctx, format, nextDir, db)
			require.NoError(t, err, "%s", out)
			got, err = HistoryVersions(ctx, format, db)
			require.NoError(t, err)
			require.Equal(t, fixtureVersions(t, format, nextDir), got)
			next, err := SchemaDump(ctx, db)
			require.NoError(t, err)
			require.Contains(t, next, "notes text")
			require.Contains(t, next, "CREATE INDEX invoices_order_id_idx ON public.invoices USING btree (order_id);")

			if format == "flyway" {
				return
			}
			revert(t, ctx, format, nextDir, db)
			dump, err = SchemaDump(ctx, db)
			require.NoError(t, err)
			require.Empty(t, dump, "the schema after going down through every migration")
			got, err = HistoryVersions(ctx, format, db)
			require.NoError(t, err)
			require.Empty(t, got)
		})
	}
}

// TestFixturesEndInOneSchema applies each fixture to two databases: the two dumps of a tool
// are the same (SchemaDump leaves out what differs between databases), and so are the four
// tools' (the fixtures are one application in four syntaxes).
func TestFixturesEndInOneSchema(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	dumps := map[string]string{}
	t.Run("formats", func(t *testing.T) {
		for _, format := range Formats {
			t.Run(format, func(t *testing.T) {
				t.Parallel()
				ctx := testContext(t)
				var two [2]string
				for i := range two {
					db := testdb.New(t)
					out, err := Apply(ctx, format, Fixture(format), db)
					require.NoError(t, err, "%s", out)
					two[i], err = SchemaDump(ctx, db)
					require.NoError(t, err)
				}
				require.Equal(t, two[0], two[1])
				mu.Lock()
				dumps[format] = two[0]
				mu.Unlock()
			})
		}
	})
	if t.Failed() {
		return
	}
	for _, format := range Formats[1:] {
		require.Equal(t, dumps[Formats[0]], dumps[format], "%s's schema beside %s's", format, Formats[0])
	}
}

func TestSchemaDumpOfAnEmptyDatabaseIsEmpty(t *testing.T) {
	t.Parallel()
	dump, err := SchemaDump(testContext(t), testdb.New(t))
	require.NoError(t, err)
	require.Empty(t, dump)
}

func TestSchemaDumpReportsPgDumpsError(t *testing.T) {
	t.Parallel()
	_, err := SchemaDump(testContext(t), "postgres://nobody:secret@127.0.0.1:1/none")
	var te *ToolError
	require.ErrorAs(t, err, &te)
	require.Equal(t, "pg_dump", te.Tool)
	require.NotContains(t, err.Error(), "secret")
}

func TestNormalizeDump(t *testing.T) {
	t.Parallel()
	dump := `--
-- PostgreSQL database dump
--

\restrict 8fLkq2Kx9aZ

-- Dumped from database version 15.20
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);


CREATE TABLE public.t (
    id integer
);
SET default_table_access_method = heap;



CREATE FUNCTION public.f() RETURNS integer
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- kept: not in the first column
    RETURN 1;
END;
$$;

\unrestrict 8fLkq2Kx9aZ
`
	require.Equal(t, `CREATE TABLE public.t (
    id integer
);

CREATE FUNCTION public.f() RETURNS integer
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- kept: not in the first column
    RETURN 1;
END;
$$;
`, normalizeDump(dump))
	require.Empty(t, normalizeDump("--\n\nSET x = 1;\n\n"))
}

func TestToolErrorsCarryTheToolsOutput(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "00001_broken.sql"), []byte("-- +goose Up\nCREATE TABLE t (;\n"), 0o644))
	_, err := Goose(ctx, dir, testdb.New(t))
	var te *ToolError
	require.ErrorAs(t, err, &te)
	require.Equal(t, "goose", te.Tool)
	require.Contains(t, err.Error(), "00001_broken.sql")
	require.Contains(t, err.Error(), "syntax error")
}

func TestWithSSLModeDisable(t *testing.T) {
	t.Parallel()
	require.Equal(t, "postgres://u@h:5432/db?sslmode=disable", withSSLModeDisable("postgres://u@h:5432/db"))
	require.Equal(t, "postgres://u@h/db?sslmode=require", withSSLModeDisable("postgres://u@h/db?sslmode=require"))
	require.Equal(t, "host=h dbname=db", withSSLModeDisable("host=h dbname=db"))
}

func TestFixturePanicsOnAnUnknownFormat(t *testing.T) {
	t.Parallel()
	require.DirExists(t, Fixture("goose"))
	require.DirExists(t, FixtureNext(t, "flyway"))
	require.Panics(t, func() { Fixture("liquibase") })
}
