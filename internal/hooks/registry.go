package hooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/confiture-io/confiture-worker/schemas"
)

// SourceBuiltin is the Definition.Source of hooks compiled into the worker itself.
const SourceBuiltin = "built-in"

// Definition describes a hook type that hook declarations name in their "hook" field.
type Definition struct {
	// Name is what a hooks file writes as `hook: <name>`. Lower case, digits, '_', '-', '.'.
	Name string
	// Description is one line for `worker hooks list`.
	Description string
	// Source says where the hook came from: SourceBuiltin, a Go package path, or a plugin
	// manifest path.
	Source string
	// Version of the hook, if it has one.
	Version string
	// Phases the hook may be declared in. Empty means every hook phase.
	Phases []string
	// Transactional says the hook's work is all-or-nothing: built-in and Go hooks commit with
	// the phase's transaction (Context.Tx); an external plugin that says so uses one of its
	// own. Work that does not commit with the phase must be idempotent: a hook that ran but
	// whose ledger row did not commit (the worker died in between) runs again with the same
	// idempotency key.
	Transactional bool
	// External says the hook runs outside the worker's process (a plugin) and never joins the
	// phase's transaction, whatever Transactional says: the pipeline runs it on its own,
	// between the transactions of the hooks before and after it, and records it in the ledger
	// once it returns, so a later hook's failure does not run it again.
	External bool
	// ParamsSchema, when set, is a JSON Schema (draft 2020-12) that a declaration's parameters
	// must satisfy. It is checked before New, at intake.
	ParamsSchema json.RawMessage
	// Example holds parameters for `worker hooks describe` to show in a hooks.yaml snippet.
	Example map[string]any
	// New validates a declaration's parameters and builds the hook. It runs at intake, before
	// any change to a target, so a bad parameter rejects the request. It must not have side
	// effects.
	New func(params map[string]any) (Hook, error)
}

// LoadFailure is a hook that could not be loaded: the worker runs without it, and a request
// that uses it is rejected with Reason.
type LoadFailure struct {
	// Name of the hook, when it could be read.
	Name string `json:"name,omitempty"`
	// Source is where it came from (a plugin manifest path, a Go package).
	Source string `json:"source"`
	Reason string `json:"reason"`
}

// JoinsPhaseTx reports whether the hook's work commits with the phase's transaction on the
// target (Context.Tx): every hook that runs in the worker's process does (a batched hook is
// run apart by the pipeline, see Batched); an external one never does.
func (d *Definition) JoinsPhaseTx() bool { return !d.External }

// allows reports whether the hook may run in phase.
func (d *Definition) allows(phase string) bool {
	return len(d.Phases) == 0 || slices.Contains(d.Phases, phase)
}

// ErrDuplicateHook is returned by Registry.Register for a name that is already registered.
var ErrDuplicateHook = errors.New("hook already registered")

var hookNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// Registry holds the hook types a worker can run. It is safe for concurrent use.
type Registry struct {
	mu       sync.RWMutex
	defs     map[string]*entry
	failures []LoadFailure
}

type entry struct {
	def    Definition
	schema *jsonschema.Schema // compiled ParamsSchema, or nil
}

// NewRegistry returns an empty registry. Use RegisterBuiltins to add the built-in hooks.
func NewRegistry() *Registry {
	return &Registry{defs: map[string]*entry{}}
}

// Register adds a hook type. An empty or malformed name, a missing constructor, or a name that
// is already registered is an error naming both registrants.
func (r *Registry) Register(def Definition) error {
	if !hookNameRe.MatchString(def.Name) {
		return fmt.Errorf("hook name %q from %s: must match %s", def.Name, sourceOf(def), hookNameRe)
	}
	if def.New == nil {
		return fmt.Errorf("hook %q from %s: Definition.New is nil", def.Name, sourceOf(def))
	}
	for _, p := range def.Phases {
		if !IsHookPhase(p) {
			return fmt.Errorf("hook %q from %s: %q is not a hook phase", def.Name, sourceOf(def), p)
		}
	}
	var schema *jsonschema.Schema
	if len(def.ParamsSchema) > 0 {
		var err error
		if schema, err = compileSchema(def.Name, def.ParamsSchema); err != nil {
			return fmt.Errorf("hook %q from %s: parameter schema: %w", def.Name, sourceOf(def), err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.defs[def.Name]; ok {
		return fmt.Errorf("%w: %q from %s is already registered by %s", ErrDuplicateHook, def.Name, sourceOf(def), sourceOf(prev.def))
	}
	r.defs[def.Name] = &entry{def: def, schema: schema}
	return nil
}

// RecordFailure remembers a hook that could not be loaded, so that requests using it are
// rejected with its reason and `worker hooks list` shows it.
func (r *Registry) RecordFailure(f LoadFailure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, f)
}

// Failures returns the hooks that could not be loaded, in the order they failed.
func (r *Registry) Failures() []LoadFailure {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.failures)
}

// failure returns the load failure of the hook named name, if one was recorded.
func (r *Registry) failure(name string) (LoadFailure, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, f := range r.failures {
		if f.Name == name {
			return f, true
		}
	}
	return LoadFailure{}, false
}

func compileSchema(name string, raw json.RawMessage) (*jsonschema.Schema, error) {
	return schemas.CompileDoc("hook:///"+name+"/params.json", raw)
}

// MustRegister is Register that panics on error, for init-time registration of fixed sets.
func (r *Registry) MustRegister(def Definition) {
	if err := r.Register(def); err != nil {
		panic(err)
	}
}

// Lookup returns the definition registered under name.
func (r *Registry) Lookup(name string) (*Definition, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.defs[name]
	if !ok {
		return nil, false
	}
	return &e.def, true
}

// List returns every definition, sorted by name.
func (r *Registry) List() []Definition {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Definition, 0, len(r.defs))
	for _, e := range r.defs {
		out = append(out, e.def)
	}
	slices.SortFunc(out, func(a, b Definition) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func sourceOf(d Definition) string {
	if d.Source == "" {
		return "an unnamed source"
	}
	return d.Source
}
