package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
)

// natsServer is an in-process NATS server that a test can stop and start again on the same port
// with the same JetStream store.
type natsServer struct {
	t    *testing.T
	opts server.Options
	mu   sync.Mutex
	s    *server.Server
}

func startRestartableNATS(t *testing.T) *natsServer {
	t.Helper()
	n := &natsServer{t: t, opts: server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, MaxPayload: 8 << 20}}
	n.start()
	n.opts.Port = n.s.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	opts := n.opts
	s, err := server.NewServer(&opts)
	require.NoError(n.t, err)
	go s.Start()
	require.True(n.t, s.ReadyForConnections(15*time.Second))
	n.mu.Lock()
	n.s = s
	n.mu.Unlock()
}

func (n *natsServer) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.s != nil {
		n.s.Shutdown()
		n.s.WaitForShutdown()
		n.s = nil
	}
}

func (n *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.opts.Port) }

// TestNATSOutage stops NATS for 30 seconds in the middle of a run: the phases go on, their events
// wait in the outbox and all arrive once NATS is back, intake resumes by itself, and the worker
// never exits.
func TestNATSOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a 30 s outage")
	}
	t.Parallel()
	db, env, ns := procSetup(t)
	ctx := context.Background()
	w := startChild(t, env)

	c, err := client.Connect(ns.url())
	require.NoError(t, err)
	t.Cleanup(c.Close)
	// Each after_ddl phase takes a second: the run spans the outage.
	var migs []contract.Migration
	for i := 1; i <= 12; i++ {
		v := fmt.Sprintf("%03d", i)
		up := `INSERT INTO effects VALUES ('` + v + `.ddl')`
		if i == 1 {
			up = `CREATE TABLE effects (what text NOT NULL); ` + up
		}
		migs = append(migs, mig(v, "step", up, "",
			sqlHook(contract.PhaseAfterDDL, "slow", `SELECT pg_sleep(1); INSERT INTO effects VALUES ('`+v+`.after_ddl')`)))
	}
	req := request("up", migs...)
	pub, err := c.Publish(ctx, req)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var n int
		return db.QueryRow(ctx, `SELECT count(*) FROM effects`).Scan(&n) == nil && n >= 2
	}, 30*time.Second, 20*time.Millisecond)

	ns.stop()
	down := time.Now()
	var during int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM effects`).Scan(&during))
	time.Sleep(30 * time.Second)
	var after int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM effects`).Scan(&after))
	require.Greater(t, after, during, "phases went on without NATS")
	var waiting int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM confiture_queue.outbox WHERE published_at IS NULL`).Scan(&waiting))
	require.Positive(t, waiting, "events wait in the outbox")
	select {
	case <-w.done:
		t.Fatalf("the worker exited during the outage:\n%s", tail(w.output(), 5000))
	default:
	}
	ns.start()
	t.Logf("NATS was down for %s; %d effects before, %d after, %d events waiting", time.Since(down).Round(time.Second), during, after, waiting)

	// Intake resumes by itself: a second request, published after the outage, runs too.
	c2, err := client.Connect(ns.url())
	require.NoError(t, err)
	t.Cleanup(c2.Close)
	req2 := request("up", append(migs, mig("013", "after", `INSERT INTO effects VALUES ('013.ddl')`, ""))...)
	pub2, err := c2.Publish(ctx, req2)
	require.NoError(t, err)

	evs := waitRun(t, c2, req.Target, pub.Run)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	// Every event recorded for the run reached the stream, once.
	recorded := queryStrings(t, db, `SELECT id::text FROM confiture_queue.outbox WHERE subject LIKE $1`, "confiture.events.default."+pub.Run+".%")
	stored := map[string]int{}
	for _, id := range streamEventIDs(t, ns.url(), "confiture.events.default."+pub.Run+".>") {
		stored[id]++
	}
	for _, id := range recorded {
		require.Equal(t, 1, stored[id], "event %s", id)
	}
	evs2 := waitRun(t, c2, req2.Target, pub2.Run)
	require.Equal(t, contract.KindRunCompleted, last(evs2).Kind, "%v", kinds(evs2))
	require.Equal(t, []string{"25"}, queryStrings(t, db, `SELECT count(DISTINCT what)::text FROM effects`))
	require.Equal(t, []string{"25"}, queryStrings(t, db, `SELECT count(*)::text FROM effects`), "each effect once")
	select {
	case <-w.done:
		t.Fatal("the worker exited")
	default:
	}
}

// TestPostgresConnectionsKilledMidPhase terminates the worker's backends (queue and target: one
// database here) while a phase runs: River retries, and the run completes exactly once.
func TestPostgresConnectionsKilledMidPhase(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxAttempts = 10 })
	ctx := context.Background()
	req := request("up",
		mig("001", "effects", `CREATE TABLE effects (what text NOT NULL); INSERT INTO effects VALUES ('001.ddl');`, "",
			sqlHook(contract.PhaseAfterDDL, "slow", `SELECT pg_sleep(0.5), '001.after_ddl'; INSERT INTO effects VALUES ('001.after_ddl')`),
			sqlHook(contract.PhaseCleanup, "slow_cleanup", `SELECT pg_sleep(0.5), '001.cleanup'; INSERT INTO effects VALUES ('001.cleanup')`)),
		mig("002", "more", `INSERT INTO effects VALUES ('002.ddl')`, "",
			sqlHook(contract.PhaseAfterDDL, "slow", `SELECT pg_sleep(0.5), '002.after_ddl'; INSERT INTO effects VALUES ('002.after_ddl')`)))
	pub, err := b.client.Publish(ctx, req)
	require.NoError(t, err)

	// Kill every other backend of the database whenever a pg_sleep is running, three times,
	// from a connection of the test's own (the test's pool is killed too, and not used again).
	killer, err := pgx.Connect(ctx, b.dsn)
	require.NoError(t, err)
	defer killer.Close(ctx)
	// Each of the three slow hooks is killed once (its query names it).
	killed := map[string]bool{}
	deadline := time.Now().Add(time.Minute)
	for len(killed) < 3 {
		require.True(t, time.Now().Before(deadline), "killed only %v", killed)
		var pid int
		var query string
		err := killer.QueryRow(ctx, `SELECT pid, query FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%pg_sleep%'
			AND state = 'active' AND NOT query = ANY($1) LIMIT 1`, append([]string{}, slices.Collect(maps.Keys(killed))...)).Scan(&pid, &query)
		if errors.Is(err, pgx.ErrNoRows) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		require.NoError(t, err)
		killed[query] = true
		// That backend, and the other connections of the worker (the queue's) with it.
		_, err = killer.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`)
		require.NoError(t, err)
	}
	evs := b.wait(t, req.Target, pub.Run)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	check, err := pgxpool.New(ctx, b.dsn)
	require.NoError(t, err)
	defer check.Close()
	require.Equal(t, []string{"001.after_ddl 1", "001.cleanup 1", "001.ddl 1", "002.after_ddl 1", "002.ddl 1"},
		queryStrings(t, check, `SELECT what || ' ' || count(*) FROM effects GROUP BY what ORDER BY what`))
	// Each killed phase ran again and committed once. A session the server terminates is
	// transient trouble: the attempt it cut short does not count (the retry has the same
	// attempt number) and is reported as such when its record survives the kill (the queue's
	// connections died with it).
	require.Equal(t, []string{"completed 3"}, queryStrings(t, check, `SELECT status || ' ' || count(*) FROM confiture.hook_ledger
		WHERE hook IN ('slow', 'slow_cleanup') GROUP BY status`))
	for _, ev := range ofKind(evs, contract.KindPhaseRetrying) {
		require.Equal(t, contract.CodeUnavailable, ev.Error.Code, "a killed session is transient: %s", ev.Error.Message)
	}
	require.Empty(t, ofKind(evs, contract.KindPhaseFailed))
}

// TestSIGTERMDuringARun stops the worker with SIGTERM while a phase runs: the phase finishes or
// is released within the shutdown bound, the process exits, and a restarted worker finishes the
// run with every effect once.
func TestSIGTERMDuringARun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	t.Parallel()
	db, env, ns := procSetup(t)
	natsURL, ctx := ns.url(), context.Background()
	env["CONFITURE_PHASE_TIMEOUT"], env["CONFITURE_RESCUE_AFTER"] = "10s", "10s"
	for _, sleep := range []string{"1", "6"} { // a phase that finishes within the bound, one that does not
		t.Run("phase_of_"+sleep+"s", func(t *testing.T) {
			_, err := db.Exec(ctx, `DROP TABLE IF EXISTS effects; DROP SCHEMA IF EXISTS confiture CASCADE`)
			require.NoError(t, err)
			w := startChild(t, env)
			c, err := client.Connect(natsURL)
			require.NoError(t, err)
			defer c.Close()
			req := request("up",
				mig("001", "effects", `CREATE TABLE effects (what text NOT NULL); INSERT INTO effects VALUES ('001.ddl');`, "",
					sqlHook(contract.PhaseAfterDDL, "slow", `SELECT pg_sleep(`+sleep+`); INSERT INTO effects VALUES ('001.after_ddl')`)),
				mig("002", "more", `INSERT INTO effects VALUES ('002.ddl')`, ""))
			pub, err := c.Publish(ctx, req)
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				var n int
				return db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'`).Scan(&n) == nil && n > 0
			}, 30*time.Second, 10*time.Millisecond)
			sent := time.Now()
			require.NoError(t, w.cmd.Process.Signal(syscall.SIGTERM))
			// The bound: shutdown_timeout (3s) for running phases, then up to 10s for the
			// cancelled ones to record their attempt; a loaded machine needs some slack on top.
			select {
			case <-w.done:
			case <-time.After(20 * time.Second):
				t.Fatalf("the worker did not exit within 20s of SIGTERM:\n%s", tail(w.output(), 5000))
			}
			took := time.Since(sent)
			require.Zero(t, w.cmd.ProcessState.ExitCode(), "a clean exit:\n%s", tail(w.output(), 3000))
			t.Logf("exited %s after SIGTERM", took.Round(10*time.Millisecond))

			startChild(t, env)
			evs := waitRun(t, c, req.Target, pub.Run)
			require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
			require.Equal(t, []string{"001.after_ddl 1", "001.ddl 1", "002.ddl 1"},
				queryStrings(t, db, `SELECT what || ' ' || count(*) FROM effects GROUP BY what ORDER BY what`))
		})
	}
}

// TestTwoWorkers runs two worker processes against one queue and target: no two phases on the
// target ever overlap, runs start in the order the queue database recorded them, and when one worker dies in the
// middle of a phase, the other finishes every run after River rescues the dead one's job.
func TestTwoWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	t.Parallel()
	db, env, ns := procSetup(t)
	natsURL, ctx := ns.url(), context.Background()
	_, err := db.Exec(ctx, `CREATE TABLE trace (label text PRIMARY KEY, started timestamptz NOT NULL, ended timestamptz)`)
	require.NoError(t, err)
	// One worker dies at the first phase it is about to commit (which phases it takes is up to
	// River: a later one might never come); the other lives on.
	dying := startChild(t, with(env, "CONFITURE_FAULT", "phase.before_commit=kill@1"))
	startChild(t, env)

	c, err := client.Connect(natsURL)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	traced := func(label string) string {
		return `INSERT INTO trace VALUES ('` + label + `', clock_timestamp()); SELECT pg_sleep(0.2);
			UPDATE trace SET ended = clock_timestamp() WHERE label = '` + label + `'`
	}
	var migs []contract.Migration
	var pubs []client.Published
	var reqs []*contract.Request
	for i := 1; i <= 4; i++ {
		v := fmt.Sprintf("%03d", i)
		migs = append(migs, mig(v, "m", `SELECT 1`, "",
			sqlHook(contract.PhaseBeforeDDL, "before", traced(v+".before_ddl")),
			sqlHook(contract.PhaseAfterDDL, "after", traced(v+".after_ddl"))))
		req := request("up", migs...) // each request adds one migration to the ones before
		pub, err := c.Publish(ctx, req)
		require.NoError(t, err)
		reqs, pubs = append(reqs, req), append(pubs, pub)
	}
	select {
	case <-dying.done:
	case <-time.After(90 * time.Second):
		t.Fatal("the dying worker never reached its fault")
	}
	for i, pub := range pubs {
		evs := waitRun(t, c, reqs[i].Target, pub.Run)
		require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "run %d: %v", i+1, kinds(evs))
	}
	// Runs of one target run one at a time, in the order the queue database recorded them
	// (seq): intake takes the target's lock before it records a run, so with two workers taking
	// requests, seq order is also the order their transactions committed in.
	require.Equal(t, []string{"0"}, queryStrings(t, db, `SELECT count(*)::text FROM confiture_queue.runs a
		JOIN confiture_queue.runs b ON a.seq < b.seq AND b.started_at < a.started_at`), "a run started before one recorded earlier")
	require.Equal(t, []string{"0"}, queryStrings(t, db, `SELECT count(*)::text FROM confiture_queue.runs a
		JOIN confiture_queue.runs b ON a.seq < b.seq AND a.started_at < b.finished_at AND b.started_at < a.finished_at`),
		"two runs of the target overlapped: %v",
		queryStrings(t, db, `SELECT seq || ' ' || status || ' ' || coalesce(started_at::time::text, '-') || ' ' || coalesce(finished_at::time::text, '-') FROM confiture_queue.runs ORDER BY seq`))
	require.Equal(t, []string{"8"}, queryStrings(t, db, `SELECT count(*)::text FROM trace WHERE ended IS NOT NULL`),
		"each migration's two traced phases once")
	require.Equal(t, []string{"0"}, queryStrings(t, db, `SELECT count(*)::text FROM trace a JOIN trace b
		ON a.label < b.label AND a.started < b.ended AND b.started < a.ended`), "no two phases on the target overlapped")
	require.Equal(t, []string{"001", "002", "003", "004"}, queryStrings(t, db, `SELECT version FROM confiture.schema_migrations ORDER BY version`))
}
