package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/bus"
	"github.com/confiture-io/confiture-worker/internal/contract"
)

// The message id of a request includes its target: JetStream de-duplicates by message id
// across the whole request stream, so a bare request id would drop the same id sent to a
// second target.
func TestPublishDeduplicatesPerTarget(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, bus.Options{StoreDir: t.TempDir(), EmbeddedPort: -1})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	require.NoError(t, b.EnsureStreams(ctx, bus.StreamOptions{}))
	c, err := client.Connect(b.URL())
	require.NoError(t, err)
	t.Cleanup(c.Close)

	up := "CREATE TABLE t (id int)"
	req := func(target string) *contract.Request {
		return &contract.Request{Schema: contract.RequestSchemaV1, ID: "deploy-42", Target: target, Direction: contract.DirectionUp,
			Migrations: []contract.Migration{{Version: "001", Name: "init", UpSQL: up, Checksum: contract.Checksum(up)}}}
	}
	a, err := c.Publish(ctx, req("a"))
	require.NoError(t, err)
	bPub, err := c.Publish(ctx, req("b"))
	require.NoError(t, err)
	again, err := c.Publish(ctx, req("a"))
	require.NoError(t, err)
	raw, err := c.PublishRaw(ctx, "c", "deploy-42", []byte(`{}`))
	require.NoError(t, err)

	require.False(t, a.Duplicate)
	assert.False(t, bPub.Duplicate, "the same request id on another target is not a duplicate")
	require.True(t, again.Duplicate, "the same request id on the same target is")
	require.False(t, raw.Duplicate)
	require.Equal(t, contract.RunID("a", "deploy-42"), a.Run)
	require.Equal(t, contract.RunID("b", "deploy-42"), bPub.Run)
	require.Equal(t, contract.RunID("c", "deploy-42"), raw.Run)

	s, err := b.JS.Stream(ctx, contract.RequestStream)
	require.NoError(t, err)
	for _, target := range []string{"a", "b", "c"} {
		m, err := s.GetLastMsgForSubject(ctx, contract.RequestSubject(target))
		require.NoError(t, err, "no request stored for target %s", target)
		require.Equal(t, contract.RequestMsgID(target, "deploy-42"), m.Header.Get(jetstream.MsgIDHeader))
	}
}
