package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// logRecord is one decoded JSON log record.
type logRecord map[string]any

func (r logRecord) msg() string { s, _ := r["msg"].(string); return s }

// captureLogger returns a debug-level JSON logger that carries run attributes, as the phase
// worker's logger does, and a function returning the records written so far.
func captureLogger(t *testing.T) (*slog.Logger, func() []logRecord) {
	t.Helper()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).
		With("run", "run-1", "request_id", "req-1")
	return log, func() []logRecord {
		var out []logRecord
		for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
			var r logRecord
			require.NoError(t, json.Unmarshal([]byte(line), &r), line)
			out = append(out, r)
		}
		return out
	}
}

// requireRecord asserts that r is msg at level with exactly the given fields (besides time,
// level, msg and the logger's run and request_id). A nil field value is only required present.
func requireRecord(t *testing.T, r logRecord, level, msg string, fields map[string]any) {
	t.Helper()
	require.Equal(t, msg, r.msg(), "record %v", r)
	require.Equal(t, level, r["level"], "level of %s", msg)
	require.Equal(t, "run-1", r["run"], "%s carries the logger's attributes", msg)
	require.Equal(t, "req-1", r["request_id"], "%s carries the logger's attributes", msg)
	want := []string{"time", "level", "msg", "run", "request_id"}
	want = slices.AppendSeq(want, maps.Keys(fields))
	require.ElementsMatch(t, want, slices.Collect(maps.Keys(r)), "fields of %s", msg)
	for k, v := range fields {
		if v == nil {
			continue // present, value checked by the caller
		}
		require.Equal(t, v, r[k], "%s.%s", msg, k)
	}
}

func msgs(rs []logRecord) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.msg())
	}
	return out
}

func TestExecutorLogsSuccessfulPhase(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	pool := newPool(t)
	tx := beginTx(t, pool)
	log, records := captureLogger(t)
	_, err := (&Executor{Logger: log}).Run(ctx, testInfo, tx, NewStats(nil), []Planned{
		planned("backfill", func(ctx context.Context, hc *Context) (Result, error) {
			hc.Logger.InfoContext(ctx, "backfill_progress", "rows", 7)
			return Result{RowsAffected: 7}, nil
		}),
		planned("check", insertHook(1)),
	}, RunOptions{})
	require.NoError(t, err)

	rs := records()
	require.Equal(t, []string{
		"executing_hooks",
		"hook_start", "backfill_progress", "hook_completed",
		"hook_start", "hook_completed",
		"phase_completed",
	}, msgs(rs))
	requireRecord(t, rs[0], "INFO", "executing_hooks", map[string]any{
		"phase": "after_ddl", "hook_count": float64(2), "migration": "001_init",
	})
	requireRecord(t, rs[1], "DEBUG", "hook_start", map[string]any{
		"hook": "backfill", "phase": "after_ddl", "migration": "001_init",
	})
	// A hook's own logger carries the run's attributes and the hook's name.
	requireRecord(t, rs[2], "INFO", "backfill_progress", map[string]any{"hook": "backfill", "rows": float64(7)})
	requireRecord(t, rs[3], "INFO", "hook_completed", map[string]any{
		"hook": "backfill", "phase": "after_ddl", "duration_ms": nil, "rows_affected": float64(7), "migration": "001_init",
	})
	require.IsType(t, float64(0), rs[3]["duration_ms"])
	require.GreaterOrEqual(t, rs[3]["duration_ms"].(float64), float64(0))
	requireRecord(t, rs[4], "DEBUG", "hook_start", map[string]any{
		"hook": "check", "phase": "after_ddl", "migration": "001_init",
	})
	requireRecord(t, rs[5], "INFO", "hook_completed", map[string]any{
		"hook": "check", "phase": "after_ddl", "duration_ms": nil, "rows_affected": float64(1), "migration": "001_init",
	})
	requireRecord(t, rs[6], "INFO", "phase_completed", map[string]any{
		"phase": "after_ddl", "hooks_executed": float64(2), "migration": "001_init",
	})
}

func TestExecutorLogsFailedHook(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		hook      HookFunc
		wantError string
		wantStack bool
	}{
		{
			name:      "error",
			hook:      func(context.Context, *Context) (Result, error) { return Result{}, errors.New("disk full") },
			wantError: `hook "bad" in after_ddl: disk full`,
		},
		{
			name:      "panic",
			hook:      func(context.Context, *Context) (Result, error) { panic("nil map") },
			wantError: `hook "bad" in after_ddl panicked: nil map`,
			wantStack: true,
		},
		{
			name: "failure result",
			hook: func(context.Context, *Context) (Result, error) {
				return Result{Failed: true, Message: "3 orphans"}, nil
			},
			wantError: `hook "bad" in after_ddl failed: 3 orphans`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			log, records := captureLogger(t)
			_, err := (&Executor{Logger: log}).Run(testCtx(t), testInfo, nil, NewStats(nil), []Planned{
				planned("bad", tt.hook),
				planned("never", func(context.Context, *Context) (Result, error) { return Result{}, nil }),
			}, RunOptions{})
			require.Error(t, err)

			rs := records()
			require.Equal(t, []string{"executing_hooks", "hook_start", "hook_failed"}, msgs(rs),
				"no record for hooks after the failure, and no phase_completed")
			requireRecord(t, rs[2], "ERROR", "hook_failed", map[string]any{
				"hook": "bad", "phase": "after_ddl", "duration_ms": nil, "error": tt.wantError,
				"migration": "001_init", "stack": nil,
			})
			require.IsType(t, float64(0), rs[2]["duration_ms"])
			stack, ok := rs[2]["stack"].(string)
			require.True(t, ok, "stack is a string")
			if tt.wantStack {
				require.Contains(t, stack, "goroutine")
				require.Contains(t, stack, "runtime/debug.Stack")
			} else {
				require.Empty(t, stack)
			}
		})
	}
}

func TestExecutorLogsEveryFailureWithContinueOnError(t *testing.T) {
	t.Parallel()
	log, records := captureLogger(t)
	ctx := testCtx(t)
	pool := newPool(t)
	tx := beginTx(t, pool)
	_, err := (&Executor{Logger: log}).Run(ctx, testInfo, tx, NewStats(nil), []Planned{
		planned("a", func(context.Context, *Context) (Result, error) { return Result{}, errors.New("first") }),
		planned("b", insertHook(1)),
		planned("c", func(context.Context, *Context) (Result, error) { return Result{Failed: true, Message: "second"}, nil }),
	}, RunOptions{ContinueOnError: true})
	require.ErrorContains(t, err, "first")
	rs := records()
	require.Equal(t, []string{
		"executing_hooks",
		"hook_start", "hook_failed",
		"hook_start", "hook_completed",
		"hook_start", "hook_failed",
	}, msgs(rs))
	require.Equal(t, "a", rs[2]["hook"])
	require.Equal(t, "c", rs[6]["hook"])
	require.Equal(t, `hook "c" in after_ddl failed: second`, rs[6]["error"])
}

func TestExecutorWithoutLogger(t *testing.T) {
	t.Parallel()
	// A nil Logger discards records; hooks still get a usable logger.
	_, err := (&Executor{}).Run(testCtx(t), testInfo, nil, NewStats(nil), []Planned{
		planned("a", func(ctx context.Context, hc *Context) (Result, error) {
			hc.Logger.InfoContext(ctx, "hello")
			return Result{}, nil
		}),
	}, RunOptions{})
	require.NoError(t, err)
}
