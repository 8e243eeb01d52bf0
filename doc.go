// Package confiture lets a Go package add hooks to the confiture worker, the way a
// database/sql driver or a Caddy module adds itself: the package registers its hooks from
// init, and a custom worker is a main function of a few lines that imports it.
//
// This is the only public API of the module; the worker itself is internal. A hook registered
// here runs inside the phase's transaction on the target (Context.Tx), so its work commits with
// the phase, or not at all, and a retried phase never repeats it.
//
// # A hook package
//
// A hook type is a Definition: a name that hooks files use (`hook: row_count_at_least`), a JSON
// Schema for its parameters, which the worker checks when a request arrives, and New, which
// builds a Hook from one declaration's parameters.
//
//	// Package rowcount provides the row_count_at_least hook.
//	package rowcount
//
//	import (
//		"context"
//		"encoding/json"
//		"fmt"
//
//		"github.com/jackc/pgx/v5"
//
//		"github.com/confiture-io/confiture-worker"
//	)
//
//	func init() {
//		confiture.MustRegister(confiture.Definition{
//			Name:        "row_count_at_least",
//			Description: "fail unless a table holds at least min rows",
//			Version:     "1.0.0",
//			Phases:      []string{"after_ddl", "after_validation"},
//			ParamsSchema: json.RawMessage(`{
//				"type": "object", "additionalProperties": false, "required": ["table", "min"],
//				"properties": {
//					"table": {"type": "string", "minLength": 1},
//					"min":   {"type": "integer", "minimum": 0}}}`),
//			Example: map[string]any{"table": "products", "min": 100},
//			New:     newHook,
//		})
//	}
//
//	type params struct {
//		Table string `json:"table"`
//		Min   int64  `json:"min"`
//	}
//
//	func newHook(raw map[string]any) (confiture.Hook, error) {
//		var p params
//		if err := confiture.DecodeParams(raw, &p); err != nil {
//			return nil, err
//		}
//		return confiture.HookFunc(func(ctx context.Context, hc *confiture.Context) (confiture.Result, error) {
//			var n int64
//			q := "SELECT count(*) FROM " + pgx.Identifier{p.Table}.Sanitize()
//			if err := hc.Tx.QueryRow(ctx, q).Scan(&n); err != nil {
//				return confiture.Result{}, err
//			}
//			res := confiture.Result{RowsAffected: n, Stats: map[string]any{p.Table + "_rows": n}}
//			if n < p.Min {
//				res.Failed = true
//				res.Message = fmt.Sprintf("%s holds %d rows, fewer than %d", p.Table, n, p.Min)
//			}
//			return res, nil
//		}), nil
//	}
//
// # A custom worker
//
// The custom worker's main package imports the hook packages for their side effect and calls
// daemon.Main (package github.com/confiture-io/confiture-worker/daemon), which runs the worker's
// command line (the daemon, `hooks list`, `hooks describe`) with the registered hooks added to
// the built-in ones. This package does not import the daemon, so a hook package builds without
// the worker's dependencies:
//
//	package main
//
//	import (
//		"github.com/confiture-io/confiture-worker/daemon"
//
//		_ "example.com/custom-worker/rowcount"
//	)
//
//	func main() {
//		daemon.Main()
//	}
//
// A migration then uses the hook in its hooks file:
//
//	after_validation:
//	  - name: enough_products
//	    hook: row_count_at_least
//	    params:
//	      table: products
//	      min: 100
//
// `worker hooks list` shows the hook with the import path of the package that registered it,
// and `worker hooks describe row_count_at_least` its parameter schema and a snippet like the
// one above. examples/custom-worker in this repository is this example as a module of its own,
// and docs/PLUGIN_DEVELOPMENT.md explains it step by step, with testing.
//
// # Failures and retries
//
// A hook fails its phase by returning an error, by returning a Result with Failed set, or by
// panicking. The phase's transaction is rolled back, and the phase is retried with back-off
// unless the error is marked with Permanent (or is a PostgreSQL error that retrying cannot
// fix, such as a syntax error). When the phase fails for good, the migration's on_error hooks
// run and the run fails.
package confiture
