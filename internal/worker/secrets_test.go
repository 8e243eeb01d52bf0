package worker

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/logging"
	"github.com/confiture-io/confiture-worker/internal/syncbuf"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// TestSecretsNeverReachASink runs a failing migration against a target whose DSN holds a
// password, and a request for a target that cannot be reached, then greps the console, the
// file and the NATS log sink for the password.
func TestSecretsNeverReachASink(t *testing.T) {
	t.Parallel()
	const password = "s3cr3t-Pa55word"
	dsn := testdb.New(t)
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	u.User = url.UserPassword(u.User.Username(), password) // trust auth accepts it
	withPassword := u.String()
	unreachable := "postgres://app:" + password + "@127.0.0.1:1/nowhere?connect_timeout=1"

	console := &syncbuf.Buffer{}
	logFile := filepath.Join(t.TempDir(), "worker.log")
	lg, err := logging.New(logging.Config{
		Console: logging.ConsoleConfig{Format: "json", Level: "debug"},
		File:    logging.FileConfig{Path: logFile, Level: "debug"},
		NATS:    logging.NATSConfig{Enabled: true, Level: "debug"},
	}, console, false)
	require.NoError(t, err)
	t.Cleanup(func() { _ = lg.Close() })

	b := setup(t, func(c *Config) {
		c.DatabaseURL = withPassword
		c.Targets = []target.Config{{Name: "default", DSN: withPassword}, {Name: "down", DSN: unreachable}}
		c.Logger, c.LogSink = lg.Logger, lg
		c.MaxAttempts = 1
		c.OutageTolerance = time.Second // the unreachable target is retried this long, then fails the run
	})
	var natsLogs syncbuf.Buffer
	sub, err := b.client.NC.Subscribe("confiture.logs.>", func(m *nats.Msg) { _, _ = natsLogs.Write(append(m.Data, '\n')) })
	require.NoError(t, err)
	defer sub.Unsubscribe() //nolint:errcheck

	evs := b.run(t, request("up", mig("001", "fails", "CREATE TABLEE nope (id int);", "")))
	require.Equal(t, contract.KindRunFailed, last(evs).Kind)
	req := request("up", mig("001", "never", "SELECT 1;", ""))
	req.Target = "down"
	evs = b.run(t, req)
	require.Equal(t, contract.KindRunFailed, last(evs).Kind)
	require.Equal(t, contract.CodeUnavailable, last(evs).Error.Code)
	require.NotEmpty(t, ofKind(evs, contract.KindRunRetrying), "an unreachable target is retried first")
	for _, e := range evs {
		if e.Error != nil {
			require.NotContains(t, e.Error.Message, password, "events carry no secret")
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, lg.Flush(ctx))
	require.Eventually(t, func() bool {
		return strings.Contains(natsLogs.String(), `"msg":"run failed"`)
	},
		10*time.Second, 20*time.Millisecond, "the NATS sink publishes")
	file, err := os.ReadFile(logFile)
	require.NoError(t, err)
	for name, out := range map[string]string{"console": console.String(), "file": string(file), "nats": natsLogs.String()} {
		require.NotEmpty(t, out, name)
		require.NotContains(t, out, password, "the %s sink shows the password", name)
	}
	require.Contains(t, console.String(), "127.0.0.1:1", "the unreachable target's failure was logged (without its password)")
	require.Contains(t, console.String(), `"msg":"configuration"`, "the configuration dump was logged (without passwords)")
}

// TestHookRecordsCarryTheRunOnce checks the logging contract on a real run: each hook record
// carries run, request id, target, migration, phase, hook, attempt and job id, each once.
func TestHookRecordsCarryTheRunOnce(t *testing.T) {
	t.Parallel()
	console := &syncbuf.Buffer{}
	lg, err := logging.New(logging.Config{Console: logging.ConsoleConfig{Format: "json", Level: "debug"}}, console, false)
	require.NoError(t, err)
	t.Cleanup(func() { _ = lg.Close() })
	b := setup(t, func(c *Config) { c.Logger, c.LogSink = lg.Logger, lg })
	evs := b.run(t, request("up", mig("001", "logged", "SELECT 1;", "", sqlHook("after_ddl", "noisy", "SELECT 1"))))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind)
	// The console sink writes from its own goroutine: wait until it has written everything.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, lg.Flush(ctx))

	seen := map[string]bool{}
	for _, line := range strings.Split(console.String(), "\n") {
		for _, msg := range []string{"executing_hooks", "hook_start", "hook_completed", "phase_completed"} {
			if !strings.Contains(line, `"msg":"`+msg+`"`) {
				continue
			}
			seen[msg] = true
			for _, key := range []string{"run", "request_id", "target", "migration", "phase", "attempt", "job_id"} {
				require.Equal(t, 1, strings.Count(line, `"`+key+`":`), "%s carries %s once: %s", msg, key, line)
			}
			if msg == "hook_start" || msg == "hook_completed" {
				require.Contains(t, line, `"hook":"noisy"`)
			}
		}
	}
	require.Len(t, seen, 4, "every record of the contract was logged: %v", seen)
}
