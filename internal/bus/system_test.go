package bus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// TestSystemIDIsTheEventStreamsCreationTime: every client of one server reports the same
// identity (the first creates the event stream, the next ones update it), a restart of the
// server keeps it, and another server has another one.
func TestSystemIDIsTheEventStreamsCreationTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := t.TempDir()
	first, err := Connect(ctx, Options{EmbeddedPort: -1, StoreDir: store})
	require.NoError(t, err)
	require.Empty(t, first.SystemID(), "unknown until the streams exist")
	require.NoError(t, first.EnsureStreams(ctx, StreamOptions{}))
	id := first.SystemID()
	created, ok := strings.CutPrefix(id, contract.EventStream+"@")
	require.True(t, ok, id)
	at, err := time.Parse(time.RFC3339Nano, created)
	require.NoError(t, err, id)
	require.WithinDuration(t, time.Now(), at, time.Minute)
	require.True(t, strings.HasSuffix(created, "Z"), "UTC: %s", id)

	// A second client of the same server updates the stream and sees the same system.
	second := connect(t, Options{URL: first.URL()})
	require.NoError(t, second.EnsureStreams(ctx, StreamOptions{EventMaxAge: time.Hour}))
	require.Equal(t, id, second.SystemID())

	// Another server is another system.
	other := connect(t, Options{EmbeddedPort: -1})
	require.NoError(t, other.EnsureStreams(ctx, StreamOptions{}))
	require.NotEqual(t, id, other.SystemID())

	// A restart keeps the stream, and with it the identity.
	second.Close()
	first.Close()
	restarted, err := Connect(ctx, Options{EmbeddedPort: -1, StoreDir: store})
	require.NoError(t, err)
	t.Cleanup(restarted.Close)
	require.NoError(t, restarted.EnsureStreams(ctx, StreamOptions{}))
	require.Equal(t, id, restarted.SystemID())
}

// TestSystemIDOnTheMachineNATSServer: Debian's nats-server 2.9.10 (when one listens on
// 127.0.0.1:4222) reports the creation time in both its create and its update responses.
func TestSystemIDOnTheMachineNATSServer(t *testing.T) {
	t.Parallel()
	const url = "nats://127.0.0.1:4222"
	nc, err := nats.Connect(url, nats.Timeout(time.Second))
	if err != nil {
		t.Skipf("no NATS server at %s: %v", url, err)
	}
	nc.Close()
	ctx := context.Background()
	a := connect(t, Options{URL: url})
	require.NoError(t, a.EnsureStreams(ctx, StreamOptions{}))
	b := connect(t, Options{URL: url})
	require.NoError(t, b.EnsureStreams(ctx, StreamOptions{}))
	require.NotEmpty(t, a.SystemID())
	require.Equal(t, a.SystemID(), b.SystemID())
}
