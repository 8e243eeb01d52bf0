package workercmd

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/natsauth"
	"github.com/confiture-io/confiture-worker/internal/natsauth/natsauthtest"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

const natsPW = "cmd-nats-s3cr3t"

// TestNATSSecurityPrecedence: file, then CONFITURE_NATS_*, then flags; a method given by a
// later layer replaces the earlier one's.
func TestNATSSecurityPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.yaml")
	require.NoError(t, os.WriteFile(path, []byte("nats:\n  creds: /etc/nats/worker.creds\n  ca: /etc/nats/ca.pem\n"), 0o600))
	t.Setenv("CONFITURE_NATS_PASSWORD", natsPW)
	t.Setenv("CONFITURE_NATS_USER", "from-env")

	o := &options{configFile: path}
	cfg, err := o.config(slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, natsauth.Options{User: "from-env", Password: natsPW, CA: "/etc/nats/ca.pem"}, cfg.NATS)

	o = &options{configFile: path, nats: natsauth.Options{User: "from-flag", Cert: "/c.pem", Key: "/k.pem"}}
	cfg, err = o.config(slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, natsauth.Options{User: "from-flag", Password: natsPW, CA: "/etc/nats/ca.pem", Cert: "/c.pem", Key: "/k.pem"}, cfg.NATS)

	o = &options{configFile: path, nats: natsauth.Options{NKey: "/etc/nats/worker.nk"}}
	cfg, err = o.config(slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, natsauth.Options{NKey: "/etc/nats/worker.nk", CA: "/etc/nats/ca.pem"}, cfg.NATS)
}

func TestNATSFlagsInHelp(t *testing.T) {
	t.Parallel()
	code, out, _ := runMain(t, "--help")
	require.Equal(t, ExitOK, code)
	for _, f := range []string{"--nats-creds", "--nats-nkey", "--nats-user", "--nats-password-file", "--nats-token-file", "--nats-ca", "--nats-cert", "--nats-key", "--nats-tls", "docs/SECURITY.md"} {
		require.Contains(t, out, f)
	}
	require.NotContains(t, out, "--nats-password ", "no password on the command line")
	require.NotContains(t, out, "--nats-token ", "no token on the command line")
}

func TestBadNATSOptionsAreUsageErrors(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing")
	code, _, errOut := runMain(t, "--nats-url", "nats://127.0.0.1:1", "--nats-user", "worker", "--nats-password-file", missing, "hooks", "list")
	require.Equal(t, ExitUsage, code, errOut)
	require.Contains(t, errOut, "worker: NATS password file "+missing+": no such file")
}

// TestWorkerRefusesToStartWithoutNATSCredentials runs the command against a server that
// requires authorization: it exits 1 and says why.
func TestWorkerRefusesToStartWithoutNATSCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	for _, k := range []string{"USER", "PASSWORD", "TOKEN", "CREDS", "NKEY"} {
		t.Setenv("CONFITURE_NATS_"+k, "")
	}
	s := natsauthtest.Start(t, &server.Options{Users: []*server.User{{Username: "worker", Password: natsPW}}})
	url := s.ClientURL()
	args := []string{"--nats-url", url, "--database-url", testdb.New(t), "--data-dir", t.TempDir(), "--http-addr", "off", "--log-format", "json"}

	code, _, errOut := runMain(t, args...)
	require.Equal(t, ExitFailed, code, errOut)
	require.Contains(t, errOut, "worker: NATS authorization failed at "+url+": the server requires credentials and none were given", errOut)

	pwFile := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte("wrong-"+natsPW+"\n"), 0o600))
	code, _, errOut = runMain(t, append(args, "--nats-user", "worker", "--nats-password-file", pwFile)...)
	require.Equal(t, ExitFailed, code, errOut)
	require.Contains(t, errOut, `worker: NATS authorization failed at `+url+`: the server refused user "worker"`, errOut)
	require.False(t, strings.Contains(errOut, natsPW))
}
