package targetgroup

import (
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

func TestCheckRefusesBadGroups(t *testing.T) {
	t.Parallel()
	targets := []target.Config{{Name: "main", DSN: "postgres://x@h/db"}, {Name: "catalog", DSN: "postgres://x@h/cat"}}
	q := func(mod func(*Query)) *Query {
		q := &Query{Target: "catalog", SQL: "SELECT 1 AS id", Name: "t-{{.id}}", DSN: "postgres://h/{{.id}}"}
		mod(q)
		return q
	}
	for _, c := range []struct {
		g   Config
		msg string
	}{
		{Config{Name: "bad name!", Targets: []string{"main"}}, "name must be 1 to 64 letters"},
		{Config{Name: "main", Targets: []string{"catalog"}}, "a target has the same name"},
		{Config{Name: "g"}, "set exactly one of targets"},
		{Config{Name: "g", Targets: []string{"main"}, Schemas: &Schemas{Target: "main", Match: "t_*"}}, "set exactly one of targets"},
		{Config{Name: "g", Targets: []string{"nope"}}, `targets names "nope", which is not a configured target`},
		{Config{Name: "g", Targets: []string{"main", "main"}}, `targets lists "main" twice`},
		{Config{Name: "g", Schemas: &Schemas{Target: "main", Match: "t_["}}, `schemas.match "t_[" is not a glob`},
		{Config{Name: "g", Schemas: &Schemas{Target: "other", Match: "t_*"}}, `schemas.target names "other"`},
		{Config{Name: "g", Query: q(func(q *Query) { q.SQL = " " })}, "query.sql is empty"},
		{Config{Name: "g", Query: q(func(q *Query) { q.DSN = "" })}, "query.name and query.dsn are required"},
		{Config{Name: "g", Query: q(func(q *Query) { q.DSN = "postgres://{{.host" })}, "query.dsn: template: dsn:1: unclosed action"},
		{Config{Name: "g", Query: q(func(q *Query) { q.DSN = `postgres://u:{{secret "PW"}}@h/db` })}, `function "secret" not defined`},
	} {
		err := Check([]Config{c.g}, targets)
		require.ErrorContains(t, err, c.msg, "%+v", c.g)
	}
	require.ErrorContains(t, Check([]Config{{Name: "g", Targets: []string{"main"}}, {Name: "g", Targets: []string{"main"}}}, targets), `target group "g": defined twice`)
	require.NoError(t, Check([]Config{
		{Name: "pair", Targets: []string{"main", "catalog"}},
		{Name: "tenants", Schemas: &Schemas{Target: "main", Match: "tenant_*"}},
		{Name: "fleet", Query: q(func(*Query) {})},
	}, targets))
}

// fleet is a database with tenant schemas and a catalog table of tenants.
func fleet(t *testing.T) string {
	t.Helper()
	dsn := testdb.New(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE SCHEMA tenant_b; CREATE SCHEMA tenant_a; CREATE SCHEMA other; CREATE SCHEMA confiture_tenant_a;
		CREATE TABLE tenants (id int PRIMARY KEY, db text NOT NULL, active bool NOT NULL);
		INSERT INTO tenants VALUES (1, 'one', true), (2, 'two', true), (3, 'three', false);`)
	require.NoError(t, err)
	return dsn
}

func TestResolveEachKind(t *testing.T) {
	t.Parallel()
	dsn := fleet(t)
	targets := []target.Config{{Name: "main", DSN: dsn, MaxConns: 3}, {Name: "second", DSN: dsn}}
	groups := []Config{
		{Name: "pair", Targets: []string{"second", "main"}},
		{Name: "tenants", Schemas: &Schemas{Target: "main", Match: "tenant_*"}},
		{Name: "fleet", Query: &Query{Target: "main", SQL: "SELECT id, db FROM tenants WHERE active",
			Name: "t{{.id}}", DSN: `postgres://app:{{env "TENANT_PW" | urlquery}}@db.internal/{{.db}}`}},
		{Name: "fleet_schemas", Query: &Query{Target: "main", SQL: "SELECT 'tenant_' || chr(96 + id) AS s FROM tenants WHERE id < 3",
			Name: "s-{{.s}}", DSN: dsn, Schema: "{{.s}}"}},
	}
	require.NoError(t, Check(groups, targets))
	r := NewResolver(groups, targets)
	r.Getenv = func(k string) string { return map[string]string{"TENANT_PW": "p@ss/word"}[k] }
	ctx := context.Background()
	require.Equal(t, []string{"fleet", "fleet_schemas", "pair", "tenants"}, r.Names())

	ms, err := r.Resolve(ctx, "pair")
	require.NoError(t, err)
	require.Equal(t, []string{"main", "second"}, names(ms))

	ms, err = r.Resolve(ctx, "tenants")
	require.NoError(t, err)
	require.Equal(t, []Member{
		{Name: "tenants-tenant_a", DSN: dsn, Schema: "tenant_a", TrackingSchema: "confiture_tenant_a", MaxConns: 3},
		{Name: "tenants-tenant_b", DSN: dsn, Schema: "tenant_b", TrackingSchema: "confiture_tenant_b", MaxConns: 3},
	}, ms, "confiture's own schemas never match")

	ms, err = r.Resolve(ctx, "fleet")
	require.NoError(t, err)
	require.Equal(t, []string{"t1", "t2"}, names(ms))
	require.Equal(t, "postgres://app:p%40ss%2Fword@db.internal/one", ms[0].DSN, "the secret from the environment, escaped")

	ms, err = r.Resolve(ctx, "fleet_schemas")
	require.NoError(t, err)
	require.Equal(t, []string{"s-tenant_a", "s-tenant_b"}, names(ms))
	require.Equal(t, "confiture_tenant_b", ms[1].TrackingSchema)

	// A tenant added since is found by the next resolution.
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE SCHEMA tenant_c`)
	require.NoError(t, err)
	ms, err = r.Resolve(ctx, "tenants")
	require.NoError(t, err)
	require.Len(t, ms, 3)
}

func TestResolveBadDiscovery(t *testing.T) {
	t.Parallel()
	dsn := fleet(t)
	targets := []target.Config{{Name: "main", DSN: dsn}, {Name: "down", DSN: "postgres://postgres:hunter2@127.0.0.1:1/none?connect_timeout=2"}}
	query := func(name, sql, nameT, dsnT string) Config {
		return Config{Name: name, Query: &Query{Target: "main", SQL: sql, Name: nameT, DSN: dsnT}}
	}
	groups := []Config{
		{Name: "empty", Schemas: &Schemas{Target: "main", Match: "nobody_*"}},
		{Name: "unreachable", Schemas: &Schemas{Target: "down", Match: "*"}},
		query("failing", "SELECT * FROM no_such_table", "t{{.id}}", "postgres://h/{{.db}}"),
		query("nothing", "SELECT id, db FROM tenants WHERE false", "t{{.id}}", "postgres://h/{{.db}}"),
		query("baddsn", "SELECT id, db FROM tenants", "t{{.id}}", "postgres://u:{{env \"TENANT_PW\"}}@h:notaport/{{.db}}"),
		query("noenv", "SELECT id, db FROM tenants", "t{{.id}}", `postgres://u:{{env "UNSET_PW"}}@h/{{.db}}`),
		query("nofile", "SELECT id, db FROM tenants", "t{{.id}}", `postgres://u:{{file "/run/secrets/none"}}@h/{{.db}}`),
		query("nocolumn", "SELECT id FROM tenants", "t{{.id}}", "postgres://h/{{.host}}"),
		query("samename", "SELECT id, db FROM tenants", "tenant", "postgres://h/{{.db}}"),
		query("badname", "SELECT id, db FROM tenants", "t {{.id}}", "postgres://h/{{.db}}"),
	}
	require.NoError(t, Check(groups, targets))
	r := NewResolver(groups, targets)
	r.Getenv = func(k string) string { return map[string]string{"TENANT_PW": "s3cret"}[k] }
	r.ReadFile = func(string) ([]byte, error) {
		return nil, &fs.PathError{Op: "open", Path: "/run/secrets/none", Err: fs.ErrNotExist}
	}
	ctx := context.Background()
	for group, msg := range map[string]string{
		"empty":       `target group "empty": discovery found no member (schemas matching "nobody_*" in the database of target "main")`,
		"unreachable": `target group "unreachable": connect to target "down"`,
		"failing":     `target group "failing": the catalog query on target "main" failed: ERROR: relation "no_such_table" does not exist`,
		"nothing":     `target group "nothing": discovery found no member (rows of the catalog query on target "main")`,
		"baddsn":      `target group "baddsn": member "t1": query.dsn gives an invalid connection string (not shown: it may hold a secret)`,
		"noenv":       `target group "noenv": member "t1": query.dsn could not be filled in: error calling env: environment variable UNSET_PW is not set`,
		"nofile":      `target group "nofile": member "t1": query.dsn could not be filled in: error calling file: read /run/secrets/none: file does not exist`,
		"nocolumn":    `target group "nocolumn": member "t1": query.dsn could not be filled in: the query has no column "host"`,
		"samename":    `target group "samename": two members are named "tenant"`,
		"badname":     `target group "badname": row 1: query.name gives "t 1", which is not 1 to 64 letters`,
		"nogroup":     `unknown target group "nogroup" (configured: `,
	} {
		_, err := r.Resolve(ctx, group)
		require.ErrorContains(t, err, msg, group)
		require.NotContains(t, err.Error(), "s3cret", group)
		require.NotContains(t, err.Error(), "hunter2", group)
	}
	_, err := r.Resolve(ctx, "nogroup")
	require.True(t, errors.Is(err, ErrUnknownGroup))
}

func names(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}
