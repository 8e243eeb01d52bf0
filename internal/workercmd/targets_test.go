package workercmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// TestTargetsList lists targets and groups of a configuration file: a static group, a group
// of the tenant schemas of a real database, and a discovered group whose query fails, which
// makes the command exit 1 with the reason.
func TestTargetsList(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `CREATE SCHEMA tenant_a; CREATE SCHEMA tenant_b; CREATE SCHEMA billing`)
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))

	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	base := fmt.Sprintf(`targets:
  - name: main
    dsn: %q
  - name: app
    dsn: postgres://app:s3cret@db.example/app
target_groups:
  - name: both
    targets: [main, app]
  - name: tenants
    schemas: {target: main, match: "tenant_*"}
`, dsn)
	good := write("good.yaml", base)
	code, out, errOut := runMain(t, "--config", good, "targets", "list")
	require.Equal(t, ExitOK, code, errOut)
	for _, s := range []string{
		"TARGET  SCHEMA  TRACKING   DATABASE\n",
		"app     -       confiture  postgres://app:xxxxx@db.example/app\n",
		"group both (targets): a list of targets\n  2 member(s)\n",
		`group tenants (schemas): schemas matching "tenant_*" in the database of target "main"` + "\n  2 member(s)\n",
		"  tenants-tenant_a  tenant_a  confiture_tenant_a  ",
		"  tenants-tenant_b  tenant_b  confiture_tenant_b  ",
	} {
		require.Contains(t, out, s)
	}
	require.NotContains(t, out, "s3cret")
	require.NotContains(t, out, "billing")

	code, out, errOut = runMain(t, "--config", good, "targets", "list", "--json")
	require.Equal(t, ExitOK, code, errOut)
	var l listing
	require.NoError(t, json.Unmarshal([]byte(out), &l))
	require.Len(t, l.Groups, 2)
	require.Equal(t, "tenants-tenant_b", l.Groups[1].Members[1].Name)

	failing := write("failing.yaml", base+`  - name: fleet
    query: {target: main, sql: "SELECT id FROM tenants", name: "t{{.id}}", dsn: "postgres://h/{{.id}}"}
`)
	code, out, errOut = runMain(t, "--config", failing, "targets", "list")
	require.Equal(t, ExitFailed, code, errOut)
	require.Contains(t, out, `group fleet (query): rows of the catalog query on target "main"`+"\n"+
		`  cannot be resolved now: target group "fleet": the catalog query on target "main" failed: ERROR: relation "tenants" does not exist`)
	require.Contains(t, errOut, "1 target group(s) could not be resolved")

	// A group that refers to no target is refused when the configuration is read.
	bad := write("bad.yaml", strings.Replace(base, "targets: [main, app]", "targets: [main, nope]", 1))
	code, _, errOut = runMain(t, "--config", bad, "targets", "list")
	require.Equal(t, ExitUsage, code, errOut)
	require.Contains(t, errOut, `target group "both": targets names "nope", which is not a configured target`)
}
