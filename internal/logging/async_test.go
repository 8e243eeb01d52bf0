package logging

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stalledWriter is a standard error that nobody reads any more (a log shipper that stopped
// reading the pipe): every Write blocks until release is closed.
type stalledWriter struct {
	release chan struct{}
	entered chan struct{} // closed when the first Write starts
	once    sync.Once
}

func (w *stalledWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return len(p), nil
}

// within fails the test when f does not return within d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	select {
	case <-done:
	case <-deadline.C:
		t.Fatalf("%s blocked on a stalled console", what)
	}
}

// TestStalledConsoleNeverBlocksTheLogger logs 10,000 records while the console's writer never
// returns. The logger keeps its pace, the console's drops are counted, the file still gets
// the records, and Close does not wait for the console forever.
func TestStalledConsoleNeverBlocksTheLogger(t *testing.T) {
	t.Parallel()

	path := filepath.Join(t.TempDir(), "worker.log")
	console := &stalledWriter{release: make(chan struct{}), entered: make(chan struct{})}
	// Deferred, so it runs after Close: the stuck Write returns and the goroutine ends.
	defer close(console.release)
	l, err := newLogging(Config{
		Console:          ConsoleConfig{Format: "json", Level: "debug"},
		File:             FileConfig{Path: path, Level: "debug"},
		DropWarnInterval: time.Hour, // only the final report at Close
	}, console, false)
	require.NoError(t, err)
	l.closeWait = 20 * time.Millisecond
	consoleSink, fileSink := l.sinks[0], l.sinks[1]
	require.Equal(t, SinkConsole, consoleSink.name)
	require.Equal(t, SinkFile, fileSink.name)

	// 10,000 records take a few milliseconds; a blocked logger never ends.
	within(t, 10*time.Second, "the logger", func() {
		log := l.Logger.With("run", "r")
		for i := range 10_000 {
			log.Info("hook_completed", "hook", "h", "i", i)
		}
	})
	within(t, 10*time.Second, "the console's first write", func() { <-console.entered })
	require.GreaterOrEqual(t, consoleSink.dropped.Load(), uint64(10_000-asyncBuffer-1),
		"at most the buffer and one in flight got through")
	require.Contains(t, *consoleSink.lastErr.Load(), "buffer full: the console sink's writer is slow or stalled")

	// The file keeps up; Flush says that the console does not.
	l.Logger.Info("after the flood")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = l.Flush(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "flush the console log sink")
	require.NotContains(t, err.Error(), "file")
	require.NoError(t, l.fileOut.flush(context.Background()))

	within(t, 10*time.Second, "Close", func() { err = l.Close() })
	require.NoError(t, err)
	within(t, 10*time.Second, "a record after Close", func() { l.Logger.Info("after close") })
	require.GreaterOrEqual(t, consoleSink.dropped.Load(), uint64(10_000),
		"what the console's buffer held at Close, and what came after, is dropped too")

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	rs := records(t, string(data))
	var hooks []map[string]any
	for _, r := range rs {
		if r["msg"] == "hook_completed" {
			hooks = append(hooks, r)
		}
	}
	require.GreaterOrEqual(t, len(hooks), 10_000-int(fileSink.dropped.Load()), "every record the file did not drop reached it")
	for i := 1; i < len(hooks); i++ {
		require.Less(t, hooks[i-1]["i"].(float64), hooks[i]["i"].(float64), "in order")
	}
	require.NotNil(t, find(rs, "after the flood"))
	report := find(rs, MsgRecordsDropped)
	require.NotNil(t, report, "Close reports the console's drops on the file")
	require.Equal(t, SinkConsole, report["sink"])
	require.GreaterOrEqual(t, report["total"], float64(10_000-asyncBuffer-1))
	require.Contains(t, report["error"], "buffer full")
}
