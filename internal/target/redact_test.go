package target

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		dsn      string
		msg      string
		secrets  []string
		keep     []string
		wantFull string // when set, the exact redacted message
	}{
		{
			name:     "url",
			dsn:      "postgres://alice:s3cr3t-pw@db.example.com:5432/app?sslmode=require",
			msg:      "connect postgres://alice:s3cr3t-pw@db.example.com:5432/app?sslmode=require: refused",
			secrets:  []string{"s3cr3t-pw"},
			keep:     []string{"alice", "db.example.com:5432", "/app", "refused"},
			wantFull: "connect postgres://alice:xxxxx@db.example.com:5432/app?sslmode=require: refused",
		},
		{
			name:    "postgresql scheme",
			dsn:     "postgresql://alice:s3cr3t-pw@db.example.com/app",
			msg:     "bad: postgresql://alice:s3cr3t-pw@db.example.com/app",
			secrets: []string{"s3cr3t-pw"},
			keep:    []string{"alice", "db.example.com"},
		},
		{
			name:    "percent-encoded password",
			dsn:     "postgres://alice:p%40ss%2Fw0rd@db.example.com/app",
			msg:     "dsn postgres://alice:p%40ss%2Fw0rd@db.example.com/app, password p@ss/w0rd",
			secrets: []string{"p%40ss%2Fw0rd", "p@ss/w0rd"},
			keep:    []string{"alice", "db.example.com"},
		},
		{
			name:     "key=value",
			dsn:      "host=db.example.com user=alice password=s3cr3t-pw dbname=app",
			msg:      "cannot parse `host=db.example.com user=alice password=s3cr3t-pw dbname=app`",
			secrets:  []string{"s3cr3t-pw"},
			keep:     []string{"user=alice", "host=db.example.com", "dbname=app"},
			wantFull: "cannot parse `host=db.example.com user=alice password=xxxxx dbname=app`",
		},
		{
			name:    "key=value quoted with spaces",
			dsn:     "host=db.example.com user=alice password='s3cr3t pass phrase' dbname=app",
			msg:     "x host=db.example.com user=alice password='s3cr3t pass phrase' dbname=app",
			secrets: []string{"s3cr3t", "pass phrase"},
			keep:    []string{"user=alice", "host=db.example.com", "dbname=app"},
		},
		{
			name:    "key=value upper case and spaces around =",
			dsn:     "host=db.example.com user=alice PASSWORD = s3cr3t-pw",
			msg:     "host=db.example.com user=alice PASSWORD = s3cr3t-pw",
			secrets: []string{"s3cr3t-pw"},
			keep:    []string{"user=alice", "host=db.example.com"},
		},
		{
			name:    "bare password in a message",
			dsn:     "postgres://alice:s3cr3t-pw@db.example.com/app",
			msg:     `server said: role "alice" with password "s3cr3t-pw" is not allowed`,
			secrets: []string{"s3cr3t-pw"},
			keep:    []string{`role "alice"`},
		},
		{
			name:    "another connection string, dsn unknown",
			dsn:     "",
			msg:     "dial postgres://bob:hunter22@other.example.com/db and host=h password=hunter33",
			secrets: []string{"hunter22", "hunter33"},
			keep:    []string{"bob", "other.example.com", "host=h"},
		},
		{
			name:    "short password is still redacted inside the connection string",
			dsn:     "postgres://alice:pw@db.example.com/app",
			msg:     "postgres://alice:pw@db.example.com/app: failed to dial; pwd unchanged",
			secrets: []string{":pw@"},
			keep:    []string{"alice", "db.example.com", "pwd unchanged"},
		},
		{
			name:    "unparsable url",
			dsn:     "postgres://alice:s3cr3t-pw@db.example.com:notaport/app",
			msg:     "cannot parse postgres://alice:s3cr3t-pw@db.example.com:notaport/app",
			secrets: []string{"s3cr3t-pw"},
			keep:    []string{"alice", "db.example.com"},
		},
		{
			name:    "password as a url query parameter",
			dsn:     "postgres://alice@db.example.com/app?password=s3cr3t-pw",
			msg:     "connect postgres://alice@db.example.com/app?password=s3cr3t-pw",
			secrets: []string{"s3cr3t-pw"},
			keep:    []string{"alice", "db.example.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Redact(tt.msg, tt.dsn)
			for _, s := range tt.secrets {
				require.NotContains(t, got, s)
			}
			for _, k := range tt.keep {
				require.Contains(t, got, k)
			}
			if tt.wantFull != "" {
				require.Equal(t, tt.wantFull, got)
			}
		})
	}
}

func TestRedactLeavesOtherTextAlone(t *testing.T) {
	t.Parallel()
	msg := "dial tcp 127.0.0.1:5432: connect: connection refused"
	require.Equal(t, msg, Redact(msg, "postgres://alice:s3cr3t-pw@127.0.0.1:5432/app"))
	require.Equal(t, msg, Redact(msg, ""))
}

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	tests := []struct{ dsn, want string }{
		{"postgres://alice:s3cr3t-pw@db.example.com:5432/app?sslmode=require", "postgres://alice:xxxxx@db.example.com:5432/app?sslmode=require"},
		{"postgresql://alice:p%40ss@db.example.com/app", "postgresql://alice:xxxxx@db.example.com/app"},
		{"postgres://alice@db.example.com/app", "postgres://alice@db.example.com/app"},
		{"postgres://db.example.com/app", "postgres://db.example.com/app"},
		{"host=db.example.com user=alice password=s3cr3t-pw dbname=app", "host=db.example.com user=alice password=xxxxx dbname=app"},
		{"host=db.example.com user=alice password='a b c' dbname=app", "host=db.example.com user=alice password=xxxxx dbname=app"},
		{"host=db.example.com user=alice", "host=db.example.com user=alice"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, RedactDSN(tt.dsn))
		})
	}
}

// TestRedactDSNNeverLeaksPassword covers connection strings that pgx accepts (a password
// given as a URL query parameter) or that a user may mistype (a URL that net/url cannot
// parse): RedactDSN must not return their password.
func TestRedactDSNNeverLeaksPassword(t *testing.T) {
	t.Parallel()
	for name, dsn := range map[string]string{
		"query parameter":                 "postgres://alice@db.example.com/app?password=s3cr3t-pw",
		"query parameter after another":   "postgres://alice@db.example.com/app?sslmode=disable&password=s3cr3t-pw",
		"url with a bad port":             "postgres://alice:s3cr3t-pw@db.example.com:notaport/app",
		"url with a bad percent-encoding": "postgres://alice:s3cr3t-pw@db.example.com/app%zz",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := RedactDSN(dsn)
			require.NotContains(t, got, "s3cr3t-pw")
			require.Contains(t, got, "alice")
			require.Contains(t, got, "db.example.com")
		})
	}
}

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
