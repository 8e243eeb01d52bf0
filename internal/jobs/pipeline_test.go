package jobs

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

func plan(versions ...string) runstore.Plan {
	out := make(runstore.Plan, len(versions))
	for i, v := range versions {
		out[i] = runstore.PlanEntry{Version: v}
	}
	return out
}

func TestPhasesFor(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{
		"before_validation", "before_ddl", "ddl", "after_ddl", "after_validation", "cleanup",
	}, PhasesFor(contract.DirectionUp))
	require.Equal(t, []string{"before_ddl", "ddl", "cleanup"}, PhasesFor(contract.DirectionDown))
	for _, dir := range []string{contract.DirectionUp, contract.DirectionDown} {
		require.NotContains(t, PhasesFor(dir), contract.PhaseOnError, "on_error only follows a failure")
	}
}

type transition struct {
	from                   Step
	to                     Step
	migrationDone, runDone bool
}

func step(v, p string) Step { return Step{Version: v, Phase: p} }

func TestNextStepUp(t *testing.T) {
	t.Parallel()
	v1, v2 := "20240101000000", "20240102000000"
	plan := plan(v1, v2)
	require.Equal(t, step(v1, "before_validation"), FirstStep(contract.DirectionUp, plan, nil))
	tests := []transition{
		{step(v1, "before_validation"), step(v1, "before_ddl"), false, false},
		{step(v1, "before_ddl"), step(v1, "ddl"), false, false},
		{step(v1, "ddl"), step(v1, "after_ddl"), false, false},
		{step(v1, "after_ddl"), step(v1, "after_validation"), false, false},
		{step(v1, "after_validation"), step(v1, "cleanup"), false, false},
		{step(v1, "cleanup"), step(v2, "before_validation"), true, false},
		{step(v2, "before_validation"), step(v2, "before_ddl"), false, false},
		{step(v2, "before_ddl"), step(v2, "ddl"), false, false},
		{step(v2, "ddl"), step(v2, "after_ddl"), false, false},
		{step(v2, "after_ddl"), step(v2, "after_validation"), false, false},
		{step(v2, "after_validation"), step(v2, "cleanup"), false, false},
		{step(v2, "cleanup"), Step{}, true, true},
	}
	runTransitions(t, contract.DirectionUp, plan, tests)
}

func TestNextStepDown(t *testing.T) {
	t.Parallel()
	// A down plan is already in reverse version order.
	plan := plan("003", "002", "001")
	require.Equal(t, step("003", "before_ddl"), FirstStep(contract.DirectionDown, plan, nil))
	tests := []transition{
		{step("003", "before_ddl"), step("003", "ddl"), false, false},
		{step("003", "ddl"), step("003", "cleanup"), false, false},
		{step("003", "cleanup"), step("002", "before_ddl"), true, false},
		{step("002", "before_ddl"), step("002", "ddl"), false, false},
		{step("002", "ddl"), step("002", "cleanup"), false, false},
		{step("002", "cleanup"), step("001", "before_ddl"), true, false},
		{step("001", "before_ddl"), step("001", "ddl"), false, false},
		{step("001", "ddl"), step("001", "cleanup"), false, false},
		{step("001", "cleanup"), Step{}, true, true},
	}
	runTransitions(t, contract.DirectionDown, plan, tests)
}

func TestNextStepSingleMigration(t *testing.T) {
	t.Parallel()
	next, migDone, runDone := NextStep(contract.DirectionUp, plan("001"), step("001", "cleanup"), nil)
	require.Equal(t, Step{}, next)
	require.True(t, migDone)
	require.True(t, runDone)
	next, migDone, runDone = NextStep(contract.DirectionDown, plan("001"), step("001", "cleanup"), nil)
	require.Equal(t, Step{}, next)
	require.True(t, migDone)
	require.True(t, runDone)
}

// TestWalkMatchesSpec walks whole runs from FirstStep with NextStep and compares the steps with
// the order SPEC.md promises.
func TestWalkMatchesSpec(t *testing.T) {
	t.Parallel()
	walk := func(direction string, plan runstore.Plan) []string {
		var out []string
		cur := FirstStep(direction, plan, nil)
		for range 100 {
			out = append(out, cur.Version+"/"+cur.Phase)
			next, _, done := NextStep(direction, plan, cur, nil)
			if done {
				return out
			}
			cur = next
		}
		t.Fatalf("%s run over %v does not end", direction, plan)
		return nil
	}
	var up []string
	for _, v := range []string{"001", "002"} {
		for _, p := range []string{"before_validation", "before_ddl", "ddl", "after_ddl", "after_validation", "cleanup"} {
			up = append(up, v+"/"+p)
		}
	}
	require.Equal(t, up, walk(contract.DirectionUp, plan("001", "002")))
	require.Equal(t, []string{
		"002/before_ddl", "002/ddl", "002/cleanup", "001/before_ddl", "001/ddl", "001/cleanup",
	}, walk(contract.DirectionDown, plan("002", "001")))
}

// A migration left incomplete starts where its earlier run stopped; the next one from its start.
func TestNextStepResumesAnIncompleteMigration(t *testing.T) {
	t.Parallel()
	p := runstore.Plan{{Version: "001", From: "after_validation"}, {Version: "002"}}
	require.Equal(t, step("001", "after_validation"), FirstStep(contract.DirectionUp, p, nil))
	runTransitions(t, contract.DirectionUp, p, []transition{
		{step("001", "after_validation"), step("001", "cleanup"), false, false},
		{step("001", "cleanup"), step("002", "before_validation"), true, false},
	})
	p = runstore.Plan{{Version: "001"}, {Version: "002", From: "cleanup"}}
	runTransitions(t, contract.DirectionUp, p, []transition{
		{step("001", "cleanup"), step("002", "cleanup"), true, false},
		{step("002", "cleanup"), Step{}, true, true},
	})
}

func TestCompletesAt(t *testing.T) {
	t.Parallel()
	m := func(phases ...string) *contract.Migration {
		mg := &contract.Migration{Version: "001", Name: "m"}
		for _, p := range phases {
			mg.Hooks = append(mg.Hooks, contract.HookSpec{Phase: p, Name: p, Hook: "sql"})
		}
		return mg
	}
	require.Equal(t, "ddl", completesAt(m(), "before_validation"), "no later hooks: the DDL completes it")
	require.Equal(t, "ddl", completesAt(m("before_ddl", "on_error"), "before_validation"))
	require.Equal(t, "after_validation", completesAt(m("after_ddl", "after_validation"), "before_validation"))
	require.Equal(t, "cleanup", completesAt(m("after_ddl", "cleanup"), "after_validation"))
	require.Equal(t, "", completesAt(m("after_ddl"), "after_validation"), "nothing left to do: marked at cleanup")
}

func runTransitions(t *testing.T, direction string, plan runstore.Plan, tests []transition) {
	t.Helper()
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.from.Version, tt.from.Phase), func(t *testing.T) {
			t.Parallel()
			next, migDone, runDone := NextStep(direction, plan, tt.from, nil)
			require.Equal(t, tt.to, next)
			require.Equal(t, tt.migrationDone, migDone, "migrationDone")
			require.Equal(t, tt.runDone, runDone, "runDone")
		})
	}
}

// Phases without hooks are passed: a migration without hooks is its ddl step alone, and the
// run goes from one migration's ddl to the next's. A resumed migration with no work left keeps
// its last phase, where it is recorded complete; a step that has no work (the job of a worker
// that ran every phase) goes on to the migration's next step with work.
func TestNextStepSkipsPhasesWithoutWork(t *testing.T) {
	t.Parallel()
	hooksIn := map[string][]string{"002": {"before_ddl", "after_validation"}}
	works := func(s Step) bool { return s.Phase == "ddl" || slices.Contains(hooksIn[s.Version], s.Phase) }
	p := plan("001", "002", "003")
	require.Equal(t, step("001", "ddl"), FirstStep(contract.DirectionUp, p, works))
	var got []Step
	for cur := FirstStep(contract.DirectionUp, p, works); ; {
		got = append(got, cur)
		next, _, done := NextStep(contract.DirectionUp, p, cur, works)
		if done {
			break
		}
		cur = next
	}
	require.Equal(t, []Step{step("001", "ddl"), step("002", "before_ddl"), step("002", "ddl"),
		step("002", "after_validation"), step("003", "ddl")}, got)

	next, migDone, _ := NextStep(contract.DirectionUp, p, step("002", "before_validation"), works)
	require.Equal(t, step("002", "before_ddl"), next)
	require.False(t, migDone)
	next, migDone, _ = NextStep(contract.DirectionUp, p, step("002", "after_ddl"), works)
	require.Equal(t, step("002", "after_validation"), next)
	require.False(t, migDone)

	resumed := runstore.Plan{{Version: "001", From: "after_ddl"}, {Version: "003"}}
	require.Equal(t, step("001", "cleanup"), FirstStep(contract.DirectionUp, resumed, works))
	next, migDone, _ = NextStep(contract.DirectionUp, resumed, step("001", "cleanup"), works)
	require.Equal(t, step("003", "ddl"), next)
	require.True(t, migDone)

	require.Equal(t, step("003", "ddl"), FirstStep(contract.DirectionDown, plan("003", "002"), works))
	next, _, _ = NextStep(contract.DirectionDown, plan("003", "002"), step("003", "ddl"), works)
	require.Equal(t, step("002", "before_ddl"), next)
}
