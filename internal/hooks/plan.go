package hooks

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/schemas"
)

// Errors of Plan, for errors.Is.
var (
	// ErrUnknownHook: a declaration names a hook type that is not registered.
	ErrUnknownHook = errors.New("unknown hook")
	// ErrInvalidHooks: declarations that cannot be ordered or built (cycle, bad dependency,
	// bad parameters, hook not allowed in the phase).
	ErrInvalidHooks = errors.New("invalid hooks")
)

// Planned is a hook declaration resolved against the registry and built, ready to run.
type Planned struct {
	Spec contract.HookSpec
	Def  *Definition
	Hook Hook
}

// HookPhases are the phases that hold hooks, in "up" order, on_error last.
var HookPhases = []string{
	contract.PhaseBeforeValidation, contract.PhaseBeforeDDL, contract.PhaseAfterDDL,
	contract.PhaseAfterValidation, contract.PhaseCleanup, contract.PhaseOnError,
}

// IsHookPhase reports whether hooks may be declared in phase.
func IsHookPhase(phase string) bool { return slices.Contains(HookPhases, phase) }

// Plan resolves, builds and orders the declarations of one phase: by priority (lower first),
// ties in declaration order, and never before the hooks it depends on. specs may hold
// declarations of other phases; only those of phase are planned.
func (r *Registry) Plan(phase string, specs []contract.HookSpec) ([]Planned, error) {
	var decl []contract.HookSpec
	for _, s := range specs {
		if s.Phase == phase {
			decl = append(decl, s)
		}
	}
	order, err := orderHooks(decl)
	if err != nil {
		return nil, err
	}
	out := make([]Planned, 0, len(order))
	for _, i := range order {
		s := decl[i]
		def, ok := r.Lookup(s.Hook)
		if !ok {
			if f, failed := r.failure(s.Hook); failed {
				return nil, fmt.Errorf("%w %q (declared as %q in %s): it failed to load from %s: %s", ErrUnknownHook, s.Hook, s.Name, phase, f.Source, f.Reason)
			}
			if near := r.Suggest(s.Hook); near != "" {
				return nil, fmt.Errorf("%w %q (declared as %q in %s); did you mean %q?", ErrUnknownHook, s.Hook, s.Name, phase, near)
			}
			return nil, fmt.Errorf("%w %q (declared as %q in %s)", ErrUnknownHook, s.Hook, s.Name, phase)
		}
		if err := r.validateParams(def.Name, s.Params); err != nil {
			return nil, fmt.Errorf("%w: hook %q (%s) in %s: %w", ErrInvalidHooks, s.Name, s.Hook, phase, err)
		}
		if !def.allows(phase) {
			return nil, fmt.Errorf("%w: hook %q (%s) may not run in %s; it runs in %s", ErrInvalidHooks, s.Name, s.Hook, phase, strings.Join(def.Phases, ", "))
		}
		h, err := newHook(def, s.Params)
		if err != nil {
			return nil, fmt.Errorf("%w: hook %q (%s) in %s: %w", ErrInvalidHooks, s.Name, s.Hook, phase, err)
		}
		out = append(out, Planned{Spec: s, Def: def, Hook: h})
	}
	return out, nil
}

// PlanAll plans every hook phase of a migration's declarations, so that every error surfaces
// before anything runs.
func (r *Registry) PlanAll(specs []contract.HookSpec) (map[string][]Planned, error) {
	out := make(map[string][]Planned, len(HookPhases))
	var errs []error
	for _, s := range specs {
		if !IsHookPhase(s.Phase) {
			errs = append(errs, fmt.Errorf("%w: hook %q is declared in %q, which is not a hook phase", ErrInvalidHooks, s.Name, s.Phase))
		}
	}
	for _, phase := range HookPhases {
		p, err := r.Plan(phase, specs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[phase] = p
	}
	return out, errors.Join(errs...)
}

// orderHooks returns the indexes of decl in run order: a topological order over depends_on
// that, among the hooks ready to run, always takes the lowest (priority, declaration index).
func orderHooks(decl []contract.HookSpec) ([]int, error) {
	index := make(map[string]int, len(decl))
	for i, s := range decl {
		if _, dup := index[s.Name]; dup {
			return nil, fmt.Errorf("%w: two hooks named %q in %s", ErrInvalidHooks, s.Name, s.Phase)
		}
		index[s.Name] = i
	}
	indegree := make([]int, len(decl))
	dependents := make([][]int, len(decl))
	for i, s := range decl {
		for _, dep := range s.DependsOn {
			j, ok := index[dep]
			if !ok {
				return nil, fmt.Errorf("%w: hook %q in %s depends on %q, which is not a hook of the same migration and phase", ErrInvalidHooks, s.Name, s.Phase, dep)
			}
			if j == i {
				return nil, fmt.Errorf("%w: hook %q in %s depends on itself", ErrInvalidHooks, s.Name, s.Phase)
			}
			indegree[i]++
			dependents[j] = append(dependents[j], i)
		}
	}
	less := func(a, b int) int {
		return cmp.Or(cmp.Compare(decl[a].Priority, decl[b].Priority), cmp.Compare(a, b))
	}
	var ready []int
	for i := range decl {
		if indegree[i] == 0 {
			ready = append(ready, i)
		}
	}
	order := make([]int, 0, len(decl))
	for len(ready) > 0 {
		slices.SortFunc(ready, less)
		next := ready[0]
		ready = ready[1:]
		order = append(order, next)
		for _, d := range dependents[next] {
			indegree[d]--
			if indegree[d] == 0 {
				ready = append(ready, d)
			}
		}
	}
	if len(order) < len(decl) {
		return nil, fmt.Errorf("%w: depends_on cycle in %s: %s", ErrInvalidHooks, decl[0].Phase, describeCycle(decl, indegree))
	}
	return order, nil
}

// describeCycle finds one cycle among the hooks left with unmet dependencies and prints it as
// "a -> b -> a" (a depends on b, which depends on a).
func describeCycle(decl []contract.HookSpec, indegree []int) string {
	var names []string
	deps := map[string][]string{}
	for i, d := range decl {
		if indegree[i] > 0 {
			names = append(names, d.Name)
			deps[d.Name] = d.DependsOn
		}
	}
	return strings.Join(contract.FindCycle(names, deps), " -> ")
}

// newHook builds a hook, turning a panic of its constructor (third-party code fed with a
// request's parameters) into an error.
func newHook(def *Definition, params map[string]any) (h Hook, err error) {
	defer func() {
		if r := recover(); r != nil {
			h, err = nil, fmt.Errorf("constructor panicked: %v", r)
		}
	}()
	return def.New(params)
}

// validateParams checks params against the hook's parameter schema, if it has one.
func (r *Registry) validateParams(name string, params map[string]any) error {
	r.mu.RLock()
	e := r.defs[name]
	r.mu.RUnlock()
	if e == nil || e.schema == nil {
		return nil
	}
	// The schema library wants JSON values: round-trip the parameters.
	raw, err := json.Marshal(orEmpty(params))
	if err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	if err := e.schema.Validate(doc); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return fmt.Errorf("parameters: %s", schemas.Violations(ve, nil))
		}
		return fmt.Errorf("parameters: %w", err)
	}
	return nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
