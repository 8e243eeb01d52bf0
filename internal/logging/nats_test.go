package logging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/syncbuf"
)

func TestNATSSinkPublishesOnLevelSubjects(t *testing.T) {
	t.Parallel()

	nc := startNATS(t)
	sub, err := nc.SubscribeSync("confiture.logs.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	l, _ := setup(t, Config{NATS: NATSConfig{Enabled: true, Level: "info"}, DropWarnInterval: -1})
	l.SetPublisher(nc) // *nats.Conn is a Publisher

	log := l.Logger.With("run", "run-7", "target", "default")
	log.Debug("hook_start", "hook", "h") // below the sink's level
	log.Info("hook_completed", "hook", "h", "duration_ms", 12, "rows_affected", 3)
	log.Error("hook_failed", "hook", "h", "error", errors.New("boom"))

	info, err := sub.NextMsg(waitFor)
	require.NoError(t, err)
	require.Equal(t, "confiture.logs.info", info.Subject)
	var r map[string]any
	require.NoError(t, json.Unmarshal(info.Data, &r))
	require.Equal(t, "hook_completed", r["msg"])
	require.Equal(t, "INFO", r["level"])
	require.Equal(t, "run-7", r["run"])
	require.Equal(t, "default", r["target"])
	require.Equal(t, float64(12), r["duration_ms"])
	require.Equal(t, float64(3), r["rows_affected"])
	require.NotContains(t, string(info.Data), "\n", "one record, no trailing newline")

	failed, err := sub.NextMsg(waitFor)
	require.NoError(t, err)
	require.Equal(t, "confiture.logs.error", failed.Subject)
	require.NoError(t, json.Unmarshal(failed.Data, &r))
	require.Equal(t, "hook_failed", r["msg"])
	require.Equal(t, "boom", r["error"])

	_, err = sub.NextMsg(50 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "the debug record was not published")
	require.Zero(t, l.Dropped())
}

func TestNATSSinkBuffersUntilThePublisherIsSet(t *testing.T) {
	t.Parallel()

	l, _ := setup(t, Config{NATS: NATSConfig{Enabled: true, Buffer: 3, SubjectPrefix: "acme.logs"}, DropWarnInterval: -1})
	for i := range 5 {
		l.Logger.Warn("start-up", "i", i)
	}
	require.Equal(t, uint64(2), l.Dropped(), "the buffer holds three")

	pub := &recordingPublisher{}
	l.SetPublisher(pub)
	require.NoError(t, l.Flush(context.Background()))
	ms := pub.messages()
	require.Len(t, ms, 3)
	for i, m := range ms {
		require.Equal(t, "acme.logs.warn", m.subject)
		require.Contains(t, string(m.data), fmt.Sprintf(`"i":%d`, i), "in order")
	}

	// Taken away again (the connection is closing): records wait instead of failing.
	l.SetPublisher(nil)
	l.Logger.Info("while closing")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, l.Flush(ctx), context.DeadlineExceeded)
	require.Len(t, pub.messages(), 3)
	l.SetPublisher(pub)
	require.NoError(t, l.Flush(context.Background()))
	require.Len(t, pub.messages(), 4)
}

// TestDeadPublisherNeverBlocksTheLogger logs 10,000 records while NATS cannot take any: a
// publisher that blocks forever, and no publisher at all. The logger keeps its pace, the
// drops are counted, and a warning on the console says so.
func TestDeadPublisherNeverBlocksTheLogger(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name string
		pub  func(t *testing.T) Publisher
	}{
		{"blocking", func(t *testing.T) Publisher {
			release := make(chan struct{})
			t.Cleanup(func() { close(release) }) // before setup's Close: cleanups run last first
			return blockingPublisher{release: release}
		}},
		{"never set", func(*testing.T) Publisher { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, console := setup(t, Config{
				Console:          ConsoleConfig{Format: "json", Level: "warn"},
				NATS:             NATSConfig{Enabled: true, Level: "debug", Buffer: 16},
				DropWarnInterval: 5 * time.Millisecond,
			})
			if p := tc.pub(t); p != nil {
				l.SetPublisher(p)
			}

			done := make(chan struct{})
			go func() {
				defer close(done)
				log := l.Logger.With("run", "r")
				for i := range 10_000 {
					log.Info("hook_completed", "hook", "h", "i", i)
				}
			}()
			// 10,000 records take a few milliseconds; a blocked logger never ends.
			deadline := time.NewTimer(10 * time.Second)
			defer deadline.Stop()
			select {
			case <-done:
			case <-deadline.C:
				t.Fatal("the logger blocked on a dead NATS sink")
			}

			require.GreaterOrEqual(t, l.Dropped(), uint64(10_000-17), "at most the buffer and one in flight got through")
			var total float64
			require.Eventually(t, func() bool {
				total = 0
				for _, r := range records(t, console.String()) {
					if r["msg"] == MsgRecordsDropped && r["sink"] == "nats" {
						total = max(total, r["total"].(float64))
					}
				}
				return total >= 10_000-17
			}, waitFor, tick, "the console reports the drops")
			for _, r := range records(t, console.String()) {
				require.Equal(t, MsgRecordsDropped, r["msg"], "nothing but the warnings reached the console at warn")
				require.Contains(t, r["error"], "buffer full")
			}
		})
	}
}

func TestNATSDropReportsStayOutOfNATS(t *testing.T) {
	t.Parallel()

	l, console := setup(t, Config{
		Console:          ConsoleConfig{Format: "json"},
		NATS:             NATSConfig{Enabled: true},
		DropWarnInterval: 5 * time.Millisecond,
	})
	pub := &recordingPublisher{err: nats.ErrConnectionClosed}
	l.SetPublisher(pub)
	for range 10 {
		l.Logger.Info("hook_completed")
	}
	// The reports count the drops so far: on a busy machine the first may come before the
	// tenth drop, so the last one is read.
	var r map[string]any
	require.Eventually(t, func() bool {
		r = findLast(records(t, console.String()), MsgRecordsDropped)
		return r != nil && r["total"] == float64(10)
	}, waitFor, tick)
	require.Equal(t, "nats", r["sink"])
	require.Equal(t, "nats: connection closed", r["error"], "publish errors count as drops")
	require.Len(t, pub.messages(), 10)
	for _, m := range pub.messages() {
		require.NotContains(t, string(m.data), MsgRecordsDropped, "the report about NATS is not sent to NATS")
	}
}

func TestCloseDrainsTheNATSBuffer(t *testing.T) {
	t.Parallel()

	l, err := New(Config{NATS: NATSConfig{Enabled: true}, DropWarnInterval: -1}, &syncbuf.Buffer{}, false)
	require.NoError(t, err)
	pub := &recordingPublisher{}
	for range 20 {
		l.Logger.Info("before the connection")
	}
	l.SetPublisher(pub)
	require.NoError(t, l.Close())
	require.Len(t, pub.messages(), 20, "Close publishes what is buffered")
	require.NoError(t, l.Close())

	l.Logger.Info("after close")
	require.Len(t, pub.messages(), 20)
	require.Equal(t, uint64(1), l.Dropped())
}

func TestCloseWithoutPublisherCountsTheBuffer(t *testing.T) {
	t.Parallel()

	l, err := New(Config{NATS: NATSConfig{Enabled: true}, DropWarnInterval: -1}, &syncbuf.Buffer{}, false)
	require.NoError(t, err)
	for range 7 {
		l.Logger.Info("never published")
	}
	require.NoError(t, l.Close())
	require.Equal(t, uint64(7), l.Dropped())
}

func TestCloseDoesNotWaitForeverForAStuckPublisher(t *testing.T) {
	t.Parallel()

	console := &syncbuf.Buffer{}
	l, err := New(Config{
		Console:          ConsoleConfig{Format: "json"},
		NATS:             NATSConfig{Enabled: true},
		DropWarnInterval: time.Hour, // only the final report at Close
	}, console, false)
	require.NoError(t, err)
	l.closeWait = 20 * time.Millisecond
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	defer close(release)
	l.SetPublisher(blockingPublisher{release: release, entered: entered})
	for range 5 {
		l.Logger.Info("stuck")
	}
	// Close once the first record is in the stuck Publish (on a busy machine the publishing
	// goroutine may not have taken it yet when the loop ends).
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the publisher was never called")
	}
	require.NoError(t, l.Close())
	// One record is in the stuck Publish; the others were still buffered.
	require.Equal(t, uint64(4), l.Dropped())
	r := find(records(t, console.String()), MsgRecordsDropped)
	require.NotNil(t, r, "Close reports the last drops")
	require.Equal(t, float64(4), r["dropped"])
}

func TestLevelIndex(t *testing.T) {
	t.Parallel()

	for in, want := range map[string]int{
		`{"time":"2026-01-02T03:04:05Z","level":"DEBUG","msg":"x"}`:       0,
		`{"level":"DEBUG+2","msg":"x"}`:                                   0,
		`{"level":"INFO","msg":"x","level":"ERROR"}`:                      1,
		`{"level":"WARN","msg":"x"}`:                                      2,
		`{"level":"ERROR+4","msg":"x"}`:                                   3,
		`{"msg":"no level"}`:                                              1,
		`{"level":"LOUD"}`:                                                1,
		`{"time":"2026-01-02T03:04:05Z","level":"INFO-1","msg":"x"}`:      0,
		`{"time":"2026-01-02T03:04:05Z","level":"WARN","msg":"x","a":""}`: 2,
	} {
		require.Equal(t, want, levelIndex([]byte(in)), in)
	}
	require.True(t, strings.HasSuffix(DefaultSubjectPrefix, "logs"))
}
