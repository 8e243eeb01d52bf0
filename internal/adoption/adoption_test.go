package adoption

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

func migs(versions ...string) []contract.Migration {
	var ms []contract.Migration
	for _, v := range versions {
		ms = append(ms, contract.Migration{Version: v, Name: "m" + v})
	}
	return ms
}

func versionsOf(rs []Record) []string {
	var vs []string
	for _, r := range rs {
		vs = append(vs, r.Migration.Version)
	}
	return vs
}

func TestCheckMatchesTheHistoryWithTheRequest(t *testing.T) {
	t.Parallel()
	h := &History{Tool: "goose", Table: "public.goose_db_version", Applied: []Entry{{Version: "1"}, {Version: "2"}, {Version: "10"}}}

	// Spelt with leading zeros in the directory, in any order; 11 and 12 are pending.
	rs, err := h.Check(migs("00012", "00001", "00010", "00002", "00011"), nil)
	require.NoError(t, err)
	require.Equal(t, []string{"00001", "00002", "00010"}, versionsOf(rs))

	// Tracked already: left out, so adopting again records nothing.
	rs, err = h.Check(migs("1", "2", "10", "11"), map[string]bool{"1": true, "2": true, "10": true, "11": true})
	require.NoError(t, err)
	require.Empty(t, rs)

	// Applied there, missing here.
	_, err = h.Check(migs("1", "2", "11"), nil)
	var me *MismatchError
	require.ErrorAs(t, err, &me)
	require.Contains(t, me.Msg, "public.goose_db_version records version(s) 10 as applied, but the request has no migration with that version")

	// Here, older than the last applied, not applied there: named with its file.
	ms := migs("1", "2", "3", "10")
	ms[2].File = "00003_m3.sql"
	_, err = h.Check(ms, nil)
	require.ErrorAs(t, err, &me)
	require.Contains(t, me.Msg, "migration(s) 3_m3 (00003_m3.sql) are older than version 10, the last that goose applied, but public.goose_db_version has no record of them")
	// ... unless the worker tracks it.
	rs, err = h.Check(migs("1", "2", "3", "10"), map[string]bool{"3": true})
	require.NoError(t, err)
	require.Equal(t, []string{"1", "2", "10"}, versionsOf(rs))
}

func TestCheckCountsEverythingUpToGolangMigratesVersionAndFlywaysBaseline(t *testing.T) {
	t.Parallel()
	gm := &History{Tool: "golang-migrate", Table: "public.schema_migrations", Applied: []Entry{{Version: "3"}}, upTo: true}
	rs, err := gm.Check(migs("1", "2", "3", "4"), nil)
	require.NoError(t, err)
	require.Equal(t, []string{"1", "2", "3"}, versionsOf(rs))
	_, err = gm.Check(migs("1", "2", "4"), nil)
	require.ErrorContains(t, err, "records version(s) 3 as applied")

	// Flyway: baseline 1.5 (not a file), then 2 and 2.1 applied.
	fw := &History{Tool: "flyway", Table: "public.flyway_schema_history", Baseline: "1.5", Applied: []Entry{{Version: "2"}, {Version: "2.1"}}}
	rs, err = fw.Check(migs("1", "1.1", "2", "2.1", "2.2"), nil)
	require.NoError(t, err)
	require.Equal(t, []string{"1", "1.1", "2", "2.1"}, versionsOf(rs))

	// A file changed since Flyway applied it: its checksum is not the one Flyway recorded.
	recorded, now := int32(1234), int32(-99)
	fw.Applied[1].FlywayChecksum = &recorded
	ms := migs("1", "1.1", "2", "2.1", "2.2")
	ms[3].File, ms[3].FlywayChecksum = "V2_1__m.sql", &recorded
	_, err = fw.Check(ms, nil)
	require.NoError(t, err, "the same checksum")
	ms[3].FlywayChecksum = &now
	_, err = fw.Check(ms, nil)
	var me *MismatchError
	require.ErrorAs(t, err, &me)
	require.Contains(t, me.Msg, "changed since Flyway applied them, their checksum no longer the one public.flyway_schema_history records: 2.1_m2.1 (V2_1__m.sql) (recorded 1234, file -99)")
	require.Contains(t, me.Msg, "flyway repair")
	_, err = fw.Check(ms, map[string]bool{"2.1": true})
	require.NoError(t, err, "tracked already: the worker's own checksum rules it")
}

// The history tables as each tool creates them (their DDL for PostgreSQL).
const (
	gooseTable = `CREATE TABLE goose_db_version (id serial PRIMARY KEY, version_id bigint NOT NULL,
		is_applied boolean NOT NULL, tstamp timestamp NOT NULL DEFAULT now())`
	migrateTable = `CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)`
	dbmateTable  = `CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY)`
	flywayTable  = `CREATE TABLE flyway_schema_history (installed_rank int NOT NULL PRIMARY KEY,
		version varchar(50), description varchar(200) NOT NULL, type varchar(20) NOT NULL,
		script varchar(1000) NOT NULL, checksum int, installed_by varchar(100) NOT NULL,
		installed_on timestamp NOT NULL DEFAULT now(), execution_time int NOT NULL, success boolean NOT NULL)`
)

func TestReadEachToolsHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testdb.New(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	exec := func(sql string) {
		t.Helper()
		_, err := pool.Exec(ctx, sql)
		require.NoError(t, err)
	}
	exec(`CREATE SCHEMA goose; CREATE SCHEMA gm; CREATE SCHEMA dbmate; CREATE SCHEMA fw; CREATE SCHEMA confiture`)
	in := func(schema, ddl string) string {
		return strings.Replace(ddl, "CREATE TABLE ", "CREATE TABLE "+schema+".", 1)
	}
	exec(in("goose", gooseTable) + `;
		INSERT INTO goose.goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), (2, true), (3, true), (3, false), (10, true)`)
	exec(in("gm", migrateTable) + `; INSERT INTO gm.schema_migrations VALUES (7, false)`)
	exec(in("dbmate", dbmateTable) + `; INSERT INTO dbmate.schema_migrations VALUES ('20240101090000'), ('20240102090000')`)
	exec(in("fw", flywayTable) + `;
		INSERT INTO fw.flyway_schema_history VALUES
			(1, NULL, '<< Flyway Schema Creation >>', 'SCHEMA', '"fw"', NULL, 'me', now(), 0, true),
			(2, '1', 'init', 'SQL', 'V1__init.sql', 1, 'me', now(), 12, true),
			(3, '1.1', 'add users', 'SQL', 'V1_1__add_users.sql', 2, 'me', now(), 5, true),
			(4, NULL, 'views', 'SQL', 'R__views.sql', 3, 'me', now(), 1, true),
			(5, '2', 'drop', 'SQL', 'V2__drop.sql', 4, 'me', now(), 1, true),
			(6, '2', 'drop', 'UNDO_SQL', 'U2__drop.sql', 5, 'me', now(), 1, true)`)
	exec(`CREATE TABLE confiture.schema_migrations (version text)`)

	read := func(tool, table string) *History {
		t.Helper()
		h, err := Read(ctx, pool, tool, table, "confiture.schema_migrations")
		require.NoError(t, err)
		return h
	}
	versions := func(h *History) []string {
		var vs []string
		for _, e := range h.Applied {
			vs = append(vs, e.Version)
		}
		return vs
	}
	h := read("goose", "goose.goose_db_version")
	require.Equal(t, "goose.goose_db_version", h.Table)
	require.Equal(t, []string{"1", "2", "10"}, versions(h), "version 0 is goose's own, 3 was rolled back")
	require.False(t, h.Applied[0].AppliedAt.IsZero())
	require.Equal(t, []string{"7"}, versions(read("golang-migrate", "gm.schema_migrations")))
	require.Equal(t, []string{"20240101090000", "20240102090000"}, versions(read("dbmate", "dbmate.schema_migrations")))
	fw := read("flyway", "fw.flyway_schema_history")
	require.Equal(t, []string{"1", "1.1"}, versions(fw), "the schema marker and the repeatable do not count, 2 was undone")
	require.Equal(t, int64(12), fw.Applied[0].ExecutionMS)
	require.Equal(t, int32(1), *fw.Applied[0].FlywayChecksum)
	require.Equal(t, "me", fw.Applied[0].By)

	// The default name, looked up in the search_path.
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `SET search_path = goose`)
	require.NoError(t, err)
	h, err = Read(ctx, conn, "goose", "", "confiture.schema_migrations")
	require.NoError(t, err)
	require.Equal(t, "goose.goose_db_version", h.Table)
	_, err = conn.Exec(ctx, `RESET search_path`)
	require.NoError(t, err)

	var me *MismatchError
	// No such table.
	_, err = Read(ctx, pool, "goose", "", "confiture.schema_migrations")
	require.ErrorAs(t, err, &me)
	require.Contains(t, me.Msg, "adopt goose: the target has no table goose_db_version (search_path")
	require.Contains(t, me.Msg, "adopt_table")
	// The worker's own table is not a tool's.
	_, err = Read(ctx, pool, "golang-migrate", "confiture.schema_migrations", "confiture.schema_migrations")
	require.ErrorAs(t, err, &me)
	require.Contains(t, me.Msg, "is the worker's own tracking table")
	// Another tool's table.
	_, err = Read(ctx, pool, "goose", "dbmate.schema_migrations", "confiture.schema_migrations")
	require.ErrorAs(t, err, &me)
	require.Contains(t, me.Msg, "is not goose's history table")

	// Dirty and failed entries, in the tools' own words.
	exec(`UPDATE gm.schema_migrations SET dirty = true`)
	_, err = Read(ctx, pool, "golang-migrate", "gm.schema_migrations", "confiture.schema_migrations")
	require.ErrorAs(t, err, &me)
	require.Contains(t, me.Msg, "Dirty database version 7. Fix and force version.")
	require.Contains(t, me.Msg, "migrate force")
	exec(`INSERT INTO fw.flyway_schema_history VALUES (7, '3', 'add orders', 'SQL', 'V3__add_orders.sql', 6, 'me', now(), 1, false)`)
	_, err = Read(ctx, pool, "flyway", "fw.flyway_schema_history", "confiture.schema_migrations")
	require.ErrorAs(t, err, &me)
	require.Contains(t, me.Msg, "Detected failed migration to version 3 (add orders). Please remove any half-completed changes then run repair to fix the schema history.")

	// golang-migrate's empty table, and its -1 after migrating all the way down.
	exec(`DELETE FROM gm.schema_migrations`)
	require.Empty(t, versions(read("golang-migrate", "gm.schema_migrations")))
	exec(`INSERT INTO gm.schema_migrations VALUES (-1, false)`)
	require.Empty(t, versions(read("golang-migrate", "gm.schema_migrations")))
}
