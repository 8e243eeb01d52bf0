package dryrun

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEmulation(t *testing.T) {
	t.Parallel()
	cases := []struct{ sql, want string }{
		{`CREATE INDEX CONCURRENTLY users_email ON users (email)`, `CREATE INDEX users_email ON users (email)`},
		{`create unique index concurrently if not exists "Idx" on only app."Users" (lower(email))`, `create unique index if not exists "Idx" on only app."Users" (lower(email))`},
		{"CREATE INDEX /* why */ CONCURRENTLY\n  i ON t (a)", "CREATE INDEX /* why */ i ON t (a)"},
		{`DROP INDEX CONCURRENTLY IF EXISTS app.users_email`, `DROP INDEX IF EXISTS app.users_email`},
		{`REINDEX TABLE CONCURRENTLY users`, `REINDEX TABLE users`},
		{`REINDEX INDEX CONCURRENTLY users_pkey`, `REINDEX INDEX users_pkey`},
		{`REINDEX (CONCURRENTLY) TABLE users`, `REINDEX TABLE users`},
		{`REINDEX (CONCURRENTLY true, VERBOSE) TABLE users`, `REINDEX (VERBOSE) TABLE users`},
		{`REINDEX (VERBOSE, CONCURRENTLY) INDEX i`, `REINDEX (VERBOSE) INDEX i`},
		{`ALTER TABLE ONLY p DETACH PARTITION p_2020 CONCURRENTLY`, `ALTER TABLE ONLY p DETACH PARTITION p_2020`},
		// Nothing transactional does what these do.
		{`REINDEX SCHEMA CONCURRENTLY app`, ``},
		{`REINDEX (CONCURRENTLY) DATABASE app`, ``},
		{`REINDEX SYSTEM app`, ``},
		{`VACUUM FULL users`, ``},
		{`CLUSTER`, ``},
		{`CREATE DATABASE other`, ``},
		{`ALTER TABLE p DETACH PARTITION p_2020 FINALIZE`, ``},
	}
	for _, c := range cases {
		got, ok := emulation(c.sql)
		require.Equal(t, c.want != "", ok, c.sql)
		require.Equal(t, c.want, got, c.sql)
	}
}
