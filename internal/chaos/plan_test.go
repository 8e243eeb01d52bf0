package chaos

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/builtin"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/plugin"
)

// The plan is a function of the seed and the window alone.
func TestPlanIsDeterministic(t *testing.T) {
	for _, seed := range []uint64{0, 1, 42, 1 << 63} {
		a, b := Generate(seed, time.Minute), Generate(seed, time.Minute)
		require.Equal(t, a, b)
		require.Equal(t, a.Describe(), b.Describe())
	}
	require.NotEqual(t, Generate(1, time.Minute).Describe(), Generate(2, time.Minute).Describe())
}

// Every request a plan publishes is one the worker accepts: it decodes, passes the contract's
// checks, and its hooks (the built-ins and the campaign's plugin, loaded from its manifest)
// plan without error. Each migration has the roles and effects the invariants count on.
func TestPlanRequestsAreValid(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, writePlugin(dir))
	reg := hooks.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	defs, failures := plugin.Discover([]string{dir}, slog.New(slog.DiscardHandler))
	require.Empty(t, failures)
	require.Len(t, defs, 1)
	require.NoError(t, reg.Register(defs[0]))

	noTx := 0
	for seed := uint64(0); seed < 50; seed++ {
		p := Generate(seed, time.Minute)
		require.NotEmpty(t, p.Faults)
		for _, tp := range p.Targets {
			roles := map[string]int{}
			for i, m := range tp.Migrations {
				roles[m.Role]++
				require.Equal(t, fmt.Sprintf("%03d", i+1), m.Version)
				var names []string
				for _, ef := range m.Effects {
					names = append(names, ef.Name)
				}
				require.Contains(t, names, m.Version+".ddl.ddl", "the DDL counts itself")
				if m.NoTransaction {
					noTx++
					require.Equal(t, m.Version+".ddl.early", names[0], "a statement before the last one of a no_transaction DDL counts itself")
				}
				if m.Role == RoleBackfill || m.Role == RolePlugin {
					require.NotEmpty(t, m.Segmented)
				}
			}
			require.Equal(t, 1, roles[RolePlugin])
			require.Equal(t, 1, roles[RoleIndex])
			require.Equal(t, 1, roles[RoleBackfill])
			require.NotEmpty(t, tp.Requests)
			for _, q := range tp.Requests {
				data, err := json.Marshal(tp.request(q))
				require.NoError(t, err)
				req, err := contract.DecodeRequest(data)
				require.NoError(t, err, "seed %d request %s", seed, q.ID)
				require.NoError(t, contract.CheckRequest(req), "seed %d request %s", seed, q.ID)
				for _, m := range req.Migrations {
					_, err := reg.PlanAll(m.Hooks)
					require.NoError(t, err, "seed %d migration %s", seed, m.ID())
				}
			}
		}
	}
	require.Positive(t, noTx, "some migrations run without a transaction")
}
