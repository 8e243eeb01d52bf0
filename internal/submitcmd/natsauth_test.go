package submitcmd

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/bus"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/natsauth"
	"github.com/confiture-io/confiture-worker/internal/natsauth/natsauthtest"
)

const (
	alicePW  = "alice-s3cr3t-pw"
	limitPW  = "limited-s3cr3t-pw"
	tokenPW  = "t0ken-s3cr3t-value"
	adminPW  = "admin-s3cr3t-pw"
	adminUsr = "admin"
)

// authServer starts a NATS server configured by opts and declares the workers' streams on it
// as admin; it returns the server's URL and a count of the requests stored.
func authServer(t *testing.T, opts *server.Options, admin natsauth.Options) (string, func() uint64) {
	t.Helper()
	s := natsauthtest.Start(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := s.ClientURL()
	b, err := bus.Connect(ctx, bus.Options{URL: url, Auth: admin})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	require.NoError(t, b.EnsureStreams(ctx, bus.StreamOptions{}))
	stored := func() uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := b.JS.Stream(ctx, contract.RequestStream)
		require.NoError(t, err)
		info, err := st.Info(ctx)
		require.NoError(t, err)
		return info.State.Msgs
	}
	return url, stored
}

// usersServer has alice (everything), limited (requests for target "allowed" only), an NKey
// user and the admin.
func usersServer(t *testing.T) (url, seedFile string, stored func() uint64) {
	t.Helper()
	seedFile, pub := natsauthtest.NKeyUser(t)
	url, stored = authServer(t, &server.Options{
		Users: []*server.User{
			{Username: adminUsr, Password: adminPW},
			{Username: "alice", Password: alicePW},
			{Username: "limited", Password: limitPW, Permissions: natsauthtest.Perms(
				[]string{"confiture.requests.allowed"}, []string{"_INBOX.>"})},
		},
		Nkeys: []*server.NkeyUser{{Nkey: pub}},
	}, natsauth.Options{User: adminUsr, Password: adminPW})
	return url, seedFile, stored
}

// requirePublished checks that submit published and the request reached the stream.
func requirePublished(t *testing.T, r result, stored func() uint64, want uint64) {
	t.Helper()
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "published request ", r)
	require.Equal(t, want, stored(), r)
}

func TestSubmitWithEachNATSAuthMethod(t *testing.T) {
	t.Parallel()
	dir := validDir(t)
	url, seed, stored := usersServer(t)
	pwFile := natsauthtest.WriteFile(t, "pw", []byte(alicePW+"\n"))
	n := uint64(0)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"user and password flags", nil, []string{"--nats-user", "alice", "--nats-password", alicePW}},
		{"password from the environment", map[string]string{"CONFITURE_NATS_PASSWORD": alicePW}, []string{"--nats-user", "alice"}},
		{"user and password from the environment", map[string]string{"CONFITURE_NATS_USER": "alice", "CONFITURE_NATS_PASSWORD": alicePW}, nil},
		{"password file", nil, []string{"--nats-user", "alice", "--nats-password-file", pwFile}},
		{"nkey", nil, []string{"--nats-nkey", seed}},
		{"nkey flag replaces the environment's user", map[string]string{"CONFITURE_NATS_USER": "bob"}, []string{"--nats-nkey", seed}},
		{"restricted user on its target", nil, []string{"--nats-user", "limited", "--nats-password", limitPW, "--target", "allowed"}},
	} {
		r := submitEnv(t, testEnv(tc.env), append([]string{dir, "--nats-url", url}, tc.args...)...)
		n++
		requirePublished(t, r, stored, n)
		require.NotContains(t, r.stdout+r.stderr, alicePW, tc.name)
	}

	t.Run("token", func(t *testing.T) {
		t.Parallel()
		url, stored := authServer(t, &server.Options{Authorization: tokenPW}, natsauth.Options{Token: tokenPW})
		r := submit(t, dir, "--nats-url", url, "--nats-token", tokenPW)
		requirePublished(t, r, stored, 1)
		r = submitEnv(t, testEnv(map[string]string{"CONFITURE_NATS_TOKEN": tokenPW}), dir, "--nats-url", url)
		requirePublished(t, r, stored, 2)
		r = submit(t, dir, "--nats-url", url, "--nats-token-file", natsauthtest.WriteFile(t, "token", []byte(tokenPW)))
		requirePublished(t, r, stored, 3)
		r = submit(t, dir, "--nats-url", url, "--nats-token", "wrong-"+tokenPW)
		require.Equal(t, ExitFailed, r.code, r)
		require.Contains(t, r.stderr, "error: NATS authorization failed at "+url+": the server refused a token", r)
		require.NotContains(t, r.stderr, tokenPW, r)
	})
	t.Run("credentials file", func(t *testing.T) {
		t.Parallel()
		op := natsauthtest.NewOperator(t)
		opts := &server.Options{}
		op.Configure(opts)
		admin := op.Creds(t, "admin", nil, nil)
		url, stored := authServer(t, opts, natsauth.Options{Creds: admin})
		creds := op.Creds(t, "deployer", []string{"confiture.requests.app"}, []string{"_INBOX.>"})
		r := submit(t, dir, "--nats-url", url, "--nats-creds", creds, "--target", "app")
		requirePublished(t, r, stored, 1)
		r = submitEnv(t, testEnv(map[string]string{"CONFITURE_NATS_CREDS": creds}), dir, "--nats-url", url, "--target", "default")
		require.Equal(t, ExitFailed, r.code, r)
		require.Contains(t, r.stderr, "permission denied", r)
	})
	t.Run("TLS with a CA and a client certificate", func(t *testing.T) {
		t.Parallel()
		ca := natsauthtest.NewCA(t)
		cert, key := ca.ClientCert(t, "submit")
		opts := &server.Options{Users: []*server.User{{Username: "alice", Password: alicePW}}}
		ca.ServerTLS(t, opts, true)
		adminCert, adminKey := ca.ClientCert(t, "admin")
		url, stored := authServer(t, opts, natsauth.Options{User: "alice", Password: alicePW, CA: ca.File, Cert: adminCert, Key: adminKey})
		require.True(t, strings.HasPrefix(url, "tls://"), url)
		r := submitEnv(t, testEnv(map[string]string{"CONFITURE_NATS_PASSWORD": alicePW}), dir, "--nats-url", url,
			"--nats-user", "alice", "--nats-ca", ca.File, "--nats-cert", cert, "--nats-key", key)
		requirePublished(t, r, stored, 1)
		// The follow command repeats the security flags, but not the password.
		require.Contains(t, r.stdout, "--nats-user alice --nats-ca "+ca.File+" --nats-cert "+cert+" --nats-key "+key+" --wait", r)

		r = submit(t, dir, "--nats-url", url, "--nats-user", "alice", "--nats-password", alicePW)
		require.Equal(t, ExitFailed, r.code, r)
		require.Contains(t, r.stderr, "error: NATS TLS failed at "+url+": the server's certificate is not signed by a CA this client trusts", r)
		require.Contains(t, r.stderr, "hint: check --nats-ca", r)
		r = submit(t, dir, "--nats-url", url, "--nats-user", "alice", "--nats-password", alicePW, "--nats-ca", ca.File)
		require.Equal(t, ExitFailed, r.code, r)
		require.Contains(t, r.stderr, "error: NATS TLS failed at "+url+": ", r)
		require.Contains(t, r.stderr, "requires a client certificate", r)
		require.NotContains(t, r.stderr, alicePW, r)
	})
}

func TestSubmitRefusedByNATS(t *testing.T) {
	t.Parallel()
	dir := validDir(t)
	url, _, stored := usersServer(t)

	r := submit(t, dir, "--nats-url", url, "--wait")
	require.Equal(t, ExitFailed, r.code, r)
	require.Equal(t, "error: NATS authorization failed at "+url+": the server requires credentials and none were given (nats: Authorization Violation): give --nats-creds, --nats-nkey, --nats-user with a password, or a token\n"+
		"hint: give the credentials this server expects (--nats-creds, --nats-nkey, --nats-user with $CONFITURE_NATS_PASSWORD, or $CONFITURE_NATS_TOKEN; see 'submit --help'); nothing was published\n", r.stderr)

	r = submitEnv(t, testEnv(map[string]string{"CONFITURE_NATS_PASSWORD": "wrong-" + alicePW}), dir, "--nats-url", url, "--nats-user", "alice")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, `error: NATS authorization failed at `+url+`: the server refused user "alice" (nats: Authorization Violation)`, r)
	require.NotContains(t, r.stderr, alicePW, r)

	// Credentials in the URL are refused the same way, and never shown.
	withPW := strings.Replace(url, "nats://", "nats://alice:wrong-"+alicePW+"@", 1)
	r = submit(t, dir, "--nats-url", withPW)
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, "NATS authorization failed at nats://alice:xxxxx@", r)
	require.NotContains(t, r.stderr, alicePW, r)

	// A user allowed requests for one target only: another target is refused at once.
	start := time.Now()
	r = submitEnv(t, testEnv(map[string]string{"CONFITURE_NATS_PASSWORD": limitPW}), dir, "--nats-url", url, "--nats-user", "limited", "--target", "other", "--wait")
	require.Less(t, time.Since(start), 10*time.Second, "a refused publish must not wait for the publish timeout")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, `error: could not publish request `, r)
	require.Contains(t, r.stderr, ` on confiture.requests.other at `+url+`: permission denied: the NATS server does not allow this user to publish on confiture.requests.other`, r)
	require.Contains(t, r.stderr, "hint: this NATS user may not publish requests for target other", r)
	require.Zero(t, stored(), "nothing reached the stream")
}

func TestSubmitNATSAuthUsageErrors(t *testing.T) {
	t.Parallel()
	dir := validDir(t)
	missing := filepath.Join(t.TempDir(), "missing.nk")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"missing seed", nil, []string{"--nats-nkey", missing}, "error: NATS NKey seed file " + missing + ": no such file"},
		{"two methods", nil, []string{"--nats-user", "alice", "--nats-password", alicePW, "--nats-token", tokenPW}, "choose one method, got a user and password and a token"},
		{"user without password", nil, []string{"--nats-user", "alice"}, `user "alice" has no password`},
		{"cert without key", nil, []string{"--nats-cert", missing}, "has no key"},
		{"bad TLS variable", map[string]string{"CONFITURE_NATS_TLS": "maybe"}, nil, `CONFITURE_NATS_TLS: "maybe" is not true or false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := submitEnv(t, testEnv(tc.env), append([]string{dir, "--nats-url", "nats://127.0.0.1:1"}, tc.args...)...)
			require.Equal(t, ExitUsage, r.code, r)
			require.Contains(t, r.stderr, tc.want, r)
			require.NotContains(t, r.stderr, "connect", r)
			require.NotContains(t, r.stderr, alicePW, r)
			require.NotContains(t, r.stderr, tokenPW, r)
		})
	}
}

func TestHelpListsNATSSecurityFlags(t *testing.T) {
	t.Parallel()
	r := submit(t, "--help")
	require.Equal(t, ExitOK, r.code, r)
	for _, f := range []string{"--nats-creds", "--nats-nkey", "--nats-user", "--nats-password", "--nats-password-file", "--nats-token", "--nats-token-file", "--nats-ca", "--nats-cert", "--nats-key", "--nats-tls", "CONFITURE_NATS_PASSWORD"} {
		require.Contains(t, r.stdout, f)
	}
}
