package hooks

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// spec declares a sql hook named name in after_ddl.
func spec(name string, priority int, dependsOn ...string) contract.HookSpec {
	return contract.HookSpec{
		Phase: contract.PhaseAfterDDL, Name: name, Hook: "sql", Priority: priority, DependsOn: dependsOn,
		Params: map[string]any{"sql": "SELECT 1"},
	}
}

func names(ps []Planned) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Spec.Name)
	}
	return out
}

func TestPlanOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		specs []contract.HookSpec
		want  []string
	}{
		{
			name:  "declaration order without priorities",
			specs: []contract.HookSpec{spec("c", 0), spec("a", 0), spec("b", 0)},
			want:  []string{"c", "a", "b"},
		},
		{
			name:  "lower priority first",
			specs: []contract.HookSpec{spec("a", 10), spec("b", 0), spec("c", 5), spec("d", -3)},
			want:  []string{"d", "b", "c", "a"},
		},
		{
			name:  "ties in declaration order",
			specs: []contract.HookSpec{spec("x", 1), spec("y", 0), spec("z", 1), spec("w", 0), spec("v", 1)},
			want:  []string{"y", "w", "x", "z", "v"},
		},
		{
			name:  "depends_on wins over priority",
			specs: []contract.HookSpec{spec("check", -100, "backfill"), spec("backfill", 100)},
			want:  []string{"backfill", "check"},
		},
		{
			name: "a released dependent is ordered by priority among the ready hooks",
			// e waits for b; once b ran, e (priority 1) goes before c (priority 2) and after
			// d (priority 0) which was ready all along.
			specs: []contract.HookSpec{spec("b", 5), spec("c", 2), spec("d", 0), spec("e", 1, "b")},
			want:  []string{"d", "c", "b", "e"},
		},
		{
			name:  "chain against declaration order",
			specs: []contract.HookSpec{spec("third", 0, "second"), spec("second", 0, "first"), spec("first", 0)},
			want:  []string{"first", "second", "third"},
		},
		{
			name:  "diamond",
			specs: []contract.HookSpec{spec("last", 0, "left", "right"), spec("right", 1, "root"), spec("left", 2, "root"), spec("root", 9)},
			want:  []string{"root", "right", "left", "last"},
		},
	}
	r := builtinRegistry(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ps, err := r.Plan(contract.PhaseAfterDDL, tt.specs)
			require.NoError(t, err)
			require.Equal(t, tt.want, names(ps))
			for _, p := range ps {
				require.NotNil(t, p.Hook)
				require.NotNil(t, p.Def)
				require.Equal(t, "sql", p.Def.Name)
			}
		})
	}
}

func TestOrderHooksIndexes(t *testing.T) {
	t.Parallel()
	order, err := orderHooks([]contract.HookSpec{spec("a", 3), spec("b", 1, "a"), spec("c", 2)})
	require.NoError(t, err)
	require.Equal(t, []int{2, 0, 1}, order)

	order, err = orderHooks(nil)
	require.NoError(t, err)
	require.Empty(t, order)
}

func TestPlanOnlyPlansItsPhase(t *testing.T) {
	t.Parallel()
	r := builtinRegistry(t)
	other := spec("other", -10)
	other.Phase = contract.PhaseCleanup
	// A declaration of another phase is ignored, even one that would be invalid here.
	broken := contract.HookSpec{Phase: contract.PhaseBeforeDDL, Name: "broken", Hook: "nope"}
	ps, err := r.Plan(contract.PhaseAfterDDL, []contract.HookSpec{other, spec("mine", 0), broken})
	require.NoError(t, err)
	require.Equal(t, []string{"mine"}, names(ps))

	ps, err = r.Plan(contract.PhaseAfterValidation, []contract.HookSpec{other})
	require.NoError(t, err)
	require.Empty(t, ps)
}

func TestPlanErrors(t *testing.T) {
	t.Parallel()
	r := builtinRegistry(t)
	require.NoError(t, r.Register(Definition{
		Name: "guard", Source: "github.com/acme/hooks", New: noopNew,
		Phases: []string{contract.PhaseBeforeValidation, contract.PhaseBeforeDDL},
	}))
	tests := []struct {
		name  string
		specs []contract.HookSpec
		is    error
		want  []string
	}{
		{
			name:  "three-node cycle",
			specs: []contract.HookSpec{spec("a", 0, "b"), spec("b", 0, "c"), spec("c", 0, "a")},
			is:    ErrInvalidHooks,
			want:  []string{"depends_on cycle in after_ddl: a -> b -> c -> a"},
		},
		{
			name: "cycle reached through a hook outside it",
			// d only waits for the cycle; it is not part of the path reported.
			specs: []contract.HookSpec{spec("d", 0, "a"), spec("a", 0, "b"), spec("b", 0, "c"), spec("c", 0, "a"), spec("ok", 0)},
			is:    ErrInvalidHooks,
			want:  []string{"depends_on cycle in after_ddl: a -> b -> c -> a"},
		},
		{
			name:  "two-node cycle",
			specs: []contract.HookSpec{spec("x", 0, "y"), spec("y", 0, "x")},
			is:    ErrInvalidHooks,
			want:  []string{"x -> y -> x"},
		},
		{
			name:  "self dependency",
			specs: []contract.HookSpec{spec("loner", 0, "loner")},
			is:    ErrInvalidHooks,
			want:  []string{`hook "loner" in after_ddl depends on itself`},
		},
		{
			name:  "unknown dependency",
			specs: []contract.HookSpec{spec("a", 0), spec("b", 0, "a", "ghost")},
			is:    ErrInvalidHooks,
			want:  []string{`hook "b"`, `depends on "ghost"`},
		},
		{
			name: "dependency on a hook of another phase",
			specs: []contract.HookSpec{
				{Phase: contract.PhaseBeforeDDL, Name: "early", Hook: "sql", Params: map[string]any{"sql": "SELECT 1"}},
				spec("late", 0, "early"),
			},
			is:   ErrInvalidHooks,
			want: []string{`hook "late"`, `depends on "early"`},
		},
		{
			name:  "duplicate names",
			specs: []contract.HookSpec{spec("twin", 0), spec("other", 0), spec("twin", 1)},
			is:    ErrInvalidHooks,
			want:  []string{`two hooks named "twin" in after_ddl`},
		},
		{
			name:  "unknown hook type",
			specs: []contract.HookSpec{spec("fine", 0), {Phase: contract.PhaseAfterDDL, Name: "fancy", Hook: "no-such-hook"}},
			is:    ErrUnknownHook,
			want:  []string{`"no-such-hook"`, `"fancy"`, "after_ddl"},
		},
		{
			name:  "mistyped hook type",
			specs: []contract.HookSpec{{Phase: contract.PhaseAfterDDL, Name: "count", Hook: "sqll"}},
			is:    ErrUnknownHook,
			want:  []string{`unknown hook "sqll" (declared as "count" in after_ddl); did you mean "sql"?`},
		},
		{
			name: "params rejected by the hook",
			specs: []contract.HookSpec{{
				Phase: contract.PhaseAfterDDL, Name: "typo", Hook: "sql", Params: map[string]any{"sqll": "SELECT 1"},
			}},
			is:   ErrInvalidHooks,
			want: []string{`hook "typo" (sql) in after_ddl`, "sqll"},
		},
		{
			name: "hook not allowed in the phase",
			specs: []contract.HookSpec{{
				Phase: contract.PhaseAfterDDL, Name: "too-late", Hook: "guard",
			}},
			is:   ErrInvalidHooks,
			want: []string{`hook "too-late" (guard) may not run in after_ddl`, "before_validation, before_ddl"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ps, err := r.Plan(contract.PhaseAfterDDL, tt.specs)
			require.ErrorIs(t, err, tt.is)
			require.Nil(t, ps)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestPlanAllowsHookInItsPhases(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	require.NoError(t, r.Register(Definition{Name: "guard", New: noopNew, Phases: []string{contract.PhaseBeforeDDL}}))
	ps, err := r.Plan(contract.PhaseBeforeDDL, []contract.HookSpec{{Phase: contract.PhaseBeforeDDL, Name: "g", Hook: "guard"}})
	require.NoError(t, err)
	require.Equal(t, []string{"g"}, names(ps))
}

func TestPlanAll(t *testing.T) {
	t.Parallel()
	r := builtinRegistry(t)
	at := func(phase string, s contract.HookSpec) contract.HookSpec { s.Phase = phase; return s }

	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		plans, err := r.PlanAll([]contract.HookSpec{
			at(contract.PhaseBeforeValidation, spec("v", 0)),
			at(contract.PhaseAfterDDL, spec("b", 1)),
			at(contract.PhaseAfterDDL, spec("a", 0)),
			at(contract.PhaseOnError, spec("e", 0)),
		})
		require.NoError(t, err)
		require.Equal(t, []string{"v"}, names(plans[contract.PhaseBeforeValidation]))
		require.Equal(t, []string{"a", "b"}, names(plans[contract.PhaseAfterDDL]))
		require.Equal(t, []string{"e"}, names(plans[contract.PhaseOnError]))
		require.Empty(t, plans[contract.PhaseCleanup])
		require.NotContains(t, plans, contract.PhaseDDL)
	})

	t.Run("errors of several phases are all reported", func(t *testing.T) {
		t.Parallel()
		_, err := r.PlanAll([]contract.HookSpec{
			{Phase: contract.PhaseBeforeDDL, Name: "mystery", Hook: "no-such-hook"},
			at(contract.PhaseAfterDDL, spec("a", 0, "b")),
			at(contract.PhaseAfterDDL, spec("b", 0, "a")),
			{Phase: contract.PhaseCleanup, Name: "typo", Hook: "sql", Params: map[string]any{"sqll": "x"}},
			{Phase: contract.PhaseDDL, Name: "in-ddl", Hook: "sql", Params: map[string]any{"sql": "SELECT 1"}},
			at(contract.PhaseOnError, spec("fine", 0)),
		})
		require.ErrorIs(t, err, ErrUnknownHook)
		require.ErrorIs(t, err, ErrInvalidHooks)
		msg := err.Error()
		for _, w := range []string{
			`"no-such-hook"`,
			"a -> b -> a",
			"sqll",
			`hook "in-ddl" is declared in "ddl", which is not a hook phase`,
		} {
			require.Contains(t, msg, w)
		}
		var joined interface{ Unwrap() []error }
		require.True(t, errors.As(err, &joined))
		require.Len(t, joined.Unwrap(), 4, "one error per failing phase plus the misplaced hook:\n%s", msg)
		require.NotContains(t, msg, `"fine"`)
	})
}
