package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/backfill"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// The run state machine's transitions, driven directly against a real queue database with a
// River client that works no jobs: no worker process, no NATS.

type machine struct {
	p     *Pipeline
	store *runstore.Store
	db    *pgxpool.Pool
	river *river.Client[pgx.Tx]
}

func newMachine(t *testing.T) *machine {
	t.Helper()
	ctx := context.Background()
	dsn := testdb.New(t)
	db, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	require.NoError(t, runstore.Migrate(ctx, db, runstore.DefaultSchema, runstore.DefaultRiverSchema, nil))
	targets, err := target.NewSet([]target.Config{{Name: "default", DSN: dsn}})
	require.NoError(t, err)
	t.Cleanup(targets.Close)
	reg := hooks.NewRegistry()
	require.NoError(t, hooks.RegisterBuiltins(reg))
	require.NoError(t, reg.Register(backfill.Definition()))
	store := runstore.NewStore(db, runstore.DefaultSchema)
	workers := river.NewWorkers()
	p, err := New(&Config{Store: store, Targets: targets, Registry: reg}, workers)
	require.NoError(t, err)
	rc, err := river.NewClient(riverpgxv5.New(db), &river.Config{Schema: runstore.DefaultRiverSchema, Workers: workers})
	require.NoError(t, err)
	p.SetClient(rc)
	return &machine{p: p, store: store, db: db, river: rc}
}

// submit records a run of req and admits it, as intake does.
func (m *machine) submit(t *testing.T, req *contract.Request) string {
	t.Helper()
	ctx := context.Background()
	body, err := json.Marshal(req)
	require.NoError(t, err)
	run := &runstore.Run{ID: contract.RunID(req.Target, req.ID), RequestID: req.ID, Target: req.Target, Direction: req.Direction,
		Request: body, RequestSHA256: "sha-" + req.ID}
	require.NoError(t, pgx.BeginFunc(ctx, m.db, func(tx pgx.Tx) error {
		if err := m.store.LockTarget(ctx, tx, req.Target); err != nil {
			return err
		}
		if _, _, err := m.store.InsertRun(ctx, tx, run); err != nil {
			return err
		}
		return m.p.Admit(ctx, tx, run)
	}))
	return run.ID
}

func (m *machine) row(t *testing.T, id string) *runstore.Run {
	t.Helper()
	r, err := m.store.GetRun(context.Background(), m.db, id)
	require.NoError(t, err)
	return r
}

// events returns the kinds of run's events in the outbox, oldest first.
func (m *machine) events(t *testing.T, id string) []string {
	t.Helper()
	rows, err := m.db.Query(context.Background(), `SELECT payload FROM confiture_queue.outbox WHERE subject LIKE $1 ORDER BY seq`,
		"confiture.events.%."+id+".%")
	require.NoError(t, err)
	payloads, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	require.NoError(t, err)
	var kinds []string
	for _, p := range payloads {
		var ev contract.Event
		require.NoError(t, json.Unmarshal(p, &ev))
		kinds = append(kinds, ev.Kind)
	}
	return kinds
}

func (m *machine) lastEvent(t *testing.T, id string) contract.Event {
	t.Helper()
	var p []byte
	require.NoError(t, m.db.QueryRow(context.Background(), `SELECT payload FROM confiture_queue.outbox WHERE subject LIKE $1
		ORDER BY seq DESC LIMIT 1`, "confiture.events.%."+id+".%").Scan(&p))
	var ev contract.Event
	require.NoError(t, json.Unmarshal(p, &ev))
	return ev
}

func (m *machine) jobState(t *testing.T, id int64) string {
	t.Helper()
	var s string
	require.NoError(t, m.db.QueryRow(context.Background(), `SELECT state::text FROM confiture_river.river_job WHERE id = $1`, id).Scan(&s))
	return s
}

func smRequest(id string, hooksOf ...contract.HookSpec) *contract.Request {
	return &contract.Request{Schema: contract.RequestSchemaV1, ID: id, Target: "default", Direction: contract.DirectionUp,
		Migrations: []contract.Migration{{Version: "001", Name: "m", UpSQL: "SELECT 1", Checksum: contract.Checksum("SELECT 1"), Hooks: hooksOf}}}
}

// moveTo moves a running run from its step to step, as its job's success would.
func (m *machine) moveTo(t *testing.T, id string, step Step) int64 {
	t.Helper()
	ctx := context.Background()
	rc, err := m.p.loadRun(ctx, id)
	require.NoError(t, err)
	require.NoError(t, m.p.inTx(ctx, func(tx pgx.Tx) error {
		return m.p.advance(ctx, tx, m.river, rc, rc.row.Step(), rc.row.JobID, step, runstore.Plan{{Version: "001"}})
	}))
	return m.row(t, id).JobID
}

func TestAdmissionRunsOneRunOfATargetAtATimeInRecordedOrder(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	a, b := m.submit(t, smRequest("a")), m.submit(t, smRequest("b"))
	ra, rb := m.row(t, a), m.row(t, b)
	require.Equal(t, runstore.RunRunning, ra.Status)
	require.Equal(t, planStep, ra.Step())
	require.Equal(t, "available", m.jobState(t, ra.JobID), "the running run has its live job")
	require.Equal(t, runstore.RunQueued, rb.Status)
	require.Zero(t, rb.JobID)
}

func TestOperatorActions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMachine(t)
	a, b := m.submit(t, smRequest("a")), m.submit(t, smRequest("b"))

	err := m.p.Pause(ctx, b, "")
	require.ErrorIs(t, err, ErrRunState, "a queued run cannot be paused")
	var se *StateError
	require.ErrorAs(t, err, &se)
	require.Equal(t, runstore.RunQueued, se.Status)

	job := m.row(t, a).JobID
	require.NoError(t, m.p.Pause(ctx, a, "maintenance window"))
	require.Equal(t, runstore.RunPaused, m.row(t, a).Status)
	require.Equal(t, contract.KindRunPaused, m.lastEvent(t, a).Kind)
	require.Contains(t, m.lastEvent(t, a).Message, "maintenance window")
	require.ErrorIs(t, m.p.Pause(ctx, a, ""), ErrRunState, "already paused")

	require.NoError(t, m.p.Resume(ctx, a, ""))
	ra := m.row(t, a)
	require.Equal(t, runstore.RunRunning, ra.Status)
	require.Equal(t, job, ra.JobID, "its job never ran: it is still the live one")
	require.Equal(t, 1, ra.Epoch)
	require.Equal(t, contract.KindRunResumed, m.lastEvent(t, a).Kind)

	require.NoError(t, m.p.Fail(ctx, a, "wrong deploy"))
	ra = m.row(t, a)
	require.Equal(t, runstore.RunFailed, ra.Status)
	require.Equal(t, job, ra.StoppedByJob)
	final := m.lastEvent(t, a)
	require.Equal(t, contract.KindRunFailed, final.Kind)
	require.Equal(t, contract.CodeCancelled, final.Error.Code)
	require.Equal(t, "cancelled", m.jobState(t, job), "the failed run's job will not run")
	require.Equal(t, runstore.RunRunning, m.row(t, b).Status, "failing a run admits the next one")

	require.NoError(t, m.p.Retry(ctx, a, ""))
	ra = m.row(t, a)
	require.Equal(t, runstore.RunQueued, ra.Status, "retried behind the running run")
	require.Equal(t, contract.KindRunRetried, m.lastEvent(t, a).Kind)
	require.Empty(t, ra.FailedPhase)
	require.NoError(t, m.p.Fail(ctx, b, ""))
	ra = m.row(t, a)
	require.Equal(t, runstore.RunRunning, ra.Status, "admitted once the target is free")
	require.Equal(t, planStep, ra.Step(), "it plans again")
	require.Equal(t, "available", m.jobState(t, ra.JobID))
	require.Equal(t, []string{contract.KindRunPaused, contract.KindRunResumed, contract.KindRunFailed, contract.KindRunRetried},
		m.events(t, a))
}

func TestFailingAQueuedRunAndARunInItsOnErrorHooks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMachine(t)
	onError := contract.HookSpec{Phase: "on_error", Name: "notify", Hook: "sql", Params: map[string]any{"sql": "SELECT 1"}}
	a, b := m.submit(t, smRequest("a", onError)), m.submit(t, smRequest("b"))
	require.NoError(t, m.p.Fail(ctx, b, "not needed"))
	require.Equal(t, runstore.RunFailed, m.row(t, b).Status)
	require.Equal(t, []string{contract.KindRunFailed}, m.events(t, b))
	require.Equal(t, "the run failed before it started: failed by an operator: not needed", m.lastEvent(t, b).Message)

	m.moveTo(t, a, Step{Version: "001", Phase: "after_ddl"})
	require.NoError(t, m.p.Fail(ctx, a, "first"))
	require.Equal(t, Step{Version: "001", Phase: "on_error"}, m.row(t, a).Step())
	require.NoError(t, m.p.Fail(ctx, a, "second"))
	ra := m.row(t, a)
	require.Equal(t, runstore.RunFailed, ra.Status)
	final := m.lastEvent(t, a)
	require.Equal(t, contract.KindRunFailed, final.Kind)
	require.Equal(t, "after_ddl", final.Phase, "the original failure")
	require.Contains(t, final.Message, "on_error was stopped: failed by an operator: second")
	require.ErrorIs(t, m.p.Fail(ctx, a, ""), ErrRunState, "a failed run cannot fail again")
}

func TestFailingARunAtAPhaseRunsItsOnErrorHooks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMachine(t)
	a := m.submit(t, smRequest("a", contract.HookSpec{Phase: "on_error", Name: "notify", Hook: "sql", Params: map[string]any{"sql": "SELECT 1"}}))
	m.moveTo(t, a, Step{Version: "001", Phase: "after_ddl"})
	require.NoError(t, m.p.Fail(ctx, a, ""))
	ra := m.row(t, a)
	require.Equal(t, runstore.RunRunning, ra.Status)
	require.Equal(t, Step{Version: "001", Phase: "on_error"}, ra.Step())
	require.Equal(t, "after_ddl", ra.FailedPhase)
	require.Equal(t, []string{contract.KindPhaseFailed, contract.KindMigrationFailed}, m.events(t, a))
}

func TestReconcilerMovesRunsWhoseJobEnded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		hooks []contract.HookSpec
		end   func(m *machine, job int64) error
		// status and code of the run after a reconciler pass
		status, kind, code string
	}{
		{"cancelled while waiting", nil, func(m *machine, job int64) error { _, err := m.river.JobCancel(ctx, job); return err },
			runstore.RunFailed, contract.KindRunFailed, contract.CodeCancelled},
		{"cancelled batched hook", []contract.HookSpec{{Phase: "after_ddl", Name: "fill", Hook: "backfill", Params: map[string]any{"table": "t", "set": "x = 1"}}},
			func(m *machine, job int64) error { _, err := m.river.JobCancel(ctx, job); return err },
			runstore.RunPaused, contract.KindRunPaused, ""},
		{"discarded", nil, func(m *machine, job int64) error {
			_, err := m.db.Exec(ctx, `UPDATE confiture_river.river_job SET state = 'discarded', finalized_at = now() WHERE id = $1`, job)
			return err
		}, runstore.RunFailed, contract.KindRunFailed, contract.CodeDiscarded},
		{"deleted", nil, func(m *machine, job int64) error {
			_, err := m.db.Exec(ctx, `DELETE FROM confiture_river.river_job WHERE id = $1`, job)
			return err
		}, runstore.RunRunning, contract.KindRunResumed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t)
			a, b := m.submit(t, smRequest("a", tc.hooks...)), m.submit(t, smRequest("b"))
			job := m.moveTo(t, a, Step{Version: "001", Phase: "after_ddl"})
			rep, err := m.p.Reconcile(ctx)
			require.NoError(t, err)
			require.Equal(t, ReconcileReport{}, rep, "a run whose job is waiting is left alone")

			require.NoError(t, tc.end(m, job))
			_, err = m.p.Reconcile(ctx)
			require.NoError(t, err)
			ra := m.row(t, a)
			require.Equal(t, tc.status, ra.Status)
			last := m.lastEvent(t, a)
			require.Equal(t, tc.kind, last.Kind)
			if tc.code != "" {
				require.Equal(t, tc.code, last.Error.Code)
			}
			switch tc.status {
			case runstore.RunFailed:
				require.Equal(t, job, ra.StoppedByJob, "retrying the job resumes the run")
				require.Equal(t, runstore.RunRunning, m.row(t, b).Status, "the target is free for the next run")
			case runstore.RunPaused:
				require.Equal(t, job, ra.StoppedByJob)
				require.Zero(t, ra.JobID)
				require.Equal(t, runstore.RunQueued, m.row(t, b).Status, "a paused run keeps its target")
			case runstore.RunRunning:
				require.NotEqual(t, job, ra.JobID)
				require.Equal(t, "available", m.jobState(t, ra.JobID), "a new job goes on with the step")
			}
			// A second pass finds nothing more to do.
			rep, err = m.p.Reconcile(ctx)
			require.NoError(t, err)
			require.Equal(t, ReconcileReport{}, rep)
		})
	}
}

// A run whose on_error job is cancelled or discarded ends with the failure that started its
// on_error hooks, not with the cancellation.
func TestReconcilerKeepsTheOriginalFailureOfARunStoppedInOnError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMachine(t)
	a := m.submit(t, smRequest("a", contract.HookSpec{Phase: "on_error", Name: "notify", Hook: "sql", Params: map[string]any{"sql": "SELECT 1"}}))
	m.moveTo(t, a, Step{Version: "001", Phase: "after_ddl"})
	rc, err := m.p.loadRun(ctx, a)
	require.NoError(t, err)
	boom := failure{Hook: "check", Error: contract.EventError{Code: contract.CodeHookFailed, Message: "boom"}}
	require.NoError(t, m.p.inTx(ctx, func(tx pgx.Tx) error {
		return m.p.failAt(ctx, tx, m.river, rc, live(rc.row.Step(), rc.row.JobID), rc.row.Step(), boom, rc.row.JobID, nil, contract.Event{})
	}))
	ra := m.row(t, a)
	require.Equal(t, Step{Version: "001", Phase: "on_error"}, ra.Step())
	_, err = m.river.JobCancel(ctx, ra.JobID)
	require.NoError(t, err)

	_, err = m.p.Reconcile(ctx)
	require.NoError(t, err)
	ra = m.row(t, a)
	require.Equal(t, runstore.RunFailed, ra.Status)
	require.Equal(t, "after_ddl", ra.FailedPhase, "the run row keeps where it failed")
	final := m.lastEvent(t, a)
	require.Equal(t, contract.KindRunFailed, final.Kind)
	require.Equal(t, contract.CodeHookFailed, final.Error.Code)
	require.Equal(t, "after_ddl", final.Phase)
	require.Equal(t, "check", final.Hook)
	require.Contains(t, final.Message, "boom; on_error was stopped: job")
}

// The running job of a worker that is missed is handed back, but only by a reconciler whose own
// worker has heartbeated steadily for the liveness window: right after an outage of the queue
// database every worker looks missed.
func TestReconcilerHandsBackTheJobsOfMissedWorkersOnceItsOwnHeartbeatIsSteady(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMachine(t)
	var steady time.Time
	m.p.cfg.WorkerLiveness = time.Minute
	m.p.cfg.SteadySince = func() time.Time { return steady }
	a := m.submit(t, smRequest("a"))
	job := m.row(t, a).JobID
	// The job runs on a worker last seen two minutes ago.
	gone := "2b1e7f5c-8a0d-4c3e-9f6a-1d2e3f4a5b6c"
	_, err := m.db.Exec(ctx, `INSERT INTO confiture_queue.workers (id, host, pid, nats_system, nats_url, started_at, seen_at)
		VALUES ($1, 'h', 1, 's', 'u', now() - interval '1 hour', now() - interval '2 minutes')`, gone)
	require.NoError(t, err)
	_, err = m.db.Exec(ctx, `UPDATE confiture_river.river_job SET state = 'running', attempt = 1,
		attempted_at = now() - interval '5 minutes', attempted_by = ARRAY[$2::text] WHERE id = $1`, job, RiverClientID(gone))
	require.NoError(t, err)

	for _, s := range []time.Time{{}, time.Now().Add(-10 * time.Second)} {
		steady = s
		rep, err := m.p.Reconcile(ctx)
		require.NoError(t, err)
		require.Zero(t, rep.Rescued, "own heartbeats steady since %v", s)
		require.Equal(t, "running", m.jobState(t, job))
	}
	steady = time.Now().Add(-2 * time.Minute)
	rep, err := m.p.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Rescued)
	require.Equal(t, "available", m.jobState(t, job), "handed back to River")
	require.Equal(t, job, m.row(t, a).JobID, "still the run's live job")
}

func TestReconcilerAdmitsTheNextRunOfAnIdleTarget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMachine(t)
	a, b := m.submit(t, smRequest("a")), m.submit(t, smRequest("b"))
	// As if a run had ended without admitting the next one.
	_, err := m.db.Exec(ctx, `UPDATE confiture_queue.runs SET status = 'completed', job_id = NULL WHERE id = $1`, a)
	require.NoError(t, err)
	rep, err := m.p.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Admitted)
	require.Equal(t, runstore.RunRunning, m.row(t, b).Status)
}

// A transition and its events commit together or not at all, and a transition from a state the
// run is no longer in changes nothing.
func TestTransitionsAreAtomicAndGuarded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMachine(t)
	a := m.submit(t, smRequest("a"))
	before := m.row(t, a)
	rc, err := m.p.loadRun(ctx, a)
	require.NoError(t, err)
	boom := errors.New("the queue transaction fails after the transition")
	err = m.p.inTx(ctx, func(tx pgx.Tx) error {
		ev := m.p.stepEvent(rc, contract.KindPhaseRetrying, planStep, 1)
		if err := m.p.pause(ctx, tx, rc, live(planStep, before.JobID), before.JobID, false, ev); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	after := m.row(t, a)
	require.Equal(t, before.Status, after.Status)
	require.Equal(t, before.JobID, after.JobID)
	require.Empty(t, m.events(t, a), "no event without its state change")

	// A stale job (not the run's live job) cannot move the run.
	err = m.p.inTx(ctx, func(tx pgx.Tx) error {
		return m.p.advance(ctx, tx, m.river, rc, planStep, before.JobID+1000, Step{Version: "001", Phase: "before_validation"}, nil)
	})
	require.ErrorIs(t, err, errStale)
	require.Equal(t, planStep, m.row(t, a).Step())
	var jobs int
	require.NoError(t, m.db.QueryRow(ctx, `SELECT count(*) FROM confiture_river.river_job`).Scan(&jobs))
	require.Equal(t, 1, jobs, "the stale transition's job insert rolled back with it")
}

// The reconciler's job of a worker that died stays running until River rescues it: it must
// not keep the next interval's job from being inserted (seen in the fault campaign, seed
// 635342595: no reconciler ran for five minutes).
func TestAStuckReconcilerJobDoesNotBlockTheNext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMachine(t)
	require.Len(t, m.p.PeriodicJobs(), 1)
	require.Equal(t, 30*time.Second, m.p.cfg.ReconcileInterval, "the default interval")
	m.p.cfg.ReconcileInterval = time.Second
	first, err := m.river.Insert(ctx, ReconcileArgs{}, m.p.reconcileInsertOpts())
	require.NoError(t, err)
	require.False(t, first.UniqueSkippedAsDuplicate)
	again, err := m.river.Insert(ctx, ReconcileArgs{}, m.p.reconcileInsertOpts())
	require.NoError(t, err)
	if again.Job.ID == first.Job.ID {
		require.True(t, again.UniqueSkippedAsDuplicate, "one per interval")
	}
	// The first one is now the stuck job of a dead worker.
	_, err = m.db.Exec(ctx, `UPDATE confiture_river.river_job SET state = 'running', attempted_at = now(), attempt = 1 WHERE id = $1`, first.Job.ID)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		next, err := m.river.Insert(ctx, ReconcileArgs{}, m.p.reconcileInsertOpts())
		return err == nil && !next.UniqueSkippedAsDuplicate && next.Job.ID != first.Job.ID
	}, 30*time.Second, 50*time.Millisecond, "a later interval's reconciler job is inserted")
}
