package intake_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/bus"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/intake"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

const (
	waitFor = 15 * time.Second
	tick    = 10 * time.Millisecond
)

// fakeAdmitter records the runs it is asked to admit and fails while told to, like a queue
// database that cannot be reached.
type fakeAdmitter struct {
	mu    sync.Mutex
	fail  bool
	calls []admitCall
}

type admitCall struct {
	run    runstore.Run
	at     time.Time
	failed bool
}

func (f *fakeAdmitter) Admit(_ context.Context, _ pgx.Tx, run *runstore.Run) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, admitCall{run: *run, at: time.Now(), failed: f.fail})
	if f.fail {
		return errors.New("queue database unavailable")
	}
	return nil
}

func (f *fakeAdmitter) setFail(fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
}

func (f *fakeAdmitter) snapshot() []admitCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]admitCall(nil), f.calls...)
}

// fakeChecker knows every target but "nope".
type fakeChecker struct{}

func (fakeChecker) Check(req *contract.Request) error {
	if req.Target == "nope" {
		return &contract.DecodeError{Code: contract.CodeUnknownTarget, Message: `unknown target "nope"`}
	}
	return nil
}

type bundle struct {
	ctx    context.Context
	bus    *bus.Bus
	pool   *pgxpool.Pool
	admit  *fakeAdmitter
	client *client.Client
	in     *intake.Intake
}

// setup starts an Intake (without River) on a queue database and an embedded NATS server of
// its own.
func setup(t *testing.T, configure ...func(*intake.Intake)) *bundle {
	t.Helper()
	b := newBundle(t, configure...)
	require.NoError(t, b.in.Start(b.ctx))
	t.Cleanup(b.in.Stop)
	return b
}

// setupManual is setup without Start: the test fetches each message with next and hands it
// to Handle itself.
func setupManual(t *testing.T, configure ...func(*intake.Intake)) (*bundle, jetstream.Consumer) {
	t.Helper()
	b := newBundle(t, configure...)
	c, err := b.in.EnsureConsumer(b.ctx)
	require.NoError(t, err)
	return b, c
}

// next fetches the next request message.
func (b *bundle) next(t *testing.T, c jetstream.Consumer) jetstream.Msg {
	t.Helper()
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(waitFor))
	require.NoError(t, err)
	for msg := range batch.Messages() {
		return msg
	}
	require.NoError(t, batch.Error())
	require.FailNow(t, "no request message within the wait")
	return nil
}

func newBundle(t *testing.T, configure ...func(*intake.Intake)) *bundle {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	pool, err := pgxpool.New(ctx, testdb.New(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, runstore.Migrate(ctx, pool, "confiture_queue", "confiture_river", nil))

	b, err := bus.Connect(ctx, bus.Options{StoreDir: t.TempDir(), EmbeddedPort: -1})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	require.NoError(t, b.EnsureStreams(ctx, bus.StreamOptions{}))

	c, err := client.Connect(b.URL())
	require.NoError(t, err)
	t.Cleanup(c.Close)

	admit := &fakeAdmitter{}
	in := &intake.Intake{
		JS: b.JS, Store: runstore.NewStore(pool, "confiture_queue"), Admitter: admit, Checker: fakeChecker{},
	}
	for _, f := range configure {
		f(in)
	}
	return &bundle{ctx: ctx, bus: b, pool: pool, admit: admit, client: c, in: in}
}

func validRequest(id, target string) contract.Request {
	up := "CREATE TABLE t (id int)"
	return contract.Request{
		Schema: contract.RequestSchemaV1, ID: id, Target: target, Direction: contract.DirectionUp,
		Migrations: []contract.Migration{{Version: "001", Name: "init", UpSQL: up, Checksum: contract.Checksum(up)}},
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	return data
}

// publish publishes data as the request requestID for target (the client derives the message id).
func (b *bundle) publish(t *testing.T, target, requestID string, data []byte) client.Published {
	t.Helper()
	pub, err := b.client.PublishRaw(b.ctx, target, requestID, data)
	require.NoError(t, err)
	return pub
}

// count, runCount and outboxCount take a require.TestingT so that they also work inside
// EventuallyWithT, whose condition runs on a goroutine of its own.
func (b *bundle) count(t require.TestingT, sql string, args ...any) int {
	var n int
	require.NoError(t, b.pool.QueryRow(b.ctx, sql, args...).Scan(&n))
	return n
}

func (b *bundle) runCount(t require.TestingT) int {
	return b.count(t, `SELECT count(*) FROM confiture_queue.runs`)
}

func (b *bundle) outboxCount(t require.TestingT) int {
	return b.count(t, `SELECT count(*) FROM confiture_queue.outbox`)
}

type outboxRow struct {
	subject string
	event   *contract.Event
}

// outbox returns the recorded events in order, checking that each one is a valid
// confiture.event/v1 message.
func (b *bundle) outbox(t *testing.T) []outboxRow {
	t.Helper()
	rows, err := b.pool.Query(b.ctx, `SELECT subject, payload FROM confiture_queue.outbox ORDER BY seq`)
	require.NoError(t, err)
	var out []outboxRow
	for rows.Next() {
		var subject string
		var payload []byte
		require.NoError(t, rows.Scan(&subject, &payload))
		require.NoError(t, contract.ValidateEvent(payload), "outbox payload: %s", payload)
		ev, err := contract.DecodeEvent(payload)
		require.NoError(t, err)
		out = append(out, outboxRow{subject: subject, event: ev})
	}
	require.NoError(t, rows.Err())
	return out
}

// requireSettled waits until the request stream is empty and the consumer has nothing in
// flight: every message was acknowledged or terminated, none waits for redelivery.
func (b *bundle) requireSettled(t *testing.T) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		s, err := b.bus.JS.Stream(b.ctx, contract.RequestStream)
		require.NoError(c, err)
		si, err := s.Info(b.ctx)
		require.NoError(c, err)
		ci, err := b.consumer(c)
		require.NoError(c, err)
		assert.Zero(c, si.State.Msgs, "messages left in the request stream")
		assert.Zero(c, ci.NumAckPending, "messages waiting for an ack")
		assert.Zero(c, ci.NumPending, "messages not yet delivered")
	}, waitFor, tick, "request stream did not drain")
}

func (b *bundle) consumer(t require.TestingT) (*jetstream.ConsumerInfo, error) {
	s, err := b.bus.JS.Stream(b.ctx, contract.RequestStream)
	require.NoError(t, err)
	c, err := s.Consumer(b.ctx, intake.ConsumerName)
	require.NoError(t, err)
	return c.Info(b.ctx)
}

// consumerInfo returns the request consumer's state.
func (b *bundle) consumerInfo(t *testing.T) *jetstream.ConsumerInfo {
	t.Helper()
	ci, err := b.consumer(t)
	require.NoError(t, err)
	return ci
}

// eventually waits for cond on a CollectT.
func eventually(t *testing.T, cond func(c *assert.CollectT), msgAndArgs ...any) {
	t.Helper()
	require.EventuallyWithT(t, cond, waitFor, tick, msgAndArgs...)
}

func TestValidRequestIsRecordedAdmittedAndAcked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req := validRequest("deploy-1", "app")
	pub := b.publish(t, "app", req.ID, mustJSON(t, req))
	wantRun := contract.RunID("app", req.ID)
	require.Equal(t, wantRun, pub.Run)

	eventually(t, func(c *assert.CollectT) { assert.Equal(c, 1, b.outboxCount(c)) })
	b.requireSettled(t)

	var id, requestID, target, direction, status string
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT id::text, request_id, target, direction, status
		FROM confiture_queue.runs`).Scan(&id, &requestID, &target, &direction, &status))
	require.Equal(t, wantRun, id)
	require.Equal(t, req.ID, requestID)
	require.Equal(t, "app", target)
	require.Equal(t, contract.DirectionUp, direction)
	require.Equal(t, runstore.RunQueued, status, "the fake admitter starts nothing")
	require.Equal(t, 1, b.runCount(t))

	evs := b.outbox(t)
	require.Len(t, evs, 1)
	require.Equal(t, contract.EventSubject("app", wantRun, contract.KindRunAccepted), evs[0].subject)
	require.Equal(t, "confiture.events.app."+wantRun+".run.accepted", evs[0].subject)
	ev := evs[0].event
	require.Equal(t, contract.KindRunAccepted, ev.Kind)
	require.Equal(t, wantRun, ev.Run)
	require.Equal(t, req.ID, ev.RequestID)
	require.Equal(t, "app", ev.Target)
	require.Nil(t, ev.Error)

	calls := b.admit.snapshot()
	require.Len(t, calls, 1, "Admit is called once")
	require.Equal(t, wantRun, calls[0].run.ID)
	require.Equal(t, "app", calls[0].run.Target)
	ci := b.consumerInfo(t)
	require.Zero(t, ci.NumRedelivered, "an acknowledged request is not redelivered")
}

func TestJetStreamDropsARepeatedMessageID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req := validRequest("deploy-1", "app")
	data := mustJSON(t, req)
	require.False(t, b.publish(t, "app", req.ID, data).Duplicate)
	require.True(t, b.publish(t, "app", req.ID, data).Duplicate, "JetStream de-duplicates by message id")
	eventually(t, func(c *assert.CollectT) { assert.Equal(c, 1, b.outboxCount(c)) })
	b.requireSettled(t)
	require.Equal(t, 1, b.runCount(t))
	require.Len(t, b.admit.snapshot(), 1)
}

func TestBadRequestsAreRejectedAndTerminated(t *testing.T) {
	t.Parallel()
	wrongSchema := validRequest("r-schema", "app")
	wrongSchema.Schema = "confiture.request/v2"
	mismatch := validRequest("r-mismatch", "other")
	nope := validRequest("r-nope", "nope")
	oversized := validRequest("r-big", "app")
	big := "SELECT 1 -- " + strings.Repeat("x", 3000)
	oversized.Migrations[0].UpSQL, oversized.Migrations[0].Checksum = big, contract.Checksum(big)

	for _, tc := range []struct {
		name     string
		target   string // subject token
		msgID    string
		data     []byte
		code     string
		contains string
	}{
		{"malformed JSON", "app", "r-json", []byte(`{"schema": "confiture.request/v1", "id": `), contract.CodeInvalidRequest, "malformed JSON"},
		{"wrong schema", "app", "r-schema", mustJSON(t, wrongSchema), contract.CodeUnsupportedSchema, "confiture.request/v2"},
		{"target mismatch", "app", "r-mismatch", mustJSON(t, mismatch), contract.CodeInvalidRequest, `"other"`},
		{"checker rejection", "nope", "r-nope", mustJSON(t, nope), contract.CodeUnknownTarget, "nope"},
		{"oversized", "app", "r-big", mustJSON(t, oversized), contract.CodeInvalidRequest, "over the limit of 2048"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(in *intake.Intake) { in.MaxRequestBytes = 2048 })
			b.publish(t, tc.target, tc.msgID, tc.data)

			eventually(t, func(c *assert.CollectT) { assert.GreaterOrEqual(c, b.outboxCount(c), 1) })
			b.requireSettled(t)

			evs := b.outbox(t)
			require.Len(t, evs, 1)
			ev := evs[0].event
			wantRun := contract.RunID(tc.target, tc.msgID)
			require.Equal(t, contract.KindRunRejected, ev.Kind)
			require.Equal(t, wantRun, ev.Run, "the run id a client derives from target and request id")
			require.Equal(t, tc.msgID, ev.RequestID)
			require.Equal(t, tc.target, ev.Target)
			require.Equal(t, contract.EventSubject(tc.target, wantRun, contract.KindRunRejected), evs[0].subject)
			require.NotNil(t, ev.Error)
			require.Equal(t, tc.code, ev.Error.Code)
			require.Contains(t, ev.Error.Message, tc.contains)

			require.Zero(t, b.runCount(t), "a rejected request records no run")
			require.Empty(t, b.admit.snapshot(), "a rejected request is not admitted")
			ci := b.consumerInfo(t)
			require.Zero(t, ci.NumRedelivered, "a terminated request is not redelivered")
			require.EqualValues(t, 1, ci.Delivered.Consumer)
		})
	}
}

func TestRedeliveredRequestIsADuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req := validRequest("deploy-7", "app")
	data := mustJSON(t, req)
	run := contract.RunID("app", req.ID)
	b.publish(t, "app", req.ID, data)
	eventually(t, func(c *assert.CollectT) { assert.Equal(c, 1, b.outboxCount(c)) })

	// The same request again under another message id (JetStream cannot recognise it).
	b.publish(t, "app", req.ID+"-again", data)
	eventually(t, func(c *assert.CollectT) { assert.Equal(c, 2, b.outboxCount(c)) })

	// The same request id with other content.
	changed := req
	changed.DryRun = true
	b.publish(t, "app", req.ID+"-changed", mustJSON(t, changed))
	eventually(t, func(c *assert.CollectT) { assert.Equal(c, 3, b.outboxCount(c)) })
	b.requireSettled(t)

	require.Equal(t, 1, b.runCount(t), "one request id, one run")
	var dryRun bool
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT dry_run FROM confiture_queue.runs`).Scan(&dryRun))
	require.False(t, dryRun, "the first request's run is kept as it was")
	require.Len(t, b.admit.snapshot(), 1, "a duplicate is not admitted")

	evs := b.outbox(t)
	require.Equal(t, contract.KindRunAccepted, evs[0].event.Kind)
	for _, e := range evs[1:] {
		require.Equal(t, contract.KindRunDuplicate, e.event.Kind)
		require.Equal(t, run, e.event.Run)
		require.Equal(t, req.ID, e.event.RequestID)
		require.Equal(t, contract.EventSubject("app", run, contract.KindRunDuplicate), e.subject)
	}
	same, other := evs[1].event, evs[2].event
	require.Nil(t, same.Error, "the same request again is not an error")
	require.Contains(t, same.Message, "nothing more to do")
	require.NotNil(t, other.Error)
	require.Equal(t, contract.CodeDuplicateRequest, other.Error.Code)
	require.NotEqual(t, same.ID, other.ID)
}

func TestQueueDatabaseFailureRecordsNothingAndRedelivers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.admit.setFail(true)
	req := validRequest("deploy-9", "app")
	b.publish(t, "app", req.ID, mustJSON(t, req))

	// Two failed attempts: the first handling is over (its transaction rolled back) and the
	// message came back.
	eventually(t, func(c *assert.CollectT) { assert.GreaterOrEqual(c, len(b.admit.snapshot()), 2) })
	require.Zero(t, b.runCount(t), "the run insert was rolled back")
	require.Zero(t, b.outboxCount(t), "the run.accepted event was rolled back")
	calls := b.admit.snapshot()
	require.GreaterOrEqual(t, calls[1].at.Sub(calls[0].at), 900*time.Millisecond,
		"redelivery waits (NakWithDelay), it does not spin")

	b.admit.setFail(false)
	eventually(t, func(c *assert.CollectT) { assert.Equal(c, 1, b.runCount(c)) })
	b.requireSettled(t)
	evs := b.outbox(t)
	require.Len(t, evs, 1)
	require.Equal(t, contract.KindRunAccepted, evs[0].event.Kind)
	calls = b.admit.snapshot()
	require.False(t, calls[len(calls)-1].failed)
	for _, c := range calls {
		require.Equal(t, contract.RunID("app", req.ID), c.run.ID)
	}
}

// switchChecker rejects every request while reject is set, as a worker without some hook would.
type switchChecker struct{ reject atomic.Bool }

func (c *switchChecker) Check(*contract.Request) error {
	if c.reject.Load() {
		return &contract.DecodeError{Code: contract.CodeUnknownHook, Message: `unknown hook "plugin_x"`}
	}
	return nil
}

// A request recorded by one worker and redelivered to another that would reject it (say, one
// without a plugin loaded) is a duplicate: the run in progress must not be reported rejected.
func TestRedeliveryOfARecordedRequestIsNeverRejected(t *testing.T) {
	t.Parallel()
	checker := &switchChecker{}
	b := setup(t, func(in *intake.Intake) { in.Checker = checker })
	req := validRequest("deploy-8", "app")
	data := mustJSON(t, req)
	b.publish(t, "app", req.ID, data)
	eventually(t, func(c *assert.CollectT) { assert.Equal(c, 1, b.runCount(c)) })

	checker.reject.Store(true)
	b.publish(t, "app", req.ID+"-redelivered", data)
	eventually(t, func(c *assert.CollectT) { assert.Equal(c, 2, b.outboxCount(c)) })
	b.requireSettled(t)
	evs := b.outbox(t)
	require.Equal(t, contract.KindRunDuplicate, evs[1].event.Kind, "not run.rejected")

	// A new request is still rejected.
	other := validRequest("deploy-9", "app")
	b.publish(t, "app", other.ID, mustJSON(t, other))
	eventually(t, func(c *assert.CollectT) { assert.Equal(c, 3, b.outboxCount(c)) })
	require.Equal(t, contract.KindRunRejected, b.outbox(t)[2].event.Kind)
}

// A copy of a recorded request that cannot even be stored (a NUL character) is answered as a
// duplicate: the terminal run.rejected must never land on the run in progress.
func TestUnstorableCopyOfARecordedRequestIsADuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req := validRequest("deploy-10", "app")
	b.publish(t, "app", req.ID, mustJSON(t, req))
	eventually(t, func(c *assert.CollectT) { assert.Equal(c, 1, b.runCount(c)) })

	poisoned := req
	poisoned.RequestedBy = "nul\x00here"
	b.publish(t, "app", req.ID+"-poisoned", mustJSON(t, poisoned))
	eventually(t, func(c *assert.CollectT) { assert.Equal(c, 2, b.outboxCount(c)) })
	b.requireSettled(t)
	evs := b.outbox(t)
	require.Equal(t, contract.KindRunDuplicate, evs[1].event.Kind)
	require.Contains(t, evs[1].event.Message, "NUL")
	require.Equal(t, 1, b.runCount(t))
}

// JetStream de-duplicates by message id across the whole stream, not per subject: the same
// request id sent to two targets must still give two runs (SPEC, guarantee 1).
func TestSameRequestIDOnTwoTargetsGivesTwoRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reqA, reqB := validRequest("deploy-42", "a"), validRequest("deploy-42", "b")
	pubA, err := b.client.Publish(b.ctx, &reqA)
	require.NoError(t, err)
	pubB, err := b.client.Publish(b.ctx, &reqB)
	require.NoError(t, err)
	require.False(t, pubA.Duplicate)
	assert.False(t, pubB.Duplicate, "the same request id on another target is not a duplicate")
	require.Equal(t, contract.RunID("a", "deploy-42"), pubA.Run)
	require.Equal(t, contract.RunID("b", "deploy-42"), pubB.Run)

	eventually(t, func(c *assert.CollectT) { assert.Equal(c, 2, b.runCount(c), "runs recorded") })
	b.requireSettled(t)
	evs := b.outbox(t)
	require.Len(t, evs, 2)
	got := map[string]string{}
	for _, e := range evs {
		require.Equal(t, contract.KindRunAccepted, e.event.Kind)
		require.Equal(t, "deploy-42", e.event.RequestID)
		got[e.event.Target] = e.event.Run
	}
	require.Equal(t, map[string]string{"a": pubA.Run, "b": pubB.Run}, got)
}

// Intake names the request id of a request it cannot decode from the message id: the
// "<target>:<request id>" that clients send, or the bare request id that older clients sent.
func TestRejectionOfAnUndecodableRequestCarriesItsRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i, msgID := range []string{contract.RequestMsgID("app", "r-new"), "r-old"} {
		_, err := b.bus.JS.Publish(b.ctx, contract.RequestSubject("app"), []byte(`{"schema": `), jetstream.WithMsgID(msgID))
		require.NoError(t, err)
		eventually(t, func(c *assert.CollectT) { assert.Equal(c, i+1, b.outboxCount(c)) })
	}
	b.requireSettled(t)
	evs := b.outbox(t)
	require.Len(t, evs, 2)
	for i, id := range []string{"r-new", "r-old"} {
		ev := evs[i].event
		require.Equal(t, contract.KindRunRejected, ev.Kind)
		require.Equal(t, id, ev.RequestID)
		require.Equal(t, contract.RunID("app", id), ev.Run, "the run id the client derives")
	}
}
