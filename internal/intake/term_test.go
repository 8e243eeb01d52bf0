package intake_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/bus"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/intake"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// countingObserver counts the requests that ended at intake, by status.
type countingObserver struct {
	mu       sync.Mutex
	finished map[string]int
}

func (o *countingObserver) RunFinished(status string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.finished == nil {
		o.finished = map[string]int{}
	}
	o.finished[status]++
}

func (o *countingObserver) IntakeLag(time.Duration) {}

func (o *countingObserver) count(status string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.finished[status]
}

// prefixPublisher relays outbox events to a stream of the test's own: it replaces the
// contract's event subject prefix with prefix.
type prefixPublisher struct {
	js     jetstream.JetStream
	prefix string
}

func (p prefixPublisher) PublishBatch(ctx context.Context, msgs []outbox.Message) error {
	for _, m := range msgs {
		subject := p.prefix + strings.TrimPrefix(m.Subject, contract.EventSubjectPrefix)
		if _, err := p.js.Publish(ctx, subject, m.Data, jetstream.WithMsgID(m.ID)); err != nil {
			return err
		}
	}
	return nil
}

// A rejected request is terminated for good on every supported server: nats-server before
// 2.10 ignores TermWithReason (+TERM <reason>), so a message terminated with a reason would come
// back every AckWait and be rejected again (SPEC, guarantee 6). The machine's server (Debian's 2.9.10
// here, or CONFITURE_TEST_NATS_URL) and the embedded 2.15 are both tested.
func TestRejectedRequestIsTerminatedOnEveryServer(t *testing.T) {
	t.Parallel()
	t.Run("machine server", func(t *testing.T) {
		t.Parallel()
		url := os.Getenv("CONFITURE_TEST_NATS_URL")
		if url == "" {
			url = "nats://127.0.0.1:4222"
		}
		nc, err := nats.Connect(url, nats.Timeout(time.Second))
		if err != nil {
			t.Skipf("no NATS server at %s (set CONFITURE_TEST_NATS_URL to test another): %v", url, err)
		}
		t.Cleanup(nc.Close)
		requireRejectionTerminated(t, nc)
	})
	t.Run("embedded server", func(t *testing.T) {
		t.Parallel()
		b, err := bus.Connect(context.Background(), bus.Options{StoreDir: t.TempDir(), EmbeddedPort: -1})
		require.NoError(t, err)
		t.Cleanup(b.Close)
		requireRejectionTerminated(t, b.NC)
	})
}

// requireRejectionTerminated runs an Intake on streams and subjects of its own on nc's
// server (never the contract's: other workers and tests may consume those there), publishes
// a request that is rejected, and checks that it is rejected once and never comes back.
func requireRejectionTerminated(t *testing.T, nc *nats.Conn) {
	t.Helper()
	t.Logf("nats-server %s", nc.ConnectedServerVersion())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	unique := strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	prefix := "ci" + unique
	requestStream, eventStream := "CI_INTAKE_"+strings.ToUpper(unique), "CI_INTAKE_EVENTS_"+strings.ToUpper(unique)
	for _, cfg := range []jetstream.StreamConfig{
		{Name: requestStream, Subjects: []string{prefix + ".requests.*"}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.MemoryStorage, Duplicates: time.Minute},
		{Name: eventStream, Subjects: []string{prefix + ".events.>"}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.MemoryStorage, Duplicates: time.Minute},
	} {
		_, err := js.CreateStream(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			assert.NoError(t, js.DeleteStream(ctx, cfg.Name), "delete stream %s", cfg.Name)
		})
	}

	pool, err := pgxpool.New(ctx, testdb.New(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, runstore.Migrate(ctx, pool, "confiture_queue", "confiture_river", nil))
	store := runstore.NewStore(pool, "confiture_queue")

	const ackWait = time.Second
	obs := &countingObserver{}
	in := &intake.Intake{
		JS: js, Store: store, Admitter: &fakeAdmitter{}, Checker: fakeChecker{}, Observer: obs,
		AckWait: ackWait, Stream: requestStream, SubjectPrefix: prefix + ".requests.",
	}
	require.NoError(t, in.Start(ctx))
	t.Cleanup(in.Stop)

	// The server says when it terminates a message.
	terminated, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED." + requestStream + "." + intake.ConsumerName)
	require.NoError(t, err)
	t.Cleanup(func() { _ = terminated.Unsubscribe() })
	require.NoError(t, nc.Flush())

	// fakeChecker rejects target "nope" (unknown_target).
	req := validRequest("deploy-term", "nope")
	_, err = js.Publish(ctx, prefix+".requests.nope", mustJSON(t, req), jetstream.WithMsgID(contract.RequestMsgID("nope", req.ID)))
	require.NoError(t, err)
	eventually(t, func(c *assert.CollectT) { assert.Equal(c, 1, obs.count("rejected")) })

	consumer := func(c require.TestingT) *jetstream.ConsumerInfo {
		cons, err := js.Consumer(ctx, requestStream, intake.ConsumerName)
		require.NoError(c, err)
		ci, err := cons.Info(ctx)
		require.NoError(c, err)
		return ci
	}
	// Past three AckWaits, an unterminated message would have come back (and been rejected
	// again) at least twice.
	assert.Never(t, func() bool {
		ci := consumer(t)
		return obs.count("rejected") > 1 || ci.NumRedelivered > 0 || ci.Delivered.Consumer > 1
	}, 4*ackWait, 50*time.Millisecond, "the rejected request came back")

	require.Equal(t, 1, obs.count("rejected"), "times the request was rejected")
	ci := consumer(t)
	require.Zero(t, ci.NumRedelivered, "redelivered messages")
	require.Zero(t, ci.NumAckPending, "messages waiting for an ack")
	require.EqualValues(t, 1, ci.Delivered.Consumer, "deliveries")
	si, err := js.Stream(ctx, requestStream)
	require.NoError(t, err)
	info, err := si.Info(ctx)
	require.NoError(t, err)
	require.Zero(t, info.State.Msgs, "a terminated message leaves the work queue")

	adv, err := terminated.NextMsg(waitFor)
	require.NoError(t, err, "no termination advisory")
	var advisory struct {
		Stream, Consumer, Reason string
	}
	require.NoError(t, json.Unmarshal(adv.Data, &advisory))
	require.Equal(t, requestStream, advisory.Stream)

	// Exactly one run.rejected event reaches the events stream.
	relay := &outbox.Relay{Pool: pool, Schema: store.Schema(), Publisher: prefixPublisher{js: js, prefix: prefix + ".events."}}
	_, err = relay.Flush(ctx)
	require.NoError(t, err)
	es, err := js.Stream(ctx, eventStream)
	require.NoError(t, err)
	einfo, err := es.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, einfo.State.Msgs, "events published")
	m, err := es.GetMsg(ctx, einfo.State.FirstSeq)
	require.NoError(t, err)
	ev, err := contract.DecodeEvent(m.Data)
	require.NoError(t, err)
	require.Equal(t, contract.KindRunRejected, ev.Kind)
	require.Equal(t, contract.RunID("nope", req.ID), ev.Run)
	require.Equal(t, contract.CodeUnknownTarget, ev.Error.Code)
}
