package hooks

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

func TestRetryable(t *testing.T) {
	t.Parallel()
	pg := func(code string) error { return &pgconn.PgError{Code: code, Message: "m"} }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain error", errors.New("connection reset"), true},
		{"context deadline", context.DeadlineExceeded, true},
		{"serialization failure 40001", pg("40001"), true},
		{"deadlock 40P01", pg("40P01"), true},
		{"lock not available 55P03", pg("55P03"), true},
		{"query canceled 57014", pg("57014"), true},
		{"connection failure 08006", pg("08006"), true},
		{"too many connections 53300", pg("53300"), true},
		{"syntax error 42601", pg("42601"), false},
		{"unique violation 23505", pg("23505"), false},
		{"invalid text representation 22P02", pg("22P02"), false},
		{"raise exception P0001", pg("P0001"), false},
		{"undefined table 42P01", pg("42P01"), false},
		{"wrapped retryable", fmt.Errorf("phase: %w", pg("40001")), true},
		{"wrapped permanent", fmt.Errorf("phase: %w", pg("23505")), false},
		{"in a hook error", &HookError{Hook: "h", Err: fmt.Errorf("stmt: %w", pg("42601"))}, false},
		{"retryable in a hook error", &HookError{Hook: "h", Err: pg("40P01")}, true},
		{"permanent plain", Permanent(errors.New("bad config")), false},
		{"permanent retryable sqlstate", Permanent(pg("40001")), false},
		{"wrapped permanent marker", fmt.Errorf("ctx: %w", Permanent(pg("40001"))), false},
		{"joined with a permanent one", errors.Join(errors.New("x"), Permanent(errors.New("y"))), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Retryable(tt.err))
		})
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	require.NoError(t, Permanent(nil))
	base := &pgconn.PgError{Code: "40001", Message: "could not serialize"}
	err := Permanent(base)
	require.Equal(t, base.Error(), err.Error(), "Permanent does not change the message")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "Permanent keeps the cause reachable")
	require.Same(t, base, pgErr)
}

func TestDecodeParams(t *testing.T) {
	t.Parallel()
	type params struct {
		SQL   string `json:"sql"`
		Limit int    `json:"limit,omitempty"`
	}
	var p params
	require.NoError(t, DecodeParams(map[string]any{"sql": "SELECT 1", "limit": 10}, &p))
	require.Equal(t, params{SQL: "SELECT 1", Limit: 10}, p)

	var empty params
	require.NoError(t, DecodeParams(nil, &empty))
	require.Equal(t, params{}, empty)

	err := DecodeParams(map[string]any{"sql": "SELECT 1", "limt": 10}, &params{})
	require.ErrorContains(t, err, `unknown field "limt"`)
	require.ErrorContains(t, err, "parameters")

	require.ErrorContains(t, DecodeParams(map[string]any{"limit": "ten"}, &params{}), "parameters")
	require.ErrorContains(t, DecodeParams(map[string]any{"sql": make(chan int)}, &params{}), "parameters")
}
