package bus

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

func connect(t *testing.T, opts Options) *Bus {
	t.Helper()
	opts.StoreDir = t.TempDir()
	b, err := Connect(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

func TestEmbeddedServerFallsBackToAFreePort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	taken := l.Addr().(*net.TCPAddr).Port

	b := connect(t, Options{EmbeddedPort: taken})
	require.True(t, b.Embedded())
	require.NotEqual(t, fmt.Sprintf("nats://127.0.0.1:%d", taken), b.URL())
	require.NotContains(t, b.URL(), fmt.Sprintf(":%d", taken))

	// The server works: a second client reaches it through the URL and JetStream answers.
	nc, err := nats.Connect(b.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.AccountInfo(context.Background())
	require.NoError(t, err)
	require.True(t, b.NC.IsConnected())
}

func TestEmbeddedServerUsesTheRequestedFreePort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())

	b := connect(t, Options{EmbeddedPort: port})
	require.Equal(t, fmt.Sprintf("nats://127.0.0.1:%d", port), b.URL())
}

func TestConnectToAnExternalServer(t *testing.T) {
	t.Parallel()
	embedded := connect(t, Options{EmbeddedPort: -1})
	b := connect(t, Options{URL: embedded.URL()})
	require.False(t, b.Embedded())
	require.Equal(t, embedded.URL(), b.URL())
	require.True(t, b.NC.IsConnected())
}

func TestEmbeddedServerNeedsAStoreDir(t *testing.T) {
	t.Parallel()
	_, err := Connect(context.Background(), Options{EmbeddedPort: -1})
	require.ErrorContains(t, err, "store directory")
}

func TestConnectErrorHidesCredentials(t *testing.T) {
	t.Parallel()
	// Nothing listens on a port just released.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())

	_, err = Connect(context.Background(), Options{URL: fmt.Sprintf("nats://alice:s3cretpw@127.0.0.1:%d", port)})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cretpw")
}

func TestEnsureStreamsIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := connect(t, Options{EmbeddedPort: -1})
	opts := StreamOptions{RequestDuplicates: 5 * time.Minute, MaxRequestBytes: 64 << 10, EventMaxAge: 48 * time.Hour}
	require.NoError(t, b.EnsureStreams(ctx, opts))

	// A request stored between two calls survives the second one.
	_, err := b.JS.Publish(ctx, contract.RequestSubject("app"), []byte(`{}`), jetstream.WithMsgID("r-1"))
	require.NoError(t, err)
	require.NoError(t, b.EnsureStreams(ctx, opts))

	req, err := b.JS.Stream(ctx, contract.RequestStream)
	require.NoError(t, err)
	ri, err := req.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, jetstream.WorkQueuePolicy, ri.Config.Retention)
	require.Equal(t, 5*time.Minute, ri.Config.Duplicates)
	require.Equal(t, []string{"confiture.requests.*"}, ri.Config.Subjects)
	require.Equal(t, jetstream.FileStorage, ri.Config.Storage)
	require.EqualValues(t, 4*(64<<10), ri.Config.MaxMsgSize, "room above the request limit, so an oversized request is rejected with a reason")
	require.EqualValues(t, 1, ri.State.Msgs)

	// The duplicates window applies: the same message id is dropped.
	ack, err := b.JS.Publish(ctx, contract.RequestSubject("app"), []byte(`{}`), jetstream.WithMsgID("r-1"))
	require.NoError(t, err)
	require.True(t, ack.Duplicate)

	ev, err := b.JS.Stream(ctx, contract.EventStream)
	require.NoError(t, err)
	ei, err := ev.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, jetstream.LimitsPolicy, ei.Config.Retention)
	require.Equal(t, 48*time.Hour, ei.Config.MaxAge)
	require.Equal(t, []string{"confiture.events.>"}, ei.Config.Subjects)
	require.Positive(t, ei.Config.Duplicates)
}

func TestEnsureStreamsDefaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := connect(t, Options{EmbeddedPort: -1})
	require.NoError(t, b.EnsureStreams(ctx, StreamOptions{}))
	require.NoError(t, b.EnsureStreams(ctx, StreamOptions{}))

	req, err := b.JS.Stream(ctx, contract.RequestStream)
	require.NoError(t, err)
	ri, err := req.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, jetstream.WorkQueuePolicy, ri.Config.Retention)
	require.Equal(t, time.Hour, ri.Config.Duplicates)
	require.EqualValues(t, 4<<20, ri.Config.MaxMsgSize)

	ev, err := b.JS.Stream(ctx, contract.EventStream)
	require.NoError(t, err)
	ei, err := ev.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, jetstream.LimitsPolicy, ei.Config.Retention)
	require.Equal(t, 7*24*time.Hour, ei.Config.MaxAge)
}

// nats.Connect takes a comma-separated list of server URLs (how a cluster is given), and a
// password may be badly escaped: the error of a failed connection must hide every password.
func TestConnectErrorHidesCredentialsOfEveryServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url, secret string
	}{
		{"cluster list", "nats://alice:pw-one@127.0.0.1:1,nats://alice:pw-two@127.0.0.1:2", "pw-two"},
		{"bad escape", "nats://alice:pw%zz-three@127.0.0.1:1", "pw%zz-three"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Connect(context.Background(), Options{URL: tc.url})
			require.Error(t, err)
			require.False(t, strings.Contains(err.Error(), tc.secret), "error %q leaks %q", err, tc.secret)
		})
	}
}
