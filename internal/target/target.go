// Package target manages the databases the worker may change: one connection pool per
// configured target, and the small tracking schema each target holds (the applied-migrations
// table and the hook ledger).
//
// A target's connection string never leaves this package in an error or a log record.
package target

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/redact"
)

// Config defines one target.
type Config struct {
	// Name is how requests name the target. Letters, digits, '_' and '-'.
	Name string `yaml:"name" json:"name"`
	// DSN is the PostgreSQL connection string. It never appears in logs, events or errors.
	DSN string `yaml:"dsn" json:"-"`
	// Schema, when set, is the schema migrations run in (the session's search_path). Defaults
	// to the database's own search_path.
	Schema string `yaml:"schema" json:"schema,omitempty"`
	// TrackingSchema holds the tracking table and hook ledger. Defaults to "confiture", or
	// "confiture_<schema>" when Schema is set, so targets sharing a database do not collide.
	TrackingSchema string `yaml:"tracking_schema" json:"tracking_schema,omitempty"`
	// MaxConns bounds the target's pool. Defaults to 4.
	MaxConns int32 `yaml:"max_conns" json:"max_conns,omitempty"`
	// RequireSigned makes the target accept only requests signed by one of Signers (see
	// docs/SECURITY.md). Defaults to false: unsigned requests are accepted, and a signature
	// present is verified when Signers is set.
	RequireSigned bool `yaml:"require_signed" json:"require_signed,omitempty"`
	// Signers is the target's allow-list of request-signing keys.
	Signers []Signer `yaml:"signers" json:"signers,omitempty"`
}

// Signer is a key allowed to sign requests for a target.
type Signer struct {
	// ID is the key id a signed request names (signature.key_id).
	ID string `yaml:"id" json:"id"`
	// PublicKey is the Ed25519 public key as its SubjectPublicKeyInfo: the base64 line of
	// `openssl pkey -pubout` (or `submit keygen`), or the whole PEM block.
	PublicKey string `yaml:"public_key" json:"public_key"`
}

// ErrUnknownTarget is returned by Set.Get for a name that is not configured.
var ErrUnknownTarget = errors.New("unknown target")

// Target is one configured target and its lazily opened pool.
type Target struct {
	cfg     Config
	schema  string // tracking schema, quoted
	poolCfg *pgxpool.Config

	mu            sync.Mutex
	pool          *pgxpool.Pool
	schemaReady   bool // the tracking schema is known to exist
	serverVersion int
}

// Name returns the target's name.
func (t *Target) Name() string { return t.cfg.Name }

// DSN returns the target's connection string. It is a secret: only hooks that must connect on
// their own get it.
func (t *Target) DSN() string { return t.cfg.DSN }

// Schema returns the target's schema, or "".
func (t *Target) Schema() string { return t.cfg.Schema }

// TrackingSchema returns the (unquoted) name of the target's tracking schema.
func (t *Target) TrackingSchema() string { return t.cfg.TrackingSchema }

// ServerVersion returns the server_version_num of the target, known once Pool or Conn has
// succeeded.
func (t *Target) ServerVersion() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.serverVersion
}

// Set is the worker's configured targets.
type Set struct {
	targets map[string]*Target
}

// WithDefaults fills in the tracking schema ("confiture", or "confiture_<schema>" with a
// schema) and the pool size (4).
func (c Config) WithDefaults() Config {
	if c.TrackingSchema == "" {
		c.TrackingSchema = "confiture"
		if c.Schema != "" {
			c.TrackingSchema = "confiture_" + c.Schema
		}
	}
	if c.MaxConns == 0 {
		c.MaxConns = 4
	}
	return c
}

// NewSet validates cfgs and prepares a Target for each, without connecting.
func NewSet(cfgs []Config) (*Set, error) {
	s := &Set{targets: map[string]*Target{}}
	for _, c := range cfgs {
		if !contract.ValidTargetName(c.Name) {
			return nil, fmt.Errorf("target name %q: must match %s", c.Name, contract.TargetNamePattern)
		}
		if _, dup := s.targets[c.Name]; dup {
			return nil, fmt.Errorf("target %q is configured twice", c.Name)
		}
		c = c.WithDefaults()
		pc, err := pgxpool.ParseConfig(c.DSN)
		if err != nil {
			// pgx redacts the password in its parse errors, but keep only the reason anyway.
			return nil, fmt.Errorf("target %q: invalid connection string: %s", c.Name, redact.String(err.Error(), redact.Secrets(c.DSN)...))
		}
		pc.MaxConns = c.MaxConns
		pc.ConnConfig.RuntimeParams["application_name"] = "confiture-worker"
		if c.Schema != "" {
			pc.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{c.Schema}.Sanitize()
		}
		s.targets[c.Name] = &Target{cfg: c, schema: pgx.Identifier{c.TrackingSchema}.Sanitize(), poolCfg: pc}
	}
	return s, nil
}

// Get returns the target named name, or an error wrapping ErrUnknownTarget that lists the
// configured ones.
func (s *Set) Get(name string) (*Target, error) {
	t, ok := s.targets[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (configured: %v)", ErrUnknownTarget, name, s.Names())
	}
	return t, nil
}

// Names returns the configured target names, sorted.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.targets))
	for n := range s.targets {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Close closes every opened pool.
func (s *Set) Close() {
	for _, t := range s.targets {
		t.mu.Lock()
		if t.pool != nil {
			t.pool.Close()
			t.pool = nil
		}
		t.mu.Unlock()
	}
}

// Pool returns the target's pool, connecting and creating the tracking schema on first use.
// A failure is returned with the connection string redacted and retried on the next call.
func (t *Target) Pool(ctx context.Context) (*pgxpool.Pool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pool, err := t.connect(ctx)
	if err != nil || t.schemaReady {
		return pool, err
	}
	if err := t.ensureSchema(ctx, pool); err != nil {
		return nil, t.connError(err)
	}
	t.schemaReady = true
	return pool, nil
}

// Conn returns the target's pool without creating the tracking schema: for what must change
// nothing on the target (a dry-run, a status read), which read a missing tracking table as
// empty (AppliedMigrations) or create it in a transaction they roll back (EnsureSchemaIn).
func (t *Target) Conn(ctx context.Context) (*pgxpool.Pool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.connect(ctx)
}

// connect opens the pool on first use and reads the server's version; call it holding t.mu.
func (t *Target) connect(ctx context.Context) (*pgxpool.Pool, error) {
	if t.pool != nil {
		return t.pool, nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, t.poolCfg)
	if err != nil {
		return nil, t.connError(err)
	}
	if err := pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&t.serverVersion); err != nil {
		pool.Close()
		return nil, t.connError(err)
	}
	t.pool = pool
	return pool, nil
}

func (t *Target) connError(err error) error {
	return &ConnError{Target: t.cfg.Name, msg: ConnectMessage(err, t.cfg.DSN), err: err}
}

// ConnError is a failure to reach a target or to prepare it. Its message names the target and
// never holds its connection string; it unwraps to the driver's error, so that callers can
// tell a refused connection from a refused statement (see package transient).
type ConnError struct {
	Target string
	msg    string
	err    error
}

func (e *ConnError) Error() string { return fmt.Sprintf("target %q: %s", e.Target, e.msg) }

// Unwrap returns the driver's error. Its text may hold connection details: print the
// ConnError, never what it wraps.
func (e *ConnError) Unwrap() error { return e.err }
