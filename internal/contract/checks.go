package contract

// The checks of a request that its JSON Schema cannot express: limits across migrations, hook
// names and dependencies (one cycle finder for every caller), nesting depth of parameters.

import (
	"errors"
	"slices"
	"strings"

	"github.com/confiture-io/confiture-worker/internal/clip"
)

// Limits of a request. The schema (schemas/request.v1.json) sets the first four; the worker
// adds the others. Every rejection for a limit names it.
const (
	// MaxMigrations is the most migrations one request carries.
	MaxMigrations = 1000
	// MaxHooksPerMigration is the most hooks one migration declares.
	MaxHooksPerMigration = 200
	// MaxSQLChars is the longest up_sql or down_sql, in characters.
	MaxSQLChars = 1 << 20
	// MaxDependsOn is the most depends_on entries of one hook.
	MaxDependsOn = 200
	// MaxHooksPerRequest is the most hooks all the migrations of one request declare together.
	MaxHooksPerRequest = 10000
	// MaxParamsDepth is how deep a hook's params may nest, the params object being level 1.
	MaxParamsDepth = 32
)

// CheckRequest runs the checks on a request that its JSON Schema cannot express: unique
// versions, checksums that match up_sql, unique hook names within a migration and phase,
// depends_on naming another hook of the same migration and phase, no dependency cycle, a
// well-formed "to", at most MaxHooksPerRequest hooks and params at most MaxParamsDepth deep.
// It returns a *DecodeError with code CodeInvalidRequest naming the migration and hook at
// fault, or nil. It does not repeat the schema's checks: use DecodeRequest on the marshalled
// request for a full validation.
func CheckRequest(r *Request) error {
	if r == nil {
		return invalid("request is missing")
	}
	if r.To != "" && !ValidVersion(r.To) {
		return invalid("to %s is not a version (numbers separated by dots, at most %d characters)", quote(r.To, 40), MaxVersionLen)
	}
	switch {
	case r.Adopt != "" && !slices.Contains(AdoptTools, r.Adopt):
		return invalid("adopt %s is not a tool whose history the worker reads: one of %s", quote(r.Adopt, 40), strings.Join(AdoptTools, ", "))
	case r.Adopt != "" && r.Direction != DirectionUp:
		return invalid("adopt takes over a tool's history before migrating up; this request goes %s", quote(r.Direction, 10))
	case r.AdoptTable != "" && r.Adopt == "":
		return invalid("adopt_table names the history table of the tool a request adopts; this request adopts none")
	}
	total := 0
	for i := range r.Migrations {
		total += len(r.Migrations[i].Hooks)
	}
	if total > MaxHooksPerRequest {
		return invalid("the migrations declare %d hooks together, over the limit of %d hooks per request: submit fewer migrations at a time", total, MaxHooksPerRequest)
	}
	for i := range r.Migrations {
		m := &r.Migrations[i]
		for _, h := range m.Hooks {
			if d := depthOf(h.Params, 0); d > MaxParamsDepth {
				return invalid("params of hook %s of migration %s (phase %s) nest more than %d levels deep (the limit of params depth)",
					quote(h.Name, 64), plain(m.ID(), 170), quote(h.Phase, 32), MaxParamsDepth)
			}
		}
	}
	versions := make(map[string]string, len(r.Migrations))
	for i := range r.Migrations {
		m := &r.Migrations[i]
		id := plain(m.ID(), 170)
		key := VersionKey(m.Version)
		if prev, dup := versions[key]; dup {
			return invalid("migrations %s and %s have the same version %s (versions compare as numbers)", prev, id, quote(m.Version, 40))
		}
		versions[key] = id
		if m.Checksum != Checksum(m.UpSQL) {
			return invalid("checksum of migration %s does not match its up_sql (want the sha256 hex of up_sql)", id)
		}
		if err := checkHooks(id, m.Hooks); err != nil {
			return err
		}
	}
	return nil
}

// checkHooks checks the hooks of one migration, phase by phase, in declaration order.
func checkHooks(migration string, hooks []HookSpec) error {
	type phaseHooks struct {
		names []string            // declaration order
		deps  map[string][]string // name -> depends_on
	}
	phases := map[string]*phaseHooks{}
	for _, h := range hooks {
		ph := phases[h.Phase]
		if ph == nil {
			ph = &phaseHooks{deps: map[string][]string{}}
			phases[h.Phase] = ph
		}
		if _, dup := ph.deps[h.Name]; dup {
			return invalid("migration %s declares hook %s twice in phase %s", migration, quote(h.Name, 64), quote(h.Phase, 32))
		}
		ph.names = append(ph.names, h.Name)
		ph.deps[h.Name] = h.DependsOn
		if h.DependsOn == nil {
			ph.deps[h.Name] = []string{}
		}
	}
	for _, p := range Phases { // deterministic order; unknown phases are the schema's business
		ph := phases[p]
		if ph == nil {
			continue
		}
		for _, name := range ph.names {
			for _, dep := range ph.deps[name] {
				if dep == name {
					return invalid("hook %s of migration %s (phase %s) depends on itself", quote(name, 64), migration, p)
				}
				if _, ok := ph.deps[dep]; !ok {
					return invalid("hook %s of migration %s (phase %s) depends on %s, which is not a hook of that migration and phase", quote(name, 64), migration, p, quote(dep, 64))
				}
			}
		}
		if cycle := FindCycle(ph.names, ph.deps); cycle != nil {
			for i := range cycle {
				cycle[i] = quote(cycle[i], 64)
			}
			return invalid("hooks of migration %s (phase %s) form a dependency cycle: %s", migration, p, clip.String(strings.Join(cycle, " -> "), 400, "..."))
		}
	}
	return nil
}

// depthOf returns the nesting depth of v below depth (an object or array counts one level),
// stopping as soon as it passes MaxParamsDepth: it never recurses further than that.
func depthOf(v any, depth int) int {
	if depth > MaxParamsDepth {
		return depth
	}
	deepest := depth
	switch t := v.(type) {
	case map[string]any:
		if t == nil {
			return depth
		}
		deepest = depth + 1
		for _, e := range t {
			if d := depthOf(e, depth+1); d > deepest {
				deepest = d
			}
			if deepest > MaxParamsDepth {
				break
			}
		}
	case []any:
		deepest = depth + 1
		for _, e := range t {
			if d := depthOf(e, depth+1); d > deepest {
				deepest = d
			}
			if deepest > MaxParamsDepth {
				break
			}
		}
	}
	return deepest
}

// FindCycle returns a dependency cycle among names (deps[n] are what n depends on) as a path
// that starts and ends with the same name, or nil: the one cycle finder of requests, hooks
// files and hook plans. Iterative, so deep chains cannot exhaust the stack.
func FindCycle(names []string, deps map[string][]string) []string {
	const (
		unvisited = iota
		active
		done
	)
	state := make(map[string]int, len(names))
	type frame struct {
		name string
		next int
	}
	for _, start := range names {
		if state[start] != unvisited {
			continue
		}
		stack := []frame{{name: start}}
		state[start] = active
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.next == len(deps[top.name]) {
				state[top.name] = done
				stack = stack[:len(stack)-1]
				continue
			}
			dep := deps[top.name][top.next]
			top.next++
			switch state[dep] {
			case unvisited:
				state[dep] = active
				stack = append(stack, frame{name: dep})
			case active:
				var cycle []string
				for i := range stack {
					if stack[i].name == dep {
						for _, f := range stack[i:] {
							cycle = append(cycle, f.name)
						}
						break
					}
				}
				return append(cycle, dep)
			}
		}
	}
	return nil
}

// checkAddressee checks that a request names a target or a group, and that a rollout policy
// goes with a group and is consistent.
func checkAddressee(r *Request) error {
	switch {
	case r.Target != "" && r.Group != "":
		return invalid("the request names target %s and group %s: name one target, or one group for a rollout over its members", quote(r.Target, 64), quote(r.Group, 64))
	case r.Target == "" && r.Group == "":
		return invalid("the request names no target and no group")
	case r.Rollout != nil && r.Group == "":
		return invalid("rollout applies to a group; this request names target %s", quote(r.Target, 64))
	}
	if p := r.Rollout; p != nil {
		if err := p.Check(); err != nil {
			return invalid("rollout: %v", err)
		}
		if p.DryRunAll && !r.DryRun {
			return invalid("rollout: dry_run_all applies to a dry-run request")
		}
	}
	return nil
}

// Check checks a rollout policy's ranges (those of schemas/request.v1.json) and that it sets
// one form of wave size and of failure threshold at most.
func (p RolloutPolicy) Check() error {
	switch {
	case p.WaveSize > 0 && p.WavePercent > 0:
		return errors.New("set wave_size or wave_percent, not both")
	case p.FailureThreshold != nil && p.FailurePercent > 0:
		return errors.New("set failure_threshold or failure_percent, not both")
	case p.Canary != nil && (*p.Canary < 0 || *p.Canary > 1000):
		return errors.New("canary must be 0 to 1000")
	case p.WaveSize < 0 || p.WaveSize > 100000:
		return errors.New("wave_size must be 1 to 100000")
	case p.WavePercent < 0 || p.WavePercent > 100:
		return errors.New("wave_percent must be 1 to 100")
	case p.MaxConcurrent < 0 || p.MaxConcurrent > 1000:
		return errors.New("max_concurrent must be 1 to 1000")
	case p.PauseMS < 0 || p.PauseMS > 86400000:
		return errors.New("pause_ms must be 0 to 86400000 (a day)")
	case p.FailureThreshold != nil && (*p.FailureThreshold < 0 || *p.FailureThreshold > 100000):
		return errors.New("failure_threshold must be 0 to 100000")
	case p.FailurePercent < 0 || p.FailurePercent > 100:
		return errors.New("failure_percent must be 0 to 100")
	}
	return nil
}

// DefaultRolloutPolicy is the worker's rollout policy where neither the request nor the
// group's configuration says otherwise.
func DefaultRolloutPolicy() RolloutPolicy {
	one, zero := 1, 0
	return RolloutPolicy{Canary: &one, WavePercent: 25, MaxConcurrent: 10, FailureThreshold: &zero}
}

// Over returns p with its unset fields taken from base. A size or threshold set in p replaces
// base's in either form (wave_size or wave_percent; failure_threshold or failure_percent).
func (p RolloutPolicy) Over(base RolloutPolicy) RolloutPolicy {
	out := base
	if p.Canary != nil {
		out.Canary = p.Canary
	}
	if p.WaveSize > 0 || p.WavePercent > 0 {
		out.WaveSize, out.WavePercent = p.WaveSize, p.WavePercent
	}
	if p.MaxConcurrent > 0 {
		out.MaxConcurrent = p.MaxConcurrent
	}
	if p.PauseMS > 0 {
		out.PauseMS = p.PauseMS
	}
	if p.FailureThreshold != nil || p.FailurePercent > 0 {
		out.FailureThreshold, out.FailurePercent = p.FailureThreshold, p.FailurePercent
	}
	out.DryRunAll = p.DryRunAll || base.DryRunAll
	return out
}

// WaveSizes splits total members into waves under p (defaults applied): the canary first (when
// p has one and there are members), then waves of WaveSize or WavePercent of the rest. A
// dry-run is one wave: the canary, or every member with DryRunAll.
func (p RolloutPolicy) WaveSizes(total int, dryRun bool) (sizes []int, canary bool) {
	c := 0
	if p.Canary != nil {
		c = min(*p.Canary, total)
	}
	if dryRun {
		if p.DryRunAll || c == 0 {
			return []int{total}, false
		}
		return []int{c}, true
	}
	if c > 0 {
		sizes, canary = append(sizes, c), true
	}
	rest := total - c
	size := p.WaveSize
	if size <= 0 {
		pct := max(p.WavePercent, 1)
		size = max((rest*pct+99)/100, 1)
	}
	for rest > 0 {
		n := min(size, rest)
		sizes = append(sizes, n)
		rest -= n
	}
	return sizes, canary
}

// Tolerates reports whether a wave of size members may have failed failures without halting.
// A canary tolerates none.
func (p RolloutPolicy) Tolerates(failed, size int, canary bool) bool {
	if canary {
		return failed == 0
	}
	if p.FailurePercent > 0 {
		return failed*100 <= size*p.FailurePercent
	}
	if p.FailureThreshold != nil {
		return failed <= *p.FailureThreshold
	}
	return failed == 0
}
