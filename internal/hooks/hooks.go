// Package hooks is the hook model: the Hook interface, the context a hook runs with, the result
// it returns, the Registry of hook types, and the Executor that runs the hooks of one phase in
// order inside a transaction on the target.
//
// The package knows pgx transactions and log/slog and nothing of River or NATS, so a hook can be
// tested with only a database. Our "hooks" are units of migration work; they are unrelated to
// River's own job hooks.
//
// # Why the public API mirrors these types
//
// The root package (confiture) has its own Hook, Context, Result and Definition, and converts
// them to these (its adapter, sampler and toInternal). Using one set of types would need this
// package to import the root one (or the reverse, which would put the executor in every hook
// author's build), and the mirror is the better trade:
//   - This Context carries what the public API does not promise: Origin (a resumed migration's
//     first run), TargetDSN (a secret, for plugins that connect on their own), TargetSchema, and
//     a concrete *Stats with Merge, Snapshot and Err. Hidden fields in a public type would need
//     setters exported for the worker's packages: the mirror would move, not go.
//   - The root package checks a registration when it is made, against the built-in hooks
//     (internal/builtin, which imports this package): a name clash or a bad Backfill fails at
//     init, naming both packages. If this package imported the root one, that import would be a
//     cycle, and those errors would wait for the worker's start-up.
//   - The cost is one conversion per hook run and about sixty lines; the root package's
//     TestAdapterCarriesEveryField fails when a field is added to one side and not carried.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Hook is one configured unit of work, built by a Definition from a hook declaration's
// parameters. Run is called inside the phase's transaction on the target (Context.Tx); it must
// not commit or roll back that transaction.
//
// An error, a panic and a Result with Failed set all count as a failure of the hook, and so of
// its phase.
type Hook interface {
	Run(ctx context.Context, hc *Context) (Result, error)
}

// HookFunc adapts a function to the Hook interface.
type HookFunc func(ctx context.Context, hc *Context) (Result, error)

// Run calls f.
func (f HookFunc) Run(ctx context.Context, hc *Context) (Result, error) { return f(ctx, hc) }

// Context is what a hook gets: where it runs, a transaction on the target, a logger that already
// carries the run's attributes, and the stats shared by the hooks of the run.
type Context struct {
	Run       string
	RequestID string
	Target    string
	// Migration is "<version>_<name>".
	Migration string
	Version   string
	Phase     string
	// Hook is the declared name of this hook instance (not its type).
	Hook    string
	Attempt int
	// Origin is the run that began this migration's work on the target: Run, unless this run
	// resumes a migration an earlier run left incomplete. Idempotency keys derive from it, so
	// that a resumed migration's hooks keep theirs.
	Origin string
	// Tx is the phase's transaction on the target; nil for a hook that does not join it
	// (Definition.JoinsPhaseTx).
	Tx pgx.Tx
	// TargetDSN is the target's connection string, for hooks that must connect on their own
	// (external plugins). It is a secret: never log it or put it in a result.
	TargetDSN string
	// TargetSchema is the target's schema, when it has one (the session's search_path).
	TargetSchema string
	Logger       *slog.Logger
	// Stats is shared by all hooks of the run, across phases and migrations: what one hook
	// returns in Result.Stats, later hooks read here.
	Stats *Stats
}

// Result is what a hook reports when it returns.
type Result struct {
	// RowsAffected counts the rows the hook changed (or checked), for events and logs.
	RowsAffected int64
	// Stats are merged into the run's shared Stats and recorded in the hook ledger. Values must
	// marshal to JSON.
	Stats map[string]any
	// Message is a short human summary, or the reason when Failed is set.
	Message string
	// Failed marks the hook as failed although it returned no error (an assertion that did
	// not hold, for example).
	Failed bool
	// Sampled marks a dry-run's result that covers only part of the hook's work (a backfill
	// that ran its first batches only).
	Sampled bool
}

// Stats is the run-wide key/value store that hooks share. It is safe for concurrent use.
// Stats made by NewLazyStats read what earlier phases stored only when a hook first uses them.
type Stats struct {
	mu      sync.Mutex
	m       map[string]any
	load    func() (map[string]any, error)
	loadErr error
}

// NewStats returns a Stats holding a copy of initial.
func NewStats(initial map[string]any) *Stats {
	s := &Stats{m: map[string]any{}}
	maps.Copy(s.m, initial)
	return s
}

// NewLazyStats returns a Stats whose initial entries come from load, called at most once, on
// first use. If load fails, the Stats are empty and Err reports why.
func NewLazyStats(load func() (map[string]any, error)) *Stats {
	return &Stats{m: map[string]any{}, load: load}
}

// loaded runs the loader if it has not run; s.mu must be held.
func (s *Stats) loaded() {
	if s.load == nil {
		return
	}
	initial, err := s.load()
	s.load = nil
	if err != nil {
		s.loadErr = fmt.Errorf("load run stats: %w", err)
		return
	}
	for k, v := range initial {
		if _, set := s.m[k]; !set {
			s.m[k] = v
		}
	}
}

// Err reports a failure to load the stats of earlier phases.
func (s *Stats) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadErr
}

// Get returns the value stored under key.
func (s *Stats) Get(key string) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loaded()
	v, ok := s.m[key]
	return v, ok
}

// Set stores value under key.
func (s *Stats) Set(key string, value any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loaded()
	s.m[key] = value
}

// Merge stores every entry of m.
func (s *Stats) Merge(m map[string]any) {
	if len(m) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loaded()
	maps.Copy(s.m, m)
}

// Snapshot returns a copy of every entry.
func (s *Stats) Snapshot() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loaded()
	return maps.Clone(s.m)
}

// DecodeParams decodes a hook declaration's parameters into dst (a pointer to a struct with json
// tags), rejecting unknown parameter names so that a typo in a hooks file is an error.
func DecodeParams(params map[string]any, dst any) error {
	if params == nil {
		params = map[string]any{}
	}
	b, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	return nil
}
