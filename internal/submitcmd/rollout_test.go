package submitcmd

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/targetgroup"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// tenantsWorker starts a worker whose group "tenants" is the schemas tenant_<id> of its
// database, created here.
func tenantsWorker(t *testing.T, ids ...int) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: needs PostgreSQL")
	}
	dsn := testdb.New(t)
	conn, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	for _, id := range ids {
		_, err := conn.Exec(context.Background(), fmt.Sprintf("CREATE SCHEMA tenant_%d", id))
		require.NoError(t, err)
	}
	return startWorkerOn(t, dsn, []targetgroup.Config{{Name: "tenants", Schemas: &targetgroup.Schemas{Target: "default", Match: "tenant_*"}}})
}

// oddTenantsDir holds a migration that fails in a tenant schema whose id is odd.
func oddTenantsDir(t *testing.T) string {
	return writeDir(t, map[string]string{
		"001_items.up.sql": `DO $$ BEGIN
  IF current_schema() ~ '[13579]$' THEN RAISE EXCEPTION 'odd tenant %', current_schema(); END IF;
END $$;
CREATE TABLE items (id int);
`,
	})
}

func TestE2EGroupRolloutCompletes(t *testing.T) {
	t.Parallel()
	url := tenantsWorker(t, 2, 4, 6)
	r := submit(t, oddTenantsDir(t), "--nats-url", url, "--group", "tenants", "--wave-size", "1", "--wait", "--timeout", "60s")
	require.Equal(t, ExitOK, r.code, r)
	for _, s := range []string{
		"accepted as a rollout over 3 target(s) of group tenants",
		"• the canary: 1 target(s)",
		"• wave 2 of 3: 1 target(s)",
		"✓ rollout completed: 3 completed, 0 failed, 0 skipped of 3 target(s)",
		": completed; 3 target(s): 3 completed, 0 failed, 0 skipped, 0 running, 0 not started",
	} {
		require.Contains(t, r.stdout, s, r)
	}
}

func TestE2EGroupRolloutHaltsThenResumes(t *testing.T) {
	t.Parallel()
	url := tenantsWorker(t, 2, 3, 4)
	r := submit(t, oddTenantsDir(t), "--nats-url", url, "--group", "tenants", "--id", "odd-1", "--wave-size", "2", "--wait", "--timeout", "60s")
	require.Equal(t, ExitFailed, r.code, r)
	rollout := contract.RolloutID("tenants", "odd-1")
	for _, s := range []string{
		"✗ tenants-tenant_3: sql_error: ",
		"odd tenant tenant_3",
		"■ rollout halted: 1 of 2 target(s) of wave 2 of 2 failed, past its threshold",
		"failed targets:\n  tenants-tenant_3 (run " + contract.RunID("tenants-tenant_3", "odd-1") + "): sql_error: ",
		"submit rollout resume " + rollout + " --group tenants --failed retry",
	} {
		require.Contains(t, r.stdout, s, r)
	}
	require.Contains(t, r.stderr, "rollout "+rollout+" halted (exit 1)")

	r = submit(t, "rollout", "resume", "odd-1", "--group", "tenants", "--failed", "skip", "--nats-url", url)
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "rollout "+rollout+" of group tenants (request odd-1): ")

	// Once tenant_4's run ends, the rollout completes with tenant_3 skipped; submit says so
	// and does not exit 0.
	require.Eventually(t, func() bool {
		r = submit(t, "rollout", "show", "--group", "tenants", "--nats-url", url)
		return r.code == ExitOK && strings.Contains(r.stdout, ": completed\n")
	}, 60*time.Second, 100*time.Millisecond, "the rollout completes")
	require.Contains(t, r.stdout, "3 target(s): 2 completed, 0 failed, 1 skipped, 0 running, 0 not started", r)

	// The same request again follows the same rollout, to its end once the relay has published
	// it (the service API reads the queue database, a moment ahead of the stream).
	dir := oddTenantsDir(t)
	require.Eventually(t, func() bool {
		r = submit(t, dir, "--nats-url", url, "--group", "tenants", "--id", "odd-1", "--wave-size", "2", "--wait", "--timeout", "60s")
		return strings.Contains(r.stderr, "completed with 0 failed and 1 skipped target(s) (exit 1)")
	}, 60*time.Second, 200*time.Millisecond, "%v", r)
	require.Equal(t, ExitFailed, r.code, r)
}

func TestGroupFlagsRefused(t *testing.T) {
	t.Parallel()
	dir := oddTenantsDir(t)
	for args, want := range map[string][]string{
		"target and group":   {"--target", "app", "--group", "tenants"},
		"canary alone":       {"--canary", "2"},
		"html with a group":  {"--group", "tenants", "--dry-run", "--wait", "--html", "x.html"},
		"dry-run-all alone":  {"--group", "tenants", "--dry-run-all"},
		"fail-on with group": {"--group", "tenants", "--dry-run", "--wait", "--fail-on", "warning"},
	} {
		r := submit(t, append([]string{dir, "--nats-url", "nats://127.0.0.1:1"}, want...)...)
		require.Equal(t, ExitUsage, r.code, "%s: %v", args, r)
	}
}
