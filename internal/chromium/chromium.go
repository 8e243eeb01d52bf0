// Package chromium runs headless Chromium for the tests that look at the worker's pages as a
// browser shows them: it finds the browser (or skips the test), dumps a page's DOM after its
// scripts ran, and saves screenshots.
package chromium

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Find returns the browser's path: $CHROMIUM, or Debian's package. Without one it skips t.
func Find(t testing.TB) string {
	t.Helper()
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

// WindowSize is the browser window of Run, unless extra sets another.
const WindowSize = "1400,900"

// Run runs headless Chromium on url with the flags this machine's closed network needs, then
// extra (--dump-dom, --screenshot=FILE, --window-size=W,H, ...), and returns its output.
func Run(t testing.TB, browser, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(), "--window-size=" + WindowSize,
		"--virtual-time-budget=15000", "--hide-scrollbars",
	}
	out, err := exec.CommandContext(ctx, browser, append(append(args, extra...), url)...).Output()
	require.NoError(t, err, "chromium %v", extra)
	return string(out)
}

// DumpDOM returns the page's DOM after its scripts ran.
func DumpDOM(t testing.TB, browser, url string) string {
	t.Helper()
	return Run(t, browser, url, "--dump-dom")
}

// ScreenshotDir is where screenshots go: $CONFITURE_SCREENSHOT_DIR, to look at them after the
// test, or a temporary directory.
func ScreenshotDir(t testing.TB) string {
	if dir := os.Getenv("CONFITURE_SCREENSHOT_DIR"); dir != "" {
		return dir
	}
	return t.TempDir()
}

// Screenshot saves a PNG of url as dir/name, checks it is more than minBytes (a real page,
// not a blank one), and returns its path. extra adds flags (a --window-size).
func Screenshot(t testing.TB, browser, url, dir, name string, minBytes int64, extra ...string) string {
	t.Helper()
	shot := filepath.Join(dir, name)
	Run(t, browser, url, append([]string{"--screenshot=" + shot}, extra...)...)
	info, err := os.Stat(shot)
	require.NoError(t, err)
	require.Greater(t, info.Size(), minBytes, "a real page, not a blank one")
	t.Logf("screenshot: %s", shot)
	return shot
}
