package submitcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHTMLUsage(t *testing.T) {
	t.Parallel()
	dir := validDir(t)
	file := filepath.Join(t.TempDir(), "report.html")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{dir, "--wait", "--html", file}, "--html writes the report of a dry-run that submit follows: add --dry-run --wait, or drop --html"},
		{[]string{dir, "--dry-run", "--html", file}, "--html writes the report of a dry-run that submit follows"},
		{[]string{dir, "--dry-run", "--wait", "--html", filepath.Join(t.TempDir(), "nope", "report.html")}, "there is no directory"},
	} {
		// An unreachable URL: nothing must get as far as connecting.
		r := submit(t, append(tc.args, "--nats-url", "nats://127.0.0.1:1")...)
		require.Equal(t, ExitUsage, r.code, r)
		require.Contains(t, r.stderr, tc.want, r)
		require.NotContains(t, r.stderr, "connect", r)
	}
	require.NoFileExists(t, file)
}

// submit --dry-run --wait --html FILE writes the report as a page, whatever the dry-run found,
// with the live display or with --json.
func TestE2EDryRunHTML(t *testing.T) {
	t.Parallel()
	url := startWorker(t)
	out := t.TempDir()
	page := func(t *testing.T, name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(out, name))
		require.NoError(t, err)
		return string(b)
	}

	file := filepath.Join(out, "clean.html")
	r := submit(t, usersDir(t), "--nats-url", url, "--wait", "--timeout", "30s", "--dry-run", "--id", "html-1", "--html", file)
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "dry-run report written to "+file+" (open it in a browser)", r)
	html := page(t, "clean.html")
	for _, s := range []string{"<!doctype html>", "<h3>Lock timeline</h3>", "<svg", "001_create_users", "002_add_email", "seed_users", "status-succeeded"} {
		require.Contains(t, html, s)
	}
	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left beside it")

	// A failed dry-run: exit 1 as without --html, and the page says why.
	broken := writeDir(t, map[string]string{"001_broken.up.sql": "alter table nope add column x int;\n"})
	r = submit(t, broken, "--nats-url", url, "--wait", "--timeout", "30s", "--dry-run", "--id", "html-2", "--html", filepath.Join(out, "failed.html"), "--json")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, "dry-run report written to ", r, "with --json, on stderr")
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		require.True(t, strings.HasPrefix(line, "{"), "stdout is JSON only: %q", line)
	}
	html = page(t, "failed.html")
	require.Contains(t, html, "The dry-run failed: 001_broken: ")
	require.Contains(t, html, `relation &#34;nope&#34; does not exist`)

	// Nothing pending: a page that says so.
	dir := usersDir(t)
	r = submit(t, dir, "--nats-url", url, "--wait", "--timeout", "30s", "--id", "html-apply")
	require.Equal(t, ExitOK, r.code, r)
	r = submit(t, dir, "--nats-url", url, "--wait", "--timeout", "30s", "--dry-run", "--id", "html-3", "--html", filepath.Join(out, "nothing.html"))
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, page(t, "nothing.html"), "Nothing pending: every migration of the request is already applied on default")
}
