package submitcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/bus"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/syncbuf"
	"github.com/confiture-io/confiture-worker/internal/targetgroup"
	"github.com/confiture-io/confiture-worker/internal/testdb"
	"github.com/confiture-io/confiture-worker/internal/worker"
)

// startWorker starts a worker with an embedded NATS server on a database of its own and
// returns the NATS URL.
func startWorker(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: needs PostgreSQL")
	}
	return startWorkerOn(t, testdb.New(t), nil)
}

// startWorkerOn starts a worker on the database dsn, with groups.
func startWorkerOn(t *testing.T, dsn string, groups []targetgroup.Config) string {
	t.Helper()
	w, err := worker.New(worker.Config{
		TargetGroups:     groups,
		MaxServerConns:   6, // many tests at once on a server of 100 connections
		DatabaseURL:      dsn,
		DataDir:          t.TempDir(),
		EmbeddedNATSPort: -1,
		Logger:           slog.New(slog.DiscardHandler),
		MaxAttempts:      2,
		RetryBackoff:     10 * time.Millisecond,
		RetryBackoffMax:  20 * time.Millisecond,
		FetchCooldown:    time.Millisecond,
		ShutdownTimeout:  5 * time.Second,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, w.Stop(ctx))
	})
	return w.NATSURL()
}

const usersHooks = `before_validation:
  - name: db_answers
    hook: assert
    params:
      sql: select true
      message: the database must answer
after_ddl:
  - name: seed_users
    hook: sql
    params:
      sql: insert into users (id) values (1), (2)
`

func usersDir(t *testing.T) string {
	return writeDir(t, map[string]string{
		"001_create_users.up.sql":     "create table users (id int primary key);\n",
		"001_create_users.down.sql":   "drop table users;\n",
		"001_create_users.hooks.yaml": usersHooks,
		"002_add_email.up.sql":        "alter table users add column email text;\n",
	})
}

func TestE2EWaitCompletes(t *testing.T) {
	t.Parallel()
	url := startWorker(t)
	r := submit(t, usersDir(t), "--nats-url", url, "--wait", "--timeout", "30s", "--requested-by", "e2e")
	t.Log(r)
	require.Equal(t, ExitOK, r.code, r)
	require.Empty(t, r.stderr, r)
	out := r.stdout
	for _, s := range []string{
		"accepted: up of 2 migration(s) accepted",
		"run started: applying 2 migration(s): 001, 002",
		"\n001_create_users\n",
		"  before_validation  started   1 hook(s)\n    ✓ db_answers ",
		"\n  ddl                done ",
		"    ✓ seed_users               2 rows ",
		"\n001_create_users completed\n",
		"\n002_add_email completed  0 rows ", // without hooks: one line
		"run completed in ",
		": applied 2 migration(s)\n",
	} {
		require.Contains(t, out, s, r)
	}
	require.NotContains(t, out, "after_validation", "phases without hooks are not shown")
	require.True(t, strings.HasSuffix(out, "applied 2 migration(s)\n"), r)
}

func TestE2EWaitJSON(t *testing.T) {
	t.Parallel()
	url := startWorker(t)
	r := submit(t, usersDir(t), "--nats-url", url, "--wait", "--json", "--timeout", "30s", "--id", "json-1")
	require.Equal(t, ExitOK, r.code, r)
	require.Empty(t, r.stderr, r)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Greater(t, len(lines), 10, r)
	ids := map[string]bool{}
	var last *contract.Event
	for _, l := range lines {
		ev, err := contract.DecodeEvent([]byte(l))
		require.NoError(t, err, l)
		require.Equal(t, contract.RunID("default", "json-1"), ev.Run)
		require.False(t, ids[ev.ID], "event %s printed twice", ev.ID)
		ids[ev.ID] = true
		last = ev
	}
	require.Equal(t, contract.KindRunAccepted, mustDecode(t, lines[0]).Kind)
	require.Equal(t, contract.KindRunCompleted, last.Kind)
}

func mustDecode(t *testing.T, line string) *contract.Event {
	ev, err := contract.DecodeEvent([]byte(line))
	require.NoError(t, err)
	return ev
}

func TestE2EDDLErrorExit1(t *testing.T) {
	t.Parallel()
	url := startWorker(t)
	dir := writeDir(t, map[string]string{
		"001_create_users.up.sql":     "create table users (id int primary key);\n",
		"001_create_users.hooks.yaml": usersHooks,
		"002_broken.up.sql":           "create table broken (id int,);\n",
	})
	r := submit(t, dir, "--nats-url", url, "--wait", "--timeout", "30s")
	t.Log(r)
	require.Equal(t, ExitFailed, r.code, r)
	for _, s := range []string{
		"\n001_create_users completed\n",
		"\n002_broken\n  ddl                failed    after ",
		"    ✗ sql_error: ",
		"syntax error at or near \")\" (SQLSTATE 42601)",
		"\n002_broken failed at ddl\n",
		"run failed after ",
		"  migration: 002_broken\n  phase:     ddl\n  error:     sql_error: ",
	} {
		require.Contains(t, r.stdout, s, r)
	}
}

func TestE2ERejectedExit3(t *testing.T) {
	t.Parallel()
	url := startWorker(t)
	dir := usersDir(t)

	r := submit(t, dir, "--nats-url", url, "--wait", "--timeout", "30s", "--target", "nope")
	require.Equal(t, ExitRejected, r.code, r)
	require.Contains(t, r.stdout, "run rejected (unknown_target): unknown target \"nope\"", r)
}

func TestE2EDryRun(t *testing.T) {
	t.Parallel()
	url := startWorker(t)
	dir := usersDir(t)

	// A clean dry-run: the report as tables, exit 0, and nothing applied (the real run after
	// it creates the table again without complaint).
	r := submit(t, dir, "--nats-url", url, "--wait", "--timeout", "30s", "--dry-run", "--id", "dry-1")
	require.Equal(t, ExitOK, r.code, r)
	for _, s := range []string{
		"dry-run report (up): succeeded in ",
		"✓ 001_create_users  ok  ",
		"    LINE ", "locks:    users AccessExclusive",
		"created:  users (table), users_pkey (index)",
		"    seed_users ",
		"no warnings\n",
		"run completed in ",
	} {
		require.Contains(t, r.stdout, s, r)
	}

	// A warning (a statement that cannot run in a transaction block and has no transactional
	// equivalent), after an emulated one (info): exit 0 under the default --fail-on error, 5
	// under --fail-on warning, the same with --json.
	warned := writeDir(t, map[string]string{
		"001_create_users.up.sql": "create table users (id int primary key);\n",
		"002_index.up.sql":        "create index concurrently users_id on users (id);\nvacuum users;\n",
	})
	r = submit(t, warned, "--nats-url", url, "--wait", "--timeout", "30s", "--dry-run", "--id", "dry-2")
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "not_transactional [002_index ddl line 2]", r)
	require.Contains(t, r.stdout, "emulated: ran as create index users_id on users (id); a real run takes users ShareUpdateExclusive", r)
	r = submit(t, warned, "--nats-url", url, "--wait", "--timeout", "30s", "--dry-run", "--id", "dry-3", "--fail-on", "warning")
	require.Equal(t, ExitDryRunWarnings, r.code, r)
	require.Contains(t, r.stderr, "the dry-run succeeded but found 1 warning at or above --fail-on=warning (exit 5)", r)
	r = submit(t, warned, "--nats-url", url, "--wait", "--timeout", "30s", "--dry-run", "--id", "dry-4", "--fail-on", "warning", "--json")
	require.Equal(t, ExitDryRunWarnings, r.code, r)
	var report *contract.Event
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		ev, err := contract.DecodeEvent([]byte(line))
		require.NoError(t, err, line)
		if ev.Kind == contract.KindDryRunReport {
			report = ev
		}
	}
	require.NotNil(t, report, r)
	require.NoError(t, contract.ValidateDryRunReport(report.Data), "the worker's report matches its schema")

	// A failing statement: exit 1, whatever --fail-on says.
	broken := writeDir(t, map[string]string{"001_broken.up.sql": "alter table nope add column x int;\n"})
	r = submit(t, broken, "--nats-url", url, "--wait", "--timeout", "30s", "--dry-run", "--fail-on", "none")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stdout, "dry-run report (up): failed in ", r)
	require.Contains(t, r.stdout, "✗ 001_broken  failed  ", r)
	require.Contains(t, r.stderr, "the dry-run failed: 001_broken: ", r)

	// Nothing of the dry-runs was applied.
	r = submit(t, dir, "--nats-url", url, "--wait", "--timeout", "30s")
	require.Equal(t, ExitOK, r.code, r)
}

func TestE2ESameIDFollowsTheExistingRun(t *testing.T) {
	t.Parallel()
	url := startWorker(t)
	dir := usersDir(t)
	args := []string{dir, "--nats-url", url, "--id", "deploy-7"}
	run := contract.RunID("default", "deploy-7")

	// Without --wait: the run id and how to follow it.
	r := submit(t, args...)
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "published request deploy-7 for target default: run "+run+"\n", r)
	require.Contains(t, r.stdout, "follow it with: submit "+shellQuote(dir)+" --id deploy-7 --nats-url "+url+" --wait\n", r)
	require.Contains(t, r.stdout, contract.RunEventsFilter("default", run), r)

	// The same id again, as the hint says: nothing new runs, the existing run is followed.
	for range 2 {
		r = submit(t, append(args, "--wait", "--timeout", "30s")...)
		require.Equal(t, ExitOK, r.code, r)
		require.True(t, strings.HasPrefix(r.stdout, "request deploy-7 was already published; following the existing run\n"), r)
		require.Contains(t, r.stdout, "run "+run+" accepted", r)
		require.Equal(t, 1, strings.Count(r.stdout, "run started"), r)
		require.Contains(t, r.stdout, "run completed in ", r)
	}
}

func TestE2ETimeoutExit4(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	// A NATS server with the worker's streams and no worker: the request is stored and
	// nothing ever happens to it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, bus.Options{StoreDir: t.TempDir(), EmbeddedPort: -1})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	require.NoError(t, b.EnsureStreams(ctx, bus.StreamOptions{}))

	start := time.Now()
	r := submit(t, usersDir(t), "--nats-url", b.URL(), "--wait", "--timeout", "300ms", "--id", "stuck-1")
	require.Equal(t, ExitTimeout, r.code, r)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Contains(t, r.stderr, "error: timed out after 300ms waiting for run "+contract.RunID("default", "stuck-1")+" to end (last event: none yet)", r)
	require.Contains(t, r.stderr, "follow it again with: submit ", r)
	require.Empty(t, r.stdout, r)

	// Against a live worker too, when the timeout is shorter than anything can happen.
	url := startWorker(t)
	r = submit(t, usersDir(t), "--nats-url", url, "--wait", "--timeout", "1ms")
	require.Equal(t, ExitTimeout, r.code, r)
	require.Contains(t, r.stderr, "timed out after 1ms", r)
}

func TestE2EPublishWithoutWorkerStreamsExit1(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	// A NATS server that no worker ever used: no stream takes the request.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, bus.Options{StoreDir: t.TempDir(), EmbeddedPort: -1})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	r := submit(t, usersDir(t), "--nats-url", b.URL())
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, "error: could not publish request ", r)
	require.Contains(t, r.stderr, "is a worker running against this NATS server?", r)
}

// A worker whose embedded NATS server could not have 4222 records the port it took in its data
// directory; submit, given no URL, finds it there, and says which file misled it when the
// worker that wrote it is gone.
func TestE2EFindsTheWorkerThroughItsURLFile(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test: needs PostgreSQL")
	}
	dataDir := t.TempDir()
	w, err := worker.New(worker.Config{DatabaseURL: testdb.New(t), DataDir: dataDir, EmbeddedNATSPort: -1,
		HTTPAddr: "off", Logger: slog.New(slog.DiscardHandler), FetchCooldown: time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.Start(ctx))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			require.NoError(t, w.Stop(context.Background()))
		}
	})
	recorded, err := os.ReadFile(filepath.Join(dataDir, client.URLFile))
	require.NoError(t, err)
	require.Equal(t, w.NATSURL()+"\n", string(recorded))
	require.NotContains(t, w.NATSURL(), ":4222", "the test's worker took a free port")

	e := testEnv(map[string]string{client.DataDirEnv: dataDir})
	r := submitEnv(t, e, usersDir(t), "--wait", "--timeout", "30s")
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "run completed", r)

	require.NoError(t, w.Stop(context.Background()))
	stopped = true
	require.NoFileExists(t, filepath.Join(dataDir, client.URLFile), "a worker that stops removes its URL file")

	// A file left by a worker that was killed names a server that is gone.
	require.NoError(t, os.WriteFile(filepath.Join(dataDir, client.URLFile), []byte(w.NATSURL()+"\n"), 0o644))
	r = submitEnv(t, e, usersDir(t), "--timeout", "5s")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, "cannot connect to NATS at "+w.NATSURL(), r)
	require.Contains(t, r.stderr, filepath.Join(dataDir, client.URLFile)+", which a worker with an embedded NATS server writes", r)

	// --nats-url and $CONFITURE_NATS_URL win over the file.
	r = submitEnv(t, testEnv(map[string]string{client.DataDirEnv: dataDir, NATSURLEnv: "nats://127.0.0.1:1"}), usersDir(t), "--timeout", "5s")
	require.Contains(t, r.stderr, "cannot connect to NATS at nats://127.0.0.1:1", r)
	require.NotContains(t, r.stderr, client.URLFile, r)

	// A file that holds no URL is a usage error that names it; nothing is published.
	require.NoError(t, os.WriteFile(filepath.Join(dataDir, client.URLFile), []byte("<html>\n"), 0o644))
	r = submitEnv(t, e, usersDir(t))
	require.Equal(t, ExitUsage, r.code, r)
	require.Contains(t, r.stderr, filepath.Join(dataDir, client.URLFile)+" does not hold a NATS URL", r)
}

// status, runs and run against a real worker's service API: what a person reads, --json for
// scripts (valid against schemas/api.v1.json), and the exit codes.
func TestE2EStatusRunsAndRun(t *testing.T) {
	t.Parallel()
	url := startWorker(t)
	r := submit(t, usersDir(t), "--nats-url", url, "--id", "first", "--wait", "--timeout", "30s")
	require.Equal(t, ExitOK, r.code, r)

	r = submit(t, "status", "--nats-url", url)
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "target default: 2 migration(s) applied\n", r)
	require.Regexp(t, `(?m)^VERSION\s+NAME\s+STATE\s+APPLIED \(UTC\)\s+DDL\s+RUN$`, r.stdout)
	require.Regexp(t, `(?m)^001\s+create_users\s+applied\s+`, r.stdout)
	for _, line := range strings.Split(r.stdout, "\n") {
		require.LessOrEqual(t, len(line), 100, "status fits a 100-column terminal: %q", line)
	}
	r = submit(t, "status", "--nats-url", url, "--json")
	require.Equal(t, ExitOK, r.code, r)
	require.NoError(t, contract.ValidateAPI(contract.APIStatusSchemaV1, []byte(r.stdout)), r.stdout)

	// With a directory: what it holds that is pending, and what changed since it was applied.
	dir := usersDir(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "003_add_phone.up.sql"), []byte("alter table users add column phone text;\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "002_add_email.up.sql"), []byte("alter table users add column email varchar(200);\n"), 0o644))
	r = submit(t, "status", dir, "--nats-url", url)
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "target default: 2 migration(s) applied; 1 pending in the directory, 1 changed since applied (submit refuses them without --force)\n", r)
	require.Regexp(t, `(?m)^002\s+add_email\s+applied, SQL changed\s+`, r.stdout)
	require.Regexp(t, `(?m)^003\s+add_phone\s+pending$`, r.stdout)
	r = submit(t, "status", writeDir(t, map[string]string{"001_bad.sql": "x"}), "--nats-url", url)
	require.Equal(t, ExitUsage, r.code, r)
	// A run that fails in a DDL leaves no row: the status says where the latest run failed.
	r = submit(t, dir, "--nats-url", url, "--id", "phone", "--force", "--wait", "--timeout", "30s")
	require.Equal(t, ExitOK, r.code, r)
	failing := writeDir(t, map[string]string{"004_bad.up.sql": "alter table nowhere add column x int;\n"})
	r = submit(t, failing, "--nats-url", url, "--id", "bad", "--wait", "--timeout", "30s")
	require.Equal(t, ExitFailed, r.code, r)
	r = submit(t, "status", "--nats-url", url)
	require.Equal(t, ExitOK, r.code, r)
	require.Regexp(t, `(?m)^004\s+failed in ddl \(run \S{8}\)$`, r.stdout)

	r = submit(t, "runs", "--nats-url", url)
	require.Equal(t, ExitOK, r.code, r)
	require.Regexp(t, `(?m)^RUN\s+REQUEST\s+STATUS\s+MIGRATIONS\s+CREATED \(UTC\)\s+TOOK$`, r.stdout)
	require.Regexp(t, `(?m)^\S{8}\s+first\s+completed\s+2\s+`, r.stdout)
	r = submit(t, "runs", "--nats-url", url, "--json", "--limit", "1")
	require.Equal(t, ExitOK, r.code, r)
	require.NoError(t, contract.ValidateAPI(contract.APIRunsSchemaV1, []byte(r.stdout)), r.stdout)

	r = submit(t, "run", "show", "first", "--nats-url", url)
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "request first, target default, up\nstatus completed, 2 migration(s)", r)
	require.Regexp(t, `(?m)^\+\S+\s+hook\.completed\s+001_create_users after_ddl seed_users\s+`, r.stdout)
	require.Regexp(t, `(?m)^\+\S+\s+run\.completed\s+`, r.stdout)

	r = submit(t, "run", "resume", "first", "--nats-url", url)
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, "completed", r)
	r = submit(t, "run", "show", "nobody", "--nats-url", url)
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, `error: target "default" has no run "nobody"`, r)
	r = submit(t, "status", "--nats-url", url, "--target", "elsewhere")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, `unknown target "elsewhere"`, r)
	r = submit(t, "runs", "--nats-url", url, "--limit", "0")
	require.Equal(t, ExitUsage, r.code, r)
	r = submit(t, "run", "show", "--nats-url", url)
	require.Equal(t, ExitUsage, r.code, r)
}

// follow prints every event of every run of the target as it is stored, from where --since or
// --last says, until interrupted (exit 130).
func TestE2EFollowTarget(t *testing.T) {
	t.Parallel()
	url := startWorker(t)
	r := submit(t, usersDir(t), "--nats-url", url, "--id", "before", "--wait", "--timeout", "30s")
	require.Equal(t, ExitOK, r.code, r)
	shown := submit(t, "run", "show", "before", "--nats-url", url, "--json")
	require.Equal(t, ExitOK, shown.code, shown)
	var before contract.RunReply
	require.NoError(t, json.Unmarshal([]byte(shown.stdout), &before))

	follow := func(args ...string) (stop func() (int, []string), out *syncbuf.Buffer) {
		ctx, cancel := context.WithCancel(context.Background())
		out = &syncbuf.Buffer{}
		var errOut syncbuf.Buffer
		code := make(chan int, 1)
		go func() {
			code <- run(ctx, append([]string{"follow", "--nats-url", url}, args...), out, &errOut, testEnv(nil))
		}()
		return func() (int, []string) {
			cancel()
			c := <-code
			return c, strings.Split(strings.TrimSpace(out.String()), "\n")
		}, out
	}

	// The last 3 events of the target, then the next run's as they come, as JSON lines.
	stop, out := follow("--last", "3", "--json")
	require.Eventually(t, func() bool { return strings.Count(out.String(), "\n") >= 3 }, 30*time.Second, 10*time.Millisecond)
	r = submit(t, usersDir(t), "--nats-url", url, "--id", "after", "--wait", "--timeout", "30s") // nothing to do
	require.Equal(t, ExitOK, r.code, r)
	afterRun := contract.RunID("default", "after")
	require.Eventually(t, func() bool {
		return strings.Contains(out.String(), `"kind":"run.completed","run":"`+afterRun+`"`)
	}, 30*time.Second, 10*time.Millisecond, out.String())
	code, lines := stop()
	require.Equal(t, ExitInterrupted, code)
	var kinds []string
	for i, line := range lines {
		ev, err := contract.DecodeEvent([]byte(line))
		require.NoError(t, err, line)
		if i < 3 {
			require.Equal(t, before.Run.ID, ev.Run)
		} else {
			require.Equal(t, afterRun, ev.Run)
		}
		kinds = append(kinds, ev.Kind)
	}
	var lastThree []string
	for _, ev := range before.Events[len(before.Events)-3:] {
		lastThree = append(lastThree, ev.Kind)
	}
	require.Equal(t, lastThree, kinds[:3])
	require.Equal(t, contract.KindRunAccepted, kinds[3])

	// As lines a person reads, from 10 minutes ago: both runs.
	stop, out = follow("--since", "10m")
	require.Eventually(t, func() bool { return strings.Count(out.String(), "run.completed") == 2 }, 30*time.Second, 10*time.Millisecond, out.String())
	_, lines = stop()
	require.Regexp(t, `^\d\d:\d\d:\d\d\.\d{3}  \S{8}  before\s+run\.accepted\s+up of 2 migration\(s\) accepted$`, lines[0])
	require.Regexp(t, `after\s+run\.completed\s+\S+  nothing to do`, lines[len(lines)-1])

	r = submit(t, "follow", "--nats-url", url, "--since", "1m", "--last", "2")
	require.Equal(t, ExitUsage, r.code, r)
}

// goldenVolatile are the parts of the commands' output that differ from run to run: run ids,
// times, durations.
var goldenVolatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "<run-id>"},
	{regexp.MustCompile(`\b[0-9a-f]{8}\b`), "<run>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`), "<time>"},
	// A duration is left out, not replaced: one of 0 ms is not shown at all.
	{regexp.MustCompile(` *\+?\d+(\.\d+)?(ms|s|µs)\b`), ""},
	{regexp.MustCompile(` {2,}`), "  "},
	{regexp.MustCompile(`(?m) +$`), ""},
}

// The outputs a person reads (status, runs, run show) and the refusals, against golden files:
// CONFITURE_UPDATE_GOLDEN=1 rewrites them.
func TestE2EOutputsMatchTheGoldenFiles(t *testing.T) {
	t.Parallel()
	url := startWorker(t)
	r := submit(t, usersDir(t), "--nats-url", url, "--id", "golden", "--wait", "--timeout", "30s")
	require.Equal(t, ExitOK, r.code, r)
	var b strings.Builder
	for _, args := range [][]string{
		{"status"}, {"runs"}, {"run", "show", "golden"}, {"run", "pause", "golden"}, {"status", "--target", "nowhere"}, {"run", "show"},
	} {
		r := submit(t, append(args, "--nats-url", url)...)
		out := "$ submit " + strings.Join(args, " ") + "\n" + r.stdout + r.stderr + "(exit " + strconv.Itoa(r.code) + ")\n\n"
		for _, v := range goldenVolatile {
			out = v.re.ReplaceAllString(out, v.with)
		}
		b.WriteString(strings.ReplaceAll(out, url, "<nats-url>"))
	}
	golden := filepath.Join("testdata", "golden", "ops.txt")
	if os.Getenv("CONFITURE_UPDATE_GOLDEN") != "" {
		require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
		require.NoError(t, os.WriteFile(golden, []byte(b.String()), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "CONFITURE_UPDATE_GOLDEN=1 go test -run TestE2EOutputsMatchTheGoldenFiles ./internal/submitcmd/ writes it")
	require.Equal(t, string(want), b.String())
}

// A dry-run with nothing pending (every migration applied) is a clean report that says so:
// exit 0, as a CI gate on an up-to-date directory wants.
func TestE2EDryRunWithNothingPendingIsACleanReport(t *testing.T) {
	t.Parallel()
	url := startWorker(t)
	dir := usersDir(t)
	r := submit(t, dir, "--nats-url", url, "--wait", "--timeout", "30s", "--id", "applied")
	require.Equal(t, ExitOK, r.code, r)
	r = submit(t, dir, "--nats-url", url, "--wait", "--timeout", "30s", "--dry-run", "--id", "dry-nothing")
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "dry-run report (up): nothing pending: all 2 migration(s) already applied", r)
	r = submit(t, dir, "--nats-url", url, "--wait", "--timeout", "30s", "--dry-run", "--id", "dry-nothing-json", "--json")
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, `"kind":"dryrun.report"`, r)
}

// TestE2EBundledExampleDryRunsClean dry-runs examples/migrations as a new user would: on a
// fresh database and after each of its migrations is applied, every dry-run succeeds (exit 0),
// every CREATE INDEX CONCURRENTLY runs as CREATE INDEX with the real statement's lock beside
// the emulation's, and the dry-runs leave nothing behind (the real runs apply cleanly after).
// bundledExampleForDryRun copies examples/migrations with 004's backfill allowed to run to its
// end in a dry-run whatever its sample says (dry_run_complete_ms ten minutes): on a busy
// machine the sample's first, smallest batches can put the rest past the default 30 s, and the
// backfill then stays sampled, which its after_validation assertion rightly refuses. What this
// test checks is that the example's hooks hold together, not the machine's speed.
func bundledExampleForDryRun(t *testing.T) string {
	t.Helper()
	src := filepath.Join("..", "..", "examples", "migrations")
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		if strings.HasPrefix(e.Name(), "004_") && strings.HasSuffix(e.Name(), ".hooks.yaml") {
			patched := strings.Replace(string(data), "      target_batch_ms: 200\n", "      target_batch_ms: 200\n      dry_run_complete_ms: 600000\n", 1)
			require.NotEqual(t, string(data), patched, "004's backfill parameters moved")
			data = []byte(patched)
		}
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644))
	}
	return dst
}

func TestE2EBundledExampleDryRunsClean(t *testing.T) {
	t.Parallel()
	url := startWorker(t)
	dir := bundledExampleForDryRun(t)
	versions := []string{"001", "002", "003", "004"}
	for i := 0; i <= len(versions); i++ {
		id := fmt.Sprintf("example-dry-%d", i)
		r := submit(t, dir, "--nats-url", url, "--wait", "--timeout", "120s", "--dry-run", "--id", id, "--json")
		require.Equal(t, ExitOK, r.code, "after %d migration(s) applied: %v", i, r)
		rep := reportOf(t, r.stdout)
		require.True(t, rep.Success)
		require.Len(t, rep.Migrations, len(versions)-i, "the pending ones")
		emulated := 0
		for _, m := range rep.Migrations {
			for _, p := range m.Phases {
				for _, s := range p.Statements {
					if strings.Contains(strings.ToUpper(s.SQL), "CONCURRENTLY") {
						require.True(t, s.Emulated && s.Executed, "%s line %d: %+v", m.ID(), s.Line, s)
						require.NotContains(t, strings.ToUpper(s.EmulatedAs), "CONCURRENTLY")
						require.NotEmpty(t, s.Locks, "the emulation's locks")
						require.Equal(t, "ShareUpdateExclusiveLock", s.RealLocks[0].Mode, "the real statement's lock")
						emulated++
					}
				}
			}
		}
		if i < 3 {
			require.Positive(t, emulated, "003's index build is pending, so emulated")
		}
		if i == len(versions) {
			break
		}
		r = submit(t, dir, "--nats-url", url, "--wait", "--timeout", "120s", "--to", versions[i], "--id", "example-apply-"+versions[i])
		require.Equal(t, ExitOK, r.code, r)
	}
}

// reportOf finds the dry-run report among the events submit --json printed, and checks it
// against its schema.
func reportOf(t *testing.T, stdout string) *contract.DryRunReport {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		ev, err := contract.DecodeEvent([]byte(line))
		require.NoError(t, err, line)
		if ev.Kind == contract.KindDryRunReport {
			rep, err := contract.DecodeDryRunReport(ev.Data)
			require.NoError(t, err)
			require.Equal(t, contract.DryRunReportSchemaV2, rep.Schema)
			return rep
		}
	}
	t.Fatalf("no dryrun.report event in:\n%s", stdout)
	return nil
}
