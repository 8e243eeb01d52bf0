package target

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const fakeDSN = "postgres://alice:s3cr3t-pw@127.0.0.1:1/app"

func TestNewSetRejectsBadNames(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "has space", "dot.name", "slash/name", "ünicode", strings.Repeat("a", 65)} {
		_, err := NewSet([]Config{{Name: name, DSN: fakeDSN}})
		require.Error(t, err, "name %q", name)
		require.Contains(t, err.Error(), "target name")
		require.NotContains(t, err.Error(), "s3cr3t-pw")
	}
	_, err := NewSet([]Config{{Name: "Prod_eu-1", DSN: fakeDSN}, {Name: strings.Repeat("a", 64), DSN: fakeDSN}})
	require.NoError(t, err)
}

func TestNewSetRejectsDuplicates(t *testing.T) {
	t.Parallel()
	_, err := NewSet([]Config{{Name: "default", DSN: fakeDSN}, {Name: "other", DSN: fakeDSN}, {Name: "default", DSN: fakeDSN}})
	require.ErrorContains(t, err, `target "default" is configured twice`)
	require.NotContains(t, err.Error(), "s3cr3t-pw")
}

func TestNewSetRejectsBadDSNWithoutLeakingIt(t *testing.T) {
	t.Parallel()
	for name, dsn := range map[string]string{
		"bad port":            "postgres://alice:s3cr3t-pw@db.example.com:notaport/app",
		"bad sslmode":         "postgres://alice:s3cr3t-pw@db.example.com/app?sslmode=bogus",
		"bad pool setting":    "postgres://alice:s3cr3t-pw@db.example.com/app?pool_max_conns=many",
		"bad percent-encoded": "postgres://alice:s3cr3t-pw@db.example.com/app%zz",
		"key=value bad port":  "host=db.example.com user=alice password=s3cr3t-pw port=notaport",
		"key=value quoted":    "host=db.example.com password='s3cr3t-pw' sslmode=bogus",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			set, err := NewSet([]Config{{Name: "prod", DSN: dsn}})
			require.Nil(t, set)
			require.ErrorContains(t, err, `target "prod": invalid connection string`)
			require.NotContains(t, err.Error(), "s3cr3t-pw")
		})
	}
}

func TestTrackingSchemaDefaults(t *testing.T) {
	t.Parallel()
	set, err := NewSet([]Config{
		{Name: "plain", DSN: fakeDSN},
		{Name: "tenant", DSN: fakeDSN, Schema: "billing"},
		{Name: "custom", DSN: fakeDSN, Schema: "billing", TrackingSchema: "migrations_meta"},
	})
	require.NoError(t, err)
	for name, want := range map[string]string{"plain": "confiture", "tenant": "confiture_billing", "custom": "migrations_meta"} {
		tg, err := set.Get(name)
		require.NoError(t, err)
		require.Equal(t, name, tg.Name())
		require.Equal(t, want, tg.TrackingSchema(), name)
		require.Zero(t, tg.ServerVersion(), "not known before connecting")
	}
	plain, _ := set.Get("plain")
	tenant, _ := set.Get("tenant")
	require.Equal(t, 4, cap(plain.slots), "MaxConns defaults to 4")
	require.Same(t, plain.db, tenant.db, "one pool per connection string")
	require.EqualValues(t, DefaultMaxServerConns, plain.db.cfg.MaxConns, "the pool is as large as its server allows")
	require.Equal(t, "confiture-worker", plain.db.cfg.ConnConfig.RuntimeParams["application_name"])
	_, hasPath := plain.db.cfg.ConnConfig.RuntimeParams["search_path"]
	require.False(t, hasPath, "the search_path is set per acquire, for the target the context names")
	require.Equal(t, "RESET search_path", plain.searchPath, "without Schema the database's own search_path applies")
	require.Equal(t, `SET search_path TO "billing"`, tenant.searchPath)
}

func TestSetGetAndNames(t *testing.T) {
	t.Parallel()
	set, err := NewSet([]Config{{Name: "zeta", DSN: fakeDSN}, {Name: "alpha", DSN: fakeDSN}, {Name: "default", DSN: fakeDSN}})
	require.NoError(t, err)
	require.Equal(t, []string{"alpha", "default", "zeta"}, set.Names())
	_, err = set.Get("missing")
	require.True(t, errors.Is(err, ErrUnknownTarget))
	require.Contains(t, err.Error(), `"missing"`)
	require.Contains(t, err.Error(), "[alpha default zeta]")
	require.NotContains(t, err.Error(), "s3cr3t-pw")

	empty, err := NewSet(nil)
	require.NoError(t, err)
	require.Empty(t, empty.Names())
	empty.Close()
}

func TestPoolErrorIsRedacted(t *testing.T) {
	t.Parallel()
	set, err := NewSet([]Config{{Name: "down", DSN: fakeDSN + "?connect_timeout=5"}})
	require.NoError(t, err)
	t.Cleanup(set.Close)
	tg, err := set.Get("down")
	require.NoError(t, err)
	for range 2 { // a failure is not cached: the second call tries again and fails the same way
		pool, err := tg.Pool(testCtx(t))
		require.Nil(t, pool)
		require.ErrorContains(t, err, `target "down"`)
		require.NotContains(t, err.Error(), "s3cr3t-pw")
	}
}
