package dryrun

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseNonTx(t *testing.T) {
	t.Parallel()
	cases := []struct {
		sql  string
		want target
		ok   bool
	}{
		{`CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "Idx" ON ONLY app."Users" USING btree (lower(email))`,
			target{kind: "create index concurrently", names: []string{`app."Users"`}}, true},
		{`create index concurrently on users (email) -- no name`,
			target{kind: "create index concurrently", names: []string{"users"}}, true},
		{`DROP INDEX CONCURRENTLY IF EXISTS app.users_email`,
			target{kind: "drop index concurrently", names: []string{"app.users_email"}, indexes: true}, true},
		{`REINDEX (CONCURRENTLY true, VERBOSE) TABLE users`,
			target{kind: "reindex concurrently", names: []string{"users"}}, true},
		{`REINDEX (CONCURRENTLY false) DATABASE app`,
			target{kind: "reindex", scope: "each table of the database, one at a time"}, true},
		{`VACUUM (ANALYZE, FULL off) a, b (x, y), "C"`,
			target{kind: "vacuum", names: []string{"a", "b", `"C"`}, scope: "each table of the database, one at a time"}, true},
		{`VACUUM FREEZE VERBOSE /* comment; FULL */ FULL t`,
			target{kind: "vacuum full", names: []string{"t"}, scope: "each table of the database, one at a time"}, true},
		{`ALTER TABLE IF EXISTS ONLY p DETACH PARTITION s.c CONCURRENTLY`,
			target{kind: "detach partition concurrently", names: []string{"p", "s.c"}}, true},
		{`CREATE DATABASE other`, target{}, false},
		{`ALTER SYSTEM SET work_mem = '8MB'`, target{}, false},
	}
	for _, c := range cases {
		got, ok := parseNonTx(c.sql)
		require.Equal(t, c.ok, ok, c.sql)
		require.Equal(t, c.want, got, c.sql)
	}
}
