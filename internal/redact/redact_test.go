package redact

import (
	"cmp"
	"testing"

	"github.com/stretchr/testify/require"
)

// One table for every form a secret takes in the text the worker and its commands show: each
// case hides its secrets and keeps the rest, in free text (String, with the secrets of the
// case's connection string known) and, for a connection string on its own, for display (URL).
func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		dsn     string // the connection string the caller knows, if any
		text    string
		want    string // the exact result of String, when set
		url     string // the exact result of URL(text), when set
		secrets []string
		keep    []string
	}{
		{
			name: "postgres url", dsn: "postgres://alice:s3cr3t-pw@db.example.com:5432/app?sslmode=require",
			text:    "connect postgres://alice:s3cr3t-pw@db.example.com:5432/app?sslmode=require: refused",
			want:    "connect postgres://alice:xxxxx@db.example.com:5432/app?sslmode=require: refused",
			secrets: []string{"s3cr3t-pw"},
		},
		{
			name: "postgresql scheme", text: "bad: postgresql://alice:s3cr3t-pw@db.example.com/app",
			want: "bad: postgresql://alice:xxxxx@db.example.com/app",
		},
		{
			name: "password with a raw @", dsn: "postgres://alice:p@ss@w0rd@db.example.com/app",
			text: "dial postgres://alice:p@ss@w0rd@db.example.com/app: refused; the password was p@ss@w0rd",
			want: "dial postgres://alice:xxxxx@db.example.com/app: refused; the password was xxxxx",
			url:  "postgres://alice:xxxxx@db.example.com/app",
		},
		{
			name: "percent-encoded password", dsn: "postgres://alice:p%40ss%2Fw0rd@db.example.com/app",
			text:    "dsn postgres://alice:p%40ss%2Fw0rd@db.example.com/app, password p@ss/w0rd",
			secrets: []string{"p%40ss%2Fw0rd", "p@ss/w0rd"}, keep: []string{"alice", "db.example.com"},
		},
		{
			name: "user without a password stays", text: "postgres://alice@db.example.com/app",
			want: "postgres://alice@db.example.com/app", url: "postgres://alice@db.example.com/app",
		},
		{
			name: "key=value", dsn: "host=db.example.com user=alice password=s3cr3t-pw dbname=app",
			text: "cannot parse `host=db.example.com user=alice password=s3cr3t-pw dbname=app`",
			want: "cannot parse `host=db.example.com user=alice password=xxxxx dbname=app`",
		},
		{
			name: "key=value quoted with spaces", dsn: "host=db.example.com user=alice password='s3cr3t pass phrase' dbname=app",
			text: "host=db.example.com user=alice password='s3cr3t pass phrase' dbname=app",
			want: "host=db.example.com user=alice password=xxxxx dbname=app",
			url:  "host=db.example.com user=alice password=xxxxx dbname=app",
		},
		{
			name: "password variables", text: "env: PGPASSWORD=s3cr3t-pw db_password = 'a b c' HOME=/root",
			want: "env: PGPASSWORD=xxxxx db_password = xxxxx HOME=/root",
		},
		{
			name: "key=value upper case, spaces around =", text: "host=db.example.com user=alice PASSWORD = s3cr3t-pw",
			want: "host=db.example.com user=alice PASSWORD = xxxxx",
		},
		{
			name: "password as a url query parameter", dsn: "postgres://alice@db.example.com/app?sslmode=disable&password=s3cr3t-pw&x=1",
			text: "connect postgres://alice@db.example.com/app?sslmode=disable&password=s3cr3t-pw&x=1",
			want: "connect postgres://alice@db.example.com/app?sslmode=disable&password=xxxxx&x=1",
		},
		{
			name: "bare known password", dsn: "postgres://alice:s3cr3t-pw@db.example.com/app",
			text: `server said: role "alice" with password "s3cr3t-pw" is not allowed`,
			want: `server said: role "alice" with password "xxxxx" is not allowed`,
		},
		{
			name: "unknown connection strings", text: "dial postgres://bob:hunter22@other.example.com/db and host=h password=hunter33",
			want: "dial postgres://bob:xxxxx@other.example.com/db and host=h password=xxxxx",
		},
		{
			name: "short password inside its connection string", dsn: "postgres://alice:pw@db.example.com/app",
			text: "postgres://alice:pw@db.example.com/app: failed to dial; pwd unchanged",
			want: "postgres://alice:xxxxx@db.example.com/app: failed to dial; pwd unchanged",
		},
		{
			name: "unparsable url", dsn: "postgres://alice:s3cr3t-pw@db.example.com:notaport/app%zz",
			text: "cannot parse postgres://alice:s3cr3t-pw@db.example.com:notaport/app%zz",
			want: "cannot parse postgres://alice:xxxxx@db.example.com:notaport/app%zz",
		},
		{
			name: "nats user and password", text: "nats://alice:s3cretpw@nats.example:4222",
			want: "nats://alice:xxxxx@nats.example:4222", url: "nats://alice:xxxxx@nats.example:4222",
		},
		{
			name: "nats token", dsn: "nats://t0ken-abcdef@nats.example:4222", text: "nats://t0ken-abcdef@nats.example:4222: authorization violation",
			want: "nats://xxxxx@nats.example:4222: authorization violation",
		},
		{
			name: "nats server list", text: "nats://a:b@h1:4222, nats://c:d@h2:4222",
			want: "nats://a:xxxxx@h1:4222, nats://c:xxxxx@h2:4222", url: "nats://a:xxxxx@h1:4222,nats://c:xxxxx@h2:4222",
		},
		{
			name: "url whose user information has a space", text: "nats://al ice:pa%zz@h",
			url: "nats://al ice:xxxxx@h",
		},
		{
			name: "tls url with a path", text: "tls://u:p@nats.example.com:4443/?x=1",
			want: "tls://u:xxxxx@nats.example.com:4443/?x=1", url: "tls://u:xxxxx@nats.example.com:4443/?x=1",
		},
		{
			name: "text without secrets", dsn: "postgres://alice:s3cr3t-pw@127.0.0.1:5432/app",
			text: "dial tcp 127.0.0.1:5432: connect: connection refused; password authentication failed for user alice",
			want: "dial tcp 127.0.0.1:5432: connect: connection refused; password authentication failed for user alice",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := String(tt.text, Secrets(tt.dsn)...)
			if tt.want != "" {
				require.Equal(t, tt.want, got)
			}
			for _, s := range append(tt.secrets, Secrets(tt.dsn)...) {
				if len(s) >= minKnown { // shorter ones are hidden where they stand only
					require.NotContains(t, got, s)
				}
			}
			for _, k := range tt.keep {
				require.Contains(t, got, k)
			}
			if tt.url != "" {
				require.Equal(t, tt.url, URL(cmp.Or(tt.dsn, tt.text)))
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	for dsn, want := range map[string][]string{
		"":                                    nil,
		"postgres://alice@db/app":             nil,
		"postgres://alice:pw%40x@db/app":      {"pw%40x", "pw@x"},
		"postgres://alice:p@w@db/app":         {"p@w"},
		"nats://t0ken@h:4222":                 {"t0ken"},
		"postgres://db/app?password=a%26b&x=": {"a%26b", "a&b"},
		"host=h password='a b' user=u":        {"a b"},
		"host=h user=u":                       nil,
	} {
		require.Equal(t, want, Secrets(dsn), dsn)
	}
}

func TestStringDoesNotAllocateWithoutSecrets(t *testing.T) {
	s := "hook_completed run=4f0c hook=h rows=12 password authentication failed"
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = String(s) }))
}
