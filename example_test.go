package confiture_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker"
)

// A hook package registers its hooks from init with MustRegister. This one fails a phase unless
// a table is not empty.
func ExampleMustRegister() {
	type params struct {
		Table string `json:"table"`
	}
	confiture.MustRegister(confiture.Definition{
		Name:        "example_not_empty",
		Description: "fail unless a table holds at least one row",
		Version:     "1.0.0",
		Phases:      []string{"after_ddl", "after_validation"},
		ParamsSchema: json.RawMessage(`{
			"type": "object", "additionalProperties": false, "required": ["table"],
			"properties": {"table": {"type": "string", "minLength": 1}}}`),
		Example: map[string]any{"table": "customers"},
		New: func(raw map[string]any) (confiture.Hook, error) {
			var p params
			if err := confiture.DecodeParams(raw, &p); err != nil {
				return nil, err
			}
			return confiture.HookFunc(func(ctx context.Context, hc *confiture.Context) (confiture.Result, error) {
				var exists bool
				q := "SELECT EXISTS (SELECT FROM " + pgx.Identifier{p.Table}.Sanitize() + ")"
				if err := hc.Tx.QueryRow(ctx, q).Scan(&exists); err != nil {
					return confiture.Result{}, err
				}
				if !exists {
					return confiture.Result{Failed: true, Message: p.Table + " is empty"}, nil
				}
				return confiture.Result{Message: p.Table + " has rows"}, nil
			}), nil
		},
	})
	for _, d := range confiture.Hooks() {
		if d.Name == "example_not_empty" {
			fmt.Println(d.Name, d.Version, d.Phases)
		}
	}
	// Output: example_not_empty 1.0.0 [after_ddl after_validation]
}

// A backfill defined in Go: its table and statement are reviewed with the code, and a hooks
// file declares it by name (`hook: fill_email_lower`), tuning it if it wants
// (`params: {rows_per_second: 20000}`).
func ExampleBackfill_Definition() {
	confiture.MustRegister(confiture.Backfill{
		Table:       "users",
		Set:         "email_lower = lower(email)",
		Where:       "email_lower IS NULL",
		TargetBatch: 100 * time.Millisecond,
	}.Definition("fill_email_lower", "fill users.email_lower"))
	for _, d := range confiture.Hooks() {
		if d.Name == "fill_email_lower" {
			fmt.Println(d.Name, d.Phases)
		}
	}
	// Output: fill_email_lower [before_ddl after_ddl cleanup]
}

// Two packages registering one name: the error names both, by import path.
func TestDuplicateAcrossPackages(t *testing.T) {
	t.Parallel()
	def := confiture.Definition{
		Name: "cross_package_probe",
		New:  func(map[string]any) (confiture.Hook, error) { return nil, nil },
	}
	require.NoError(t, confiture.Register(def))
	err := confiture.RegisterFromPackageConfiture(def)
	require.EqualError(t, err, `confiture: hook "cross_package_probe" registered by github.com/confiture-io/confiture-worker`+
		` is already registered by github.com/confiture-io/confiture-worker_test`)
}
