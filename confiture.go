package confiture

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker/internal/builtin"
	"github.com/confiture-io/confiture-worker/internal/hooks"
)

// Hook is one configured unit of migration work, built by Definition.New from the parameters of
// a hook declaration. Run is called inside the phase's transaction on the target (Context.Tx);
// it must not commit or roll back that transaction.
//
// An error, a panic and a Result with Failed set all count as a failure of the hook, and so of
// its phase: the phase is retried (unless the error is Permanent) and, once it has failed for
// good, the migration's on_error hooks run.
type Hook interface {
	Run(ctx context.Context, hc *Context) (Result, error)
}

// HookFunc adapts a function to the Hook interface.
type HookFunc func(ctx context.Context, hc *Context) (Result, error)

// Run calls f.
func (f HookFunc) Run(ctx context.Context, hc *Context) (Result, error) { return f(ctx, hc) }

// Context is what a hook gets when it runs: where it runs, the phase's transaction on the
// target, a logger and the stats shared by the hooks of the run.
type Context struct {
	// Run is the id of the run (a UUID).
	Run string
	// RequestID is the id the client gave the request.
	RequestID string
	// Target is the name of the database being migrated.
	Target string
	// Migration is "<version>_<name>".
	Migration string
	// Version is the migration's version.
	Version string
	// Phase is the hook phase being run (after_ddl, for one).
	Phase string
	// Hook is the declared name of this hook instance in the hooks file (not its type).
	Hook string
	// Attempt counts the tries of this phase, from 1.
	Attempt int
	// Tx is the phase's transaction on the target. What the hook does through it commits with
	// the phase, or not at all. Never commit or roll it back.
	Tx pgx.Tx
	// Logger already carries the run's attributes (run, target, migration, phase, hook).
	Logger *slog.Logger
	// Stats is shared by all hooks of the run, across phases and migrations: what one hook
	// returns in Result.Stats, later hooks read here.
	Stats Stats
}

// Stats is the run-wide key/value store that hooks share. It is safe for concurrent use.
// Values must marshal to JSON.
type Stats interface {
	Get(key string) (any, bool)
	Set(key string, value any)
}

// Result is what a hook reports when it returns.
type Result struct {
	// RowsAffected counts the rows the hook changed (or checked), for events and logs.
	RowsAffected int64
	// Stats are merged into the run's shared Stats and recorded in the hook ledger. Values must
	// marshal to JSON.
	Stats map[string]any
	// Message is a short human summary, or the reason when Failed is set. It is published in
	// the hook's event: never put a secret in it.
	Message string
	// Failed marks the hook as failed although it returned no error (a check that did not
	// hold, for example).
	Failed bool
	// Sampled says, in a dry-run, that the hook did only part of its work (a sample of a long
	// job): the report marks it, and a later hook of the migration that fails says this may
	// be why.
	Sampled bool
}

// Definition describes a hook type: what a hooks file names in its `hook:` field.
type Definition struct {
	// Name is what a hooks file writes as `hook: <name>`: 1 to 64 lower-case letters, digits,
	// '_', '.' or '-', starting with a letter or digit. It must be unique in the worker.
	Name string
	// Description is one line for `worker hooks list`.
	Description string
	// Version of the hook, if it has one (shown by `worker hooks list`).
	Version string
	// Phases the hook may be declared in: before_validation, before_ddl, after_ddl,
	// after_validation, cleanup, on_error. Empty means every one.
	Phases []string
	// ParamsSchema, when set, is a JSON Schema (draft 2020-12) that a declaration's parameters
	// must satisfy. The worker checks it when a request arrives, before any change to a target,
	// so a typo in a hooks file rejects the request.
	ParamsSchema json.RawMessage
	// Example holds parameters for `worker hooks describe` to show in a hooks.yaml snippet.
	Example map[string]any
	// New validates a declaration's parameters and builds the hook. It runs when a request
	// arrives, before any change to a target, and again before each phase: it must have no
	// side effects. An error rejects the request.
	New func(params map[string]any) (Hook, error)

	// backfill holds the parameters of a definition made by Backfill.Definition.
	backfill map[string]any
}

// registry holds the hooks registered in this process. The package-level instance feeds Main;
// tests use their own.
type registry struct {
	mu   sync.RWMutex
	defs map[string]registered
}

type registered struct {
	def Definition
	// source is the import path of the package that registered def.
	source string
}

func newRegistry() *registry { return &registry{defs: map[string]registered{}} }

// std is the registry that Register, Hooks and Main use.
var std = newRegistry()

// Register adds a hook type to the worker that Main runs. Call it from an init function (see
// MustRegister). The hook is recorded as coming from the package that calls Register.
//
// An empty or malformed name, a missing New, a phase that does not exist, a parameter schema
// that does not compile, or a name already taken (by a built-in hook or another package) is an
// error; for a taken name, the error names both packages.
func Register(def Definition) error {
	return std.register(def, callerPackage(1))
}

// MustRegister is Register that panics on error, for init functions: a broken registration
// stops the worker at start-up instead of leaving the hook out.
func MustRegister(def Definition) {
	if err := std.register(def, callerPackage(1)); err != nil {
		panic(err)
	}
}

// Hooks returns the hooks registered with Register, sorted by name. Built-in hooks and external
// plugins are not included: `worker hooks list` shows everything the worker can run.
func Hooks() []Definition { return std.list() }

// DecodeParams decodes a hook declaration's parameters into dst, a pointer to a struct with json
// tags. An unknown parameter name is an error, so that a typo in a hooks file is caught when the
// request arrives.
func DecodeParams(params map[string]any, dst any) error { return hooks.DecodeParams(params, dst) }

// Permanent marks err as one that retrying cannot fix (bad configuration, a check that can
// never pass): the phase fails at once instead of being retried. Permanent(nil) is nil, and the
// result keeps err's message and lets errors.Is and errors.As see err.
func Permanent(err error) error { return hooks.Permanent(err) }

func init() {
	// The worker's main (package daemon) reads the registered hooks through package hooks, so
	// that this package, which hook packages import, does not import the daemon.
	hooks.Compiled = std.definitions
}

func (r *registry) register(def Definition, source string) error {
	// The hooks package's own checks (name, phases, schema), against the built-in hooks so that
	// a clash with one of them is reported here, at init, rather than at start-up.
	check := hooks.NewRegistry()
	if err := builtin.Register(check); err != nil {
		return fmt.Errorf("confiture: %w", err)
	}
	if def.backfill != nil {
		if _, err := newBackfill(def.backfill, nil); err != nil {
			return fmt.Errorf("confiture: hook %q from %s: backfill: %w", def.Name, source, err)
		}
	}
	if err := check.Register(toInternal(def, source)); err != nil {
		return fmt.Errorf("confiture: %w", err)
	}
	def = cloneDefinition(def)
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.defs[def.Name]; ok {
		return fmt.Errorf("confiture: hook %q registered by %s is already registered by %s", def.Name, source, prev.source)
	}
	r.defs[def.Name] = registered{def: def, source: source}
	return nil
}

// sorted returns the registered hooks sorted by name; r.mu must be held.
func (r *registry) sorted() []registered {
	out := slices.Collect(maps.Values(r.defs))
	slices.SortFunc(out, func(a, b registered) int { return strings.Compare(a.def.Name, b.def.Name) })
	return out
}

func (r *registry) list() []Definition {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []Definition
	for _, e := range r.sorted() {
		out = append(out, cloneDefinition(e.def))
	}
	return out
}

// definitions returns the registered hooks as the worker's hook definitions, sorted by name.
func (r *registry) definitions() []hooks.Definition {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []hooks.Definition
	for _, e := range r.sorted() {
		out = append(out, toInternal(cloneDefinition(e.def), e.source))
	}
	return out
}

// toInternal converts a public definition into the worker's own. Go hooks run in the phase's
// transaction, so they are transactional.
func toInternal(def Definition, source string) hooks.Definition {
	d := hooks.Definition{
		Name: def.Name, Description: def.Description, Source: source, Version: def.Version,
		Phases: def.Phases, Transactional: true, ParamsSchema: def.ParamsSchema, Example: def.Example,
	}
	if def.backfill != nil {
		return toInternalBackfill(d, def.backfill)
	}
	if def.New != nil {
		d.New = func(params map[string]any) (hooks.Hook, error) {
			h, err := def.New(params)
			if err != nil {
				return nil, err
			}
			if h == nil {
				return nil, fmt.Errorf("hook %q from %s: New returned a nil Hook", def.Name, source)
			}
			return adapter{h}, nil
		}
	}
	return d
}

// adapter runs a public Hook as one of the worker's hooks.
type adapter struct{ h Hook }

func (a adapter) Run(ctx context.Context, hc *hooks.Context) (hooks.Result, error) {
	c := &Context{
		Run: hc.Run, RequestID: hc.RequestID, Target: hc.Target, Migration: hc.Migration,
		Version: hc.Version, Phase: hc.Phase, Hook: hc.Hook, Attempt: hc.Attempt, Tx: hc.Tx,
		Logger: hc.Logger,
	}
	if hc.Stats != nil { // a nil *hooks.Stats must stay a nil interface
		c.Stats = hc.Stats
	}
	res, err := a.h.Run(ctx, c)
	return hooks.Result{RowsAffected: res.RowsAffected, Stats: res.Stats, Message: res.Message, Failed: res.Failed, Sampled: res.Sampled}, err
}

func cloneDefinition(d Definition) Definition {
	d.Phases = slices.Clone(d.Phases)
	d.ParamsSchema = bytes.Clone(d.ParamsSchema)
	d.Example = maps.Clone(d.Example)
	d.backfill = maps.Clone(d.backfill)
	return d
}

// callerPackage returns the import path of the package of the function skip frames above its
// caller, so that a registration names the package that made it.
func callerPackage(skip int) string {
	pc, _, _, ok := runtime.Caller(skip + 1)
	if !ok {
		return "an unknown package"
	}
	fn := runtime.FuncForPC(pc)
	if fn == nil {
		return "an unknown package"
	}
	return packageOf(fn.Name())
}

// packageOf returns the package path of a function's symbol name, such as
// "example.com/hooks/rowcount.init.0" or "example.com/x%2ev2.(*T).Run". The linker escapes
// dots (and a few other characters) in the last path element, so the name is unescaped.
func packageOf(symbol string) string {
	slash := strings.LastIndex(symbol, "/")
	pkg := symbol
	if dot := strings.Index(symbol[slash+1:], "."); dot >= 0 {
		pkg = symbol[:slash+1+dot]
	}
	if p, err := url.PathUnescape(pkg); err == nil {
		pkg = p
	}
	return pkg
}

var (
	_ Hook  = HookFunc(nil)
	_ Stats = (*hooks.Stats)(nil)
)
