package worker

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/natsauth"
	"github.com/confiture-io/confiture-worker/internal/natsauth/natsauthtest"
	"github.com/confiture-io/confiture-worker/internal/syncbuf"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

const natsWorkerPW = "w0rker-nats-s3cr3t"

// authConfig is a worker configuration against the NATS server at url with auth.
func authConfig(t *testing.T, dsn, url string, auth natsauth.Options, logger *slog.Logger) Config {
	return Config{
		DatabaseURL: dsn, NATSURL: url, NATS: auth, DataDir: t.TempDir(), HTTPAddr: "off",
		MaxAttempts: 2, RetryBackoff: 10 * time.Millisecond, RetryBackoffMax: 20 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second, FetchCooldown: time.Millisecond, Logger: logger,
	}
}

func startWith(t *testing.T, cfg Config) (*Worker, error) {
	t.Helper()
	w, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return w, w.Start(ctx)
}

// TestWorkerAgainstNATSRequiringAuthorization: with the right credentials the worker starts
// and runs a request; without them, or with wrong ones, Start fails and says why. Not
// parallel: it starts several workers, and the timing-sensitive fault tests run in parallel.
func TestWorkerAgainstNATSRequiringAuthorization(t *testing.T) {
	seed, pub := natsauthtest.NKeyUser(t)
	ca := natsauthtest.NewCA(t)
	opts := &server.Options{
		Users: []*server.User{{Username: "worker", Password: natsWorkerPW}},
		Nkeys: []*server.NkeyUser{{Nkey: pub}},
	}
	ca.ServerTLS(t, opts, false)
	url := natsauthtest.Start(t, opts).ClientURL()
	dsn := testdb.New(t)

	for _, tc := range []struct {
		name string
		auth natsauth.Options
		want string
	}{
		{"no credentials", natsauth.Options{CA: ca.File}, "NATS authorization failed at " + url + ": the server requires credentials and none were given"},
		{"wrong password", natsauth.Options{User: "worker", Password: "wrong-" + natsWorkerPW, CA: ca.File}, `NATS authorization failed at ` + url + `: the server refused user "worker"`},
		{"no CA", natsauth.Options{User: "worker", Password: natsWorkerPW}, "NATS TLS failed at " + url + ": the server's certificate is not signed by a CA this client trusts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			_, err := startWith(t, authConfig(t, dsn, url, tc.auth, slog.New(slog.NewJSONHandler(&logs, nil))))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error()+logs.String(), natsWorkerPW)
		})
	}

	for _, tc := range []struct {
		name  string
		auth  natsauth.Options
		shown string
	}{
		{"user and password", natsauth.Options{User: "worker", Password: natsWorkerPW, CA: ca.File},
			`"nats":{"auth":"user","user":"worker","password":"xxxxx","ca":"` + ca.File + `","tls":true}`},
		{"nkey", natsauth.Options{NKey: seed, CA: ca.File},
			`"nats":{"auth":"nkey","nkey":"` + seed + `","ca":"` + ca.File + `","tls":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			w, err := startWith(t, authConfig(t, testdb.New(t), url, tc.auth, slog.New(slog.NewJSONHandler(&logs, nil))))
			require.NoError(t, err)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				require.NoError(t, w.Stop(ctx))
			})
			require.Contains(t, logs.String(), tc.shown, "the configuration record shows the NATS options, never a password")
			require.NotContains(t, logs.String(), natsWorkerPW)

			natsOpts, err := tc.auth.NATSOptions()
			require.NoError(t, err)
			c, err := client.Connect(url, natsOpts...)
			require.NoError(t, err)
			t.Cleanup(c.Close)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			req := request("up", mig("001", "t", "CREATE TABLE t (id int);", ""))
			p, err := c.Publish(ctx, req)
			require.NoError(t, err)
			final, err := c.Wait(ctx, req.Target, p.Run, nil)
			require.NoError(t, err)
			require.Equal(t, contract.KindRunCompleted, final.Kind)
		})
	}
}

func TestEmbeddedNATSIgnoresCredentials(t *testing.T) {
	var logs syncbuf.Buffer
	cfg := authConfig(t, testdb.New(t), "", natsauth.Options{User: "worker", PasswordFile: filepath.Join(t.TempDir(), "missing")},
		slog.New(slog.NewJSONHandler(&logs, nil)))
	cfg.EmbeddedNATSPort = -1
	w, err := startWith(t, cfg)
	require.NoError(t, err, "the embedded server needs no credentials, and a missing password file does not matter to it")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, w.Stop(ctx))
	require.Contains(t, logs.String(), "the embedded server takes none, ignoring them")
}

func TestNATSOptionsFromFileAndEnv(t *testing.T) {
	t.Parallel()
	pwFile := filepath.Join(t.TempDir(), "missing-pw")
	cfg, err := LoadFile(writeFile(t, "nats_url: nats://nats.example:4222\nnats:\n  user: worker\n  password_file: "+pwFile+"\n  ca: /etc/nats/ca.pem\n"))
	require.NoError(t, err)
	require.Equal(t, natsauth.Options{User: "worker", PasswordFile: pwFile, CA: "/etc/nats/ca.pem"}, cfg.NATS)
	_, err = New(cfg)
	require.ErrorContains(t, err, "NATS password file "+pwFile+": no such file", "checked when the worker is made, before any connection")

	_, err = LoadFile(writeFile(t, "nats:\n  pasword: x\n"))
	require.ErrorContains(t, err, "pasword")

	// The environment's method replaces the file's; its TLS options add to the file's.
	e := env{"CONFITURE_NATS_TOKEN": natsWorkerPW, "CONFITURE_NATS_CERT": "/c.pem", "CONFITURE_NATS_KEY": "/k.pem"}
	require.NoError(t, ApplyEnv(&cfg, e.get, e.list()))
	require.Equal(t, natsauth.Options{Token: natsWorkerPW, CA: "/etc/nats/ca.pem", Cert: "/c.pem", Key: "/k.pem"}, cfg.NATS)

	e = env{"CONFITURE_NATS_TLS": "sometimes"}
	require.ErrorContains(t, ApplyEnv(&cfg, e.get, e.list()), "CONFITURE_NATS_TLS")

	// Two methods in one layer are an error that names both and shows neither secret.
	cfg.NATS.User, cfg.NATS.Password = "worker", natsauth.Secret(natsWorkerPW)
	_, err = New(cfg)
	require.ErrorContains(t, err, "choose one method, got a user and password and a token")
	require.False(t, strings.Contains(err.Error(), natsWorkerPW))
}
