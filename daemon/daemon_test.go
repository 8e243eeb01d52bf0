package daemon

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker"
)

// thisPackage is the import path runtime.Caller reports for code in this test package.
const thisPackage = "github.com/confiture-io/confiture-worker/daemon"

// Main's command line sees the hooks registered with package confiture: `worker hooks list` and
// `describe` show them with their package and as transactional.
func TestMainAddsRegisteredHooks(t *testing.T) {
	t.Parallel()
	require.NoError(t, confiture.Register(confiture.Definition{
		Name: "main_probe", Description: "probe for Main", Version: "0.1.0",
		Example: map[string]any{"table": "orders"},
		New: func(map[string]any) (confiture.Hook, error) {
			return confiture.HookFunc(func(context.Context, *confiture.Context) (confiture.Result, error) {
				return confiture.Result{}, nil
			}), nil
		},
	}))

	var out, errOut strings.Builder
	require.Equal(t, 0, run([]string{"hooks", "list", "--json"}, &out, &errOut), errOut.String())
	type listed struct {
		Name          string `json:"name"`
		Source        string `json:"source"`
		Version       string `json:"version"`
		Transactional bool   `json:"transactional"`
	}
	var list struct {
		Hooks []listed `json:"hooks"`
	}
	require.NoError(t, json.Unmarshal([]byte(out.String()), &list), out.String())
	i := slices.IndexFunc(list.Hooks, func(h listed) bool { return h.Name == "main_probe" })
	require.GreaterOrEqual(t, i, 0, out.String())
	require.Equal(t, thisPackage, list.Hooks[i].Source)
	require.Equal(t, "0.1.0", list.Hooks[i].Version)
	require.True(t, list.Hooks[i].Transactional)

	out.Reset()
	require.Equal(t, 0, run([]string{"hooks", "describe", "main_probe"}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), "Source:        "+thisPackage+"\n")
	require.Contains(t, out.String(), "no parameter schema")
	require.Contains(t, out.String(), "  - name: main_probe\n    hook: main_probe\n    params:\n      table: orders\n")
}

// A package that only defines a hook imports package confiture, which must not pull in the
// daemon: before this package existed, it imported the worker's command line and with it the
// NATS server, River, River UI and Prometheus (493 packages in its build).
func TestTheHookAPIDoesNotImportTheDaemon(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not on PATH (%v)", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/confiture-io/confiture-worker").Output()
	require.NoError(t, err)
	deps := strings.Fields(string(out))
	for _, heavy := range []string{
		"github.com/confiture-io/confiture-worker/daemon",
		"github.com/confiture-io/confiture-worker/internal/workercmd",
		"github.com/confiture-io/confiture-worker/internal/worker",
		"github.com/nats-io/nats-server/v2/server",
		"github.com/riverqueue/river",
		"riverqueue.com/riverui",
		"github.com/prometheus/client_golang/prometheus",
	} {
		require.NotContains(t, deps, heavy)
	}
	require.Less(t, len(deps), 300, "packages in the build of the hook API")
}
