package worker

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/chromium"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/jobs"
)

// TestRiverUIShowsPhaseJobsInChromium opens River UI in a real headless browser after a run,
// finds the run's phase jobs among the completed jobs, and saves a screenshot.
func TestRiverUIShowsPhaseJobsInChromium(t *testing.T) {
	t.Parallel()
	browser := chromium.Find(t)
	b := setup(t)
	evs := b.run(t, request("up", mig("001", "seen_in_ui", "SELECT 1;", "", sqlHook("after_ddl", "noop", "SELECT 1"))))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind)

	url := "http://" + b.w.HTTPAddr() + "/riverui/jobs?state=completed"
	dom := chromium.DumpDOM(t, browser, url)
	require.Contains(t, dom, "confiture_phase", "the completed phase jobs are listed")
	require.Contains(t, dom, "001_seen_in_ui", "with the migration they ran")
	require.Contains(t, dom, jobs.QueueName, "in the pipeline's queue")

	chromium.Screenshot(t, browser, url, chromium.ScreenshotDir(t), "riverui-completed-jobs.png", 10_000)
}

// TestRunsPageInChromium opens the runs page in a real headless browser after a run whose
// flaky hook was retried: the list names the run, and the run's page draws its timeline (a bar
// for each phase and hook, the retry marked) above its events; it saves screenshots of both.
func TestRunsPageInChromium(t *testing.T) {
	t.Parallel()
	browser := chromium.Find(t)
	b := setup(t, func(c *Config) { c.MaxAttempts = 3 })
	_, err := b.db.Exec(context.Background(), auditTable)
	require.NoError(t, err)
	m := mig("001", "accounts", "CREATE TABLE accounts (id int);", "",
		audit("before_validation", "checked"),
		hook("after_ddl", "flaky", "flaky", map[string]any{"succeed_on": 2}),
		audit("cleanup", "tidied"))
	evs := b.run(t, request("up", m, mig("002", "plain", "CREATE TABLE plain (id int);", "")))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	run := last(evs).Run

	base := "http://" + b.w.HTTPAddr()
	list := chromium.DumpDOM(t, browser, base+"/runs/")
	require.Contains(t, list, `href="/runs/`+run+`"`, "the list links the run")
	require.Contains(t, list, "completed")
	page := chromium.DumpDOM(t, browser, base+"/runs/"+run)
	for _, s := range []string{"<svg", "001_accounts after_ddl", ">flaky<", "002_plain ddl", `class="retry"`, "phase.retrying", "run.completed",
		`href="/riverui/jobs/`, "confiture_phase"} {
		require.Contains(t, page, s)
	}

	dir := chromium.ScreenshotDir(t)
	for name, url := range map[string]string{"runs-page-list.png": base + "/runs/", "runs-page-run.png": base + "/runs/" + run} {
		chromium.Screenshot(t, browser, url, dir, name, 5_000)
	}
}

// TestDryRunPageInChromium opens /dryrun/ in a real headless browser after a dry-run of a
// migration that changes three tables: the target's latest report, a lane per table, and a
// step's details in the side panel (the page's script runs under its Content-Security-Policy).
func TestDryRunPageInChromium(t *testing.T) {
	t.Parallel()
	browser := chromium.Find(t)
	b := setup(t)
	_, err := b.db.Exec(context.Background(), `CREATE TABLE accounts (id int PRIMARY KEY); CREATE TABLE payments (id int PRIMARY KEY);
		CREATE TABLE plans (id int PRIMARY KEY, price int); INSERT INTO plans SELECT g, g FROM generate_series(1, 10) g`)
	require.NoError(t, err)
	req := request("up", mig("001", "three_tables", "ALTER TABLE accounts ADD COLUMN note text;\nALTER TABLE payments ADD COLUMN memo text;\n"+
		"ALTER TABLE plans ALTER COLUMN price TYPE bigint;\nCREATE INDEX CONCURRENTLY payments_memo ON payments (memo);", ""))
	req.DryRun = true
	evs := b.run(t, req)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%v", kinds(evs))
	run := last(evs).Run

	base := "http://" + b.w.HTTPAddr()
	resp, err := http.Get(base + "/dryrun/nope")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "an unknown target")
	index := chromium.DumpDOM(t, browser, base+"/")
	require.Contains(t, index, `href="/dryrun/"`, "the index links the page")

	list := chromium.DumpDOM(t, browser, base+"/dryrun/")
	for _, s := range []string{`<a href="#r1">default</a>`, `href="/runs/` + run + `"`, "<svg", `data-table="accounts"`, `data-table="payments"`, `data-table="plans"`, `class="bar hold rw"`} {
		require.Contains(t, list, s)
	}
	page := chromium.DumpDOM(t, browser, base+"/dryrun/default#r1-s3")
	panel := page[strings.Index(page, `<aside id="panel"`):]
	require.True(t, strings.HasPrefix(panel, `<aside id="panel">`), "the script opened the panel: %.200s", panel)
	require.Contains(t, panel, "ALTER TABLE plans ALTER COLUMN price TYPE bigint")

	chromium.Screenshot(t, browser, base+"/dryrun/", chromium.ScreenshotDir(t), "dryrun-page.png", 5_000)
}
