package logging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRedactAttr(t *testing.T) {
	t.Parallel()

	u, err := url.Parse("postgres://app:hunter2@db:5432/app?sslmode=disable")
	require.NoError(t, err)
	for _, tc := range []struct {
		attr slog.Attr
		want string
	}{
		{slog.String("dsn", "postgres://app:hunter2@db/app"), "postgres://app:xxxxx@db/app"},
		{slog.String("dsn", "host=db user=app password=hunter2 dbname=app"), "host=db user=app password=xxxxx dbname=app"},
		{slog.String("database_url", "postgresql://app:hunter2@db/app"), "postgresql://app:xxxxx@db/app"},
		{slog.String("nats", "nats://bot:hunter2@nats:4222"), "nats://bot:xxxxx@nats:4222"},
		{slog.String("error", `connect to "postgres://app:hunter2@db/app": refused`), `connect to "postgres://app:xxxxx@db/app": refused`},
		{slog.Any("error", fmt.Errorf("open: %w", errors.New("postgres://app:hunter2@db/app refused"))), "open: postgres://app:xxxxx@db/app refused"},
		{slog.String("msg", "retrying with password='hunter2'"), "retrying with password=xxxxx"},
		{slog.Any("target_url", u), "postgres://app:xxxxx@db:5432/app?sslmode=disable"},
		{slog.Any("dsn", struct{ S string }{"postgres://app:hunter2@db/app"}), "{postgres://app:xxxxx@db/app}"},
		{slog.String("PGPASSWORD", "hunter2"), "xxxxx"},
		{slog.String("client_secret", "hunter2"), "xxxxx"},
		{slog.Any("api_token", []byte("hunter2")), "xxxxx"},
		// Nothing to hide: unchanged.
		{slog.String("hook", "backfill"), "backfill"},
		{slog.String("error", "password authentication failed for user app"), "password authentication failed for user app"},
		{slog.String("email", "ops@example.com"), "ops@example.com"},
		{slog.String("url", "https://example.com/x"), "https://example.com/x"},
		{slog.Int("token_count", 5), "5"},
		{slog.Bool("password_set", true), "true"},
		{slog.Duration("secret_ttl", time.Second), "1s"},
	} {
		got := redactAttr(nil, tc.attr)
		require.Equal(t, tc.attr.Key, got.Key)
		require.Equal(t, tc.want, got.Value.String(), "%s=%v", tc.attr.Key, tc.attr.Value)
	}
}

// TestRedactAttrDoesNotAllocate is not parallel: testing.AllocsPerRun refuses to run in a
// parallel test. Every attribute of every record goes through redactAttr.
func TestRedactAttrDoesNotAllocate(t *testing.T) {
	for _, a := range []slog.Attr{
		slog.String("hook", "backfill_orders"),
		slog.String("error", "password authentication failed for user app"),
		slog.Int64("rows_affected", 100000),
		slog.Any("error", errors.New("connection refused")),
	} {
		require.Zero(t, testing.AllocsPerRun(100, func() { redactAttr(nil, a) }), a.Key)
	}
}

// TestSecretsNeverReachASink logs what a failing connection would log, with every sink on, and
// looks for the password in every sink's output.
func TestSecretsNeverReachASink(t *testing.T) {
	t.Parallel()

	const dsn = "postgres://u:pw@h/db"
	path := filepath.Join(t.TempDir(), "worker.log")
	for _, format := range []string{"json", "text"} {
		l, console := setup(t, Config{
			Console:          ConsoleConfig{Format: format, Level: "debug"},
			File:             FileConfig{Path: path + "." + format, Level: "debug"},
			NATS:             NATSConfig{Enabled: true, Level: "debug"},
			DropWarnInterval: -1,
		})
		pub := &recordingPublisher{}
		l.SetPublisher(pub)

		connErr := fmt.Errorf("connect to target default (%s): %w", dsn, errors.New("connection refused"))
		log := l.Logger.With("target_dsn", dsn) // pre-formatted by each handler's WithAttrs
		log.Error("hook_failed", "dsn", dsn, "error", connErr, "error_text", connErr.Error(),
			slog.Group("target", "url", dsn, "password", "pw"))
		log.Info("connecting to " + dsn)
		log.Debug("config", "database_url", dsn, "conninfo", "host=h user=u password=pw dbname=db")

		require.NoError(t, l.Flush(context.Background()))
		require.Len(t, pub.messages(), 3)
		file, err := os.ReadFile(path + "." + format)
		require.NoError(t, err)
		outputs := map[string]string{"console": console.String(), "file": string(file)}
		for i, m := range pub.messages() {
			outputs[fmt.Sprintf("nats %d", i)] = string(m.data)
		}
		for sink, out := range outputs {
			require.NotEmpty(t, out, sink)
			require.NotContains(t, out, "pw", "%s (%s console): %s", sink, format, out)
			require.Contains(t, out, "xxxxx", sink)
		}
		require.Contains(t, outputs["file"], "postgres://u:xxxxx@h/db", "the record still names the server")
	}
}
