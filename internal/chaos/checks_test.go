package chaos

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// testMigration has sql hooks in before_ddl, after_ddl (with a backfill, when segmented) and
// cleanup, and one in on_error.
func testMigration(segmented bool) *Migration {
	m := &Migration{Segmented: map[string]bool{}}
	m.Version = "002"
	for _, h := range []struct{ phase, hook string }{
		{contract.PhaseBeforeDDL, "prep"}, {contract.PhaseAfterDDL, "after1"}, {contract.PhaseCleanup, "tidy"}, {contract.PhaseOnError, "undo"},
	} {
		m.Hooks = append(m.Hooks, contract.HookSpec{Phase: h.phase, Name: h.hook, Hook: "sql"})
		m.Effects = append(m.Effects, Effect{Phase: h.phase, Hook: h.hook, Name: "002." + h.phase + "." + h.hook})
	}
	m.Effects = append(m.Effects, Effect{Phase: contract.PhaseDDL, Hook: "ddl", Name: "002.ddl.ddl"})
	if segmented {
		m.Hooks = append(m.Hooks, contract.HookSpec{Phase: contract.PhaseAfterDDL, Name: "fill", Hook: "backfill"})
		m.Segmented[contract.PhaseAfterDDL] = true
	}
	return m
}

func TestExpectedCount(t *testing.T) {
	type want struct{ lo, hi int }
	row := func(phase string, complete bool) trackingRow {
		return trackingRow{Version: "002", Phase: phase, Complete: complete}
	}
	for _, c := range []struct {
		name      string
		segmented bool
		row       trackingRow
		tracked   bool
		want      map[string]want
	}{
		{"no tracking row", false, trackingRow{}, false, map[string]want{
			contract.PhaseBeforeDDL: {0, 1}, contract.PhaseDDL: {0, 0}, contract.PhaseAfterDDL: {0, 0},
			contract.PhaseCleanup: {0, 0}, contract.PhaseOnError: {0, 1}}},
		{"complete", false, row(contract.PhaseCleanup, true), true, map[string]want{
			contract.PhaseBeforeDDL: {1, 1}, contract.PhaseDDL: {1, 1}, contract.PhaseAfterDDL: {1, 1},
			contract.PhaseCleanup: {1, 1}, contract.PhaseOnError: {0, 1}}},
		{"incomplete at ddl, transactional after_ddl", false, row(contract.PhaseDDL, false), true, map[string]want{
			contract.PhaseBeforeDDL: {1, 1}, contract.PhaseDDL: {1, 1}, contract.PhaseAfterDDL: {0, 0},
			contract.PhaseCleanup: {0, 0}, contract.PhaseOnError: {0, 1}}},
		{"incomplete at ddl, after_ddl in slices", true, row(contract.PhaseDDL, false), true, map[string]want{
			contract.PhaseBeforeDDL: {1, 1}, contract.PhaseDDL: {1, 1}, contract.PhaseAfterDDL: {0, 1},
			contract.PhaseCleanup: {0, 0}}},
		{"incomplete at after_ddl", true, row(contract.PhaseAfterDDL, false), true, map[string]want{
			contract.PhaseAfterDDL: {1, 1}, contract.PhaseCleanup: {0, 0}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := testMigration(c.segmented)
			for phase, w := range c.want {
				lo, hi := expectedCount(m, c.row, c.tracked, Effect{Phase: phase, Hook: "h"})
				require.Equal(t, w, want{lo, hi}, phase)
			}
		})
	}
}

// A no_transaction migration's early DDL statement may have committed without the tracking row;
// its last one, which writes the row, may not; with the row, each once.
func TestExpectedCountOfANoTransactionDDL(t *testing.T) {
	m := testMigration(false)
	m.NoTransaction = true
	early, last := Effect{Phase: contract.PhaseDDL, Hook: "early"}, Effect{Phase: contract.PhaseDDL, Hook: "ddl"}
	lo, hi := expectedCount(m, trackingRow{}, false, early)
	require.Equal(t, [2]int{0, 1}, [2]int{lo, hi})
	lo, hi = expectedCount(m, trackingRow{}, false, last)
	require.Equal(t, [2]int{0, 0}, [2]int{lo, hi})
	for _, e := range []Effect{early, last} {
		lo, hi = expectedCount(m, trackingRow{Version: "002", Phase: contract.PhaseDDL}, true, e)
		require.Equal(t, [2]int{1, 1}, [2]int{lo, hi}, e.Hook)
	}
	m.NoTransaction = false
	lo, hi = expectedCount(m, trackingRow{}, false, early)
	require.Equal(t, [2]int{0, 0}, [2]int{lo, hi}, "in one transaction, nothing without the row")
}

// fakeSchedule is a schedule with a plan of one target holding m, and nothing running.
func fakeSchedule(t *testing.T, m *Migration) *schedule {
	f, err := os.Create(filepath.Join(t.TempDir(), "harness.log"))
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	plan := &Plan{Seed: 7, Window: time.Minute, Targets: []TargetPlan{{Name: "t1", Migrations: []Migration{*m}}}}
	return &schedule{t: t, plan: plan, harnessLog: f, start: time.Now(), res: &Result{}, resumed: map[string]int64{},
		published: map[string]publishedRequest{}, targets: []*targetEnv{{plan: &plan.Targets[0]}}}
}

// The checks of invariants 2 and 3 find a doubled effect, an effect beyond the phase reached, a
// missing one, and a counter the plan does not know.
func TestCheckEffectsFindsBrokenEffects(t *testing.T) {
	m := testMigration(false)
	e := fakeSchedule(t, m)
	snap := &snapshot{Targets: map[string]*targetState{"t1": {
		Tracking: map[string]trackingRow{"002": {Version: "002", Name: "x", Phase: contract.PhaseDDL}},
		Counters: map[string]int{"002.before_ddl.prep": 2, "002.cleanup.tidy": 1, "999.ddl.ddl": 1},
		Indexes:  map[string]bool{},
	}}}
	e.checkEffects(snap, false)
	var got []string
	for _, v := range e.res.Violations {
		require.Equal(t, uint64(7), v.Seed)
		got = append(got, v.What)
	}
	require.ElementsMatch(t, []string{
		"effect 002.before_ddl.prep committed 2 times (tracking row complete=false phase=ddl)",
		"effect 002.ddl.ddl missing although its phase committed (tracking row complete=false phase=ddl)",
		"effect 002.cleanup.tidy committed although its phase did not (tracking row complete=false phase=ddl)",
		"counter 999.ddl.ddl=1 is no effect of the plan",
	}, got)
}

// Invariant 3 compares the tracking table with the last final event, and is quiet when they
// agree.
func TestCheckTrackingComparesTheLastFinalEvent(t *testing.T) {
	m := testMigration(false)
	final := func(run string, data string) outboxRow {
		return outboxRow{ID: run + "-final", Event: &contract.Event{Kind: contract.KindRunFailed, Run: run, Target: "t1", Data: []byte(data)}}
	}
	state := &targetState{Tracking: map[string]trackingRow{"002": {Version: "002", Name: "x", Phase: contract.PhaseAfterDDL}}}
	runs := []runRow{{ID: "a", Target: "t1", Status: "failed"}, {ID: "b", Target: "t1", Status: "failed"}}

	e := fakeSchedule(t, m)
	e.checkTracking(&snapshot{Runs: runs, Targets: map[string]*targetState{"t1": state}, Outbox: []outboxRow{
		final("a", `{}`), final("b", `{"incomplete":[{"version":"002","name":"x","phase":"after_ddl"}]}`)}})
	require.Empty(t, e.res.Violations)

	e = fakeSchedule(t, m)
	e.checkTracking(&snapshot{Runs: runs, Targets: map[string]*targetState{"t1": state}, Outbox: []outboxRow{
		final("b", `{"incomplete":[{"version":"002","name":"x","phase":"after_ddl"}]}`), final("a", `{}`)}})
	require.Len(t, e.res.Violations, 1)
	require.Equal(t, 3, e.res.Violations[0].Invariant)
	require.Equal(t, "a", e.res.Violations[0].Run)
}
