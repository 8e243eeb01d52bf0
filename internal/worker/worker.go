// Package worker assembles the daemon: the queue database (River and the worker's tables), the
// targets, the hook registry, NATS (external or embedded), the request intake, the phase
// pipeline and the outbox relay. Start runs it in the background; Stop shuts it down gracefully.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/micro"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/api"
	"github.com/confiture-io/confiture-worker/internal/buildinfo"
	"github.com/confiture-io/confiture-worker/internal/builtin"
	"github.com/confiture-io/confiture-worker/internal/bus"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/dryrun"
	"github.com/confiture-io/confiture-worker/internal/dryrunpage"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/intake"
	"github.com/confiture-io/confiture-worker/internal/jobs"
	"github.com/confiture-io/confiture-worker/internal/observe"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/plugin"
	"github.com/confiture-io/confiture-worker/internal/redact"
	"github.com/confiture-io/confiture-worker/internal/runspage"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/signing"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/targetgroup"
)

// Worker is a running (or startable) daemon.
type Worker struct {
	cfg      Config
	log      *slog.Logger
	registry *hooks.Registry
	// id names this worker in the queue database's worker table and, in its River client id,
	// on the jobs it works.
	id string

	// httpCreds are the HTTP server's callers (Config.HTTPCredentialsFile), or nil.
	httpCreds *observe.Credentials

	pool     *pgxpool.Pool
	targets  *target.Set
	signing  *signing.Policy
	bus      *bus.Bus
	river    *river.Client[pgx.Tx]
	pipeline *jobs.Pipeline
	intake   *intake.Intake
	// api serves the service API (internal/api) on the bus.
	api   micro.Service
	relay *outbox.Relay

	http        *observe.Server
	stopUI      func()
	relayCancel context.CancelFunc
	relayDone   chan struct{}
	stopOnce    sync.Once

	// store and me are set once this worker is registered in the queue database (identity.go).
	store           *runstore.Store
	me              *runstore.WorkerInfo
	heartbeatCancel context.CancelFunc
	heartbeatDone   chan struct{}
	beatProblem     string // the heartbeat's problem last logged, "" when none
	// steady is when this worker's heartbeats last began to succeed without a miss (Unix
	// nanoseconds; 0 before registration and while they fail).
	steady atomic.Int64
}

// New validates cfg and returns a Worker. It opens no connection.
func New(cfg Config) (*Worker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	reg := cfg.Registry
	if reg == nil {
		reg = hooks.NewRegistry()
		if err := builtin.Register(reg); err != nil {
			return nil, err
		}
	}
	for _, def := range cfg.Hooks {
		loadHook(cfg.Logger, reg, def)
	}
	// External plugins: <data_dir>/plugins first, then the configured directories.
	defs, failures := plugin.Discover(append([]string{filepath.Join(cfg.DataDir, "plugins")}, cfg.PluginPaths...), cfg.Logger)
	for _, def := range defs {
		loadHook(cfg.Logger, reg, def)
	}
	for _, f := range failures {
		failed(cfg.Logger, reg, f)
	}
	targets, err := target.NewSet(cfg.Targets, target.MaxServerConns(cfg.MaxServerConns))
	if err != nil {
		return nil, err
	}
	policy, err := signing.NewPolicy(cfg.Targets, cfg.SignatureMaxAge)
	if err != nil {
		return nil, err
	}
	var creds *observe.Credentials
	if cfg.HTTPCredentialsFile != "" && cfg.HTTPAddr != "off" {
		if creds, err = observe.LoadCredentials(cfg.HTTPCredentialsFile); err != nil {
			return nil, err
		}
	}
	return &Worker{cfg: cfg, log: cfg.Logger, registry: reg, targets: targets, signing: policy, httpCreds: creds, id: uuid.NewString()}, nil
}

// newPipeline returns the run pipeline of this worker's configuration on store, its job
// workers registered in workers.
func (w *Worker) newPipeline(store *runstore.Store, workers *river.Workers) (*jobs.Pipeline, error) {
	return jobs.New(&jobs.Config{
		Store: store, Targets: w.targets, Groups: w.groups(), Registry: w.registry, Logger: w.log,
		MaxAttempts: w.cfg.MaxAttempts, RetryBackoff: w.cfg.RetryBackoff,
		RetryBackoffMax: w.cfg.RetryBackoffMax, PhaseTimeout: w.cfg.PhaseTimeout, Fault: w.cfg.Fault,
		OutageTolerance: w.cfg.OutageTolerance, ReconcileInterval: w.cfg.ReconcileInterval,
		WorkerLiveness: w.cfg.LivenessWindow, SteadySince: w.steadySince,
		RiverSchema: w.cfg.RiverSchema, BackfillSlice: w.cfg.BackfillSlice,
		Observer: w.cfg.Metrics,
		DryRun: dryrun.Options{LockTimeout: w.cfg.DryRunLockTimeout, LargeTable: w.cfg.DryRunLargeTable,
			BlockTime: w.cfg.DryRunBlockTime, BlockTableSize: w.cfg.DryRunBlockTableSize},
	}, workers)
}

// groups returns the resolver of the configured target groups, or nil when there are none.
func (w *Worker) groups() *targetgroup.Resolver {
	if len(w.cfg.TargetGroups) == 0 {
		return nil
	}
	return targetgroup.NewResolver(w.cfg.TargetGroups, w.cfg.Targets)
}

// Registry returns the hooks this worker can run.
func (w *Worker) Registry() *hooks.Registry { return w.registry }

// NATSURL is the URL of the NATS server in use, once started.
func (w *Worker) NATSURL() string {
	if w.bus == nil {
		return ""
	}
	return w.bus.URL()
}

// Start connects everything and starts taking requests. On error, whatever was started is
// stopped again.
func (w *Worker) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = w.Stop(stopCtx) // stops whatever was started
		}
	}()
	poolCfg, err := pgxpool.ParseConfig(w.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("queue database: invalid connection string: %s", redact.String(err.Error(), redact.Secrets(w.cfg.DatabaseURL)...))
	}
	// Per running phase: its own connection plus, briefly, one to record its outcome; then
	// intake, the relay and its listener, the heartbeat, and River's own.
	poolCfg.MaxConns = int32(2*w.cfg.Concurrency + 6)
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "confiture-worker"
	w.pool, err = pgxpool.NewWithConfig(ctx, poolCfg)
	if err == nil {
		err = w.pool.Ping(ctx)
	}
	if err != nil {
		return fmt.Errorf("queue database: %s", target.ConnectMessage(err, w.cfg.DatabaseURL))
	}
	if err := runstore.Migrate(ctx, w.pool, w.cfg.QueueSchema, w.cfg.RiverSchema, w.log); err != nil {
		return err
	}
	store := runstore.NewStore(w.pool, w.cfg.QueueSchema)

	workers := river.NewWorkers()
	if w.pipeline, err = w.newPipeline(store, workers); err != nil {
		return err
	}
	w.river, err = river.NewClient(riverpgxv5.New(w.pool), &river.Config{
		// The reconciler knows a gone worker's jobs by it (jobs.RiverClientID).
		ID:     jobs.RiverClientID(w.id),
		Schema: w.cfg.RiverSchema,
		Queues: map[string]river.QueueConfig{
			jobs.QueueName: {MaxWorkers: w.cfg.Concurrency},
			// Where workers before jobs.QueueName put their jobs: what an upgrade finds there
			// still runs.
			river.QueueDefault: {MaxWorkers: 2},
		},
		Workers:           workers,
		Logger:            w.log.With("component", "river"),
		FetchCooldown:     w.cfg.FetchCooldown,
		FetchPollInterval: w.cfg.FetchPollInterval,
		JobTimeout:        w.cfg.PhaseTimeout,
		// A phase still running this long belongs to a worker that died.
		RescueStuckJobsAfter: w.cfg.RescueAfter,
		MaxAttempts:          w.pipeline.MaxAttempts(),
		PeriodicJobs:         w.pipeline.PeriodicJobs(),
	})
	if err != nil {
		return fmt.Errorf("river: %w", err)
	}
	w.pipeline.SetClient(w.river)

	w.bus, err = bus.Connect(ctx, bus.Options{
		URL: w.cfg.NATSURL, StoreDir: filepath.Join(w.cfg.DataDir, "nats"),
		EmbeddedPort: w.cfg.EmbeddedNATSPort, Auth: w.cfg.NATS, Logger: w.log.With("component", "nats"),
	})
	if err != nil {
		return err
	}
	if w.cfg.LogSink != nil {
		w.cfg.LogSink.SetPublisher(w.bus.NC) // the NATS log sink publishes on our connection
	}
	if err := w.bus.EnsureStreams(ctx, bus.StreamOptions{
		RequestDuplicates: w.cfg.RequestDuplicateWindow, MaxRequestBytes: int32(w.cfg.MaxRequestBytes),
		Replicas: w.cfg.StreamReplicas,
	}); err != nil {
		return err
	}
	// Before the relay and intake: a worker on another NATS system than the live ones must
	// neither publish their events nor take requests.
	if err := w.register(ctx, store); err != nil {
		return err
	}

	w.relay = &outbox.Relay{Pool: w.pool, Schema: store.Schema(), Publisher: w.bus, Logger: w.log.With("component", "outbox"),
		Fault: w.cfg.Fault}
	relayCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.relayCancel, w.relayDone = cancel, make(chan struct{})
	go func() {
		defer close(w.relayDone)
		w.relay.Run(relayCtx)
	}()

	if err := w.river.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("river: %w", err)
	}
	w.intake = &intake.Intake{
		JS: w.bus.JS, Store: store, Admitter: w.pipeline, Checker: w.pipeline, Verifier: w.signing,
		Logger: w.log.With("component", "intake"), MaxRequestBytes: w.cfg.MaxRequestBytes,
		Observer: w.cfg.Metrics, Fault: w.cfg.Fault,
	}
	if len(w.cfg.TargetGroups) > 0 {
		w.intake.Rollouts = w.pipeline
	}
	if err := w.intake.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	var rollouts api.Rollouts
	if len(w.cfg.TargetGroups) > 0 {
		rollouts = w.pipeline
	}
	if w.api, err = api.Serve(w.bus.NC, api.Config{Store: store, Targets: w.targets, Actions: w.pipeline, Rollouts: rollouts, Signing: w.signing,
		Build: buildinfo.String(), Logger: w.log.With("component", "api")}); err != nil {
		return err
	}
	// The server has the API's subscriptions before anyone is told the worker started: a
	// client's first request finds it.
	if err := w.bus.NC.FlushTimeout(10 * time.Second); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if err := w.startHTTP(ctx, store); err != nil {
		return err
	}
	targets := make([]string, 0, len(w.cfg.Targets))
	for _, t := range w.cfg.Targets {
		targets = append(targets, t.Name+"="+redact.URL(t.DSN))
	}
	w.log.Info("configuration", "database_url", redact.URL(w.cfg.DatabaseURL), "targets", targets,
		"queue_schema", w.cfg.QueueSchema, "river_schema", w.cfg.RiverSchema, "data_dir", w.cfg.DataDir,
		"max_attempts", w.cfg.MaxAttempts, "phase_timeout", w.cfg.PhaseTimeout.String(),
		"backfill_slice", w.cfg.BackfillSlice.String(), "outage_tolerance", w.cfg.OutageTolerance.String(),
		"reconcile_interval", w.cfg.ReconcileInterval.String(), "rescue_after", w.cfg.RescueAfter.String(),
		"liveness_window", w.cfg.LivenessWindow.String(),
		"plugin_paths", w.cfg.PluginPaths, "nats", w.cfg.NATS) // NATS: files and user; a password or token as xxxxx
	w.log.Info("worker started", "nats", w.bus.RedactedURL(), "embedded_nats", w.bus.Embedded(), "nats_system", w.bus.SystemID(), "http", w.HTTPAddr(),
		"targets", w.targets.Names(), "hooks", len(w.registry.List()), "concurrency", w.cfg.Concurrency)
	if w.bus.Embedded() {
		// Where submit looks when it is given no URL: the port may not be 4222.
		if err := writeFileAtomic(client.URLPath(w.cfg.DataDir), []byte(w.bus.URL()+"\n")); err != nil {
			w.log.Warn("could not record the embedded NATS server's URL in the data directory; clients must be given it", "error", err.Error(), "nats", w.bus.RedactedURL())
		}
	}
	if w.cfg.ReadyFile != "" {
		if err := writeFileAtomic(w.cfg.ReadyFile, []byte(w.bus.RedactedURL()+"\n")); err != nil {
			return fmt.Errorf("ready file: %w", err)
		}
	}
	return nil
}

// Stop shuts down gracefully: intake stops at once, running phases get until ctx's deadline
// (or ShutdownTimeout) to finish and are then cancelled (River retries them on any worker),
// and the outbox relay publishes what it can before the bus closes.
func (w *Worker) Stop(ctx context.Context) error {
	var err error
	w.stopOnce.Do(func() {
		w.log.Info("worker stopping")
		if w.intake != nil {
			w.intake.Stop()
		}
		if w.api != nil {
			_ = w.api.Stop()
		}
		if w.river != nil {
			soft, cancel := context.WithTimeout(ctx, w.cfg.ShutdownTimeout)
			serr := w.river.Stop(soft)
			cancel()
			if serr != nil {
				w.log.Warn("running phases did not finish in time; cancelling them (they will be retried)", "timeout", w.cfg.ShutdownTimeout)
				hard, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				err = w.river.StopAndCancel(hard)
				cancel()
			}
		}
		w.closeAll()
		w.log.Info("worker stopped")
	})
	return err
}

// Reconcile runs one pass of the reconciler now (it also runs every ReconcileInterval on the
// leader).
func (w *Worker) Reconcile(ctx context.Context) (jobs.ReconcileReport, error) {
	return w.pipeline.Reconcile(ctx)
}

// HTTPAddr is the address of the metrics, health and River UI server, or "" when it is off.
func (w *Worker) HTTPAddr() string {
	if w.http == nil {
		return ""
	}
	return w.http.Addr()
}

// startHTTP serves /metrics, /healthz, /readyz, River UI, the runs page and the dry-run page,
// unless HTTPAddr is "off".
func (w *Worker) startHTTP(ctx context.Context, store *runstore.Store) error {
	if w.cfg.HTTPAddr == "off" {
		return nil
	}
	w.cfg.Metrics.SetOutboxLag(w.relay.Lag)
	if w.cfg.LogSink != nil {
		if err := w.cfg.Metrics.Register(w.cfg.LogSink.Collectors()...); err != nil {
			return fmt.Errorf("log sink metrics: %w", err)
		}
	}
	health := observe.NewHealth(observe.HealthOptions{Redact: w.redact})
	health.Add("postgres", func(ctx context.Context) error { return w.pool.Ping(ctx) })
	health.Add("nats", func(ctx context.Context) error { return w.bus.NC.FlushWithContext(ctx) })
	health.Add("river", func(context.Context) error {
		select {
		case <-w.river.Stopped():
			return errors.New("river client stopped")
		default:
			return nil
		}
	})
	health.Add("migrations", func(ctx context.Context) error {
		current, err := store.Current(ctx)
		if err == nil && !current {
			err = errors.New("the queue database's tables are not at this worker's version")
		}
		return err
	})
	ui, stopUI, err := observe.NewRiverUI(ctx, w.river, w.log.With("component", "riverui"))
	if err != nil {
		return fmt.Errorf("river ui: %w", err)
	}
	w.stopUI = stopUI
	latestReport := func(ctx context.Context, target string) (*contract.Event, error) {
		return outbox.Latest(ctx, store.Pool, store.Schema(), target, contract.KindDryRunReport)
	}
	dryRuns := dryrunpage.Handler(w.targets.Names(), latestReport, w.log.With("component", "dryrunpage"))
	w.http, err = observe.NewServer(observe.ServerOptions{
		Addr: w.cfg.HTTPAddr, Metrics: w.cfg.Metrics, Health: health, RiverUI: ui, Credentials: w.httpCreds,
		Runs:   runspage.Handler(store, w.cfg.RiverSchema, w.targets.Names(), w.log.With("component", "runspage")),
		DryRun: dryRuns,
		Logger: w.log.With("component", "http"),
	})
	if err != nil {
		return err
	}
	return w.http.Start(ctx)
}

// redact removes every configured connection string's secrets from s.
func (w *Worker) redact(s string) string {
	known := redact.Secrets(w.cfg.DatabaseURL)
	for _, t := range w.cfg.Targets {
		known = append(known, redact.Secrets(t.DSN)...)
	}
	return redact.String(s, append(known, redact.Secrets(w.cfg.NATSURL)...)...)
}

func (w *Worker) closeAll() {
	if w.http != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = w.http.Shutdown(shutdownCtx)
		cancel()
		w.http = nil
	}
	if w.stopUI != nil {
		w.stopUI()
		w.stopUI = nil
	}
	if w.relayCancel != nil {
		w.relayCancel()
		<-w.relayDone
		w.relayCancel = nil
	}
	w.unregister()
	if w.bus != nil {
		if w.bus.Embedded() {
			_ = os.Remove(client.URLPath(w.cfg.DataDir))
		}
		if w.cfg.LogSink != nil {
			// Push the last records out before the connection goes.
			flushCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = w.cfg.LogSink.Flush(flushCtx)
			cancel()
			w.cfg.LogSink.SetPublisher(nil)
		}
		w.bus.Close()
	}
	w.targets.Close()
	if w.pool != nil {
		w.pool.Close()
	}
	if w.cfg.ReadyFile != "" {
		_ = os.Remove(w.cfg.ReadyFile)
	}
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

var errNoTargets = errors.New("no targets configured")

// loadHook registers def, or records and logs why it could not be: the worker runs on without
// it, and requests that use it are rejected with the reason.
func loadHook(log *slog.Logger, reg *hooks.Registry, def hooks.Definition) {
	if err := reg.Register(def); err != nil {
		failed(log, reg, hooks.LoadFailure{Name: def.Name, Source: def.Source, Reason: err.Error()})
	}
}

func failed(log *slog.Logger, reg *hooks.Registry, f hooks.LoadFailure) {
	reg.RecordFailure(f)
	log.Warn("hook_load_failed", "hook", f.Name, "source", f.Source, "reason", f.Reason)
}

var (
	_ jobs.Observer   = (*observe.Metrics)(nil)
	_ intake.Observer = (*observe.Metrics)(nil)
)
