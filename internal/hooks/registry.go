package hooks

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
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
	// New validates a declaration's parameters and builds the hook. It runs at intake, before
	// any change to a target, so a bad parameter rejects the request. It must not have side
	// effects.
	New func(params map[string]any) (Hook, error)
}

// allows reports whether the hook may run in phase.
func (d *Definition) allows(phase string) bool {
	return len(d.Phases) == 0 || slices.Contains(d.Phases, phase)
}

// ErrDuplicateHook is returned by Registry.Register for a name that is already registered.
var ErrDuplicateHook = errors.New("hook already registered")

var hookNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// Registry holds the hook types a worker can run. It is safe for concurrent use.
type Registry struct {
	mu   sync.RWMutex
	defs map[string]*Definition
}

// NewRegistry returns an empty registry. Use RegisterBuiltins to add the built-in hooks.
func NewRegistry() *Registry {
	return &Registry{defs: map[string]*Definition{}}
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
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.defs[def.Name]; ok {
		return fmt.Errorf("%w: %q from %s is already registered by %s", ErrDuplicateHook, def.Name, sourceOf(def), sourceOf(*prev))
	}
	d := def
	r.defs[def.Name] = &d
	return nil
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
	d, ok := r.defs[name]
	return d, ok
}

// List returns every definition, sorted by name.
func (r *Registry) List() []Definition {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Definition, 0, len(r.defs))
	for _, d := range r.defs {
		out = append(out, *d)
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
