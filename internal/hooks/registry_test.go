package hooks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

func noopNew(map[string]any) (Hook, error) {
	return HookFunc(func(context.Context, *Context) (Result, error) { return Result{}, nil }), nil
}

func TestRegisterRejectsBadNames(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"", "Upper", "-leading-dash", "_leading", ".leading", "has space", "slash/name", "naïve",
		strings.Repeat("a", 65),
	} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			t.Parallel()
			r := NewRegistry()
			err := r.Register(Definition{Name: name, Source: "github.com/acme/hooks", New: noopNew})
			require.Error(t, err)
			require.Contains(t, err.Error(), fmt.Sprintf("%q", name))
			require.Contains(t, err.Error(), "github.com/acme/hooks")
			_, ok := r.Lookup(name)
			require.False(t, ok, "a rejected hook must not be registered")
			require.Empty(t, r.List())
		})
	}
}

func TestRegisterAcceptsValidNames(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	for _, name := range []string{"a", "0", "sql", "my-hook.v2_1", strings.Repeat("a", 64)} {
		require.NoError(t, r.Register(Definition{Name: name, New: noopNew}), name)
		d, ok := r.Lookup(name)
		require.True(t, ok)
		require.Equal(t, name, d.Name)
	}
}

func TestRegisterRejectsNilNew(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	err := r.Register(Definition{Name: "backfill", Source: "github.com/acme/hooks"})
	require.Error(t, err)
	require.Contains(t, err.Error(), `"backfill"`)
	require.Contains(t, err.Error(), "github.com/acme/hooks")
	require.Contains(t, err.Error(), "New is nil")
	_, ok := r.Lookup("backfill")
	require.False(t, ok)
}

func TestRegisterRejectsUnknownPhase(t *testing.T) {
	t.Parallel()
	for _, phase := range []string{"ddl", "after-ddl", "", "AFTER_DDL"} {
		t.Run(fmt.Sprintf("%q", phase), func(t *testing.T) {
			t.Parallel()
			r := NewRegistry()
			err := r.Register(Definition{
				Name: "check", Source: "github.com/acme/hooks", New: noopNew,
				Phases: []string{contract.PhaseBeforeDDL, phase},
			})
			require.Error(t, err)
			require.Contains(t, err.Error(), fmt.Sprintf("%q is not a hook phase", phase))
			_, ok := r.Lookup("check")
			require.False(t, ok)
		})
	}
	// Every hook phase is accepted.
	r := NewRegistry()
	require.NoError(t, r.Register(Definition{Name: "all", New: noopNew, Phases: HookPhases}))
}

func TestRegisterDuplicateNamesBothSources(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	require.NoError(t, r.Register(Definition{Name: "backfill", Source: "github.com/acme/hooks", Description: "first", New: noopNew}))
	err := r.Register(Definition{Name: "backfill", Source: "/etc/confiture/plugins/backfill.yaml", Description: "second", New: noopNew})
	require.ErrorIs(t, err, ErrDuplicateHook)
	require.Contains(t, err.Error(), `"backfill"`)
	require.Contains(t, err.Error(), "github.com/acme/hooks")
	require.Contains(t, err.Error(), "/etc/confiture/plugins/backfill.yaml")

	// The first registration stays.
	d, ok := r.Lookup("backfill")
	require.True(t, ok)
	require.Equal(t, "first", d.Description)
	require.Len(t, r.List(), 1)

	// Without a source the message still says who is who.
	err = r.Register(Definition{Name: "backfill", New: noopNew})
	require.ErrorIs(t, err, ErrDuplicateHook)
	require.Contains(t, err.Error(), "an unnamed source")
	require.Contains(t, err.Error(), "github.com/acme/hooks")
}

func TestRegisterBuiltinsTwiceIsDuplicate(t *testing.T) {
	t.Parallel()
	r := builtinRegistry(t)
	err := RegisterBuiltins(r)
	require.ErrorIs(t, err, ErrDuplicateHook)
	require.Contains(t, err.Error(), `"sql"`)
	require.Contains(t, err.Error(), `"assert"`)
	require.Contains(t, err.Error(), SourceBuiltin)
}

func TestMustRegisterPanicsOnError(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	r.MustRegister(Definition{Name: "x", New: noopNew})
	require.Panics(t, func() { r.MustRegister(Definition{Name: "x", New: noopNew}) })
	require.Panics(t, func() { r.MustRegister(Definition{Name: "", New: noopNew}) })
}

func TestListIsSorted(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	for _, name := range []string{"zeta", "alpha", "mid", "beta.2", "beta-1", "0first"} {
		require.NoError(t, r.Register(Definition{Name: name, Source: "src-" + name, New: noopNew}))
	}
	var names []string
	for _, d := range r.List() {
		names = append(names, d.Name)
		require.Equal(t, "src-"+d.Name, d.Source)
	}
	require.Equal(t, []string{"0first", "alpha", "beta-1", "beta.2", "mid", "zeta"}, names)

	// List returns copies: changing one does not change the registry.
	l := r.List()
	l[0].Description = "changed"
	d, _ := r.Lookup("0first")
	require.Empty(t, d.Description)
}

func TestRegistryConcurrentUse(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	const goroutines, perG = 16, 25
	var wg sync.WaitGroup
	var dupOK sync.Map // goroutine -> registered "shared"
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				name := fmt.Sprintf("hook-%d-%d", g, i)
				if err := r.Register(Definition{Name: name, New: noopNew}); err != nil {
					t.Errorf("register %s: %v", name, err)
				}
				if _, ok := r.Lookup(name); !ok {
					t.Errorf("lookup %s: not found right after registering", name)
				}
				_ = r.List()
			}
			err := r.Register(Definition{Name: "shared", Source: fmt.Sprint("g", g), New: noopNew})
			switch {
			case err == nil:
				dupOK.Store(g, true)
			case !errors.Is(err, ErrDuplicateHook):
				t.Errorf("register shared: %v", err)
			}
		})
	}
	wg.Wait()
	require.Len(t, r.List(), goroutines*perG+1)
	winners := 0
	dupOK.Range(func(any, any) bool { winners++; return true })
	require.Equal(t, 1, winners, "exactly one registration of a name succeeds")
}
