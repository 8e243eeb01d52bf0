package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/intake"
	"github.com/confiture-io/confiture-worker/internal/natsauth"
	"github.com/confiture-io/confiture-worker/internal/natsauth/natsauthtest"
	"github.com/confiture-io/confiture-worker/internal/syncbuf"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// startOn starts a worker on the queue database dsn and the NATS server at url, and stops it
// when the test ends. It returns the worker and Start's error.
func startOn(t *testing.T, dsn, url string, logger *slog.Logger, opts ...func(*Config)) (*Worker, error) {
	t.Helper()
	cfg := authConfig(t, dsn, url, natsauth.Options{}, logger)
	for _, o := range opts {
		o(&cfg)
	}
	w, err := startWith(t, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = w.Stop(ctx) // a no-op when Start failed: Start stopped what it started
	})
	return w, err
}

// TestWorkerOnAnotherNATSSystemIsRefused: worker A relays the queue database's events to NATS
// server 1; worker B, on the same queue database but connected to NATS server 2, would relay
// A's events to server 2 (and B's to server 1 whenever A holds the relay lock), so submit
// --wait on either server would miss events. B must refuse to start, say what to do, and leave
// nothing behind.
func TestWorkerOnAnotherNATSSystemIsRefused(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	db := queuePool(t, dsn)
	ns1, ns2 := startRestartableNATS(t), startRestartableNATS(t)
	_, err := startOn(t, dsn, ns1.url(), testLogger(t))
	require.NoError(t, err)
	before := workerTable(t, db)
	require.Len(t, before, 2, "A's row and the recorded system: %v", before)

	var logsB syncbuf.Buffer
	_, err = startOn(t, dsn, ns2.url(), slog.New(slog.NewJSONHandler(&logsB, nil)))
	require.Error(t, err, "worker B, connected to another NATS server than worker A, started on A's queue database")
	t.Logf("refusal: %s", err)
	require.ErrorIs(t, err, ErrNATSSystemConflict)
	var conflict *NATSSystemConflictError
	require.ErrorAs(t, err, &conflict)
	require.Len(t, conflict.Others, 1)
	msg := err.Error()
	host, _ := os.Hostname()
	require.Contains(t, msg, fmt.Sprintf("the worker on host %s (pid %d, last seen ", host, os.Getpid()))
	require.Contains(t, msg, "relays its events to NATS system "+eventStreamSystem(t, ns1.url())+" at "+ns1.url(), "names worker A's NATS system")
	require.Contains(t, msg, "this worker is connected to NATS system "+eventStreamSystem(t, ns2.url())+" at "+ns2.url(), "names this worker's NATS system")
	require.Contains(t, msg, "point this worker at the same NATS server or cluster (nats_url), or give it a queue database or queue_schema/river_schema of its own")

	// B changed nothing in the queue database, and took nothing from server 2.
	require.Equal(t, before, workerTable(t, db))
	js := jsOn(t, ns2.url())
	_, err = js.Consumer(context.Background(), contract.RequestStream, intake.ConsumerName)
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "B's intake never started")
	require.NotContains(t, logsB.String(), "worker started")

	// Worker A goes on relaying its runs to server 1.
	c, err := client.Connect(ns1.url())
	require.NoError(t, err)
	t.Cleanup(c.Close)
	evs := (&bundle{client: c}).run(t, request("up", mig("001", "one", `CREATE TABLE one (id int)`, "")))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
}

// TestRefusalHidesNATSCredentials: worker A logs in to its NATS server with a password in its
// URL; the refusal of worker B names A's server without it, and the queue database never
// holds it.
func TestRefusalHidesNATSCredentials(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	ns1 := natsauthtest.Start(t, &server.Options{Users: []*server.User{{Username: "worker", Password: natsWorkerPW}}})
	withPassword := strings.Replace(ns1.ClientURL(), "nats://", "nats://worker:"+natsWorkerPW+"@", 1)
	var logsA syncbuf.Buffer
	_, err := startOn(t, dsn, withPassword, slog.New(slog.NewJSONHandler(&logsA, nil)))
	require.NoError(t, err)

	var logsB syncbuf.Buffer
	_, err = startOn(t, dsn, startRestartableNATS(t).url(), slog.New(slog.NewJSONHandler(&logsB, nil)))
	require.ErrorIs(t, err, ErrNATSSystemConflict)
	require.Contains(t, err.Error(), "at nats://worker:xxxxx@127.0.0.1:")
	require.NotContains(t, err.Error()+logsA.String()+logsB.String(), natsWorkerPW)
	require.NotContains(t, strings.Join(workerTable(t, queuePool(t, dsn)), "\n"), natsWorkerPW)
}

// TestWorkersOnOneNATSSystemShareAQueueDatabase: replicas on one NATS system start side by
// side, each heartbeats its row, and a stopped one removes its row.
func TestWorkersOnOneNATSSystemShareAQueueDatabase(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	db := queuePool(t, dsn)
	ns := startRestartableNATS(t)
	fast := func(c *Config) { c.HeartbeatInterval, c.LivenessWindow = 50*time.Millisecond, 5*time.Second }
	_, err := startOn(t, dsn, ns.url(), testLogger(t), fast)
	require.NoError(t, err)
	b, err := startOn(t, dsn, ns.url(), testLogger(t), fast)
	require.NoError(t, err)
	require.Len(t, queryStrings(t, db, `SELECT id::text FROM confiture_queue.workers`), 2)
	system := eventStreamSystem(t, ns.url())
	require.Equal(t, []string{system}, queryStrings(t, db, `SELECT DISTINCT nats_system FROM confiture_queue.workers`))
	require.Equal(t, []string{system}, queryStrings(t, db, `SELECT system FROM confiture_queue.nats_system`))

	seen := func() []string {
		return queryStrings(t, db, `SELECT seen_at::text FROM confiture_queue.workers ORDER BY id`)
	}
	first := seen()
	require.Eventually(t, func() bool {
		now := seen()
		return len(now) == 2 && now[0] != first[0] && now[1] != first[1]
	}, 10*time.Second, 20*time.Millisecond, "both workers heartbeat")

	stopWorker(t, b)
	require.Len(t, queryStrings(t, db, `SELECT id::text FROM confiture_queue.workers`), 1, "B's row is gone")
}

// TestMovingFromTheEmbeddedNATSToAnotherSystem: the user ran the worker with its embedded NATS
// server (make run), stops it, and starts it against a real server: it starts, warns that the
// queue database's events go to the new system from now on, and relays there.
func TestMovingFromTheEmbeddedNATSToAnotherSystem(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	db := queuePool(t, dsn)
	a, err := startOn(t, dsn, "", testLogger(t), func(c *Config) { c.EmbeddedNATSPort = -1 })
	require.NoError(t, err)
	embedded := a.NATSURL()
	old := eventStreamSystem(t, embedded)
	stopWorker(t, a)
	require.Empty(t, queryStrings(t, db, `SELECT id::text FROM confiture_queue.workers`), "A's row went with it")

	ns := startRestartableNATS(t)
	var logs syncbuf.Buffer
	_, err = startOn(t, dsn, ns.url(), slog.New(slog.NewJSONHandler(&logs, nil)))
	require.NoError(t, err)
	system := eventStreamSystem(t, ns.url())
	warn := takeoverRecord(t, &logs)
	t.Logf("takeover: %s", warn["msg"])
	require.Contains(t, warn["msg"], "events of this queue database went to NATS system "+old+" at "+embedded+" (embedded) until now and go to NATS system "+system+" at "+ns.url()+" from now on")
	require.Equal(t, old, warn["previous_nats_system"])
	require.Equal(t, system, warn["nats_system"])
	require.Equal(t, []string{system}, queryStrings(t, db, `SELECT system FROM confiture_queue.nats_system`))

	c, err := client.Connect(ns.url())
	require.NoError(t, err)
	t.Cleanup(c.Close)
	evs := (&bundle{client: c}).run(t, request("up", mig("001", "moved", `CREATE TABLE moved (id int)`, "")))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
}

// TestTakeoverFromADeadWorker: worker A on server 1 stops heartbeating (its seen_at is made
// older than the liveness window); worker B on server 2 starts, deletes A's row and warns. If
// A turns out to be alive, its next heartbeat finds its row gone and may not register again
// while B lives; once B has stopped, it registers again and takes the queue database back.
func TestTakeoverFromADeadWorker(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	db := queuePool(t, dsn)
	ns1, ns2 := startRestartableNATS(t), startRestartableNATS(t)
	var logsA syncbuf.Buffer
	a, err := startOn(t, dsn, ns1.url(), slog.New(slog.NewJSONHandler(&logsA, nil)),
		func(c *Config) { c.HeartbeatInterval = time.Hour }) // the test beats for it
	require.NoError(t, err)
	_, err = db.Exec(context.Background(), `UPDATE confiture_queue.workers SET seen_at = now() - interval '16 seconds'`)
	require.NoError(t, err)

	var logsB syncbuf.Buffer
	b, err := startOn(t, dsn, ns2.url(), slog.New(slog.NewJSONHandler(&logsB, nil)))
	require.NoError(t, err, "A was last seen beyond the liveness window")
	sys1, sys2 := eventStreamSystem(t, ns1.url()), eventStreamSystem(t, ns2.url())
	warn := takeoverRecord(t, &logsB)
	require.Contains(t, warn["msg"], "went to NATS system "+sys1+" at "+ns1.url()+" until now and go to NATS system "+sys2+" at "+ns2.url()+" from now on")
	require.Equal(t, []string{sys2}, queryStrings(t, db, `SELECT nats_system FROM confiture_queue.workers`), "A's row is gone")

	a.beat(context.Background(), *a.me)
	require.Contains(t, logsA.String(), "was taken for dead, and may not register again: stop it")
	require.Contains(t, logsA.String(), "point this worker at the same NATS server or cluster")
	a.beat(context.Background(), *a.me)
	require.Equal(t, 1, strings.Count(logsA.String(), "may not register again"), "said once")
	require.Equal(t, []string{sys2}, queryStrings(t, db, `SELECT nats_system FROM confiture_queue.workers`))

	stopWorker(t, b)
	a.beat(context.Background(), *a.me)
	require.Contains(t, logsA.String(), "was taken for dead; registered again")
	require.Contains(t, takeoverRecord(t, &logsA)["msg"], "go to NATS system "+sys1+" at "+ns1.url()+" from now on")
	require.Equal(t, []string{sys1}, queryStrings(t, db, `SELECT system FROM confiture_queue.nats_system`))
}

// eventStreamSystem is the identity of the NATS system at url, read the way an operator would
// (nats stream info CONFITURE_EVENTS: its creation time).
func eventStreamSystem(t *testing.T, url string) string {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(context.Background(), contract.EventStream)
	require.NoError(t, err)
	return contract.EventStream + "@" + s.CachedInfo().Created.UTC().Format(time.RFC3339Nano)
}

func jsOn(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func queuePool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	db, err := pgxpool.New(context.Background(), dsn)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return db
}

// workerTable is the worker table and the recorded NATS system, one line a row.
func workerTable(t *testing.T, db *pgxpool.Pool) []string {
	t.Helper()
	return queryStrings(t, db, `SELECT format('worker %s %s %s %s %s %s %s', id, host, pid, nats_system, nats_url, started_at, seen_at)
		FROM confiture_queue.workers UNION ALL
		SELECT format('system %s %s %s', system, url, since) FROM confiture_queue.nats_system ORDER BY 1`)
}

func stopWorker(t *testing.T, w *Worker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, w.Stop(ctx))
}

// takeoverRecord is the last WARN record in logs that says where events go from now on.
func takeoverRecord(t *testing.T, logs *syncbuf.Buffer) map[string]any {
	t.Helper()
	var found map[string]any
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		if rec["level"] == "WARN" && strings.Contains(fmt.Sprint(rec["msg"]), "from now on") {
			found = rec
		}
	}
	require.NotNil(t, found, "no takeover warning in:\n%s", logs.String())
	return found
}
