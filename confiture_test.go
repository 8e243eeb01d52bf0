package confiture

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/confiture-io/confiture-worker/internal/builtin"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// thisPackage is the import path runtime.Caller reports for code in this test package.
const thisPackage = "github.com/confiture-io/confiture-worker"

func noop() Definition {
	return Definition{
		Name: "noop",
		New: func(map[string]any) (Hook, error) {
			return HookFunc(func(context.Context, *Context) (Result, error) { return Result{}, nil }), nil
		},
	}
}

func named(name string) Definition {
	d := noop()
	d.Name = name
	return d
}

func TestRegisterRejectsBadDefinitions(t *testing.T) {
	t.Parallel()
	r := newRegistry()
	for _, tc := range []struct {
		name string
		def  Definition
		want string
	}{
		{"empty name", named(""), `hook name ""`},
		{"upper case", named("RowCount"), `hook name "RowCount"`},
		{"space", named("row count"), `hook name "row count"`},
		{"leading dash", named("-x"), `hook name "-x"`},
		{"too long", named(strings.Repeat("a", 65)), "must match"},
		{"no constructor", Definition{Name: "no_new"}, "Definition.New is nil"},
		{"not a hook phase", func() Definition { d := named("bad_phase"); d.Phases = []string{"ddl"}; return d }(), `"ddl" is not a hook phase`},
		{"schema does not compile", func() Definition {
			d := named("bad_schema")
			d.ParamsSchema = json.RawMessage(`{"type": "nope"}`)
			return d
		}(), "parameter schema"},
		{"built-in name", named("sql"), "already registered by built-in"},
	} {
		err := r.register(tc.def, "example.com/hooks")
		require.Error(t, err, tc.name)
		require.ErrorContains(t, err, tc.want, tc.name)
		require.ErrorContains(t, err, "example.com/hooks", "%s: the error names the registrant", tc.name)
	}
	require.Empty(t, r.list(), "nothing was registered")
}

func TestRegisterDuplicateNamesBothPackages(t *testing.T) {
	t.Parallel()
	r := newRegistry()
	require.NoError(t, r.register(named("row_count"), "example.com/first/rowcount"))
	err := r.register(named("row_count"), "example.com/second/counting")
	require.ErrorContains(t, err, `hook "row_count" registered by example.com/second/counting is already registered by example.com/first/rowcount`)
	require.Len(t, r.list(), 1)
}

// Register records the package that calls it. Both test packages of this directory register
// the same name: the error names each by its import path (the external test package's path
// ends in _test).
func TestRegisterRecordsTheCallersPackage(t *testing.T) {
	t.Parallel()
	require.NoError(t, Register(named("caller_pkg_probe")))
	var source string
	for _, d := range std.definitions() {
		if d.Name == "caller_pkg_probe" {
			source = d.Source
		}
	}
	require.Equal(t, thisPackage, source)

	// From a function literal and through MustRegister, the package is still this one.
	func() { MustRegister(named("caller_pkg_probe_2")) }()
	err := Register(named("caller_pkg_probe_2"))
	require.ErrorContains(t, err, "registered by "+thisPackage+" is already registered by "+thisPackage)

	require.PanicsWithError(t, `confiture: hook "caller_pkg_probe" registered by `+thisPackage+` is already registered by `+thisPackage,
		func() { MustRegister(named("caller_pkg_probe")) })
}

func TestPackageOf(t *testing.T) {
	t.Parallel()
	for symbol, want := range map[string]string{
		"example.com/hooks/rowcount.init.0":               "example.com/hooks/rowcount",
		"example.com/hooks/rowcount.init.0.func1":         "example.com/hooks/rowcount",
		"example.com/hooks/rowcount.(*hook).Run":          "example.com/hooks/rowcount",
		"gopkg.in/yaml%2ev3.init":                         "gopkg.in/yaml.v3",
		"main.init.0":                                     "main",
		"github.com/confiture-io/confiture-worker_test.X": "github.com/confiture-io/confiture-worker_test",
	} {
		require.Equal(t, want, packageOf(symbol), symbol)
	}
}

func TestHooksSortedByName(t *testing.T) {
	t.Parallel()
	r := newRegistry()
	for _, n := range []string{"zeta", "alpha", "mid.dle", "beta-2"} {
		require.NoError(t, r.register(named(n), "example.com/x"))
	}
	var names []string
	for _, d := range r.list() {
		names = append(names, d.Name)
	}
	require.Equal(t, []string{"alpha", "beta-2", "mid.dle", "zeta"}, names)
	var internal []string
	for _, d := range r.definitions() {
		internal = append(internal, d.Name)
		require.Equal(t, "example.com/x", d.Source)
		require.True(t, d.Transactional, "a Go hook runs in the phase's transaction")
	}
	require.Equal(t, names, internal)

	// The package-level list is sorted too, whatever other tests register meanwhile.
	require.NoError(t, Register(named("sorted_probe_b")))
	require.NoError(t, Register(named("sorted_probe_a")))
	all := Hooks()
	require.True(t, slices.IsSortedFunc(all, func(a, b Definition) int { return strings.Compare(a.Name, b.Name) }))
}

func TestHooksReturnsCopies(t *testing.T) {
	t.Parallel()
	r := newRegistry()
	d := named("copied")
	d.Phases = []string{"after_ddl"}
	d.Example = map[string]any{"k": "v"}
	require.NoError(t, r.register(d, "example.com/x"))
	d.Phases[0] = "cleanup" // the caller's slice is not the registry's
	got := r.list()[0]
	require.Equal(t, []string{"after_ddl"}, got.Phases)
	got.Example["k"] = "changed"
	require.Equal(t, "v", r.list()[0].Example["k"])
}

func TestNewErrorsAndNilHooks(t *testing.T) {
	t.Parallel()
	r := newRegistry()
	bad := named("bad_params")
	bad.New = func(params map[string]any) (Hook, error) {
		var p struct {
			Table string `json:"table"`
		}
		return nil, DecodeParams(params, &p)
	}
	nilHook := named("nil_hook")
	nilHook.New = func(map[string]any) (Hook, error) { return nil, nil }
	require.NoError(t, r.register(bad, "example.com/x"))
	require.NoError(t, r.register(nilHook, "example.com/x"))
	reg := internalRegistry(t, r)

	_, err := reg.Plan(contract.PhaseAfterDDL, []contract.HookSpec{{Phase: contract.PhaseAfterDDL, Name: "b", Hook: "bad_params", Params: map[string]any{"tabel": "x"}}})
	require.ErrorIs(t, err, hooks.ErrInvalidHooks)
	require.ErrorContains(t, err, `unknown field "tabel"`)

	_, err = reg.Plan(contract.PhaseAfterDDL, []contract.HookSpec{{Phase: contract.PhaseAfterDDL, Name: "n", Hook: "nil_hook"}})
	require.ErrorContains(t, err, "New returned a nil Hook")
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	require.NoError(t, Permanent(nil))
	base := errors.New("table name is not configured")
	err := Permanent(base)
	require.Equal(t, base.Error(), err.Error())
	require.ErrorIs(t, err, base)
	require.False(t, hooks.Retryable(err), "the worker does not retry a permanent error")
	require.True(t, hooks.Retryable(base))
}

// internalRegistry is the worker's registry with the built-in hooks and those of r, as Main
// passes them to the worker.
func internalRegistry(t *testing.T, r *registry) *hooks.Registry {
	t.Helper()
	reg := hooks.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	for _, d := range r.definitions() {
		require.NoError(t, reg.Register(d))
	}
	return reg
}

// A public hook runs through the worker's planner and executor inside a real transaction: it
// sees the Context the executor builds and the phase's transaction, and what it returns
// (rows, stats, message, failure) is what the worker records.
func TestAdapterRunsAPublicHookInTheWorker(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testdb.New(t))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY)`)
	require.NoError(t, err)

	r := newRegistry()
	var seen Context
	insert := Definition{
		Name:    "insert_items",
		Version: "1.2.3",
		Phases:  []string{contract.PhaseAfterDDL},
		ParamsSchema: json.RawMessage(`{"type": "object", "additionalProperties": false, "required": ["count"],
			"properties": {"count": {"type": "integer", "minimum": 1}}}`),
		New: func(params map[string]any) (Hook, error) {
			var p struct {
				Count int `json:"count"`
			}
			if err := DecodeParams(params, &p); err != nil {
				return nil, err
			}
			return HookFunc(func(ctx context.Context, hc *Context) (Result, error) {
				seen = *hc
				tag, err := hc.Tx.Exec(ctx, `INSERT INTO items SELECT g FROM generate_series(1, $1::int) g`, p.Count)
				if err != nil {
					return Result{}, err
				}
				hc.Logger.Info("inserted", "rows", tag.RowsAffected())
				hc.Stats.Set("set_directly", true)
				return Result{RowsAffected: tag.RowsAffected(), Stats: map[string]any{"items_inserted": tag.RowsAffected()}, Message: "inserted"}, nil
			}), nil
		},
	}
	var readBack any
	check := Definition{
		Name: "at_least",
		New: func(params map[string]any) (Hook, error) {
			var p struct {
				Min int64 `json:"min"`
			}
			if err := DecodeParams(params, &p); err != nil {
				return nil, err
			}
			return HookFunc(func(ctx context.Context, hc *Context) (Result, error) {
				readBack, _ = hc.Stats.Get("items_inserted")
				var n int64
				if err := hc.Tx.QueryRow(ctx, `SELECT count(*) FROM items`).Scan(&n); err != nil {
					return Result{}, err
				}
				if n < p.Min {
					return Result{RowsAffected: n, Failed: true, Message: "too few items"}, nil
				}
				return Result{RowsAffected: n}, nil
			}), nil
		},
	}
	require.NoError(t, r.register(insert, "example.com/items"))
	require.NoError(t, r.register(check, "example.com/items"))
	reg := internalRegistry(t, r)

	def, ok := reg.Lookup("insert_items")
	require.True(t, ok)
	require.Equal(t, "example.com/items", def.Source)
	require.Equal(t, "1.2.3", def.Version)
	require.True(t, def.Transactional)

	// The parameter schema is the worker's: checked before New.
	_, err = reg.Plan(contract.PhaseAfterDDL, []contract.HookSpec{{Phase: contract.PhaseAfterDDL, Name: "x", Hook: "insert_items", Params: map[string]any{"count": 0}}})
	require.ErrorIs(t, err, hooks.ErrInvalidHooks)
	// So are the phases.
	_, err = reg.Plan(contract.PhaseCleanup, []contract.HookSpec{{Phase: contract.PhaseCleanup, Name: "x", Hook: "insert_items", Params: map[string]any{"count": 1}}})
	require.ErrorContains(t, err, "may not run in cleanup")

	specs := []contract.HookSpec{
		{Phase: contract.PhaseAfterDDL, Name: "seed", Hook: "insert_items", Params: map[string]any{"count": 3}},
		{Phase: contract.PhaseAfterDDL, Name: "enough", Hook: "at_least", Params: map[string]any{"min": 3}, DependsOn: []string{"seed"}},
	}
	planned, err := reg.Plan(contract.PhaseAfterDDL, specs)
	require.NoError(t, err)
	info := hooks.PhaseInfo{
		Run: "run-1", RequestID: "req-1", Target: "default", Migration: "001_items", Version: "001",
		Phase: contract.PhaseAfterDDL, Attempt: 2, TargetDSN: "postgres://secret@db/x",
	}
	stats := hooks.NewStats(nil)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	outcomes, err := (&hooks.Executor{}).Run(ctx, info, tx, stats, planned, hooks.RunOptions{})
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))

	require.Equal(t, "run-1", seen.Run)
	require.Equal(t, "req-1", seen.RequestID)
	require.Equal(t, "default", seen.Target)
	require.Equal(t, "001_items", seen.Migration)
	require.Equal(t, "001", seen.Version)
	require.Equal(t, contract.PhaseAfterDDL, seen.Phase)
	require.Equal(t, "seed", seen.Hook, "the declared name, not the type")
	require.Equal(t, 2, seen.Attempt)
	require.Same(t, tx, seen.Tx)
	require.NotNil(t, seen.Logger)
	require.Same(t, stats, seen.Stats)

	require.Len(t, outcomes, 2)
	require.Equal(t, int64(3), outcomes[0].Result.RowsAffected)
	require.Equal(t, "inserted", outcomes[0].Result.Message)
	require.Equal(t, map[string]any{"items_inserted": int64(3)}, outcomes[0].Result.Stats)
	require.Equal(t, int64(3), readBack, "a later hook reads what an earlier one returned")
	require.Equal(t, map[string]any{"items_inserted": int64(3), "set_directly": true}, stats.Snapshot())
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM items`).Scan(&n))
	require.Equal(t, 3, n, "the hook's work committed with the phase's transaction")

	// A failure result is the hook's failure, with its message.
	fail := specs[1]
	fail.Params, fail.DependsOn = map[string]any{"min": 10}, nil
	planned, err = reg.Plan(contract.PhaseAfterDDL, []contract.HookSpec{fail})
	require.NoError(t, err)
	tx, err = conn.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(context.Background()) //nolint:errcheck // rolled back on purpose
	outcomes, err = (&hooks.Executor{}).Run(ctx, info, tx, hooks.NewStats(nil), planned, hooks.RunOptions{})
	var he *hooks.HookError
	require.ErrorAs(t, err, &he)
	require.True(t, he.Failure)
	require.Equal(t, "enough", he.Hook)
	require.ErrorContains(t, err, "too few items")
	require.Len(t, outcomes, 1)
	require.True(t, outcomes[0].Result.Failed)
	require.Equal(t, int64(3), outcomes[0].Result.RowsAffected)
}

// A Context without stats gets a nil Stats interface, not a non-nil interface holding a nil
// pointer.
func TestAdapterNilStats(t *testing.T) {
	t.Parallel()
	var got Stats = (*hooks.Stats)(nil)
	h := adapter{HookFunc(func(_ context.Context, hc *Context) (Result, error) {
		got = hc.Stats
		return Result{Message: "ok"}, nil
	})}
	res, err := h.Run(context.Background(), &hooks.Context{Hook: "h"})
	require.NoError(t, err)
	require.Equal(t, "ok", res.Message)
	require.Nil(t, got)
}

// The public types mirror the worker's own (see the doc of internal/hooks): every field of the
// public Context and Result crosses the adapter, both ways, so that a field added to one of them
// and forgotten in the adapter fails here.
func TestAdapterCarriesEveryField(t *testing.T) {
	t.Parallel()
	// Every field of the worker's Context that the public one has, set to a value that is not
	// its zero one.
	in := &hooks.Context{Stats: hooks.NewStats(nil)}
	iv := reflect.ValueOf(in).Elem()
	pub := reflect.TypeFor[Context]()
	for i := range pub.NumField() {
		f := pub.Field(i)
		dst := iv.FieldByName(f.Name)
		require.True(t, dst.IsValid(), "hooks.Context has no field %s, which the public Context has", f.Name)
		switch {
		case f.Name == "Tx": // a pgx.Tx needs a database; TestAdapterRunsAPublicHookInTheWorker has one
			continue
		case f.Name == "Logger":
			in.Logger = slog.New(slog.DiscardHandler)
			continue
		}
		switch dst.Kind() {
		case reflect.String:
			dst.SetString("v-" + f.Name)
		case reflect.Int:
			dst.SetInt(int64(7 + i))
		case reflect.Pointer:
			require.False(t, dst.IsNil(), "field %s: set it above", f.Name)
		default:
			t.Fatalf("field %s: kind %s is not covered by this test", f.Name, dst.Kind())
		}
	}

	var seen Context
	want := Result{RowsAffected: 3, Stats: map[string]any{"k": 1}, Message: "m", Failed: true, Sampled: true}
	res, err := adapter{HookFunc(func(_ context.Context, hc *Context) (Result, error) {
		seen = *hc
		return want, nil
	})}.Run(context.Background(), in)
	require.NoError(t, err)
	sv := reflect.ValueOf(seen)
	for i := range pub.NumField() {
		name := pub.Field(i).Name
		if name == "Tx" {
			continue
		}
		got, exp := sv.Field(i).Interface(), iv.FieldByName(name).Interface()
		require.Equal(t, exp, got, "the adapter does not carry Context.%s", name)
	}

	rv, wv := reflect.ValueOf(res), reflect.ValueOf(want)
	require.Equal(t, wv.NumField(), rv.NumField(), "Result and hooks.Result have different fields")
	for i := range wv.NumField() {
		name := wv.Type().Field(i).Name
		require.Equal(t, wv.Field(i).Interface(), rv.FieldByName(name).Interface(), "the adapter does not carry Result.%s", name)
	}
}

// The dependency between this package and the worker's internals goes one way: no internal
// package imports the public one.
func TestInternalPackagesDoNotImportThePublicOne(t *testing.T) {
	t.Parallel()
	err := filepath.WalkDir("internal", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		require.NotContains(t, string(data), `"`+thisPackage+`"`, "%s imports package confiture", path)
		return nil
	})
	require.NoError(t, err)
}
