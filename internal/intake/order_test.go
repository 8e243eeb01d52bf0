package intake_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/intake"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// holdingAdmitter admits with the real runstore.Store.AdmitNext; the admission of request holdID
// first calls hold, as a slow worker would be there.
type holdingAdmitter struct {
	store   *runstore.Store
	holdID  string
	entered chan struct{}
	hold    func(ctx context.Context)

	mu      sync.Mutex
	started []string // run ids AdmitNext started, in order
}

func (a *holdingAdmitter) Admit(ctx context.Context, tx pgx.Tx, run *runstore.Run) error {
	if run.RequestID == a.holdID {
		close(a.entered)
		a.hold(ctx)
	}
	started, err := a.store.AdmitNext(ctx, tx, run.Target)
	if err != nil || started == nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.started = append(a.started, started.ID)
	return nil
}

// Two intakes of one target at once (two workers): the runs start in the order the queue
// database recorded them (SPEC, guarantee 5), even when the first one's transaction is slow
// to commit. Intake takes the target's admission lock before it records a run, so the second
// request is recorded (its seq assigned) only after the first commits.
func TestRunsOfOneTargetStartInTheOrderTheyWereRecorded(t *testing.T) {
	t.Parallel()
	admit := &holdingAdmitter{holdID: "deploy-first", entered: make(chan struct{})}
	b, cons := setupManual(t, func(in *intake.Intake) {
		admit.store = in.Store
		in.Admitter = admit
	})
	first, second := validRequest("deploy-first", "app"), validRequest("deploy-second", "app")
	b.publish(t, "app", first.ID, mustJSON(t, first))
	b.publish(t, "app", second.ID, mustJSON(t, second))
	msgFirst, msgSecond := b.next(t, cons), b.next(t, cons)

	secondDone := make(chan struct{})
	// The first admission waits until the second request is handled or waits for the target's
	// lock: whichever happens shows the order intake imposes.
	admit.hold = func(ctx context.Context) {
		tick := time.NewTicker(tick)
		defer tick.Stop()
		deadline := time.After(waitFor)
		for {
			var waiting int
			err := b.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
				AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting)
			if err != nil || waiting > 0 {
				return
			}
			select {
			case <-secondDone:
				return
			case <-deadline:
				return
			case <-tick.C:
			}
		}
	}

	firstDone := make(chan struct{})
	go func() {
		defer close(firstDone)
		b.in.Handle(b.ctx, msgFirst)
	}()
	select {
	case <-admit.entered:
	case <-time.After(waitFor):
		require.FailNow(t, "the first request never reached admission")
	}
	go func() {
		defer close(secondDone)
		b.in.Handle(b.ctx, msgSecond)
	}()
	for _, done := range []chan struct{}{firstDone, secondDone} {
		select {
		case <-done:
		case <-time.After(2 * waitFor):
			require.FailNow(t, "a request was not handled in time")
		}
	}
	b.requireSettled(t)

	type row struct {
		requestID, status string
		seq               int64
	}
	rows, err := b.pool.Query(b.ctx, `SELECT request_id, status, seq FROM confiture_queue.runs ORDER BY seq`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.requestID, &x.status, &x.seq)
	})
	require.NoError(t, err)
	require.Len(t, got, 2)
	t.Logf("runs in seq order: %+v", got)
	require.Equal(t, runstore.RunRunning, got[0].status, "the run recorded first (seq %d, %s) starts first", got[0].seq, got[0].requestID)
	require.Equal(t, runstore.RunQueued, got[1].status, "the run recorded second (seq %d, %s) waits", got[1].seq, got[1].requestID)
	admit.mu.Lock()
	defer admit.mu.Unlock()
	require.Equal(t, []string{contract.RunID("app", got[0].requestID)}, admit.started, "runs started")
}
