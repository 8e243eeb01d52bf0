package plugin

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/syncbuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testDSN = "postgres://app:s3cret-pw@db.example:5432/app?sslmode=disable"

// testCtx is a context that ends with the test, bounded so that a hung plugin fails the test.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// writeFile writes content to dir/name with mode and returns its path.
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	// Hold off forks while the file is open for writing: a child forked by a parallel test
	// would inherit the descriptor until it execs, and executing this file would then fail
	// with ETXTBSY ("text file busy", golang.org/issue/22315).
	syscall.ForkLock.RLock()
	err := os.WriteFile(path, []byte(content), mode)
	syscall.ForkLock.RUnlock()
	require.NoError(t, err)
	require.NoError(t, os.Chmod(path, mode)) // WriteFile's mode is filtered by the umask
	return path
}

// writeScript writes an executable POSIX shell script.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	return writeFile(t, dir, name, "#!/bin/sh\n"+body, 0o755)
}

// okResult is a shell command printing a minimal successful result.
const okResult = `printf '{"schema":"confiture.plugin-result/v1","success":true}\n'`

// newPlugin writes a script and a manifest for it in a fresh directory (extra holds more
// manifest lines) and loads it.
func newPlugin(t *testing.T, script, extra string) (*plugin, string) {
	t.Helper()
	dir := t.TempDir()
	writeScript(t, dir, "run.sh", script)
	path := writeFile(t, dir, "p.hook.yaml", "name: testplugin\ncommand: ./run.sh\n"+extra, 0o644)
	p, err := load(path)
	require.NoError(t, err)
	return p, dir
}

// hookContext returns a fully populated hook context with a nil Tx (plugins do not use it).
func hookContext(logger *slog.Logger) *hooks.Context {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &hooks.Context{
		Run: "0b9e3b1a-6a8e-5c2e-9d1a-3f7e9c1b2a4d", RequestID: "deploy-42", Target: "default",
		Migration: "20240601120000_add_email", Version: "20240601120000", Phase: "after_ddl",
		Hook: "announce", Attempt: 1, TargetDSN: testDSN, TargetSchema: "app",
		Logger: logger, Stats: hooks.NewStats(nil),
	}
}

// run builds p's hook with params and runs it once.
func run(t *testing.T, p *plugin, params map[string]any, hc *hooks.Context) (hooks.Result, error) {
	t.Helper()
	return runCtx(testCtx(t), t, p, params, hc)
}

func runCtx(ctx context.Context, t *testing.T, p *plugin, params map[string]any, hc *hooks.Context) (hooks.Result, error) {
	t.Helper()
	h, err := p.newHook(params)
	require.NoError(t, err)
	if hc == nil {
		hc = hookContext(nil)
	}
	return h.Run(ctx, hc)
}

// lines returns the records written to b, one a line.
func lines(b *syncbuf.Buffer) []string {
	return strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
}

func newLogger() (*slog.Logger, *syncbuf.Buffer) {
	buf := &syncbuf.Buffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}
