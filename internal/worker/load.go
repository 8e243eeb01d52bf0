package worker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/confiture-io/confiture-worker/internal/logging"
	"github.com/confiture-io/confiture-worker/internal/natsauth"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// EnvPrefix starts every environment variable the worker reads.
const EnvPrefix = "CONFITURE_"

// LoadFile reads a YAML configuration file into a Config. Unknown keys are errors, so a typo
// does not silently fall back to a default.
func LoadFile(path string) (Config, error) {
	var cfg Config
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config file: %w", err)
	}
	if err := yaml.NewDecoder(bytes.NewReader(data), yaml.DisallowUnknownField()).Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("config file %s: %s", path, yaml.FormatError(err, false, true))
	}
	return cfg, nil
}

// ApplyEnv overrides cfg with CONFITURE_* variables read through getenv (and environ, for the
// targets): CONFITURE_NATS_URL, CONFITURE_DATABASE_URL, CONFITURE_DATA_DIR,
// CONFITURE_QUEUE_SCHEMA, CONFITURE_RIVER_SCHEMA, CONFITURE_CONCURRENCY,
// CONFITURE_MAX_ATTEMPTS, CONFITURE_STREAM_REPLICAS, CONFITURE_MAX_SERVER_CONNS, CONFITURE_EMBEDDED_NATS_PORT,
// CONFITURE_MAX_REQUEST_BYTES,
// CONFITURE_PHASE_TIMEOUT, CONFITURE_BACKFILL_SLICE, CONFITURE_RESCUE_AFTER, CONFITURE_SHUTDOWN_TIMEOUT, CONFITURE_RETRY_BACKOFF,
// CONFITURE_LIVENESS_WINDOW,
// CONFITURE_RETRY_BACKOFF_MAX, CONFITURE_DRY_RUN_LOCK_TIMEOUT, CONFITURE_DRY_RUN_BLOCK_TIME, CONFITURE_HTTP_ADDR,
// CONFITURE_HTTP_CREDENTIALS_FILE, CONFITURE_PLUGIN_PATH (directories separated by ':'),
// the NATS security options CONFITURE_NATS_CREDS, ..._NKEY, ..._USER, ..._PASSWORD,
// ..._PASSWORD_FILE, ..._TOKEN, ..._TOKEN_FILE, ..._CA, ..._CERT, ..._KEY, ..._TLS, and one
// CONFITURE_TARGET_<NAME>=<dsn> per target (the name lower-cased); CONFITURE_SIGNATURE_MAX_AGE,
// and CONFITURE_SIGNERS_<NAME>=<key id>=<public key>[,...] which sets a target's signers and
// requires signed requests on it.
func ApplyEnv(cfg *Config, getenv func(string) string, environ []string) error {
	str := map[string]*string{
		"NATS_URL": &cfg.NATSURL, "DATABASE_URL": &cfg.DatabaseURL, "DATA_DIR": &cfg.DataDir,
		"QUEUE_SCHEMA": &cfg.QueueSchema, "RIVER_SCHEMA": &cfg.RiverSchema, "HTTP_ADDR": &cfg.HTTPAddr,
		"HTTP_CREDENTIALS_FILE": &cfg.HTTPCredentialsFile,
	}
	for k, p := range str {
		if v := getenv(EnvPrefix + k); v != "" {
			*p = v
		}
	}
	ints := map[string]*int{
		"CONCURRENCY": &cfg.Concurrency, "MAX_ATTEMPTS": &cfg.MaxAttempts, "STREAM_REPLICAS": &cfg.StreamReplicas, "MAX_SERVER_CONNS": &cfg.MaxServerConns,
		"EMBEDDED_NATS_PORT": &cfg.EmbeddedNATSPort, "MAX_REQUEST_BYTES": &cfg.MaxRequestBytes,
	}
	var errs []error
	for k, p := range ints {
		if v := getenv(EnvPrefix + k); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s%s: %q is not an integer", EnvPrefix, k, v))
				continue
			}
			*p = n
		}
	}
	durs := map[string]*time.Duration{
		"PHASE_TIMEOUT": &cfg.PhaseTimeout, "BACKFILL_SLICE": &cfg.BackfillSlice, "RESCUE_AFTER": &cfg.RescueAfter, "SHUTDOWN_TIMEOUT": &cfg.ShutdownTimeout,
		"RETRY_BACKOFF": &cfg.RetryBackoff, "RETRY_BACKOFF_MAX": &cfg.RetryBackoffMax,
		"OUTAGE_TOLERANCE": &cfg.OutageTolerance, "RECONCILE_INTERVAL": &cfg.ReconcileInterval,
		"DRY_RUN_LOCK_TIMEOUT": &cfg.DryRunLockTimeout, "DRY_RUN_BLOCK_TIME": &cfg.DryRunBlockTime, "SIGNATURE_MAX_AGE": &cfg.SignatureMaxAge,
		"LIVENESS_WINDOW": &cfg.LivenessWindow,
	}
	for k, p := range durs {
		if v := getenv(EnvPrefix + k); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s%s: %q is not a duration (like 30s)", EnvPrefix, k, v))
				continue
			}
			*p = d
		}
	}
	if v := getenv(EnvPrefix + "PLUGIN_PATH"); v != "" {
		cfg.PluginPaths = nil
		for _, dir := range filepath.SplitList(v) {
			if dir != "" {
				cfg.PluginPaths = append(cfg.PluginPaths, dir)
			}
		}
	}
	if err := logging.ApplyEnv(&cfg.Log, getenv); err != nil {
		errs = append(errs, err)
	}
	// Over the file's nats section; an authentication method replaces the file's method.
	if natsEnv, err := natsauth.FromEnv(getenv, EnvPrefix); err != nil {
		errs = append(errs, err)
	} else {
		cfg.NATS = cfg.NATS.Merge(natsEnv)
	}
	if err := readEnvSigners(cfg, environ); err != nil {
		errs = append(errs, err)
	}
	var names []string
	dsns := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix+"TARGET_") || v == "" {
			continue
		}
		name := strings.ToLower(strings.TrimPrefix(k, EnvPrefix+"TARGET_"))
		names = append(names, name)
		dsns[name] = v
	}
	sort.Strings(names)
	for _, n := range names {
		if err := SetTarget(cfg, n, dsns[n]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SetTarget adds a target, or replaces the connection string of one already configured.
func SetTarget(cfg *Config, name, dsn string) error {
	if name == "" || dsn == "" {
		return fmt.Errorf("target %q: a name and a connection string are required", name)
	}
	for i := range cfg.Targets {
		if cfg.Targets[i].Name == name {
			cfg.Targets[i].DSN = dsn
			return nil
		}
	}
	cfg.Targets = append(cfg.Targets, target.Config{Name: name, DSN: dsn})
	return nil
}
