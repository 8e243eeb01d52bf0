package worker

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/jobs"
)

// chromium finds the browser: $CHROMIUM, or Debian's package.
func chromium(t *testing.T) string {
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	t.Skip("no Chromium (apt-get install chromium; .ci/run installs it)")
	return ""
}

// runChromium runs headless Chromium on url with the flags this machine's closed network needs.
func runChromium(t *testing.T, browser, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(), "--window-size=1400,900",
		"--virtual-time-budget=15000",
	}, extra...)
	out, err := exec.CommandContext(ctx, browser, append(args, url)...).Output()
	require.NoError(t, err, "chromium %v", extra)
	return string(out)
}

// TestRiverUIShowsPhaseJobsInChromium opens River UI in a real headless browser after a run,
// finds the run's phase jobs among the completed jobs, and saves a screenshot.
func TestRiverUIShowsPhaseJobsInChromium(t *testing.T) {
	t.Parallel()
	browser := chromium(t)
	b := setup(t)
	evs := b.run(t, request("up", mig("001", "seen_in_ui", "SELECT 1;", "", sqlHook("after_ddl", "noop", "SELECT 1"))))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind)

	url := "http://" + b.w.HTTPAddr() + "/riverui/jobs?state=completed"
	dom := runChromium(t, browser, url, "--dump-dom")
	require.Contains(t, dom, "confiture_phase", "the completed phase jobs are listed")
	require.Contains(t, dom, "001_seen_in_ui", "with the migration they ran")
	require.Contains(t, dom, jobs.QueueName, "in the pipeline's queue")

	dir := t.TempDir()
	if keep := os.Getenv("CONFITURE_SCREENSHOT_DIR"); keep != "" {
		dir = keep // to look at it after the test
	}
	shot := filepath.Join(dir, "riverui-completed-jobs.png")
	runChromium(t, browser, url, "--screenshot="+shot)
	info, err := os.Stat(shot)
	require.NoError(t, err)
	require.Greater(t, info.Size(), int64(10_000), "a real page, not a blank one")
	t.Logf("screenshot: %s", shot)
}

// TestRunsPageInChromium opens the runs page in a real headless browser after a run whose
// flaky hook was retried: the list names the run, and the run's page draws its timeline (a bar
// for each phase and hook, the retry marked) above its events; it saves screenshots of both.
func TestRunsPageInChromium(t *testing.T) {
	t.Parallel()
	browser := chromium(t)
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
	list := runChromium(t, browser, base+"/runs/", "--dump-dom")
	require.Contains(t, list, `href="/runs/`+run+`"`, "the list links the run")
	require.Contains(t, list, "completed")
	page := runChromium(t, browser, base+"/runs/"+run, "--dump-dom")
	for _, s := range []string{"<svg", "001_accounts after_ddl", ">flaky<", "002_plain ddl", `class="retry"`, "phase.retrying", "run.completed",
		`href="/riverui/jobs/`, "confiture_phase"} {
		require.Contains(t, page, s)
	}

	dir := t.TempDir()
	if keep := os.Getenv("CONFITURE_SCREENSHOT_DIR"); keep != "" {
		dir = keep
	}
	for name, url := range map[string]string{"runs-page-list.png": base + "/runs/", "runs-page-run.png": base + "/runs/" + run} {
		shot := filepath.Join(dir, name)
		runChromium(t, browser, url, "--screenshot="+shot)
		info, err := os.Stat(shot)
		require.NoError(t, err)
		require.Greater(t, info.Size(), int64(5_000), "a real page, not a blank one")
	}
}
