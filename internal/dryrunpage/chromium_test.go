package dryrunpage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/builtin"
	"github.com/confiture-io/confiture-worker/internal/chromium"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/dryrun"
	"github.com/confiture-io/confiture-worker/internal/dryrunpage"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/migrations"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// dryRun dry-runs ms on a fresh database made by schema, as the worker does.
func dryRun(t *testing.T, schema string, ms ...contract.Migration) *contract.DryRunReport {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testdb.New(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if schema != "" {
		_, err = conn.Exec(ctx, schema)
		require.NoError(t, err)
	}
	reg := hooks.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	info := dryrun.RunInfo{Run: contract.RunID("default", "dry-1"), RequestID: "dry-1", Target: "default"}
	rep, err := dryrun.Run(ctx, conn, reg, info, ms, dryrun.Options{})
	require.NoError(t, err)
	return rep
}

// write renders rep into a file and returns its URL.
func write(t *testing.T, dir, name string, rep *contract.DryRunReport) (string, int) {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, dryrunpage.Render(f, rep))
	require.NoError(t, f.Close())
	info, err := os.Stat(path)
	require.NoError(t, err)
	return "file://" + path, int(info.Size())
}

// TestPageInChromium opens the page of a real dry-run in a real headless browser: a migration
// that changes three tables (an ALTER TABLE each, one of them indexed CONCURRENTLY, which the
// dry-run emulates) has a lane per table with its bars, and a step's details open in the side
// panel. It saves a screenshot.
func TestPageInChromium(t *testing.T) {
	t.Parallel()
	browser := chromium.Find(t)
	up := `ALTER TABLE accounts ADD COLUMN note text;
ALTER TABLE payments ADD COLUMN memo text;
ALTER TABLE plans ALTER COLUMN price TYPE numeric(12, 2);
CREATE INDEX CONCURRENTLY payments_memo_idx ON payments (memo);
`
	rep := dryRun(t, `
		CREATE TABLE accounts (id int PRIMARY KEY, name text);
		CREATE TABLE payments (id int PRIMARY KEY, account_id int, amount int);
		CREATE TABLE plans (id int PRIMARY KEY, price int);
		INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 2000) g;
		INSERT INTO payments SELECT g, g % 2000 + 1, g FROM generate_series(1, 5000) g;
		INSERT INTO plans SELECT g, g * 100 FROM generate_series(1, 20) g;
		ANALYZE;`,
		contract.Migration{Version: "001", Name: "three_tables", UpSQL: up, Checksum: contract.Checksum(up)})
	require.True(t, rep.Success, "%+v", rep.Migrations)

	dir := chromium.ScreenshotDir(t)
	url, size := write(t, dir, "dryrun-three-tables.html", rep)
	t.Logf("page: %s, %d bytes", url, size)
	dom := chromium.DumpDOM(t, browser, url)
	for _, table := range []string{"accounts", "payments", "plans"} {
		require.Contains(t, dom, `<g class="lane" data-table="`+table+`">`, "a lane for %s", table)
	}
	bars := regexp.MustCompile(`class="bar hold (rw|w|none)[^"]*"`).FindAllStringSubmatch(dom, -1)
	require.GreaterOrEqual(t, len(bars), 4, "a bar per statement and table")
	require.Contains(t, dom, `class="bar hold rw"`, "ALTER TABLE blocks reads and writes")
	require.Regexp(t, `class="bar hold (none|w) emulated"`, dom, "CREATE INDEX CONCURRENTLY, emulated")
	require.Contains(t, dom, `<path class="warning"`, "the rewrite of plans is marked")
	require.Regexp(t, `<aside id="panel" hidden="">`, dom, "the side panel is closed")

	// The fragment of a step opens its details in the side panel.
	var index string
	n := 0 // steps are numbered across the report, a phase's statements then its hooks
	for _, p := range rep.Migrations[0].Phases {
		for _, s := range p.Statements {
			n++
			if strings.Contains(s.SQL, "CONCURRENTLY") {
				index = fmt.Sprintf("r1-s%d", n)
			}
		}
		n += len(p.Hooks)
	}
	require.NotEmpty(t, index)
	dom = chromium.DumpDOM(t, browser, url+"#"+index)
	panel := dom[strings.Index(dom, `<aside id="panel"`):]
	require.True(t, strings.HasPrefix(panel, `<aside id="panel">`), "the panel is open: %.200s", panel)
	require.Contains(t, panel, "<h3>Statement</h3>")
	require.Contains(t, panel, "CREATE INDEX CONCURRENTLY payments_memo_idx ON payments (memo)")
	require.Contains(t, panel, "ShareUpdateExclusiveLock")

	chromium.Screenshot(t, browser, url, dir, "dryrun-three-tables.png", 10_000, "--window-size=1400,800")
}

// TestExamplePageInChromium dry-runs the bundled example (examples/migrations), which must
// succeed without an error warning, and screenshots its page as dryrun-report.png (make
// docs-images copies it into docs/images).
func TestExamplePageInChromium(t *testing.T) {
	t.Parallel()
	browser := chromium.Find(t)
	ms, err := migrations.Load(filepath.Join("..", "..", "examples", "migrations"))
	require.NoError(t, err)
	rep := dryRun(t, "", ms...)

	dir := chromium.ScreenshotDir(t)
	url, size := write(t, dir, "dryrun-report.html", rep)
	t.Logf("the example's page: %d bytes", size)
	dom := chromium.DumpDOM(t, browser, url)
	require.Contains(t, dom, "<h3>Lock timeline</h3>")
	for _, m := range ms {
		require.Contains(t, dom, ">"+m.ID()+"<", "the migrations are listed")
	}
	// Its migrations create their tables: no application waits for them.
	for _, table := range []string{"customers", "orders", "page_views"} {
		require.Contains(t, dom, `<g class="lane" data-table="`+table+`">`, "a lane for %s", table)
	}
	require.Contains(t, dom, "a new table: nothing uses it yet")
	require.NotRegexp(t, `class="bar hold (rw|w)`, dom)
	chromium.Screenshot(t, browser, url, dir, "dryrun-report.png", 10_000, "--window-size=1280,860")

	// The example dry-runs cleanly (checked after the screenshot, which shows why when not).
	for _, m := range rep.Migrations {
		require.True(t, m.Success, "the bundled example must dry-run cleanly: %s: %s", m.ID(), m.Error)
	}
	for _, w := range rep.Warnings {
		require.NotEqual(t, contract.DryRunSeverityError, w.Severity, "the bundled example must dry-run cleanly: %+v", w)
	}
}
