package transient_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/testdb"
	"github.com/confiture-io/confiture-worker/internal/transient"
)

// connect returns the error of connecting to url, as the worker would meet it.
func connect(t *testing.T, url string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err == nil {
		_ = conn.Close(ctx)
	}
	require.Error(t, err)
	return err
}

func TestRefusedConnectionIsTransient(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close()) // nothing listens there now
	err = connect(t, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?connect_timeout=5", port))
	require.True(t, transient.Is(err), "%v", err)
	require.True(t, transient.Is(fmt.Errorf("target %q: %w", "app", err)), "wrapped")
}

func TestMisconfigurationIsNotTransient(t *testing.T) {
	t.Parallel()
	// A database that does not exist: the server answers, with 3D000.
	cfg, err := pgx.ParseConfig(testdb.AdminURL())
	require.NoError(t, err)
	err = connect(t, fmt.Sprintf("postgres://%s@%s:%d/no_such_database_%d", cfg.User, cfg.Host, cfg.Port, time.Now().UnixNano()))
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "3D000", pgErr.Code)
	require.False(t, transient.Is(err), "%v", err)
}

func TestSQLStates(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{
		"08006": true, "08001": true, "53300": true, "57P01": true, "57P02": true, "57P03": true,
		"08P01": false,                                 // protocol_violation
		"53200": false, "53100": false, "53400": false, // out of memory or lock slots, disk full, a limit: the same statement meets them again
		"57014": false, // query_canceled: a statement timeout or a cancel, the caller's doing
		"40001": false, "40P01": false, "42P01": false, "23505": false, "28P01": false, "3D000": false, "": false,
	} {
		require.Equal(t, want, transient.Is(&pgconn.PgError{Code: code}), code)
	}
}

// A TLS setting the server does not meet fails the connection (pgconn.ConnectError) without a
// SQLSTATE: configuration, not transient.
func TestTLSMisconfigurationIsNotTransient(t *testing.T) {
	t.Parallel()
	cfg, err := pgx.ParseConfig(testdb.AdminURL())
	require.NoError(t, err)
	err = connect(t, fmt.Sprintf("postgres://%s@%s:%d/postgres?sslmode=verify-full&connect_timeout=5", cfg.User, cfg.Host, cfg.Port))
	var ce *pgconn.ConnectError
	require.ErrorAs(t, err, &ce)
	require.False(t, transient.Is(err), "%v", err)
}

func TestContextEndIsNotTransient(t *testing.T) {
	t.Parallel()
	require.False(t, transient.Is(nil))
	require.False(t, transient.Is(context.Canceled))
	require.False(t, transient.Is(fmt.Errorf("query: %w", context.DeadlineExceeded)))
	require.False(t, transient.Is(errors.New("hook failed")))
}

// A server that terminates the session under a running statement (a restart,
// pg_terminate_backend) is transient trouble.
func TestTerminatedSessionIsTransient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t)
	victim, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer victim.Close(ctx)
	killer, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer killer.Close(ctx)
	pid := victim.PgConn().PID()
	done := make(chan error, 1)
	go func() { _, err := victim.Exec(ctx, `SELECT pg_sleep(30)`); done <- err }()
	require.Eventually(t, func() bool {
		var n int
		return killer.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'`, pid).Scan(&n) == nil && n == 1
	}, 10*time.Second, 10*time.Millisecond)
	_, err = killer.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid)
	require.NoError(t, err)
	err = <-done
	require.Error(t, err)
	require.True(t, transient.Is(err), "%v", err)
}
