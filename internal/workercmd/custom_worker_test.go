package workercmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/migrations"
	"github.com/confiture-io/confiture-worker/internal/syncbuf"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// customWorkerDir is examples/custom-worker, a module of its own that builds the worker with a
// third-party-style hook package compiled in.
const customWorkerDir = "../../examples/custom-worker"

// goCommand returns the go command, or skips the test when there is none.
func goCommand(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not on PATH (%v): cannot build examples/custom-worker", err)
	}
	return goBin
}

// goIn runs the go command in the example module and fails the test with its output.
func goIn(t *testing.T, goBin string, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = customWorkerDir
	// The example is its own module with a replace to this one: never a workspace.
	cmd.Env = append(append(os.Environ(), "GOWORK=off"), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go %s in %s:\n%s", strings.Join(args, " "), customWorkerDir, out)
}

// childEnv is the test's environment without the worker's own variables, so that a developer's
// CONFITURE_NATS_URL or DATABASE_URL cannot redirect the child, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CONFITURE_") || strings.HasPrefix(kv, "DATABASE_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// The custom worker example builds as a module of its own and runs a migration through its
// compiled-in hook: a request that passes the hook's check completes, one that does not fails
// naming the hook. The worker stops cleanly on SIGTERM.
func TestCustomWorkerEndToEnd(t *testing.T) {
	t.Parallel()
	goBin := goCommand(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "custom-worker")
	goIn(t, goBin, nil, "build", "-o", bin, ".")

	dsn := testdb.New(t)
	ready := filepath.Join(tmp, "ready")
	var output syncbuf.Buffer
	child := exec.Command(bin, "--database-url", dsn, "--data-dir", tmp, "--embedded-nats-port", "-1",
		"--ready-file", ready, "--log-format", "json")
	// A failing check is retried once, quickly. Fault injection is not in the worker that users
	// build: the rule that would SIGKILL a test's child worker before its first phase commits
	// does nothing here, and the code that reads it is not linked in.
	child.Env = childEnv("CONFITURE_MAX_ATTEMPTS=2", "CONFITURE_RETRY_BACKOFF=10ms",
		"CONFITURE_RETRY_BACKOFF_MAX=20ms", "CONFITURE_SHUTDOWN_TIMEOUT=10s", fault.Env+"="+fault.PhaseBeforeCommit+"=kill")
	symbols, err := exec.Command(goBin, "tool", "nm", bin).Output()
	require.NoError(t, err)
	require.NotContains(t, string(symbols), "internal/fault.Parse")
	require.Contains(t, string(symbols), "internal/fault.Func.At", "the symbol names are as this test expects")
	child.Stdout, child.Stderr = &output, &output
	require.NoError(t, child.Start())
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = child.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("custom worker output:\n%s", output.String())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := waitReady(ctx, t, ready, exited)

	c, err := client.Connect(url)
	require.NoError(t, err)
	defer c.Close()
	migs, err := migrations.Load(filepath.Join(customWorkerDir, "migrations"))
	require.NoError(t, err)
	require.Len(t, migs, 2)
	require.True(t, slices.ContainsFunc(migs[0].Hooks, func(h contract.HookSpec) bool { return h.Hook == "row_count_at_least" }),
		"the example migration uses the compiled-in hook")

	// 1. The example migration: 100 products, at least 100 required.
	events, final := submitAndWait(ctx, t, c, migs)
	require.Equal(t, contract.KindRunCompleted, final.Kind, "%+v", final)
	i := slices.IndexFunc(events, func(ev *contract.Event) bool { return ev.Kind == contract.KindHookCompleted })
	require.GreaterOrEqual(t, i, 0, "no hook.completed event")
	hookDone := events[i]
	require.Equal(t, "row_count_at_least", hookDone.Hook)
	require.Equal(t, contract.PhaseAfterValidation, hookDone.Phase)
	require.Equal(t, int64(100), hookDone.RowsAffected)
	require.Contains(t, hookDone.Message, "holds 100 rows")
	// And the backfill defined in Go, in batches of 25 as its declaration tunes it.
	i = slices.IndexFunc(events, func(ev *contract.Event) bool {
		return ev.Kind == contract.KindHookCompleted && ev.Hook == "fill_price_cents"
	})
	require.GreaterOrEqual(t, i, 0, "no hook.completed event for fill_price_cents")
	require.Equal(t, int64(100), events[i].RowsAffected)
	require.Contains(t, events[i].Message, "backfilled 100 row(s) of products in 5 batch(es)")

	// 2. A new migration whose check asks for more rows than there are.
	more := migs[0]
	more.Version, more.Name = "003", "require_more_products"
	more.UpSQL = "COMMENT ON TABLE products IS 'checked by row_count_at_least';\n"
	more.DownSQL = "COMMENT ON TABLE products IS NULL;\n"
	more.Checksum = contract.Checksum(more.UpSQL)
	more.Hooks = nil
	for _, h := range migs[0].Hooks {
		h.Params = maps.Clone(h.Params)
		if h.Hook == "row_count_at_least" {
			h.Params["min"] = 1000000
		}
		more.Hooks = append(more.Hooks, h)
	}
	events, final = submitAndWait(ctx, t, c, []contract.Migration{migs[0], migs[1], more})
	require.Equal(t, contract.KindRunFailed, final.Kind, "%+v", final)
	require.Equal(t, "003", final.Version)
	require.Equal(t, "row_count_at_least", final.Hook)
	require.Contains(t, final.Message, `hook "row_count_at_least" in after_validation`)
	require.Contains(t, final.Message, "holds 100 rows, fewer than the 1000000 required")
	require.NotNil(t, final.Error)
	require.Equal(t, contract.CodeHookFailed, final.Error.Code)
	require.True(t, slices.ContainsFunc(events, func(ev *contract.Event) bool {
		return ev.Kind == contract.KindHookFailed && ev.Hook == "row_count_at_least"
	}), "a hook.failed event names the hook")

	// The check only read the table.
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var products int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM products`).Scan(&products))
	require.Equal(t, 100, products)

	// SIGTERM: a clean stop, exit code 0.
	require.NoError(t, child.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		stopped = true
		require.NoError(t, err, "the custom worker exits 0 on SIGTERM")
	case <-time.After(time.Minute):
		t.Fatal("the custom worker did not stop within a minute of SIGTERM")
	}
	_, err = os.Stat(ready)
	require.True(t, errors.Is(err, os.ErrNotExist), "the ready file is removed on stop: %v", err)
}

// waitReady waits for the child's ready file and returns the NATS URL in it.
func waitReady(ctx context.Context, t *testing.T, path string, exited <-chan error) string {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if data, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(data)) > 0 {
			return strings.TrimSpace(string(data))
		}
		select {
		case err := <-exited:
			t.Fatalf("the custom worker exited before it was ready: %v", err)
		case <-ctx.Done():
			t.Fatalf("the custom worker was not ready in time: %v", ctx.Err())
		case <-tick.C:
		}
	}
}

// submitAndWait publishes a request for migs on the default target and follows its run to the
// end, returning every event and the final one.
func submitAndWait(ctx context.Context, t *testing.T, c *client.Client, migs []contract.Migration) ([]*contract.Event, *contract.Event) {
	t.Helper()
	req := &contract.Request{
		Schema: contract.RequestSchemaV1, ID: fmt.Sprintf("custom-worker-%d", time.Now().UnixNano()),
		Target: "default", Direction: contract.DirectionUp, RequestedBy: "custom_worker_test",
		Migrations: migs,
	}
	pub, err := c.Publish(ctx, req)
	require.NoError(t, err)
	require.False(t, pub.Duplicate)
	var events []*contract.Event
	final, err := c.Wait(ctx, req.Target, pub.Run, func(ev *contract.Event) { events = append(events, ev) })
	require.NoError(t, err)
	require.NotNil(t, final)
	return events, final
}

// The example's own tests (its hook against a real database) pass.
func TestCustomWorkerExampleTests(t *testing.T) {
	t.Parallel()
	goBin := goCommand(t)
	goIn(t, goBin, []string{"TEST_DATABASE_URL=" + testdb.AdminURL()}, "vet", "./...")
	goIn(t, goBin, []string{"TEST_DATABASE_URL=" + testdb.AdminURL()}, "test", "-count=1", "./...")
}
