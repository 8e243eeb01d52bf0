package logging

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestPerSinkLevels(t *testing.T) {
	t.Parallel()

	path := filepath.Join(t.TempDir(), "worker.log")
	l, console := setup(t, Config{
		Console:          ConsoleConfig{Format: "json", Level: "debug"},
		File:             FileConfig{Path: path, Level: "info"},
		NATS:             NATSConfig{Enabled: true, Level: "error"},
		DropWarnInterval: -1,
	})
	pub := &recordingPublisher{}
	l.SetPublisher(pub)

	ctx := context.Background()
	l.Logger.DebugContext(ctx, "hook_start", "hook", "h")
	l.Logger.InfoContext(ctx, "hook_completed", "hook", "h")
	l.Logger.WarnContext(ctx, "slow")
	l.Logger.ErrorContext(ctx, "hook_failed", "hook", "h")
	require.NoError(t, l.Flush(ctx))

	require.Equal(t, []string{"hook_start", "hook_completed", "slow", "hook_failed"}, msgs(records(t, console.String())))
	file, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, []string{"hook_completed", "slow", "hook_failed"}, msgs(records(t, string(file))), "no debug in the file at info")
	require.Len(t, pub.messages(), 1, "Flush waited for NATS too")
	require.Equal(t, "confiture.logs.error", pub.messages()[0].subject)
	require.Zero(t, l.Dropped())

	// A level no sink takes is not even formatted.
	quiet, _ := setup(t, Config{Console: ConsoleConfig{Level: "warn"}})
	require.False(t, quiet.Logger.Enabled(ctx, slog.LevelInfo))
	require.True(t, quiet.Logger.Enabled(ctx, slog.LevelWarn))
}

func TestConsoleFormats(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		format   string
		terminal bool
		json     bool
	}{
		{"auto", true, false},
		{"auto", false, true},
		{"text", false, false},
		{"json", true, true},
	} {
		var out bytes.Buffer
		l, err := New(Config{Console: ConsoleConfig{Format: tc.format}}, &out, tc.terminal)
		require.NoError(t, err)
		l.Logger.Info("executing_hooks", "phase", "before_ddl", "hook_count", 2)
		require.NoError(t, l.Close())
		if tc.json {
			r := records(t, out.String())
			require.Len(t, r, 1, "%+v", tc)
			require.Equal(t, "before_ddl", r[0]["phase"])
			require.Equal(t, float64(2), r[0]["hook_count"])
		} else {
			require.Contains(t, out.String(), "level=INFO msg=executing_hooks phase=before_ddl hook_count=2", "%+v", tc)
		}
	}
}

func TestFileSink(t *testing.T) {
	t.Parallel()

	dir := filepath.Join(t.TempDir(), "logs", "nested") // created on demand
	path := filepath.Join(dir, "worker.log")
	l, _ := setup(t, Config{
		Console:          ConsoleConfig{Level: "error"},
		File:             FileConfig{Path: path, Level: "debug", MaxSizeMB: 1, MaxBackups: 2, MaxAgeDays: 3, Compress: false},
		DropWarnInterval: -1,
	})
	require.FileExists(t, path, "New opens the file so that a bad path fails at start-up")
	lj := l.file.lj
	require.Equal(t, path, lj.Filename)
	require.Equal(t, 1, lj.MaxSize)
	require.Equal(t, 2, lj.MaxBackups)
	require.Equal(t, 3, lj.MaxAge)
	require.False(t, lj.Compress)

	// Enough records for a few rotations of 1 MB, flushed now and then so that the file's
	// buffer never fills up.
	pad := strings.Repeat("x", 400)
	for i := range 8000 {
		l.Logger.Debug("backfill_progress", "i", i, "pad", pad)
		if i%1000 == 999 {
			require.NoError(t, l.Flush(context.Background()))
		}
	}
	// Old files are removed by lumberjack's background goroutine.
	require.Eventually(t, func() bool {
		entries, err := os.ReadDir(dir)
		return err == nil && len(entries) == 3 // the current file and two backups
	}, waitFor, tick)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		rs := records(t, string(data))
		require.NotEmpty(t, rs, e.Name())
		require.Equal(t, "backfill_progress", rs[0]["msg"])
		require.Equal(t, "DEBUG", rs[0]["level"])
	}
	require.Zero(t, l.Dropped())

	// After Close the file stays closed: records for it are counted, not written.
	require.NoError(t, l.Close())
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	l.Logger.Error("after close")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after)
	require.Equal(t, uint64(1), l.Dropped())
	require.NoError(t, l.Close(), "Close twice")
}

func TestFileSinkBadPath(t *testing.T) {
	t.Parallel()

	blocker := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(blocker, nil, 0o600))
	_, err := New(Config{File: FileConfig{Path: filepath.Join(blocker, "worker.log")}}, &bytes.Buffer{}, false)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "log.file.path")
}

// panickingHandler stands for a broken sink.
type panickingHandler struct{ slog.Handler }

func (panickingHandler) Handle(context.Context, slog.Record) error { panic("sink exploded") }
func (h panickingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return panickingHandler{h.Handler.WithAttrs(as)}
}

// failingHandler returns an error for every record.
type failingHandler struct{ slog.Handler }

func (failingHandler) Handle(context.Context, slog.Record) error { return errors.New("disk full") }
func (h failingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return failingHandler{h.Handler.WithAttrs(as)}
}

func TestFailingSinkDoesNotStopTheOthers(t *testing.T) {
	t.Parallel()

	path := filepath.Join(t.TempDir(), "worker.log")
	enabled := slog.NewJSONHandler(io.Discard, nil)
	l, console := setup(t, Config{
		Console: ConsoleConfig{Format: "json"},
		File:    FileConfig{Path: path},
		// The test calls reportDrops itself, to see exactly what one report says.
		DropWarnInterval: -1,
	},
		extraSink{"boom", panickingHandler{enabled}},
		extraSink{"full", failingHandler{enabled}},
	)

	logger := l.Logger.With("run", "r1")
	for range 3 {
		logger.Info("hook_completed", "hook", "h")
	}
	require.NoError(t, l.Flush(context.Background()))
	rs := records(t, console.String())
	require.Len(t, rs, 3, "the console got every record")
	require.Equal(t, "r1", rs[2]["run"])
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Len(t, records(t, string(data)), 3, "the file got every record")
	require.Equal(t, uint64(6), l.Dropped(), "three records lost by each broken sink")

	// The drops are reported on the other sinks, once per sink, with the reason. Each broken
	// sink also loses the other's report: that is counted, but not reported again, or two
	// broken sinks would report each other's reports forever.
	l.reportDrops()
	l.reportDrops()
	require.NoError(t, l.Flush(context.Background()))
	rs = records(t, console.String())[3:]
	require.Equal(t, []string{MsgRecordsDropped, MsgRecordsDropped}, msgs(rs))
	got := map[string]map[string]any{}
	for _, r := range rs {
		require.Equal(t, "WARN", r["level"])
		got[r["sink"].(string)] = r
	}
	require.Equal(t, float64(3), got["boom"]["dropped"])
	require.Equal(t, float64(3), got["boom"]["total"])
	require.Contains(t, got["boom"]["error"], "sink exploded")
	require.Equal(t, float64(3), got["full"]["dropped"])
	require.Equal(t, float64(4), got["full"]["total"], "with boom's report")
	require.Equal(t, "disk full", got["full"]["error"])
	require.Equal(t, uint64(8), l.Dropped())

	data, err = os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, []string{"hook_completed", "hook_completed", "hook_completed", MsgRecordsDropped, MsgRecordsDropped},
		msgs(records(t, string(data))), "the file got the reports too")
}

func TestCollectors(t *testing.T) {
	t.Parallel()

	l, _ := setup(t, Config{
		File:             FileConfig{Path: filepath.Join(t.TempDir(), "worker.log")},
		NATS:             NATSConfig{Enabled: true, Buffer: 2},
		DropWarnInterval: -1,
	})
	for range 5 {
		l.Logger.Info("queued without a publisher")
	}
	require.Equal(t, uint64(3), l.Dropped(), "two fit in the buffer")

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(l.Collectors()...)
	families, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, families, 1)
	require.Equal(t, "confiture_log_records_dropped_total", families[0].GetName())
	values := map[string]float64{}
	for _, m := range families[0].GetMetric() {
		require.Len(t, m.GetLabel(), 1)
		values[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	require.Equal(t, map[string]float64{"console": 0, "file": 0, "nats": 3}, values)
}

func TestWithAttributesReachEverySink(t *testing.T) {
	t.Parallel()

	path := filepath.Join(t.TempDir(), "worker.log")
	l, console := setup(t, Config{
		Console:          ConsoleConfig{Format: "json"},
		File:             FileConfig{Path: path},
		NATS:             NATSConfig{Enabled: true},
		DropWarnInterval: -1,
	})
	pub := &recordingPublisher{}
	l.SetPublisher(pub)

	log := l.Logger.With("run", "run-42", "request_id", "req-1", "target", "default", "attempt", 1, "job_id", 7)
	log.WithGroup("hook_result").Info("hook_completed", "rows_affected", 10)

	require.NoError(t, l.Flush(context.Background()))
	require.Len(t, pub.messages(), 1)
	file, err := os.ReadFile(path)
	require.NoError(t, err)
	outputs := map[string][]byte{"console": []byte(console.String()), "file": file, "nats": pub.messages()[0].data}
	for sink, out := range outputs {
		rs := records(t, string(out))
		require.Len(t, rs, 1, sink)
		r := rs[0]
		require.Equal(t, "run-42", r["run"], sink)
		require.Equal(t, "req-1", r["request_id"], sink)
		require.Equal(t, float64(7), r["job_id"], sink)
		require.Equal(t, map[string]any{"rows_affected": float64(10)}, r["hook_result"], sink)
	}
}
