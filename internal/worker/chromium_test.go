package worker

import (
	"context"
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
