package worker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/jobs"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

func TestConfigWithDefaults(t *testing.T) {
	t.Parallel()
	cfg := Config{}.WithDefaults()
	wantDB := os.Getenv("DATABASE_URL")
	if wantDB == "" {
		wantDB = DefaultDatabaseURL
	}
	require.Equal(t, wantDB, cfg.DatabaseURL)
	require.Empty(t, cfg.NATSURL, "no URL: embedded NATS")
	require.Equal(t, "confiture_queue", cfg.QueueSchema)
	require.Equal(t, "confiture_river", cfg.RiverSchema)
	require.Equal(t, []target.Config{{Name: "default", DSN: wantDB}}, cfg.Targets)
	require.Equal(t, ".confiture", cfg.DataDir)
	require.Equal(t, 10, cfg.Concurrency)
	require.Equal(t, 50, cfg.MaxServerConns)
	require.Equal(t, 5, cfg.MaxAttempts)
	require.Equal(t, time.Second, cfg.RetryBackoff)
	require.Equal(t, time.Minute, cfg.RetryBackoffMax)
	require.Equal(t, 30*time.Minute, cfg.PhaseTimeout)
	require.Equal(t, 30*time.Second, cfg.ShutdownTimeout)
	require.Equal(t, 1<<20, cfg.MaxRequestBytes)
	require.Equal(t, time.Hour, cfg.RequestDuplicateWindow)
	require.Equal(t, time.Millisecond, cfg.FetchCooldown)
	require.Equal(t, 100*time.Millisecond, cfg.FetchPollInterval)
	require.Equal(t, 5*time.Second, cfg.HeartbeatInterval)
	require.Equal(t, 15*time.Second, cfg.LivenessWindow, "three heartbeats")
	require.NotNil(t, cfg.Logger)
	require.NoError(t, cfg.Validate())

	// The default target follows the configured queue database; set values are kept.
	cfg = Config{DatabaseURL: "postgres://u@db.example/q", Concurrency: 3, PhaseTimeout: time.Hour}.WithDefaults()
	require.Equal(t, []target.Config{{Name: "default", DSN: "postgres://u@db.example/q"}}, cfg.Targets)
	require.Equal(t, 3, cfg.Concurrency)
	require.Equal(t, time.Hour, cfg.PhaseTimeout)
	require.NoError(t, cfg.Validate())
}

// The pipeline's settings are defaulted where the pipeline defaults them, so the configuration
// the worker logs is the one its pipeline runs with: the backfill slice is capped at half the
// phase timeout (before, the worker's configuration said 0 and the pipeline used its own).
func TestPipelineSettingsTakeThePipelinesDefaults(t *testing.T) {
	t.Parallel()
	cfg := Config{}.WithDefaults()
	p := (&jobs.Config{}).WithDefaults()
	require.Equal(t, []any{p.MaxAttempts, p.RetryBackoff, p.RetryBackoffMax, p.OutageTolerance, p.ReconcileInterval, p.PhaseTimeout, p.BackfillSlice},
		[]any{cfg.MaxAttempts, cfg.RetryBackoff, cfg.RetryBackoffMax, cfg.OutageTolerance, cfg.ReconcileInterval, cfg.PhaseTimeout, cfg.BackfillSlice})
	require.Equal(t, time.Minute, cfg.BackfillSlice)

	cfg = Config{PhaseTimeout: time.Minute, BackfillSlice: 5 * time.Minute}.WithDefaults()
	require.Equal(t, 30*time.Second, cfg.BackfillSlice, "at most half the phase timeout")
	cfg = Config{BackfillSlice: -time.Second}.WithDefaults()
	require.ErrorContains(t, cfg.Validate(), "backfill_slice", "a bad value is kept for Validate")
}

func TestConfigValidateNamesTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		field string
		edit  func(*Config)
	}{
		{"concurrency", func(c *Config) { c.Concurrency = -1 }},
		{"max_server_conns", func(c *Config) { c.MaxServerConns = -1 }},
		{"max_attempts", func(c *Config) { c.MaxAttempts = -2 }},
		{"retry_backoff", func(c *Config) { c.RetryBackoff = -time.Second }},
		{"retry_backoff_max", func(c *Config) { c.RetryBackoff, c.RetryBackoffMax = time.Minute, time.Second }},
		{"phase_timeout", func(c *Config) { c.PhaseTimeout = -2 * time.Second }},
		// No "none": River rescues a crashed worker's job only after its timeout.
		{"phase_timeout", func(c *Config) { c.PhaseTimeout = -1 }},
		{"shutdown_timeout", func(c *Config) { c.ShutdownTimeout = -time.Second }},
		{"max_request_bytes", func(c *Config) { c.MaxRequestBytes = 100 }},
		{"fetch_cooldown", func(c *Config) { c.FetchCooldown = time.Microsecond }},
		{"queue_schema", func(c *Config) { c.QueueSchema = "public" }},
		{"river_schema", func(c *Config) { c.RiverSchema = "public" }},
		{"river_schema", func(c *Config) { c.RiverSchema = c.QueueSchema }},
		{"liveness_window", func(c *Config) { c.LivenessWindow = c.HeartbeatInterval }},
		{"heartbeat interval", func(c *Config) { c.HeartbeatInterval = -time.Second }},
	} {
		cfg := Config{}.WithDefaults()
		tc.edit(&cfg)
		err := cfg.Validate()
		require.Error(t, err, tc.field)
		require.Contains(t, err.Error(), tc.field)
		// New refuses it too, before opening anything.
		_, err = New(cfg)
		require.ErrorContains(t, err, tc.field)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "worker.yaml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

const sampleYAML = `nats_url: nats://nats.example:4222
database_url: postgres://worker@db.example/queue
concurrency: 3
max_attempts: 7
phase_timeout: 30s
shutdown_timeout: 2m
retry_backoff: 250ms
request_duplicate_window: 1h30m
liveness_window: 1m
max_server_conns: 20
targets:
  - name: default
    dsn: postgres://worker@db.example/app
  - name: reporting
    dsn: postgres://worker@db.example/reporting
    schema: rpt
    max_conns: 2
`

func TestLoadFile(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFile(writeFile(t, sampleYAML))
	require.NoError(t, err)
	require.Equal(t, "nats://nats.example:4222", cfg.NATSURL)
	require.Equal(t, "postgres://worker@db.example/queue", cfg.DatabaseURL)
	require.Equal(t, 3, cfg.Concurrency)
	require.Equal(t, 7, cfg.MaxAttempts)
	require.Equal(t, 30*time.Second, cfg.PhaseTimeout)
	require.Equal(t, 2*time.Minute, cfg.ShutdownTimeout)
	require.Equal(t, 250*time.Millisecond, cfg.RetryBackoff)
	require.Equal(t, 90*time.Minute, cfg.RequestDuplicateWindow)
	require.Equal(t, time.Minute, cfg.LivenessWindow)
	require.Equal(t, 20, cfg.MaxServerConns)
	require.Equal(t, []target.Config{
		{Name: "default", DSN: "postgres://worker@db.example/app"},
		{Name: "reporting", DSN: "postgres://worker@db.example/reporting", Schema: "rpt", MaxConns: 2},
	}, cfg.Targets)
	// Unset fields stay zero, for WithDefaults.
	require.Zero(t, cfg.MaxRequestBytes)
	require.NoError(t, cfg.WithDefaults().Validate())
}

func TestLoadFileRejectsUnknownKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ yaml, key string }{
		{"concurency: 3\n", "concurency"},
		{"targets:\n  - name: app\n    dns: postgres://u@h/app\n", "dns"},
	} {
		_, err := LoadFile(writeFile(t, tc.yaml))
		require.Error(t, err)
		require.Contains(t, err.Error(), tc.key)
	}
}

func TestLoadFileErrors(t *testing.T) {
	t.Parallel()
	_, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)

	_, err = LoadFile(writeFile(t, "phase_timeout: soon\n"))
	require.Error(t, err, "a duration that does not parse")

	_, err = LoadFile(writeFile(t, "concurrency: [1\n"))
	require.Error(t, err, "not YAML")
}

// env is a fake environment for ApplyEnv.
type env map[string]string

func (e env) get(k string) string { return e[k] }

func (e env) list() []string {
	out := make([]string, 0, len(e))
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

func TestApplyEnv(t *testing.T) {
	t.Parallel()
	e := env{
		"CONFITURE_NATS_URL":         "nats://env.example:4222",
		"CONFITURE_DATABASE_URL":     "postgres://env@db/queue",
		"CONFITURE_CONCURRENCY":      "4",
		"CONFITURE_MAX_ATTEMPTS":     "2",
		"CONFITURE_PHASE_TIMEOUT":    "45s",
		"CONFITURE_SHUTDOWN_TIMEOUT": "1m",
		"CONFITURE_QUEUE_SCHEMA":     "q",
		"CONFITURE_LIVENESS_WINDOW":  "40s",
		"CONFITURE_MAX_SERVER_CONNS": "12",
		"CONFITURE_TARGET_REPORTING": "postgres://env@db/reporting",
		"CONFITURE_TARGET_EMPTY":     "",
		"OTHER_TARGET_X":             "postgres://env@db/x",
	}
	var cfg Config
	require.NoError(t, ApplyEnv(&cfg, e.get, e.list()))
	require.Equal(t, "nats://env.example:4222", cfg.NATSURL)
	require.Equal(t, "postgres://env@db/queue", cfg.DatabaseURL)
	require.Equal(t, 4, cfg.Concurrency)
	require.Equal(t, 2, cfg.MaxAttempts)
	require.Equal(t, 45*time.Second, cfg.PhaseTimeout)
	require.Equal(t, time.Minute, cfg.ShutdownTimeout)
	require.Equal(t, "q", cfg.QueueSchema)
	require.Equal(t, 40*time.Second, cfg.LivenessWindow)
	require.Equal(t, 12, cfg.MaxServerConns)
	require.Equal(t, []target.Config{{Name: "reporting", DSN: "postgres://env@db/reporting"}}, cfg.Targets)

	// With no variables, nothing changes.
	before := Config{Concurrency: 9, NATSURL: "nats://keep"}
	after := before
	require.NoError(t, ApplyEnv(&after, env{}.get, nil))
	require.Equal(t, before, after)
}

func TestApplyEnvBadValuesNameTheVariable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, value string }{
		{"CONFITURE_CONCURRENCY", "many"},
		{"CONFITURE_MAX_ATTEMPTS", "1.5"},
		{"CONFITURE_EMBEDDED_NATS_PORT", "x"},
		{"CONFITURE_MAX_SERVER_CONNS", "lots"},
		{"CONFITURE_PHASE_TIMEOUT", "30"},
		{"CONFITURE_SHUTDOWN_TIMEOUT", "soon"},
	} {
		cfg := Config{Concurrency: 3, PhaseTimeout: time.Minute, ShutdownTimeout: time.Minute}
		e := env{tc.name: tc.value}
		err := ApplyEnv(&cfg, e.get, e.list())
		require.Error(t, err, tc.name)
		require.Contains(t, err.Error(), tc.name)
		require.Equal(t, 3, cfg.Concurrency, "a bad value changes nothing")
		require.Equal(t, time.Minute, cfg.PhaseTimeout)
		require.Equal(t, time.Minute, cfg.ShutdownTimeout)
	}

	// Every bad variable is reported at once.
	e := env{"CONFITURE_CONCURRENCY": "many", "CONFITURE_PHASE_TIMEOUT": "soon"}
	var cfg Config
	err := ApplyEnv(&cfg, e.get, e.list())
	require.ErrorContains(t, err, "CONFITURE_CONCURRENCY")
	require.ErrorContains(t, err, "CONFITURE_PHASE_TIMEOUT")
}

func TestEnvOverridesFile(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFile(writeFile(t, sampleYAML))
	require.NoError(t, err)
	e := env{
		"CONFITURE_NATS_URL":         "nats://env.example:4222",
		"CONFITURE_CONCURRENCY":      "8",
		"CONFITURE_PHASE_TIMEOUT":    "5m",
		"CONFITURE_MAX_SERVER_CONNS": "30",
		"CONFITURE_TARGET_REPORTING": "postgres://env@db/reporting2",
		"CONFITURE_TARGET_EXTRA":     "postgres://env@db/extra",
	}
	require.NoError(t, ApplyEnv(&cfg, e.get, e.list()))
	require.Equal(t, "nats://env.example:4222", cfg.NATSURL)
	require.Equal(t, 8, cfg.Concurrency)
	require.Equal(t, 5*time.Minute, cfg.PhaseTimeout)
	require.Equal(t, 30, cfg.MaxServerConns)
	// What the environment does not set keeps the file's value.
	require.Equal(t, 7, cfg.MaxAttempts)
	require.Equal(t, 2*time.Minute, cfg.ShutdownTimeout)
	require.Equal(t, "postgres://worker@db.example/queue", cfg.DatabaseURL)
	// A target variable replaces the DSN of a configured target and keeps its other settings.
	require.Equal(t, []target.Config{
		{Name: "default", DSN: "postgres://worker@db.example/app"},
		{Name: "reporting", DSN: "postgres://env@db/reporting2", Schema: "rpt", MaxConns: 2},
		{Name: "extra", DSN: "postgres://env@db/extra"},
	}, cfg.Targets)
	require.NoError(t, cfg.WithDefaults().Validate())
}

func TestSetTarget(t *testing.T) {
	t.Parallel()
	var cfg Config
	require.NoError(t, SetTarget(&cfg, "app", "postgres://u@h/app"))
	require.NoError(t, SetTarget(&cfg, "app", "postgres://u@h/app2"))
	require.Equal(t, []target.Config{{Name: "app", DSN: "postgres://u@h/app2"}}, cfg.Targets)
	require.Error(t, SetTarget(&cfg, "", "postgres://u@h/x"))
	err := SetTarget(&cfg, "x", "")
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), `"x"`))
}

// max_server_conns reaches the targets' pools: each is as large as its server allows.
func TestMaxServerConnsReachesTheTargetPools(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	w, err := New(Config{MaxServerConns: 7, Targets: []target.Config{{Name: "app", DSN: dsn}}, DataDir: t.TempDir()}.WithDefaults())
	require.NoError(t, err)
	t.Cleanup(w.targets.Close)
	tg, err := w.targets.Get("app")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := tg.Conn(target.WithTarget(ctx, tg))
	require.NoError(t, err)
	require.EqualValues(t, 7, pool.Config().MaxConns)
}
