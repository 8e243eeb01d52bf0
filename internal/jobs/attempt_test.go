package jobs

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// How an attempt's error maps to its outcome, without a database.
func TestClassify(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	longAgo := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		name string
		err  error
		n    int
		// transientSince is when the step's transient trouble began (nil: it has not).
		transientSince *time.Time
		want           outcome
	}{
		{"done", nil, 1, nil, outCompleted},
		{"refused connection", refused, 1, nil, outTransient},
		{"too many connections", &pgconn.PgError{Code: "53300"}, 1, nil, outTransient},
		{"an outage past the tolerance counts", refused, 1, &longAgo, outRetry},
		{"a hook's permanent error stays permanent", hooks.Permanent(refused), 1, nil, outFailed},
		{"a retryable error with attempts left", errors.New("flaky"), 1, nil, outRetry},
		{"a retryable error on the last attempt", errors.New("flaky"), 3, nil, outFailed},
		{"a constraint violation", &pgconn.PgError{Code: "23505"}, 1, nil, outFailed},
		{"out of lock slots is not an outage", &pgconn.PgError{Code: "53200"}, 1, nil, outRetry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &attempt{
				p:    &Pipeline{cfg: &Config{MaxAttempts: 3, OutageTolerance: 10 * time.Minute}},
				rc:   &runContext{row: &runstore.Run{TransientSince: tc.transientSince}},
				res:  &phaseResult{},
				step: Step{Version: "001", Phase: "after_ddl"},
				n:    tc.n,
			}
			require.Equal(t, tc.want, a.classify(context.Background(), tc.err))
		})
	}
}

// An attempt that follows one that did not count has the same number, but its events are other
// facts: their ids differ, so that de-duplication does not drop them. The same attempt
// recording an event again gives the same id.
func TestAttemptEventIDs(t *testing.T) {
	t.Parallel()
	rc := &runContext{row: &runstore.Run{ID: "8cca5d7b-dd0b-505b-96c4-f78e46de8baf"}, req: &contract.Request{}}
	rc.ref = refOf(rc.row)
	attemptAt := func(fetched time.Time) *attempt {
		return &attempt{p: &Pipeline{cfg: &Config{}}, rc: rc, res: &phaseResult{}, step: Step{Version: "001", Phase: "after_ddl"}, n: 1, fetched: fetched}
	}
	failed := hookOutcome{name: "check", err: errors.New("boom")}
	first, again := attemptAt(time.Unix(100, 0)), attemptAt(time.Unix(100, 0))
	next := attemptAt(time.Unix(160, 0))
	require.Equal(t, first.hookEvent(failed).ID, again.hookEvent(failed).ID)
	require.NotEqual(t, first.hookEvent(failed).ID, next.hookEvent(failed).ID)
	require.NotEqual(t, first.retryEvents(contract.CodeUnavailable, failed.err, "")[0].ID, next.retryEvents(contract.CodeUnavailable, failed.err, "")[0].ID)
}
