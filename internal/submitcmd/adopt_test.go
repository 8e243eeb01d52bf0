package submitcmd

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/testdb"
	"github.com/confiture-io/confiture-worker/internal/toolrun"
)

// The two commands of docs/COMING_FROM.md, on a database goose migrated: a dry-run that says
// what it would adopt and records nothing, then the takeover and one new migration.
func TestE2EAdoptGoose(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test: needs PostgreSQL and goose")
	}
	ctx := context.Background()
	dsn := testdb.New(t)
	out, err := toolrun.Goose(ctx, toolrun.Fixture("goose"), dsn)
	require.NoError(t, err, "%s", out)
	url := startWorkerOn(t, dsn, nil)
	db, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	counted := func(sql string) int {
		var n int
		require.NoError(t, db.QueryRow(ctx, sql).Scan(&n))
		return n
	}
	applied := counted(`SELECT count(*) FROM goose_db_version WHERE version_id > 0`)
	dir := toolrun.FixtureNext(t, "goose")

	r := submit(t, dir, "--nats-url", url, "--adopt", "goose", "--dry-run", "--wait", "--timeout", "60s", "--id", "adopt-dry")
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "as goose migrations: 24", r)
	require.Contains(t, r.stdout, "would adopt 23 migration(s) from goose: public.goose_db_version", r)
	require.Zero(t, counted(`SELECT count(*) FROM pg_namespace WHERE nspname = 'confiture'`))

	r = submit(t, dir, "--nats-url", url, "--adopt", "goose", "--wait", "--timeout", "60s", "--id", "adopt")
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "adopted 23 migration(s) from goose: public.goose_db_version", r)
	require.Equal(t, applied+1, counted(`SELECT count(*) FROM confiture.schema_migrations`))
	require.Equal(t, applied, counted(`SELECT count(*) FROM goose_db_version WHERE version_id > 0`), "goose's table is left as it was")

	// The wrong tool: no table of its name, and the run fails saying so.
	r = submit(t, dir, "--nats-url", url, "--adopt", "dbmate", "--wait", "--timeout", "60s", "--id", "adopt-wrong")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stdout+r.stderr, "adopt dbmate: the target has no table schema_migrations", r)

	// Flags that cannot be.
	for _, args := range [][]string{
		{"--adopt", "liquibase"},
		{"--adopt", "goose", "--direction", "down"},
		{"--adopt-table", "goose_db_version"},
		{"--format", "sqitch"},
	} {
		r = submit(t, append([]string{dir, "--nats-url", url}, args...)...)
		require.Equal(t, ExitUsage, r.code, "%v: %v", args, r)
	}
}
