// Package rowcount provides the row_count_at_least hook for the confiture worker: it fails its
// phase unless a table holds at least a given number of rows. Import it for its side effect:
//
//	import _ "example.com/custom-worker/rowcount"
package rowcount

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker"
)

// Name is the hook's name in hooks files (`hook: row_count_at_least`).
const Name = "row_count_at_least"

func init() {
	confiture.MustRegister(confiture.Definition{
		Name:        Name,
		Description: "fail unless a table holds at least min rows",
		Version:     "1.0.0",
		Phases:      []string{"before_validation", "after_ddl", "after_validation"},
		ParamsSchema: json.RawMessage(`{
			"type": "object",
			"additionalProperties": false,
			"required": ["table", "min"],
			"properties": {
				"table": {"type": "string", "minLength": 1, "description": "table to count, optionally schema-qualified (schema.table)"},
				"min":   {"type": "integer", "minimum": 0, "description": "fewest rows the table may hold"}
			}
		}`),
		Example: map[string]any{"table": "products", "min": 100},
		New:     New,
	})
}

// Params are the hook's parameters.
type Params struct {
	Table string `json:"table"`
	Min   int64  `json:"min"`
}

// New builds the hook from a declaration's parameters. The worker has already checked them
// against the schema; New checks again so that it is safe to call on its own (in tests).
func New(params map[string]any) (confiture.Hook, error) {
	var p Params
	if err := confiture.DecodeParams(params, &p); err != nil {
		return nil, err
	}
	if strings.TrimSpace(p.Table) == "" {
		return nil, errors.New(`parameter "table" is required`)
	}
	if p.Min < 0 {
		return nil, fmt.Errorf(`parameter "min" must be at least 0, got %d`, p.Min)
	}
	parts := strings.Split(p.Table, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf(`parameter "table": want table or schema.table, got %q`, p.Table)
	}
	return &hook{table: pgx.Identifier(parts), name: p.Table, min: p.Min}, nil
}

type hook struct {
	table pgx.Identifier
	name  string
	min   int64
}

// Run counts the table's rows in the phase's transaction, so it sees what earlier phases and
// hooks of the migration did. It changes nothing, so a retry is harmless.
func (h *hook) Run(ctx context.Context, hc *confiture.Context) (confiture.Result, error) {
	var n int64
	if err := hc.Tx.QueryRow(ctx, "SELECT count(*) FROM "+h.table.Sanitize()).Scan(&n); err != nil {
		return confiture.Result{}, fmt.Errorf("count rows of %s: %w", h.name, err)
	}
	res := confiture.Result{RowsAffected: n, Stats: map[string]any{h.name + "_rows": n}}
	if n < h.min {
		res.Failed = true
		res.Message = fmt.Sprintf("table %s holds %d rows, fewer than the %d required", h.name, n, h.min)
		return res, nil
	}
	res.Message = fmt.Sprintf("table %s holds %d rows (at least %d required)", h.name, n, h.min)
	return res, nil
}
