package worker

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/syncbuf"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// childEnv makes the test binary run a worker instead of the tests (see TestMain): the worker
// takes its configuration from CONFITURE_* variables and runs until SIGTERM, or until a test
// kills it.
const childEnv = "CONFITURE_TEST_CHILD_WORKER"

// childWorkerMain is the main function of a child worker process.
func childWorkerMain() int {
	return ServeEnv(os.Getenv("CHILD_READY_FILE"), slog.LevelDebug, os.Stderr)
}

// child is a worker process started by a test.
type child struct {
	cmd  *exec.Cmd
	log  syncbuf.Buffer
	done chan struct{}
}

// startChild starts a worker process with env (CONFITURE_* settings) and waits until it is
// ready. Its log goes to the test log when the test fails.
func startChild(t *testing.T, env map[string]string) *child {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "CHILD_READY_FILE="+ready)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &c.log, &c.log
	require.NoError(t, cmd.Start())
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.kill(t)
		if t.Failed() {
			t.Logf("child worker %d log:\n%s", cmd.Process.Pid, tail(c.log.String(), 20000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return c
		}
		select {
		case <-c.done:
			t.Fatalf("child worker exited before it was ready:\n%s", c.log.String())
		case <-time.After(20 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "child worker not ready after 60s")
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill(t *testing.T) {
	t.Helper()
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("child worker still running 10s after SIGKILL")
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// procSetup is where a child-process test starts: a database of its own, an in-process NATS
// server, a pool on the database, and the environment of its worker processes (faultEnv).
func procSetup(t *testing.T) (*pgxpool.Pool, map[string]string, *natsServer) {
	t.Helper()
	dsn := testdb.New(t)
	ns := startRestartableNATS(t)
	db, err := pgxpool.New(context.Background(), dsn)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return db, faultEnv(t, dsn, ns.url()), ns
}

// waitRun follows a run to its final event and returns every event of it.
func waitRun(t *testing.T, c *client.Client, target, run string) []*contract.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var evs []*contract.Event
	_, err := c.Wait(ctx, target, run, func(ev *contract.Event) { evs = append(evs, ev) })
	require.NoError(t, err, "run %s: %v", run, kinds(evs))
	return evs
}
