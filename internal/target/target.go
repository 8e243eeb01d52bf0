// Package target manages the databases the worker may change: their connection pools, the cap
// on the connections held to each PostgreSQL server, and the small tracking schema each target
// holds (the applied-migrations table and the hook ledger).
//
// # One pool per database
//
// Targets whose connection strings are identical (the members of a target group over the
// schemas of one database) share one pgxpool: a thousand schema targets are one pool, not a
// thousand. Because a connection may serve any of them, the search_path is not a connection
// parameter: it is set each time a connection is taken from the pool (pgxpool's PrepareConn),
// for the target the acquiring context names: WithTarget. The connection's session gets
// SET search_path TO the target's schema, or RESET search_path (the database's own) for a
// target without one; this also undoes a session-level SET search_path a migration left
// behind. It costs one round trip per acquire. A connection taken with a context that names
// no target fails with ErrNoTarget, whatever the number of targets on the pool: a pool gains
// targets at run time (Set.Add), and a code path that forgot the tag must fail in every test
// rather than run, once a second target shares its database, in another target's schema. The
// tracking tables are always named with their schema, so only the users' migrations depend on
// the search_path.
//
// # Connections
//
// The pool of a database may hold as many connections as its server allows (below); a target
// holds at most its Config.MaxConns at once, counted from the moment a connection is taken from
// the pool to its release or its close (a connection hijacked from the pool keeps its slot:
// do not). The physical connections all the pools of a Set hold to one server
// (host:port as the connection string gives it: its first host, for one that lists several)
// are capped at MaxServerConns (the worker's max_server_conns): a connection takes one of the
// server's slots before it is dialed (pgconn's DialFunc) and gives it back when it is closed.
// A dial that finds no free slot first closes the idle connections of the pools on that
// server, then waits, within its connect timeout; while it waits, a connection released on
// that server is closed instead of going back to its pool. A dial that waits in vain fails
// with ServerBusyError, which is transient trouble (package transient). Connections the worker
// makes otherwise are not counted: the queue database's pool (River), the target-group
// resolver's, plugins and hooks that connect on their own with a target's DSN.
//
// A target's connection string never leaves this package in an error or a log record.
package target

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sync"
	"time"

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
	// Targets with identical connection strings share one pool.
	DSN string `yaml:"dsn" json:"-"`
	// Schema, when set, is the schema migrations run in (the session's search_path). Defaults
	// to the database's own search_path.
	Schema string `yaml:"schema" json:"schema,omitempty"`
	// TrackingSchema holds the tracking table and hook ledger. Defaults to "confiture", or
	// "confiture_<schema>" when Schema is set, so targets sharing a database do not collide.
	TrackingSchema string `yaml:"tracking_schema" json:"tracking_schema,omitempty"`
	// MaxConns bounds the connections the target holds at once: taken from the pool of its
	// database, which it shares with the other targets there, and not yet released. An
	// acquire beyond it waits for one of the target's connections to be released. It does not
	// size the pool: the connections all targets hold to one server are bounded by the
	// worker's max_server_conns. Defaults to 4.
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

// Target is one target: its configuration, the pool of its database (shared, opened lazily)
// and its own MaxConns slots.
type Target struct {
	cfg        Config
	schema     string // tracking schema, quoted
	searchPath string // the statement that sets the search_path of a connection for the target
	db         *dbPool
	slots      chan struct{} // one element per connection the target holds; capacity MaxConns
	// configured is set for the targets given to NewSet (not added at run time).
	configured bool

	mu          sync.Mutex
	schemaReady bool // the tracking schema is known to exist
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
// succeeded (for it or another target on its database).
func (t *Target) ServerVersion() int { return int(t.db.serverVersion.Load()) }

// Set is the worker's targets: the configured ones, and those added at run time (Add, and the
// fallback's). It is safe for concurrent use.
type Set struct {
	maxServerConns int

	mu       sync.Mutex
	targets  map[string]*Target
	pools    map[string]*dbPool // by connection string
	servers  map[string]*server // by host:port
	fallback func(ctx context.Context, name string) (Config, error)
}

// Option configures a Set.
type Option func(*Set)

// MaxServerConns caps the connections the Set's pools hold to one PostgreSQL server at n (see
// the package doc). Zero or less keeps DefaultMaxServerConns; beyond math.MaxInt32, the most
// connections a pgxpool holds, it is math.MaxInt32.
func MaxServerConns(n int) Option {
	return func(s *Set) {
		if n > 0 {
			s.maxServerConns = min(n, math.MaxInt32)
		}
	}
}

// FallbackTimeout bounds one call of a Set's fallback.
const FallbackTimeout = 10 * time.Second

// WithDefaults fills in the tracking schema ("confiture", or "confiture_<schema>" with a
// schema) and MaxConns (4).
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
func NewSet(cfgs []Config, opts ...Option) (*Set, error) {
	s := &Set{maxServerConns: DefaultMaxServerConns, targets: map[string]*Target{}, pools: map[string]*dbPool{}, servers: map[string]*server{}}
	for _, o := range opts {
		o(s)
	}
	for _, c := range cfgs {
		if _, dup := s.targets[c.Name]; dup {
			return nil, fmt.Errorf("target %q is configured twice", c.Name)
		}
		t, err := s.newTarget(c)
		if err != nil {
			return nil, err
		}
		t.configured = true
		s.targets[c.Name] = t
	}
	return s, nil
}

// newTarget validates c and prepares its Target, on the pool of its database (created if it
// is the first target there); call it holding s.mu, or before s is shared.
func (s *Set) newTarget(c Config) (*Target, error) {
	if !contract.ValidTargetName(c.Name) {
		return nil, fmt.Errorf("target name %q: must match %s", c.Name, contract.TargetNamePattern)
	}
	c = c.WithDefaults()
	if c.MaxConns < 0 {
		return nil, fmt.Errorf("target %q: max_conns must be positive, got %d", c.Name, c.MaxConns)
	}
	db, ok := s.pools[c.DSN]
	if !ok {
		pc, err := pgxpool.ParseConfig(c.DSN)
		if err != nil {
			// pgx redacts the password in its parse errors, but keep only the reason anyway.
			return nil, fmt.Errorf("target %q: invalid connection string: %s", c.Name, redact.String(err.Error(), redact.Secrets(c.DSN)...))
		}
		addr := serverAddr(&pc.ConnConfig.Config)
		srv, ok := s.servers[addr]
		if !ok {
			srv = newServer(addr, s.maxServerConns)
			s.servers[addr] = srv
		}
		db = newDBPool(pc, srv)
		s.pools[c.DSN] = db
	}
	searchPath := "RESET search_path"
	if c.Schema != "" {
		searchPath = "SET search_path TO " + pgx.Identifier{c.Schema}.Sanitize()
	}
	return &Target{cfg: c, schema: pgx.Identifier{c.TrackingSchema}.Sanitize(), searchPath: searchPath, db: db,
		slots: make(chan struct{}, c.MaxConns)}, nil
}

// Add adds a target at run time, validated as NewSet validates, and returns it. Adding a name
// the Set has with the same configuration (defaults filled in) returns the target it has; a
// name it has with another configuration is an error.
func (s *Set) Add(c Config) (*Target, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.targets[c.Name]; ok {
		if !sameConfig(t.cfg, c.WithDefaults()) {
			return nil, fmt.Errorf("target %q exists with another configuration", c.Name)
		}
		return t, nil
	}
	t, err := s.newTarget(c)
	if err != nil {
		return nil, err
	}
	s.targets[c.Name] = t
	return t, nil
}

// sameConfig reports whether two configurations (defaults filled in) are the same; no signers
// and an empty list of them are.
func sameConfig(a, b Config) bool {
	if len(a.Signers) == 0 && len(b.Signers) == 0 {
		a.Signers, b.Signers = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// SetFallback makes Get ask fallback for the configuration of a name the Set does not have,
// and add it. fallback gets a context bounded by FallbackTimeout; an error that wraps
// ErrUnknownTarget says the name is no target (Get then reports it as unknown), any other
// error is returned by Get, naming the target. Its errors must not hold connection strings.
func (s *Set) SetFallback(fallback func(ctx context.Context, name string) (Config, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fallback = fallback
}

// Get returns the target named name; one the Set does not have comes from the fallback, when
// there is one (SetFallback). An unknown name is an error wrapping ErrUnknownTarget that lists
// the configured ones.
func (s *Set) Get(name string) (*Target, error) {
	s.mu.Lock()
	t, ok := s.targets[name]
	fallback := s.fallback
	s.mu.Unlock()
	if ok {
		return t, nil
	}
	if fallback == nil || !contract.ValidTargetName(name) {
		return nil, s.unknown(name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), FallbackTimeout)
	defer cancel()
	c, err := fallback(ctx, name)
	switch {
	case errors.Is(err, ErrUnknownTarget):
		return nil, s.unknown(name)
	case err != nil:
		return nil, fmt.Errorf("target %q: %w", name, err)
	case c.Name != name:
		return nil, fmt.Errorf("target %q: the fallback gave the configuration of target %q", name, c.Name)
	}
	return s.Add(c)
}

// unknown is the error of Get for a name that is no target.
func (s *Set) unknown(name string) error {
	s.mu.Lock()
	var configured []string
	for n, t := range s.targets {
		if t.configured {
			configured = append(configured, n)
		}
	}
	s.mu.Unlock()
	slices.Sort(configured)
	return fmt.Errorf("%w %q (configured: %v)", ErrUnknownTarget, name, configured)
}

// Names returns the names of the Set's targets (configured and added), sorted.
func (s *Set) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.targets))
	for n := range s.targets {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Close closes every opened pool; a target used again opens its pool again.
func (s *Set) Close() {
	s.mu.Lock()
	pools := make([]*dbPool, 0, len(s.pools))
	for _, db := range s.pools {
		pools = append(pools, db)
	}
	s.mu.Unlock()
	for _, db := range pools {
		db.close()
	}
}

// Pool returns the pool of the target's database, connecting and creating the target's
// tracking schema on first use. A failure is returned with the connection string redacted and
// retried on the next call. The pool is shared: take its connections with a context tagged
// with the target (WithTarget).
func (t *Target) Pool(ctx context.Context) (*pgxpool.Pool, error) {
	pool, err := t.Conn(ctx)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.schemaReady {
		return pool, nil
	}
	if err := t.ensureSchema(WithTarget(ctx, t), pool); err != nil {
		return nil, t.connError(err)
	}
	t.schemaReady = true
	return pool, nil
}

// Conn returns the pool of the target's database without creating the tracking schema: for
// what must change nothing on the target (a dry-run, a status read), which read a missing
// tracking table as empty (AppliedMigrations) or create it in a transaction they roll back
// (EnsureSchemaIn). Take its connections with a context tagged with the target (WithTarget).
func (t *Target) Conn(ctx context.Context) (*pgxpool.Pool, error) {
	pool, err := t.db.open(ctx, t)
	if err != nil {
		return nil, t.connError(err)
	}
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
