package intake_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/intake"
	"github.com/confiture-io/confiture-worker/internal/syncbuf"
)

// panickyChecker panics on the request whose id is in panicOn, as a checker with a bug would.
// The panic value quotes a connection string, which must not reach events or logs.
type panickyChecker struct{ panicOn atomic.Pointer[string] }

const panicDSN = "postgres://migrator:s3cret-pw@db.internal:5432/app"

func (c *panickyChecker) Check(req *contract.Request) error {
	if id := c.panicOn.Load(); id != nil && req.ID == *id {
		panic("checker bug: index out of range [3] with length 3 (target " + panicDSN + ")")
	}
	return nil
}

func (c *panickyChecker) panicOnID(id string) { c.panicOn.Store(&id) }

// logRecords decodes the JSON log lines written so far.
func logRecords(t *testing.T, buf *syncbuf.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(buf.String()) {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "log line %q", line)
		out = append(out, rec)
	}
	return out
}

// A request that makes intake panic is rejected with code internal and terminated: the
// consumer redelivers without limit, so a panic that escaped would crash every replica that
// took the message in turn. The worker goes on with the next request.
func TestPanicWhileHandlingARequestRejectsItAndIntakeGoesOn(t *testing.T) {
	t.Parallel()
	checker := &panickyChecker{}
	checker.panicOnID("deploy-panic")
	logs := &syncbuf.Buffer{}
	b, cons := setupManual(t, func(in *intake.Intake) {
		in.Checker = checker
		in.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})

	bad := validRequest("deploy-panic", "app")
	b.publish(t, "app", bad.ID, mustJSON(t, bad))
	msg := b.next(t, cons)
	require.NotPanics(t, func() { b.in.Handle(b.ctx, msg) }, "Handle recovers from a panic while handling a request")

	evs := b.outbox(t)
	require.Len(t, evs, 1)
	ev := evs[0].event
	require.Equal(t, contract.KindRunRejected, ev.Kind)
	require.Equal(t, contract.RunID("app", bad.ID), ev.Run)
	require.Equal(t, bad.ID, ev.RequestID)
	require.NotNil(t, ev.Error)
	require.Equal(t, contract.CodeInternal, ev.Error.Code)
	require.Contains(t, ev.Error.Message, "the worker failed while handling this request")
	require.Contains(t, ev.Error.Message, "checker bug: index out of range [3] with length 3")
	require.NotContains(t, ev.Error.Message, "s3cret-pw")
	require.NotContains(t, ev.Error.Message, "db.internal", "no connection string")
	require.Zero(t, b.runCount(t), "nothing recorded")
	require.Empty(t, b.admit.snapshot())
	b.requireSettled(t) // terminated: not waiting for an ack, not to be redelivered

	var panicked map[string]any
	for _, rec := range logRecords(t, logs) {
		if rec["level"] == "ERROR" {
			panicked = rec
		}
	}
	require.NotNil(t, panicked, "the panic is logged at ERROR; logs:\n%s", logs.String())
	require.Contains(t, panicked["panic"], "checker bug")
	require.Contains(t, panicked["stack"], "panic_test.go", "the stack shows where it panicked")
	require.NotContains(t, logs.String(), "s3cret-pw")

	// The next request is handled as usual.
	good := validRequest("deploy-good", "app")
	b.publish(t, "app", good.ID, mustJSON(t, good))
	msg = b.next(t, cons)
	require.NotPanics(t, func() { b.in.Handle(b.ctx, msg) })
	require.Equal(t, 1, b.runCount(t))
	evs = b.outbox(t)
	require.Len(t, evs, 2)
	require.Equal(t, contract.KindRunAccepted, evs[1].event.Kind)
	require.Equal(t, contract.RunID("app", good.ID), evs[1].event.Run)
	b.requireSettled(t)
}

// A copy of a request already recorded that makes intake panic is only terminated: its run
// goes on, and is never reported rejected.
func TestPanicOnACopyOfARecordedRequestOnlyTerminatesIt(t *testing.T) {
	t.Parallel()
	checker := &panickyChecker{}
	b, cons := setupManual(t, func(in *intake.Intake) { in.Checker = checker })
	req := validRequest("deploy-11", "app")
	data := mustJSON(t, req)
	b.publish(t, "app", req.ID, data)
	b.in.Handle(b.ctx, b.next(t, cons))
	require.Equal(t, 1, b.runCount(t))

	checker.panicOnID(req.ID)
	b.publish(t, "app", req.ID+"-again", data) // the same request under another message id
	msg := b.next(t, cons)
	require.NotPanics(t, func() { b.in.Handle(b.ctx, msg) })
	b.requireSettled(t)
	evs := b.outbox(t)
	require.Len(t, evs, 1, "no event for the copy")
	require.Equal(t, contract.KindRunAccepted, evs[0].event.Kind)
	var status string
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT status FROM confiture_queue.runs`).Scan(&status))
	require.Equal(t, "queued", status)
}
