package hooks

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// newBuiltin builds the built-in hook name with params.
func newBuiltin(t *testing.T, name string, params map[string]any) (Hook, error) {
	t.Helper()
	def, ok := builtinRegistry(t).Lookup(name)
	require.True(t, ok, "built-in %q", name)
	return def.New(params)
}

func mustBuiltin(t *testing.T, name string, params map[string]any) Hook {
	t.Helper()
	h, err := newBuiltin(t, name, params)
	require.NoError(t, err)
	return h
}

func TestBuiltinsRegistered(t *testing.T) {
	t.Parallel()
	defs := builtinRegistry(t).List()
	require.Len(t, defs, 2)
	require.Equal(t, "assert", defs[0].Name)
	require.Equal(t, "sql", defs[1].Name)
	for _, d := range defs {
		require.Equal(t, SourceBuiltin, d.Source)
		require.NotEmpty(t, d.Description)
		require.Empty(t, d.Phases, "built-ins may run in every hook phase")
	}
}

func TestSQLHookRunsStatements(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	pool := newPool(t)
	tx := beginTx(t, pool)
	h := mustBuiltin(t, "sql", map[string]any{"sql": `
		INSERT INTO t (id) VALUES (1), (2), (3);
		-- a comment; with a semicolon
		UPDATE t SET v = 10 WHERE id >= 2;
		DELETE FROM t WHERE id = 3;
		INSERT INTO t (id, v) VALUES (4, length('a;b'))
	`})
	res, err := h.Run(ctx, &Context{Tx: tx})
	require.NoError(t, err)
	require.EqualValues(t, 3+2+1+1, res.RowsAffected, "rows affected by every statement, summed")
	require.False(t, res.Failed)
	require.Equal(t, []int{1, 2, 4}, ids(t, tx))
	var v int
	require.NoError(t, tx.QueryRow(ctx, `SELECT v FROM t WHERE id = 4`).Scan(&v))
	require.Equal(t, 3, v)
}

func TestSQLHookErrorNamesTheStatement(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	pool := newPool(t)
	tx := beginTx(t, pool)
	h := mustBuiltin(t, "sql", map[string]any{"sql": "INSERT INTO t (id) VALUES (1);\n\nSELECT * FROM missing_table"})
	res, err := h.Run(ctx, &Context{Tx: tx})
	require.Error(t, err)
	require.Contains(t, err.Error(), "line 3")
	require.Contains(t, err.Error(), "SELECT * FROM missing_table")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "the server's error is kept for Retryable")
	require.Equal(t, "42P01", pgErr.Code)
	require.EqualValues(t, 1, res.RowsAffected, "rows of the statements before the failure")
}

func TestSQLHookRejectedAtNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		params map[string]any
		want   []string
	}{
		{"commit", map[string]any{"sql": "INSERT INTO t (id) VALUES (1);\nCOMMIT;"}, []string{"line 2", "COMMIT", "may not control"}},
		{"begin", map[string]any{"sql": "BEGIN;\nINSERT INTO t (id) VALUES (1)"}, []string{"line 1", "BEGIN", "may not control"}},
		{"rollback", map[string]any{"sql": "SELECT 1;\nSELECT 2;\nROLLBACK"}, []string{"line 3", "ROLLBACK"}},
		{"create index concurrently", map[string]any{"sql": "SELECT 1;\nCREATE INDEX CONCURRENTLY t_v ON t (v)"}, []string{"line 2", "CREATE INDEX CONCURRENTLY", "migration's SQL"}},
		{"vacuum", map[string]any{"sql": "\n\n\nVACUUM t"}, []string{"line 4", "VACUUM", "migration's SQL"}},
		{"empty", map[string]any{"sql": ""}, []string{`"sql" is required`}},
		{"blank", map[string]any{"sql": "  \n\t "}, []string{`"sql" is required`}},
		{"comments only", map[string]any{"sql": "-- nothing\n;;"}, []string{"no statement"}},
		{"missing", nil, []string{`"sql" is required`}},
		{"unknown parameter", map[string]any{"sqll": "SELECT 1"}, []string{"sqll"}},
		{"wrong type", map[string]any{"sql": 42}, []string{"parameters"}},
		{"unterminated string", map[string]any{"sql": "SELECT 'oops"}, []string{"line 1", "unterminated"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := newBuiltin(t, "sql", tt.params)
			require.Error(t, err)
			require.Nil(t, h)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestSQLHookAllowsSavepoints(t *testing.T) {
	t.Parallel()
	_, err := newBuiltin(t, "sql", map[string]any{"sql": "SAVEPOINT s; SELECT 1; ROLLBACK TO SAVEPOINT s; RELEASE SAVEPOINT s"})
	require.NoError(t, err)
}

func TestAssertHook(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	_, err := pool.Exec(testCtx(t), `INSERT INTO t (id) VALUES (1), (2)`)
	require.NoError(t, err)
	tests := []struct {
		name       string
		sql        string
		message    string
		wantFailed bool
		wantMsg    []string
		wantErr    string
	}{
		{name: "true", sql: "SELECT count(*) = 2 FROM t"},
		{name: "true with trailing semicolon", sql: "SELECT true;"},
		{name: "false", sql: "SELECT count(*) = 0 FROM t", message: "t must be empty", wantFailed: true,
			wantMsg: []string{"t must be empty", "returned false"}},
		{name: "null", sql: "SELECT NULL::boolean", message: "needs a verdict", wantFailed: true,
			wantMsg: []string{"needs a verdict", "NULL"}},
		{name: "no row", sql: "SELECT true FROM t WHERE id = 99", message: "row 99 must exist", wantFailed: true,
			wantMsg: []string{"row 99 must exist", "no row"}},
		{name: "false without message names the query", sql: "SELECT 1 > 2", wantFailed: true,
			wantMsg: []string{"returned false", "SELECT 1 > 2"}},
		{name: "integer column", sql: "SELECT 1", wantErr: "assert query"},
		{name: "text column", sql: "SELECT 'yes'::text", wantErr: "assert query"},
		{name: "sql error", sql: "SELECT x FROM missing_table", wantErr: "missing_table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			tx := beginTx(t, pool)
			params := map[string]any{"sql": tt.sql}
			if tt.message != "" {
				params["message"] = tt.message
			}
			res, err := mustBuiltin(t, "assert", params).Run(ctx, &Context{Tx: tx})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantFailed, res.Failed)
			if !tt.wantFailed {
				require.EqualValues(t, 1, res.RowsAffected)
				return
			}
			for _, w := range tt.wantMsg {
				require.Contains(t, res.Message, w)
			}
		})
	}
}

func TestAssertFailureFailsThePhase(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	pool := newPool(t)
	tx := beginTx(t, pool)
	r := builtinRegistry(t)
	ps, err := r.Plan(contract.PhaseAfterValidation, []contract.HookSpec{
		{Phase: contract.PhaseAfterValidation, Name: "no_rows", Hook: "assert", Params: map[string]any{
			"sql": "SELECT count(*) > 0 FROM t", "message": "t must have rows",
		}},
		{Phase: contract.PhaseAfterValidation, Name: "after", Hook: "sql", Params: map[string]any{"sql": "INSERT INTO t (id) VALUES (1)"}},
	})
	require.NoError(t, err)
	info := testInfo
	info.Phase = contract.PhaseAfterValidation
	outs, err := (&Executor{}).Run(ctx, info, tx, NewStats(nil), ps, RunOptions{})
	var he *HookError
	require.ErrorAs(t, err, &he)
	require.True(t, he.Failure)
	require.Equal(t, "no_rows", he.Hook)
	require.Contains(t, err.Error(), "t must have rows")
	require.Len(t, outs, 1)
}

func TestAssertRejectedAtNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		params map[string]any
		want   string
	}{
		{"two statements", map[string]any{"sql": "SELECT true; SELECT false"}, "exactly one query, found 2"},
		{"empty", map[string]any{"sql": ""}, `"sql" is required`},
		{"missing", map[string]any{"message": "m"}, `"sql" is required`},
		{"unknown parameter", map[string]any{"sql": "SELECT true", "msg": "x"}, `"msg"`},
		{"transaction control", map[string]any{"sql": "COMMIT"}, "line 1"},
		{"non-transactional", map[string]any{"sql": "VACUUM"}, "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := newBuiltin(t, "assert", tt.params)
			require.ErrorContains(t, err, tt.want)
			require.Nil(t, h)
		})
	}
}
