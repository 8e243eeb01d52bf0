package runspage

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

func TestBuildLaysOutPhasesHooksRetriesAndPlainMigrations(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ev := func(ms int, kind, migration, phase, hook string) contract.Event {
		return contract.Event{Time: at(ms), Kind: kind, Migration: migration, Phase: phase, Hook: hook}
	}
	retry := ev(300, contract.KindPhaseRetrying, "001_a", "after_ddl", "flaky")
	retry.Error = &contract.EventError{Code: "hook_failed", Message: "not yet"}
	plain := ev(1000, contract.KindMigrationCompleted, "002_b", "", "")
	plain.DurationMS = 100
	evs := []contract.Event{
		ev(0, contract.KindRunAccepted, "", "", ""),
		ev(100, contract.KindPhaseStarted, "001_a", "after_ddl", ""),
		ev(100, contract.KindHookStarted, "001_a", "after_ddl", "flaky"),
		retry,
		ev(500, contract.KindPhaseStarted, "001_a", "after_ddl", ""),
		ev(500, contract.KindHookStarted, "001_a", "after_ddl", "flaky"),
		{Time: at(700), Kind: contract.KindHookCompleted, Migration: "001_a", Phase: "after_ddl", Hook: "flaky", DurationMS: 200, RowsAffected: 5},
		ev(700, contract.KindPhaseCompleted, "001_a", "after_ddl", ""),
		ev(700, contract.KindMigrationCompleted, "001_a", "", ""),
		plain,
		ev(1000, contract.KindRunCompleted, "", "", ""),
	}
	tl := Build(evs)
	require.Len(t, tl.Lanes, 3)
	phase, hook, ddl := tl.Lanes[0], tl.Lanes[1], tl.Lanes[2]
	require.Equal(t, "001_a after_ddl", phase.Label)
	require.Equal(t, "completed", phase.State)
	require.Equal(t, labelWidth+plotWidth/10, phase.X, "it began at 100 ms of 1 s")
	require.Equal(t, plotWidth*6/10, phase.W, "and ended at 700 ms, after its retry")
	require.Len(t, phase.Marks, 1)
	require.Equal(t, "retry", phase.Marks[0].Kind)
	require.Equal(t, labelWidth+plotWidth*3/10, phase.Marks[0].X)
	require.Contains(t, phase.Marks[0].Title, "hook_failed: not yet")

	require.True(t, hook.Hook)
	require.Equal(t, "flaky", hook.Label)
	require.Contains(t, hook.Title, "5 row(s)")
	require.Equal(t, "002_b ddl", ddl.Label, "a migration without hooks is its DDL")
	require.Equal(t, labelWidth+plotWidth*9/10, ddl.X)
	require.Equal(t, time.Second, tl.Span)
	require.Equal(t, "+1s", tl.Axis[4].Label)
	require.Empty(t, Build(nil).Lanes)

	progress := ev(400, contract.KindBackfillProgress, "001_a", "after_ddl", "fill")
	progress.RowsAffected = 12000
	progress.Data = []byte(`{"rows":12000,"estimated_total":40000,"rows_per_second":2000,"eta_ms":14000}`)
	tl = Build(append(evs[:3:3], progress))
	require.Equal(t, []string{"fill: 12000 of about 40000 row(s) (30%), 2000 rows/s, about 14s left (at 12:00:00)"}, tl.Backfills)
}
