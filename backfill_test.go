package confiture

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// memCheckpoints keeps a checkpoint in a table of the test database.
type memCheckpoints struct{}

func (memCheckpoints) Load(ctx context.Context, tx pgx.Tx) (json.RawMessage, error) {
	var data []byte
	err := tx.QueryRow(ctx, `SELECT data FROM ckpt`).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return data, err
}

func (memCheckpoints) Save(ctx context.Context, tx pgx.Tx, data json.RawMessage, _ int64) error {
	if _, err := tx.Exec(ctx, `DELETE FROM ckpt`); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO ckpt VALUES ($1)`, data)
	return err
}

// A backfill defined in Go is the worker's batched backfill: declared by name, tuned by the
// declaration, never adapted into a transactional Go hook.
func TestBackfillDefinedInGo(t *testing.T) {
	t.Parallel()
	r := newRegistry()
	def := Backfill{Table: "accounts", Set: "counter = counter + 1", Where: "NOT archived", BatchSize: 50}.
		Definition("fill_accounts", "")
	require.NoError(t, r.register(def, "example.com/hooks"))
	require.ErrorContains(t, r.register(Backfill{Set: "x = 1"}.Definition("no_table", ""), "example.com/hooks"), "table is required")
	require.ErrorContains(t, r.register(Backfill{Table: "t", Set: "x = 1", Update: "UPDATE t SET x = 1 WHERE {{range}}"}.Definition("both", ""), "example.com/hooks"),
		"set and update exclude each other")
	reg := internalRegistry(t, r)

	_, err := reg.Plan(contract.PhaseAfterDDL, []contract.HookSpec{{Phase: contract.PhaseAfterDDL, Name: "f", Hook: "fill_accounts",
		Params: map[string]any{"table": "other"}}})
	require.ErrorIs(t, err, hooks.ErrInvalidHooks, "a declaration tunes the backfill; it cannot change its table")
	_, err = reg.Plan(contract.PhaseAfterValidation, []contract.HookSpec{{Phase: contract.PhaseAfterValidation, Name: "f", Hook: "fill_accounts"}})
	require.ErrorIs(t, err, hooks.ErrInvalidHooks)

	planned, err := reg.Plan(contract.PhaseAfterDDL, []contract.HookSpec{{Phase: contract.PhaseAfterDDL, Name: "f", Hook: "fill_accounts",
		Params: map[string]any{"max_batch_size": 70}}})
	require.NoError(t, err)
	require.Len(t, planned, 1)
	require.False(t, planned[0].Def.Transactional)
	batched, ok := planned[0].Hook.(hooks.Batched)
	require.True(t, ok, "the worker runs it in batches")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, testdb.New(t))
	require.NoError(t, err)
	defer pool.Close()
	_, err = pool.Exec(ctx, `CREATE TABLE ckpt (data jsonb);
		CREATE TABLE accounts (id int PRIMARY KEY, archived boolean NOT NULL, counter int NOT NULL DEFAULT 0);
		INSERT INTO accounts SELECT g, g % 10 = 0 FROM generate_series(1, 1000) g;`)
	require.NoError(t, err)
	var sizes []int
	out, err := batched.RunBatches(ctx, &hooks.BatchContext{
		Context: hooks.Context{Hook: "f"}, DB: pool, Checkpoints: memCheckpoints{},
		Progress: func(p hooks.BatchProgress) { sizes = append(sizes, p.BatchSize) },
	})
	require.NoError(t, err)
	require.True(t, out.Done)
	require.Equal(t, int64(900), out.Rows)
	for _, s := range sizes {
		require.LessOrEqual(t, s, 70, "the declaration's max_batch_size applies")
	}
	var wrong int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE counter <> CASE WHEN archived THEN 0 ELSE 1 END`).Scan(&wrong))
	require.Zero(t, wrong)
}
