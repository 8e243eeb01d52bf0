package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/fault"
)

// faultEnv is a worker process's environment for the fault suite: short timeouts so that River
// rescues a dead worker's phase within seconds.
func faultEnv(t *testing.T, dsn, natsURL string) map[string]string {
	return map[string]string{
		"CONFITURE_DATABASE_URL": dsn, "CONFITURE_NATS_URL": natsURL, "CONFITURE_DATA_DIR": t.TempDir(),
		"CONFITURE_HTTP_ADDR": "off", "CONFITURE_PHASE_TIMEOUT": "2s", "CONFITURE_RESCUE_AFTER": "2s",
		"CONFITURE_RETRY_BACKOFF": "10ms", "CONFITURE_RETRY_BACKOFF_MAX": "200ms",
		"CONFITURE_MAX_ATTEMPTS": "20", "CONFITURE_SHUTDOWN_TIMEOUT": "3s",
	}
}

func with(env map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// effectsRequest is two migrations whose DDL and hooks each insert one row naming themselves into
// effects: after any crash, each name must be there exactly once.
func effectsRequest() *contract.Request {
	return request("up",
		mig("001", "effects", `CREATE TABLE effects (what text NOT NULL); INSERT INTO effects VALUES ('001.ddl');`, "DROP TABLE effects",
			sqlHook(contract.PhaseAfterDDL, "after", `INSERT INTO effects VALUES ('001.after_ddl')`),
			hook(contract.PhaseAfterValidation, "check", "assert", map[string]any{"sql": `SELECT count(*) = 2 FROM effects`}),
			sqlHook(contract.PhaseCleanup, "cleanup", `INSERT INTO effects VALUES ('001.cleanup')`)),
		mig("002", "more", `INSERT INTO effects VALUES ('002.ddl'); ALTER TABLE effects ADD COLUMN note text;`, "ALTER TABLE effects DROP COLUMN note",
			sqlHook(contract.PhaseBeforeDDL, "before", `INSERT INTO effects VALUES ('002.before_ddl')`),
			sqlHook(contract.PhaseAfterDDL, "after", `INSERT INTO effects VALUES ('002.after_ddl')`)),
		// Without hooks: 003 has a job of its own, and 004 follows in the same job.
		mig("003", "plain", `INSERT INTO effects VALUES ('003.ddl');`, "DELETE FROM effects WHERE what = '003.ddl'"),
		mig("004", "plainer", `INSERT INTO effects VALUES ('004.ddl');`, "DELETE FROM effects WHERE what = '004.ddl'"),
	)
}

var wantEffects = []string{"001.after_ddl 1", "001.cleanup 1", "001.ddl 1", "002.after_ddl 1", "002.before_ddl 1", "002.ddl 1", "003.ddl 1", "004.ddl 1"}

// checkExactlyOnce asserts that the run of req completed with every effect once, each migration
// tracked once, every ledger row completed, and every event the worker recorded for the run in
// its outbox stored exactly once in JetStream.
func checkExactlyOnce(t *testing.T, db *pgxpool.Pool, natsURL string, run string, evs []*contract.Event) {
	t.Helper()
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	require.Equal(t, wantEffects, queryStrings(t, db, `SELECT what || ' ' || count(*) FROM effects GROUP BY what ORDER BY what`))
	require.Equal(t, []string{"001 true", "002 true", "003 true", "004 true"}, queryStrings(t, db, `SELECT version || ' ' || complete FROM confiture.schema_migrations ORDER BY version`))
	require.Equal(t, []string{"completed 9"}, queryStrings(t, db, `SELECT status || ' ' || count(*) FROM confiture.hook_ledger GROUP BY status`),
		"ddl, after, check and cleanup of 001; before, ddl and after of 002; ddl of 003 and 004: one completed row each")
	require.Equal(t, []string{"1"}, queryStrings(t, db, `SELECT count(*)::text FROM confiture_queue.runs`))

	// Every event in the outbox, in JetStream once.
	recorded := queryStrings(t, db, `SELECT id::text FROM confiture_queue.outbox WHERE subject LIKE $1 ORDER BY seq`, "confiture.events.default."+run+".%")
	require.NotEmpty(t, recorded)
	stored := streamEventIDs(t, natsURL, "confiture.events.default."+run+".>")
	seen := map[string]int{}
	for _, id := range stored {
		seen[id]++
	}
	for _, id := range recorded {
		require.Equal(t, 1, seen[id], "event %s: stored %d times in JetStream", id, seen[id])
	}
	require.Len(t, stored, len(seen), "no event id twice in the stream")
}

// streamEventIDs reads every message on subject from the event stream, oldest first.
func streamEventIDs(t *testing.T, natsURL, subject string) []string {
	t.Helper()
	ids, err := readStreamEventIDs(natsURL, subject)
	require.NoError(t, err)
	return ids
}

// readStreamEventIDs returns the message ids of the events stored under subject, in order.
func readStreamEventIDs(natsURL, subject string) ([]string, error) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := js.StreamNameBySubject(ctx, subject)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	// Unfiltered (FilterSubjects needs a newer server than some deployments run); filtered below.
	c, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, err
	}
	var ids []string
	for {
		batch, err := c.FetchNoWait(500)
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if !subjectMatches(m.Subject(), subject) {
				continue
			}
			ids = append(ids, m.Headers().Get(nats.MsgIdHdr))
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if n == 0 {
			return ids, nil
		}
	}
}

func subjectMatches(subject, filter string) bool {
	return strings.HasPrefix(subject, strings.TrimSuffix(filter, ">"))
}

// TestFaultsSIGKILL kills the worker process at each named point of a run, at different
// occurrences, and restarts it: the run completes with every effect exactly once and every event
// stored once.
func TestFaultsSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts worker processes")
	}
	t.Parallel()
	for _, sc := range []struct{ point, nth string }{
		{fault.IntakeAfterCommit, "1"},
		// Phases that commit on the target, those with work: 001 ddl, after_ddl,
		// after_validation, cleanup; 002 before_ddl, ddl, after_ddl; 003 ddl, and 004 ddl in
		// the job of 003.
		{fault.PhaseBeforeCommit, "1"}, // 001 ddl
		{fault.PhaseBeforeCommit, "4"}, // 001 cleanup
		{fault.PhaseBeforeCommit, "6"}, // 002 ddl
		{fault.PhaseBeforeCommit, "9"}, // 004 ddl, in the job of 003 that moved the run on
		// After a phase committed: the transition to the next step (its job inserted, or the
		// run moved on in the same job) has not committed when the worker dies, so River
		// rescues this job, which finds its phase in the ledger and does not run it again.
		{fault.PhaseAfterCommit, "2"}, // 001 after_ddl
		{fault.PhaseAfterCommit, "6"}, // 002 ddl
		{fault.PhaseAfterCommit, "7"}, // 002 after_ddl
		{fault.PhaseAfterCommit, "8"}, // 003 ddl, before the run moves on to 004 in its job
		{fault.PhaseAfterCommit, "9"}, // 004 ddl: the run's last phase, in the job of 003
		{fault.OutboxAfterPublish, "1"},
		{fault.OutboxAfterPublish, "3"},
	} {
		t.Run(sc.point+"@"+sc.nth, func(t *testing.T) {
			t.Parallel()
			db, env, ns := procSetup(t)
			natsURL, ctx := ns.url(), context.Background()

			first := startChild(t, with(env, fault.Env, sc.point+"=kill@"+sc.nth))
			c, err := client.Connect(natsURL)
			require.NoError(t, err)
			t.Cleanup(c.Close)
			req := effectsRequest()
			pub, err := c.Publish(ctx, req)
			require.NoError(t, err)
			select {
			case <-first.done:
			case <-time.After(60 * time.Second):
				t.Fatalf("the worker did not reach %s@%s", sc.point, sc.nth)
			}
			require.Contains(t, first.output(), "fault: SIGKILL at "+sc.point)

			startChild(t, env)
			checkExactlyOnce(t, db, natsURL, pub.Run, waitRun(t, c, req.Target, pub.Run))
		})
	}
}

func (c *child) output() string { return c.log.String() }
