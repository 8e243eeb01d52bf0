package jobs

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// An attempt whose job this process's last advance inserted begins in one statement, built from
// the run row that advance left; when the run changed meanwhile (paused and resumed: a new
// epoch; an attempt counted elsewhere), nothing is recorded from that expectation and begin
// reads the run as for any job.
func TestBeginTakesTheShortWayOnlyWhenTheRunIsAsItsLastAdvanceLeftIt(t *testing.T) {
	t.Parallel()
	hook := contract.HookSpec{Phase: contract.PhaseBeforeDDL, Name: "h", Hook: "sql", Params: map[string]any{"sql": "SELECT 1"}}
	at := Step{Version: "001", Phase: contract.PhaseBeforeDDL}
	noComplete := func(context.Context, pgx.Tx) error { return nil }
	var m *machine
	var ctx context.Context
	started := func(a *attempt) []contract.Event {
		return []contract.Event{m.p.stepEvent(a.rc, contract.KindPhaseStarted, a.step, a.n, a.key())}
	}
	phaseStarted := func(id string) (attempts []int) {
		rows, err := m.db.Query(ctx, `SELECT (convert_from(payload, 'UTF8')::jsonb->>'attempt')::int FROM confiture_queue.outbox
			WHERE subject LIKE $1 ORDER BY seq`, "confiture.events.%."+id+"."+contract.KindPhaseStarted)
		require.NoError(t, err)
		attempts, err = pgx.CollectRows(rows, pgx.RowTo[int])
		require.NoError(t, err)
		return attempts
	}
	begin := func(id string) *attempt {
		job, err := m.river.JobGet(ctx, m.row(t, id).JobID)
		require.NoError(t, err)
		a, done, err := m.p.begin(ctx, job, id, at, noComplete, started)
		require.NoError(t, err)
		require.False(t, done)
		return a
	}

	t.Run("as expected", func(t *testing.T) {
		m = newMachine(t)
		ctx = rivertest.WorkContext(context.Background(), m.river)
		id := m.submit(t, smRequest("short", hook))
		job := m.moveTo(t, id, at)
		require.NotNil(t, m.p.runs.expected(id, job), "the advance left its row for the next attempt")
		m.moveTo(t, id, at) // a second advance replaces the first's expectation
		job = m.row(t, id).JobID
		require.Nil(t, m.p.runs.expected(id, job+1), "an expectation is for its job only, and is taken once")
		m.moveTo(t, id, at)
		a := begin(id)
		require.Equal(t, 1, a.n)
		require.Equal(t, 1, m.row(t, id).Attempt)
		require.Equal(t, []int{1}, phaseStarted(id))
		require.Equal(t, m.row(t, id).Attempt, a.rc.row.Attempt, "the attempt goes on with the run as the statement left it")
	})
	t.Run("paused and resumed meanwhile", func(t *testing.T) {
		m = newMachine(t)
		ctx = rivertest.WorkContext(context.Background(), m.river)
		id := m.submit(t, smRequest("epoch", hook))
		m.moveTo(t, id, at)
		require.NoError(t, m.p.Pause(ctx, id, ""))
		require.NoError(t, m.p.Resume(ctx, id, ""))
		a := begin(id)
		require.Equal(t, 1, a.rc.row.Epoch)
		require.Equal(t, []int{1}, phaseStarted(id), "nothing was recorded from the stale expectation")
		var recorded string
		require.NoError(t, m.db.QueryRow(ctx, `SELECT id::text FROM confiture_queue.outbox WHERE subject LIKE $1`,
			"confiture.events.%."+id+"."+contract.KindPhaseStarted).Scan(&recorded))
		require.Equal(t, outbox.New(refOf(m.row(t, id)), contract.KindPhaseStarted, at.Version, at.Phase, a.key()).ID, recorded,
			"the phase.started recorded is that of the run's new epoch")
	})
	t.Run("an attempt counted elsewhere", func(t *testing.T) {
		m = newMachine(t)
		ctx = rivertest.WorkContext(context.Background(), m.river)
		id := m.submit(t, smRequest("counted", hook))
		m.moveTo(t, id, at)
		_, err := m.db.Exec(ctx, `UPDATE confiture_queue.runs SET attempt = 1 WHERE id = $1`, id)
		require.NoError(t, err)
		a := begin(id)
		require.Equal(t, 2, a.n)
		require.Equal(t, []int{2}, phaseStarted(id))
	})
	t.Run("paused while its job waited", func(t *testing.T) {
		m = newMachine(t)
		ctx = rivertest.WorkContext(context.Background(), m.river)
		id := m.submit(t, smRequest("paused", hook))
		m.moveTo(t, id, at)
		require.NoError(t, m.p.Pause(ctx, id, ""))
		job, err := m.river.JobGet(ctx, m.row(t, id).JobID)
		require.NoError(t, err)
		_, done, err := m.p.begin(ctx, job, id, at, noComplete, started)
		require.NoError(t, err)
		require.True(t, done, "the job lets go of the paused run")
		require.Empty(t, phaseStarted(id))
		require.Equal(t, runstore.RunPaused, m.row(t, id).Status)
	})
}

// A job's arguments say, in River UI, whose run it is and what it does.
func TestJobArgumentsNameTheTargetTheMigrationAndItsHooks(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	ctx := context.Background()
	hooks := []contract.HookSpec{
		{Phase: contract.PhaseAfterDDL, Name: "fill", Hook: "sql", Params: map[string]any{"sql": "SELECT 1"}},
		{Phase: contract.PhaseAfterDDL, Name: "check", Hook: "assert", Params: map[string]any{"sql": "SELECT true"}},
		{Phase: contract.PhaseCleanup, Name: "tidy", Hook: "sql", Params: map[string]any{"sql": "SELECT 1"}},
	}
	id := m.submit(t, smRequest("args", hooks...))
	args := func(job int64) map[string]any {
		var raw []byte
		require.NoError(t, m.db.QueryRow(ctx, `SELECT args FROM confiture_river.river_job WHERE id = $1`, job).Scan(&raw))
		var a map[string]any
		require.NoError(t, json.Unmarshal(raw, &a))
		return a
	}
	require.Equal(t, map[string]any{"run_id": id, "target": "default", "request_id": "args"}, args(m.row(t, id).JobID))
	job := m.moveTo(t, id, Step{Version: "001", Phase: contract.PhaseAfterDDL})
	require.Equal(t, map[string]any{"run_id": id, "version": "001", "phase": "after_ddl", "target": "default", "migration": "001_m",
		"hooks": []any{"fill", "check"}}, args(job))
}
