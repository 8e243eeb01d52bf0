package hooks

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// A hook constructor is third-party code fed with a request's parameters: its panic is an
// error of that request, not of the worker.
func TestPlanTurnsAConstructorPanicIntoAnError(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	require.NoError(t, r.Register(Definition{Name: "fragile", Source: "test", New: func(map[string]any) (Hook, error) {
		panic("bad params")
	}}))
	_, err := r.Plan(contract.PhaseAfterDDL, []contract.HookSpec{{Phase: contract.PhaseAfterDDL, Name: "f", Hook: "fragile"}})
	require.ErrorIs(t, err, ErrInvalidHooks)
	require.ErrorContains(t, err, "constructor panicked: bad params")
}
