package submitcmd

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/logging"
	"github.com/confiture-io/confiture-worker/internal/natsauth"
	"github.com/confiture-io/confiture-worker/internal/natsauth/natsauthtest"
	"github.com/confiture-io/confiture-worker/internal/syncbuf"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
	"github.com/confiture-io/confiture-worker/internal/worker"
)

// TestE2EExampleNATSServerConfig runs a worker and submit against examples/nats/nats-server.conf:
// the worker's user can do all a worker does (streams, intake, events, logs), the submitter
// runs a migration on its target to the end and is refused any other, and the worker does not
// start without its credentials.
func TestE2EExampleNATSServerConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs PostgreSQL")
	}
	const workerPW, deployPW, observerPW = "w0rker-s3cr3t", "depl0y-s3cr3t", "0bserver-s3cr3t"
	t.Setenv("CONFITURE_WORKER_NATS_PASSWORD", workerPW)
	t.Setenv("DEPLOY_APP_NATS_PASSWORD", deployPW)
	t.Setenv("OBSERVER_NATS_PASSWORD", observerPW)
	opts, err := server.ProcessConfigFile("../../examples/nats/nats-server.conf")
	require.NoError(t, err)
	opts.StoreDir = t.TempDir()
	url := natsauthtest.Start(t, opts).ClientURL()

	// The observer sees the worker's log records on NATS.
	observerOpts, err := natsauth.Options{User: "observer", Password: observerPW}.NATSOptions()
	require.NoError(t, err)
	observer, err := nats.Connect(url, observerOpts...)
	require.NoError(t, err)
	t.Cleanup(observer.Close)
	logRecords, err := observer.SubscribeSync("confiture.logs.>")
	require.NoError(t, err)

	dsn := testdb.New(t)
	newWorker := func(auth natsauth.Options, logs *syncbuf.Buffer) (*worker.Worker, *logging.Logging) {
		lg, err := logging.New(logging.Config{
			Console: logging.ConsoleConfig{Format: logging.FormatJSON, Level: "debug"},
			NATS:    logging.NATSConfig{Enabled: true},
		}, logs, false)
		require.NoError(t, err)
		t.Cleanup(func() { _ = lg.Close() })
		w, err := worker.New(worker.Config{
			NATSURL: url, NATS: auth,
			DatabaseURL: dsn, Targets: []target.Config{{Name: "app", DSN: dsn}},
			DataDir: t.TempDir(), HTTPAddr: "off", Logger: lg.Logger, LogSink: lg,
			MaxAttempts: 2, RetryBackoff: 10 * time.Millisecond, RetryBackoffMax: 20 * time.Millisecond,
			ShutdownTimeout: 5 * time.Second,
		})
		require.NoError(t, err)
		return w, lg
	}

	// Without credentials, or with the wrong password, the worker does not start.
	for _, auth := range []natsauth.Options{{}, {User: "confiture-worker", Password: "wrong-" + workerPW}} {
		var logs syncbuf.Buffer
		w, _ := newWorker(auth, &logs)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := w.Start(ctx)
		cancel()
		require.Error(t, err)
		require.Contains(t, err.Error(), "NATS authorization failed at "+url+": ")
		require.NotContains(t, err.Error()+logs.String(), workerPW)
	}

	var logs syncbuf.Buffer
	w, _ := newWorker(natsauth.Options{User: "confiture-worker", Password: workerPW}, &logs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, w.Stop(ctx))
	})
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), `"nats":{"auth":"user","user":"confiture-worker","password":"xxxxx"}`)
	}, 10*time.Second, 10*time.Millisecond, "the configuration record shows the NATS options, the password redacted")

	env := testEnv(map[string]string{"CONFITURE_NATS_PASSWORD": deployPW})
	r := submitEnv(t, env, usersDir(t), "--nats-url", url, "--nats-user", "deploy-app", "--target", "app", "--wait", "--timeout", "1m")
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "run completed", r)

	r = submitEnv(t, env, usersDir(t), "--nats-url", url, "--nats-user", "deploy-app", "--target", "billing")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, "permission denied: the NATS server does not allow this user to publish on confiture.requests.billing", r)

	// The service API under the same permissions: the submitter sees and acts on its own
	// targets only; the observer reads every target and cannot act.
	r = submitEnv(t, env, "status", "--nats-url", url, "--nats-user", "deploy-app", "--target", "app")
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "target app: 2 migration(s) applied", r)
	r = submitEnv(t, env, "run", "pause", "nobody", "--nats-url", url, "--nats-user", "deploy-app", "--target", "app")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, `target "app" has no run "nobody"`, r, "the action reached the worker")
	r = submitEnv(t, env, "status", "--nats-url", url, "--nats-user", "deploy-app", "--target", "billing")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, "permission denied: the NATS server does not allow this user to publish on confiture.api.status.billing", r)
	observerEnv := testEnv(map[string]string{"CONFITURE_NATS_PASSWORD": observerPW})
	r = submitEnv(t, observerEnv, "runs", "--nats-url", url, "--nats-user", "observer", "--target", "app")
	require.Equal(t, ExitOK, r.code, r)
	require.Regexp(t, `completed\s+2\s`, r.stdout)
	r = submitEnv(t, observerEnv, "run", "fail", "nobody", "--nats-url", url, "--nats-user", "observer", "--target", "app")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, "permission denied: the NATS server does not allow this user to publish on confiture.api.action.app", r)

	msg, err := logRecords.NextMsg(10 * time.Second)
	require.NoError(t, err, "the worker's NATS log sink publishes on its authenticated connection")
	require.True(t, strings.HasPrefix(msg.Subject, "confiture.logs."), msg.Subject)

	// The worker never hit a subject its user may not use.
	require.NotContains(t, logs.String(), "Permissions Violation")
	require.NotContains(t, logs.String(), workerPW)
}
