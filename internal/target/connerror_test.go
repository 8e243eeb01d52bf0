package target

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// pgx tries a host twice under sslmode=prefer (with TLS, then without) and lists both failures:
// the message says a failure once.
func TestConnectMessageSaysEachFailureOnce(t *testing.T) {
	t.Parallel()
	dsn := "postgres://app:s3cret-pw@127.0.0.1:1/x?connect_timeout=5"
	_, err := pgx.Connect(context.Background(), dsn)
	require.Error(t, err)
	require.Equal(t, 2, strings.Count(err.Error(), "dial error"), "pgx lists each attempt: %s", err)
	msg := ConnectMessage(err, dsn)
	require.Equal(t, 1, strings.Count(msg, "dial error"), msg)
	require.Contains(t, msg, "connection refused")
	require.NotContains(t, msg, "s3cret-pw")
}
