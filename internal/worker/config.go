package worker

import (
	"context"

	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/jobs"
	"github.com/confiture-io/confiture-worker/internal/logging"
	"github.com/confiture-io/confiture-worker/internal/natsauth"
	"github.com/confiture-io/confiture-worker/internal/observe"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/targetgroup"
)

// LogSink is what the worker needs of the log sinks (implemented by *logging.Logging).
type LogSink interface {
	SetPublisher(logging.Publisher)
	Flush(ctx context.Context) error
	Collectors() []prometheus.Collector
}

// DefaultDatabaseURL is the local PostgreSQL used when neither the configuration nor
// DATABASE_URL names one.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres"

// Config is the worker's configuration. Every field has a default; the zero Config runs one
// target, "default", on the local PostgreSQL, with an embedded NATS server.
type Config struct {
	// NATSURL of the NATS server. Defaults to "" (start an embedded server with JetStream).
	NATSURL string `yaml:"nats_url"`
	// EmbeddedNATSPort is the client port of the embedded server. Defaults to 4222, or a free
	// port when 4222 is taken; -1 always picks a free port.
	EmbeddedNATSPort int `yaml:"embedded_nats_port"`
	// NATS secures the connection to the server at NATSURL: credentials (a creds file, an NKey
	// seed, a user and password, or a token) and TLS. The embedded server needs none. See
	// docs/SECURITY.md. Defaults to none.
	NATS natsauth.Options `yaml:"nats"`
	// DatabaseURL is the queue database (River, runs, outbox). Defaults to $DATABASE_URL, else
	// DefaultDatabaseURL.
	DatabaseURL string `yaml:"database_url"`
	// QueueSchema holds the worker's tables in the queue database. Defaults to
	// "confiture_queue".
	QueueSchema string `yaml:"queue_schema"`
	// RiverSchema holds River's tables. Defaults to "confiture_river".
	RiverSchema string `yaml:"river_schema"`
	// Targets the worker may change. Defaults to one target "default" on DatabaseURL.
	Targets []target.Config `yaml:"targets"`
	// TargetGroups are named sets of targets: a list, or discovered each time they are
	// resolved (the schemas of a database, the rows of a catalog query); see
	// internal/targetgroup and docs/FLEETS.md.
	TargetGroups []targetgroup.Config `yaml:"target_groups"`
	// MaxServerConns bounds the connections the targets' pools hold at once to one PostgreSQL
	// server (host:port as a target's connection string gives it), all the databases and
	// schemas on it together; a target's max_conns bounds its own share. A connection beyond
	// it waits for one to be released, closing idle ones first. The queue database's pool
	// (River) is not counted. Defaults to 50 (target.DefaultMaxServerConns).
	MaxServerConns int `yaml:"max_server_conns"`
	// DataDir holds the embedded NATS server's data. Defaults to ./.confiture.
	DataDir string `yaml:"data_dir"`
	// Concurrency is how many phases run at once in this worker. Defaults to 10.
	Concurrency int `yaml:"concurrency"`
	// MaxAttempts is how many times a phase is tried. Attempts cut short by transient trouble
	// or by a stopping worker do not count. Defaults to 5.
	MaxAttempts int `yaml:"max_attempts"`
	// OutageTolerance is how long a step keeps retrying, without using up its attempts,
	// through transient trouble: a target or the queue database refusing connections, out of
	// connection slots, starting up or shutting down (see internal/transient for the exact
	// list). After it, an attempt counts as failed. Defaults to 10m.
	OutageTolerance time.Duration `yaml:"outage_tolerance"`
	// ReconcileInterval is how often the leader looks for runs whose job ended without moving
	// them (cancelled or deleted in River UI, discarded, lost) and moves them on. Defaults to
	// 30s.
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
	// RetryBackoff is the wait before a phase's second attempt; it doubles each attempt.
	// Defaults to 1s.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// RetryBackoffMax caps the wait between attempts. Defaults to 1m.
	RetryBackoffMax time.Duration `yaml:"retry_backoff_max"`
	// PhaseTimeout bounds one attempt of one phase. Defaults to 30m. There is no "none": River
	// rescues the job of a crashed worker only once its timeout has passed.
	PhaseTimeout time.Duration `yaml:"phase_timeout"`
	// BackfillSlice is how long one River job of a batched backfill works before it gives its
	// slot back and the backfill goes on, from its checkpoint, in the next job slice; and how
	// long a job that applies migrations without hooks in a row goes on with the next one.
	// Defaults to 1m, and at most half of PhaseTimeout.
	BackfillSlice time.Duration `yaml:"backfill_slice"`
	// RescueAfter is how long a phase job may run before River takes it for the job of a dead
	// worker and retries it. Defaults to PhaseTimeout + 5m; it may not be below PhaseTimeout.
	RescueAfter time.Duration `yaml:"rescue_after"`
	// ShutdownTimeout is how long running phases get to finish on SIGTERM before they are
	// cancelled and left for a retry. Defaults to 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxRequestBytes bounds one request. Defaults to 1 MiB.
	MaxRequestBytes int `yaml:"max_request_bytes"`
	// SignatureMaxAge is how old a request's signature may be when the request reaches NATS,
	// for targets with signers (targets[].signers, require_signed). Defaults to 15m.
	SignatureMaxAge time.Duration `yaml:"signature_max_age"`
	// envSigners holds the CONFITURE_SIGNERS_<NAME> variables until the targets are all known
	// (flags add targets after the environment); WithDefaults applies them.
	envSigners map[string][]target.Signer
	// StreamReplicas is how many servers of a NATS cluster keep each of the request and event
	// streams (JetStream replicas: 1, 3 or 5). Defaults to 1; 3 in a three-node cluster keeps
	// every request and event through the loss of one server.
	StreamReplicas int `yaml:"stream_replicas"`
	// RequestDuplicateWindow is how long JetStream remembers request ids. Defaults to 1h.
	RequestDuplicateWindow time.Duration `yaml:"request_duplicate_window"`
	// FetchCooldown is River's minimum time between job fetches; it bounds the latency between
	// one phase and the next. Defaults to 1ms (River's own default, 100ms, is tuned for
	// throughput and adds up to 100ms per phase). River also throttles its insert
	// notifications by this interval, so a longer cooldown can leave a fresh job waiting for
	// the next poll.
	FetchCooldown time.Duration `yaml:"fetch_cooldown"`
	// FetchPollInterval is River's fallback poll when no notification arrives; it bounds how
	// long a job can wait when its notification was throttled. Defaults to 100ms.
	FetchPollInterval time.Duration `yaml:"fetch_poll_interval"`
	// DryRunLockTimeout is the lock_timeout of a dry-run's transaction: a statement that waits
	// longer is reported with the session that holds the lock. Defaults to 2s.
	DryRunLockTimeout time.Duration `yaml:"dry_run_lock_timeout"`
	// DryRunLargeTable is the size in bytes above which a dry-run warns about an ACCESS
	// EXCLUSIVE lock. Defaults to 100 MiB.
	DryRunLargeTable int64 `yaml:"dry_run_large_table"`
	// DryRunBlockTime and DryRunBlockTableSize: a dry-run warns (blocks_application) when a
	// statement or hook would keep reads or writes waiting longer than DryRunBlockTime on a
	// table larger than DryRunBlockTableSize bytes. Default 1s and 0 (any table that existed
	// before the migration).
	DryRunBlockTime      time.Duration `yaml:"dry_run_block_time"`
	DryRunBlockTableSize int64         `yaml:"dry_run_block_table_size"`
	// HTTPAddr is where /metrics, /healthz, /readyz and River UI (/riverui/) are served.
	// Defaults to 127.0.0.1:9090, or a free port when that one is taken; "off" disables the
	// server. Beyond loopback the server needs HTTPCredentialsFile to serve more than
	// /healthz and /readyz.
	HTTPAddr string `yaml:"http_addr"`
	// HTTPCredentialsFile holds the HTTP server's callers: bearer tokens and users, each a
	// viewer (reads /metrics) or an operator (also River UI), see docs/SECURITY.md. With it,
	// every path but /healthz and /readyz needs credentials, on any address. Defaults to none.
	HTTPCredentialsFile string `yaml:"http_credentials_file"`
	// HeartbeatInterval is how often the worker records in the queue database that it is
	// alive. Defaults to 5s.
	HeartbeatInterval time.Duration `yaml:"-"`
	// LivenessWindow is how long after its last heartbeat a worker counts as alive: a worker
	// connected to another NATS system than a live worker on the same queue database refuses
	// to start, and after this long a worker that died no longer holds the others back.
	// Defaults to 3 × HeartbeatInterval (15s); it must be longer than HeartbeatInterval.
	LivenessWindow time.Duration `yaml:"liveness_window"`
	// ReadyFile, when set, receives the NATS URL once the worker takes requests, and is removed
	// when it stops. Defaults to none.
	ReadyFile string `yaml:"ready_file"`

	// Log configures the log sinks (console, file, NATS), each with its own level. The worker
	// command builds Logger and LogSink from it; see docs/OPERATIONS.md.
	Log logging.Config `yaml:"log"`
	// LogSink, when set, gets the NATS connection once the worker has one (for the NATS log
	// sink), is flushed before the connection closes, and has its metrics served. Defaults to
	// none.
	LogSink LogSink `yaml:"-"`

	// Logger receives every record. Defaults to a text logger on stderr.
	Logger *slog.Logger `yaml:"-"`
	// PluginPaths are directories scanned at start-up for external plugin manifests
	// (*.hook.yaml, *.hook.json), after <data_dir>/plugins. Defaults to none.
	PluginPaths []string `yaml:"plugin_paths"`

	// Registry of hooks. Defaults to the built-in hooks, then Hooks, then the plugins found in
	// PluginPaths; a hook that fails to load is logged (hook_load_failed) and left out.
	Registry *hooks.Registry `yaml:"-"`
	// Hooks are compiled-in hook definitions (see the public package confiture). Defaults to
	// none.
	Hooks []hooks.Definition `yaml:"-"`
	// Metrics collects the worker's Prometheus metrics. Defaults to a new set.
	Metrics *observe.Metrics `yaml:"-"`
	// Fault is called at the fault points of intake, phases and the outbox relay (package
	// fault), for the tests that inject failures. Defaults to none; only the test binaries'
	// child worker (ServeEnv) sets it from CONFITURE_FAULT.
	Fault fault.Func `yaml:"-"`
}

// WithDefaults returns cfg with every unset field defaulted.
func (cfg Config) WithDefaults() Config {
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = os.Getenv("DATABASE_URL")
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = DefaultDatabaseURL
	}
	if cfg.QueueSchema == "" {
		cfg.QueueSchema = runstore.DefaultSchema
	}
	if cfg.RiverSchema == "" {
		cfg.RiverSchema = runstore.DefaultRiverSchema
	}
	if len(cfg.Targets) == 0 {
		cfg.Targets = []target.Config{{Name: "default", DSN: cfg.DatabaseURL}}
	}
	if cfg.MaxServerConns == 0 {
		cfg.MaxServerConns = target.DefaultMaxServerConns
	}
	if cfg.DataDir == "" {
		cfg.DataDir = client.DefaultDataDir
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 10
	}
	// The pipeline's settings take the pipeline's defaults (jobs.Config.WithDefaults); a value
	// that is set stays as it is, for Validate to judge.
	p := (&jobs.Config{PhaseTimeout: cfg.PhaseTimeout, BackfillSlice: max(cfg.BackfillSlice, 0)}).WithDefaults()
	setDefault(&cfg.MaxAttempts, p.MaxAttempts)
	setDefault(&cfg.RetryBackoff, p.RetryBackoff)
	setDefault(&cfg.RetryBackoffMax, p.RetryBackoffMax)
	setDefault(&cfg.OutageTolerance, p.OutageTolerance)
	setDefault(&cfg.ReconcileInterval, p.ReconcileInterval)
	setDefault(&cfg.PhaseTimeout, p.PhaseTimeout)
	if cfg.BackfillSlice >= 0 && cfg.PhaseTimeout > 0 {
		cfg.BackfillSlice = p.BackfillSlice
	}
	if cfg.RescueAfter == 0 && cfg.PhaseTimeout > 0 {
		cfg.RescueAfter = cfg.PhaseTimeout + 5*time.Minute
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = 1 << 20
	}
	if cfg.SignatureMaxAge == 0 {
		cfg.SignatureMaxAge = 15 * time.Minute
	}
	cfg.applyEnvSigners()
	if cfg.RequestDuplicateWindow == 0 {
		cfg.RequestDuplicateWindow = time.Hour
	}
	if cfg.FetchCooldown == 0 {
		cfg.FetchCooldown = time.Millisecond
	}
	if cfg.FetchPollInterval == 0 {
		cfg.FetchPollInterval = 100 * time.Millisecond
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	if cfg.LivenessWindow == 0 {
		cfg.LivenessWindow = 3 * cfg.HeartbeatInterval
	}
	if cfg.Metrics == nil {
		cfg.Metrics = observe.NewMetrics()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return cfg
}

// setDefault sets *v to def when it is unset (zero).
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate reports the first invalid field by name.
func (cfg Config) Validate() error {
	switch {
	case cfg.Concurrency < 1:
		return fmt.Errorf("concurrency must be at least 1, got %d", cfg.Concurrency)
	case cfg.MaxAttempts < 1:
		return fmt.Errorf("max_attempts must be at least 1, got %d", cfg.MaxAttempts)
	case cfg.RetryBackoff < 0 || cfg.RetryBackoffMax < cfg.RetryBackoff:
		return fmt.Errorf("retry_backoff (%s) must be positive and at most retry_backoff_max (%s)", cfg.RetryBackoff, cfg.RetryBackoffMax)
	case cfg.OutageTolerance < 0:
		return fmt.Errorf("outage_tolerance may not be negative, got %s", cfg.OutageTolerance)
	case cfg.ReconcileInterval < 0:
		return fmt.Errorf("reconcile_interval must be positive, got %s", cfg.ReconcileInterval)
	case cfg.RescueAfter < cfg.PhaseTimeout:
		return fmt.Errorf("rescue_after (%s) may not be below phase_timeout (%s): River would retry phases that are still running", cfg.RescueAfter, cfg.PhaseTimeout)
	case cfg.BackfillSlice < 0:
		return fmt.Errorf("backfill_slice may not be negative, got %s", cfg.BackfillSlice)
	case cfg.PhaseTimeout <= 0:
		return fmt.Errorf("phase_timeout must be positive (a crashed worker's phases are rescued after it), got %s", cfg.PhaseTimeout)
	case cfg.ShutdownTimeout < 0:
		return fmt.Errorf("shutdown_timeout must not be negative, got %s", cfg.ShutdownTimeout)
	case cfg.MaxServerConns < 1:
		return fmt.Errorf("max_server_conns must be at least 1, got %d", cfg.MaxServerConns)
	case cfg.StreamReplicas < 0 || cfg.StreamReplicas > 5:
		return fmt.Errorf("stream_replicas must be between 1 and 5 (JetStream's limit), got %d", cfg.StreamReplicas)
	case cfg.DryRunBlockTime < 0:
		return fmt.Errorf("dry_run_block_time must not be negative, got %s", cfg.DryRunBlockTime)
	case cfg.DryRunBlockTableSize < 0 || cfg.DryRunLargeTable < 0:
		return fmt.Errorf("dry_run_block_table_size (%d) and dry_run_large_table (%d) must not be negative", cfg.DryRunBlockTableSize, cfg.DryRunLargeTable)
	case cfg.MaxRequestBytes < 1024:
		return fmt.Errorf("max_request_bytes must be at least 1024, got %d", cfg.MaxRequestBytes)
	case cfg.SignatureMaxAge < 0:
		return fmt.Errorf("signature_max_age must be positive, got %s", cfg.SignatureMaxAge)
	case len(cfg.envSigners) > 0:
		return cfg.envSignersError()
	case cfg.FetchCooldown < time.Millisecond:
		return fmt.Errorf("fetch_cooldown must be at least 1ms, got %s", cfg.FetchCooldown)
	case cfg.HeartbeatInterval < 0:
		return fmt.Errorf("the heartbeat interval must be positive, got %s", cfg.HeartbeatInterval)
	case cfg.LivenessWindow <= cfg.HeartbeatInterval:
		return fmt.Errorf("liveness_window (%s) must be longer than the heartbeat interval (%s): a live worker would look dead between two heartbeats", cfg.LivenessWindow, cfg.HeartbeatInterval)
	case cfg.QueueSchema == "public" || cfg.RiverSchema == "public":
		return errors.New("queue_schema and river_schema must not be public")
	case cfg.QueueSchema == cfg.RiverSchema:
		return errors.New("queue_schema and river_schema must differ")
	case len(cfg.Targets) == 0:
		return errNoTargets
	}
	if err := targetgroup.Check(cfg.TargetGroups, cfg.Targets); err != nil {
		return err
	}
	if cfg.NATSURL != "" { // the embedded server takes no credentials
		if err := cfg.NATS.Validate(); err != nil {
			return err // names the option: "NATS password file ...: no such file"
		}
	}
	return nil
}
