package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/bus"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

const (
	schema  = `"confiture_queue"`
	waitFor = 10 * time.Second
	tick    = 10 * time.Millisecond
)

// newPool returns a pool on a fresh queue database with the worker's tables.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testdb.New(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, runstore.Migrate(ctx, pool, "confiture_queue", "confiture_river", nil))
	require.Equal(t, schema, runstore.NewStore(pool, "confiture_queue").Schema())
	return pool
}

var ref = outbox.RunRef{Run: "6b1e4c1a-3a55-5d52-9d9e-0c3b7f1f3a11", RequestID: "deploy-1", Target: "app"}

// events returns n distinct events of one run.
func events(n int) []contract.Event {
	out := make([]contract.Event, n)
	for i := range out {
		out[i] = outbox.New(ref, contract.KindPhaseCompleted, fmt.Sprint(i))
		out[i].Message = fmt.Sprintf("event %d", i)
	}
	return out
}

func insert(t *testing.T, pool *pgxpool.Pool, evs ...contract.Event) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return outbox.Insert(ctx, tx, schema, evs...)
	}))
}

func ids(evs []contract.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func count(t *testing.T, pool *pgxpool.Pool, where string) int {
	t.Helper()
	n, err := countE(pool, where)
	require.NoError(t, err)
	return n
}

func countE(pool *pgxpool.Pool, where string) (int, error) {
	var n int
	err := pool.QueryRow(context.Background(), `SELECT count(*) FROM `+schema+`.outbox WHERE `+where).Scan(&n)
	return n, err
}

// fakePublisher records what it publishes, fails while told to, and notices overlapping calls.
type fakePublisher struct {
	mu       sync.Mutex
	fail     bool
	failAt   int // fail the batch with this 1-based number; 0: never
	batches  int
	msgs     []outbox.Message
	delay    time.Duration
	inFlight atomic.Int32
	overlaps atomic.Int32
}

var errBusDown = errors.New("bus down")

func (p *fakePublisher) PublishBatch(_ context.Context, msgs []outbox.Message) error {
	if p.inFlight.Add(1) > 1 {
		p.overlaps.Add(1)
	}
	defer p.inFlight.Add(-1)
	if p.delay > 0 {
		time.Sleep(p.delay) // simulates the bus round trip while the batch is in flight
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.batches++
	if p.fail || p.batches == p.failAt {
		return errBusDown
	}
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *fakePublisher) setFail(fail bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = fail
}

func (p *fakePublisher) published() []outbox.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]outbox.Message(nil), p.msgs...)
}

func msgIDs(msgs []outbox.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func TestEventIDIsDeterministic(t *testing.T) {
	t.Parallel()
	a := outbox.EventID("run-1", contract.KindPhaseCompleted, "001", "ddl")
	require.Equal(t, a, outbox.EventID("run-1", contract.KindPhaseCompleted, "001", "ddl"))
	u, err := uuid.Parse(a)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(5), u.Version())

	require.NotEqual(t, a, outbox.EventID("run-2", contract.KindPhaseCompleted, "001", "ddl"))
	require.NotEqual(t, a, outbox.EventID("run-1", contract.KindPhaseCompleted, "001", "after_ddl"))
	require.NotEqual(t, outbox.EventID("ab", "c"), outbox.EventID("a", "bc"), "parts are separated")

	ev := outbox.New(ref, contract.KindRunAccepted, "x")
	require.Equal(t, outbox.EventID(ref.Run, contract.KindRunAccepted, "x"), ev.ID)
	require.Equal(t, ev.ID, outbox.New(ref, contract.KindRunAccepted, "x").ID)
	require.NotEqual(t, ev.ID, outbox.New(ref, contract.KindRunRejected, "x").ID, "the kind is part of the id")
	require.NoError(t, contract.ValidateEvent(mustJSON(t, ev)))
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func TestInsertIsAtomicWithTheCallersTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	evs := events(3)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, outbox.Insert(ctx, tx, schema, evs...))
	require.NoError(t, tx.Rollback(ctx))
	require.Zero(t, count(t, pool, "true"), "a rolled back transaction leaves no event")

	insert(t, pool, evs...)
	rows, err := pool.Query(ctx, `SELECT id::text, subject, payload, published_at IS NULL FROM `+schema+`.outbox ORDER BY seq`)
	require.NoError(t, err)
	i := 0
	for rows.Next() {
		var id, subject string
		var payload []byte
		var unpublished bool
		require.NoError(t, rows.Scan(&id, &subject, &payload, &unpublished))
		require.Equal(t, evs[i].ID, id, "events are recorded in order")
		require.Equal(t, contract.EventSubject(ref.Target, ref.Run, contract.KindPhaseCompleted), subject)
		got, err := contract.DecodeEvent(payload)
		require.NoError(t, err)
		require.Equal(t, evs[i].Message, got.Message)
		require.True(t, unpublished)
		i++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, 3, i)
}

func TestInsertSkipsRecordedEventIDs(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	evs := events(2)
	insert(t, pool, evs[0])
	// The same fact recorded again (a job that committed and ran again), with a new event.
	again := evs[0]
	again.Message = "recorded again"
	insert(t, pool, again, evs[1])
	require.Equal(t, 2, count(t, pool, "true"))

	var payload []byte
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT payload FROM `+schema+`.outbox WHERE id = $1`, evs[0].ID).Scan(&payload))
	got, err := contract.DecodeEvent(payload)
	require.NoError(t, err)
	require.Equal(t, evs[0].Message, got.Message, "the first record stays")

	// A repeat within one call is skipped too.
	ev := events(3)[2]
	insert(t, pool, ev, ev)
	require.Equal(t, 3, count(t, pool, "true"))
}

func TestFlushPublishesInOrderAndMarksPublished(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	evs := events(7)
	// Several transactions, one of them with several events.
	insert(t, pool, evs[0])
	insert(t, pool, evs[1:5]...)
	insert(t, pool, evs[5])
	insert(t, pool, evs[6])

	pub := &fakePublisher{}
	r := &outbox.Relay{Pool: pool, Schema: schema, Publisher: pub, BatchSize: 3}
	n, err := r.Flush(ctx)
	require.NoError(t, err)
	require.Equal(t, 7, n)

	msgs := pub.published()
	require.Equal(t, ids(evs), msgIDs(msgs), "published in outbox order, message id = event id")
	for i, m := range msgs {
		require.Equal(t, contract.EventSubject(ref.Target, ref.Run, contract.KindPhaseCompleted), m.Subject)
		got, err := contract.DecodeEvent(m.Data)
		require.NoError(t, err)
		require.Equal(t, evs[i].ID, got.ID)
	}
	require.Zero(t, count(t, pool, "published_at IS NULL"))

	n, err = r.Flush(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "published events are not published again")
	require.Len(t, pub.published(), 7)
}

func TestFailingPublisherLosesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	evs := events(5)
	insert(t, pool, evs...)

	pub := &fakePublisher{fail: true}
	r := &outbox.Relay{Pool: pool, Schema: schema, Publisher: pub}
	n, err := r.Flush(ctx)
	require.ErrorIs(t, err, errBusDown)
	require.Zero(t, n)
	require.Equal(t, 5, count(t, pool, "published_at IS NULL"), "nothing is marked published")

	pub.setFail(false)
	n, err = r.Flush(ctx)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	require.Equal(t, ids(evs), msgIDs(pub.published()))
	require.Zero(t, count(t, pool, "published_at IS NULL"))
}

func TestFailureInALaterBatchKeepsEarlierBatchesAndOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	evs := events(6)
	insert(t, pool, evs...)

	pub := &fakePublisher{failAt: 2}
	r := &outbox.Relay{Pool: pool, Schema: schema, Publisher: pub, BatchSize: 2}
	n, err := r.Flush(ctx)
	require.ErrorIs(t, err, errBusDown)
	require.Equal(t, 2, n)
	require.Equal(t, 4, count(t, pool, "published_at IS NULL"))

	n, err = r.Flush(ctx)
	require.NoError(t, err)
	require.Equal(t, 4, n)
	require.Equal(t, ids(evs), msgIDs(pub.published()), "every event once, in order")
}

// flushConcurrently inserts n events, one transaction each, and has two relays flush them at
// the same time, one event per batch, until none is left; it returns the events and what the
// shared publisher published.
func flushConcurrently(t *testing.T, n int) ([]contract.Event, *fakePublisher) {
	t.Helper()
	ctx := context.Background()
	pool := newPool(t)
	evs := events(n)
	for _, e := range evs {
		insert(t, pool, e)
	}
	pub := &fakePublisher{delay: time.Millisecond}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		r := &outbox.Relay{Pool: pool, Schema: schema, Publisher: pub, BatchSize: 1}
		wg.Go(func() {
			for {
				left, err := countE(pool, "published_at IS NULL")
				if err != nil || left == 0 {
					errs[i] = err
					return
				}
				if _, err := r.Flush(ctx); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	return evs, pub
}

func TestConcurrentRelaysTakeTurnsAndKeepOrder(t *testing.T) {
	t.Parallel()
	evs, pub := flushConcurrently(t, 60)
	require.Zero(t, pub.overlaps.Load(), "two relays published at the same time")
	// First publications, in order (the bus drops repeats by message id).
	var first []string
	seen := map[string]bool{}
	for _, id := range msgIDs(pub.published()) {
		if !seen[id] {
			seen[id] = true
			first = append(first, id)
		}
	}
	require.Equal(t, ids(evs), first, "every event, in outbox order")
}

// A relay whose statement snapshot predates the other relay's commit, but which gets the
// advisory lock just after that commit released it, still sees the batch as unpublished, and
// the UPDATE's re-check (o.seq = batch.seq) does not exclude rows published meanwhile: it
// publishes the same batch again. JetStream drops the repeat, but the lock is meant to make
// one relay at a time publish each batch once.
func TestConcurrentRelaysDoNotRepublishABatch(t *testing.T) {
	t.Parallel()
	evs, pub := flushConcurrently(t, 400)
	require.Equal(t, ids(evs), msgIDs(pub.published()), "every event exactly once, in outbox order")
}

// listening reports whether a session of the pool listens on the outbox channel.
func listening(pool *pgxpool.Pool) bool {
	var n int
	err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND query ILIKE 'LISTEN %confiture_outbox%' AND pid <> pg_backend_pid()`).Scan(&n)
	return err == nil && n > 0
}

func TestRunWakesOnNotify(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	pub := &fakePublisher{}
	r := &outbox.Relay{Pool: pool, Schema: schema, Publisher: pub, PollInterval: 10 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	require.Eventually(t, func() bool { return listening(pool) }, waitFor, tick)

	// Once the first event is out, Run waits for a wake-up: only a notification (not its
	// first pass, nor the 10s poll) can publish the second one in time.
	evs := events(2)
	insert(t, pool, evs[0])
	require.Eventually(t, func() bool { return len(pub.published()) == 1 }, 3*time.Second, tick)

	start := time.Now()
	insert(t, pool, evs[1])
	require.Eventually(t, func() bool { return len(pub.published()) == 2 }, 3*time.Second, tick,
		"an insert wakes the relay long before its 10s poll")
	require.Less(t, time.Since(start), 3*time.Second)
	require.Equal(t, ids(evs), msgIDs(pub.published()))

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestLagIsTheAgeOfTheOldestUnpublishedEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	r := &outbox.Relay{Pool: pool, Schema: schema, Publisher: &fakePublisher{}}

	lag, err := r.Lag(ctx)
	require.NoError(t, err)
	require.Zero(t, lag, "an empty outbox has no lag")

	evs := events(3)
	insert(t, pool, evs...)
	_, err = pool.Exec(ctx, `UPDATE `+schema+`.outbox SET created_at = now() - interval '5 minutes' WHERE id = $1`, evs[0].ID)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE `+schema+`.outbox SET created_at = now() - interval '1 minute' WHERE id = $1`, evs[1].ID)
	require.NoError(t, err)
	lag, err = r.Lag(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, lag, 5*time.Minute)
	require.Less(t, lag, 6*time.Minute)

	// Published events do not count.
	_, err = pool.Exec(ctx, `UPDATE `+schema+`.outbox SET published_at = now() WHERE id = $1`, evs[0].ID)
	require.NoError(t, err)
	lag, err = r.Lag(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, lag, time.Minute)
	require.Less(t, lag, 2*time.Minute)

	_, err = r.Flush(ctx)
	require.NoError(t, err)
	lag, err = r.Lag(ctx)
	require.NoError(t, err)
	require.Zero(t, lag, "a drained outbox has no lag")
}

func TestRelayToJetStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	b, err := bus.Connect(ctx, bus.Options{StoreDir: t.TempDir(), EmbeddedPort: -1})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	require.NoError(t, b.EnsureStreams(ctx, bus.StreamOptions{}))

	evs := events(3)
	insert(t, pool, evs...)
	r := &outbox.Relay{Pool: pool, Schema: schema, Publisher: b}
	n, err := r.Flush(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)

	stream, err := b.JS.Stream(ctx, contract.EventStream)
	require.NoError(t, err)
	requireStream := func() {
		t.Helper()
		info, err := stream.Info(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 3, info.State.Msgs, "each event is stored once")
		for i, ev := range evs {
			m, err := stream.GetMsg(ctx, uint64(i+1))
			require.NoError(t, err)
			require.Equal(t, ev.ID, m.Header.Get(jetstream.MsgIDHeader))
			require.Equal(t, contract.EventSubject(ref.Target, ref.Run, ev.Kind), m.Subject)
			got, err := contract.DecodeEvent(m.Data)
			require.NoError(t, err)
			require.Equal(t, ev.ID, got.ID)
		}
	}
	requireStream()

	// The same batch twice (a relay whose commit failed after the bus stored its events).
	msgs := make([]outbox.Message, len(evs))
	for i, ev := range evs {
		msgs[i] = outbox.Message{ID: ev.ID, Subject: contract.EventSubject(ev.Target, ev.Run, ev.Kind), Data: mustJSON(t, ev)}
	}
	require.NoError(t, b.PublishBatch(ctx, msgs))
	require.NoError(t, b.PublishBatch(ctx, msgs))
	_, err = pool.Exec(ctx, `UPDATE `+schema+`.outbox SET published_at = NULL`)
	require.NoError(t, err)
	n, err = r.Flush(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	requireStream()
}

func TestLatestIsTheTargetsNewestEventOfTheKind(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	report := func(r outbox.RunRef, msg string) contract.Event {
		ev := outbox.New(r, contract.KindDryRunReport)
		ev.Message = msg
		return ev
	}
	other := outbox.RunRef{Run: "0f3c9a51-8d0e-5b6a-a1c4-2e7d9b3f4c10", RequestID: "deploy-2", Target: "app"}
	elsewhere := outbox.RunRef{Run: "1a2b3c4d-8d0e-5b6a-a1c4-2e7d9b3f4c10", RequestID: "deploy-3", Target: "application"}
	ev, err := outbox.Latest(ctx, pool, schema, "app", contract.KindDryRunReport)
	require.NoError(t, err)
	require.Nil(t, ev, "none yet")

	insert(t, pool, report(ref, "first"), outbox.New(ref, contract.KindRunCompleted))
	insert(t, pool, report(other, "second"), outbox.New(other, contract.KindRunCompleted))
	insert(t, pool, report(elsewhere, "another target's"))
	ev, err = outbox.Latest(ctx, pool, schema, "app", contract.KindDryRunReport)
	require.NoError(t, err)
	require.NotNil(t, ev)
	require.Equal(t, "second", ev.Message)
	require.Equal(t, other.Run, ev.Run)

	ev, err = outbox.Latest(ctx, pool, schema, "app", contract.KindRunCompleted)
	require.NoError(t, err)
	require.Equal(t, contract.KindRunCompleted, ev.Kind)
	ev, err = outbox.Latest(ctx, pool, schema, "nope", contract.KindDryRunReport)
	require.NoError(t, err)
	require.Nil(t, ev)
}
