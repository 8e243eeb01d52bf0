package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/confiture-io/confiture-worker/internal/syncbuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// lumberjack starts one goroutine per Logger to remove old files and never stops it.
		goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"),
		// The NATS server's accept loop winds down on its own after Shutdown.
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*Server).acceptConnections.func1"),
	)
}

const (
	waitFor = 5 * time.Second
	tick    = 5 * time.Millisecond
)

// message is one publish.
type message struct {
	subject string
	data    []byte
}

// recordingPublisher keeps what it is given, and fails every publish when err is set.
type recordingPublisher struct {
	mu   sync.Mutex
	msgs []message
	err  error
}

func (p *recordingPublisher) Publish(subject string, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, message{subject, bytes.Clone(data)})
	return p.err
}

func (p *recordingPublisher) messages() []message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]message(nil), p.msgs...)
}

// blockingPublisher blocks every publish until release is closed. entered, when set, receives
// a value as each publish begins.
type blockingPublisher struct {
	release chan struct{}
	entered chan struct{}
}

func (p blockingPublisher) Publish(string, []byte) error {
	if p.entered != nil {
		p.entered <- struct{}{}
	}
	<-p.release
	return nil
}

// setup builds a Logging and closes it at the end of the test.
func setup(t *testing.T, c Config, extra ...extraSink) (*Logging, *syncbuf.Buffer) {
	t.Helper()
	console := &syncbuf.Buffer{}
	l, err := newLogging(c, console, false, extra...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	return l, console
}

// records parses JSON lines.
func records(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "line %q", line)
		out = append(out, m)
	}
	return out
}

// msgs lists the messages of records, in order.
func msgs(rs []map[string]any) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r["msg"].(string))
	}
	return out
}

// find returns the first record with message msg, or nil.
func find(rs []map[string]any, msg string) map[string]any {
	for _, r := range rs {
		if r["msg"] == msg {
			return r
		}
	}
	return nil
}

// findLast returns the last record of rs whose message is msg, or nil.
func findLast(rs []map[string]any, msg string) map[string]any {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i]["msg"] == msg {
			return rs[i]
		}
	}
	return nil
}

// startNATS runs an embedded NATS server for one test and connects to it.
func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true})
	require.NoError(t, err)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded NATS server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	nc, err := nats.Connect(s.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}
