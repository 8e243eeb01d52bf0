package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/bus"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/natsauth"
	"github.com/confiture-io/confiture-worker/internal/natsauth/natsauthtest"
)

// restrictedServer starts a server with an admin, a submitter that may only publish requests
// for target "allowed" and follow its events, and a user that may not subscribe at all; the
// workers' streams exist.
func restrictedServer(t *testing.T) string {
	t.Helper()
	s := natsauthtest.Start(t, &server.Options{Users: []*server.User{
		{Username: "admin", Password: "admin-pw"},
		{Username: "submitter", Password: "submitter-pw", Permissions: natsauthtest.Perms(
			[]string{
				"confiture.requests.allowed",
				"$JS.API.CONSUMER.CREATE.CONFITURE_EVENTS.*.confiture.events.allowed.>",
				"$JS.API.CONSUMER.MSG.NEXT.CONFITURE_EVENTS.*",
				"$JS.API.CONSUMER.DELETE.CONFITURE_EVENTS.*",
			},
			[]string{"_INBOX.>"})},
		{Username: "deaf", Password: "deaf-pw", Permissions: natsauthtest.Perms([]string{">"}, []string{"nothing"})},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, bus.Options{URL: s.ClientURL(), Auth: natsauth.Options{User: "admin", Password: "admin-pw"}})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	require.NoError(t, b.EnsureStreams(ctx, bus.StreamOptions{}))
	return s.ClientURL()
}

func connectAs(t *testing.T, url, user, password string, extra ...nats.Option) *client.Client {
	t.Helper()
	opts, err := natsauth.Options{User: user, Password: natsauth.Secret(password)}.NATSOptions()
	require.NoError(t, err)
	c, err := client.Connect(url, append(opts, extra...)...)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func TestPermissionViolationFailsAtOnce(t *testing.T) {
	t.Parallel()
	url := restrictedServer(t)
	var handled atomic.Int64
	c := connectAs(t, url, "submitter", "submitter-pw", nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {
		handled.Add(1)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	pub, err := c.PublishRaw(ctx, "allowed", "req-1", []byte(`{}`))
	require.NoError(t, err)
	require.False(t, pub.Duplicate)

	start := time.Now()
	_, err = c.PublishRaw(ctx, "other", "req-2", []byte(`{}`))
	require.Less(t, time.Since(start), 5*time.Second, "a refused publish must not wait for its timeout")
	var pe *client.PermissionError
	require.ErrorAs(t, err, &pe)
	require.ErrorIs(t, err, nats.ErrPermissionViolation)
	require.Equal(t, "confiture.requests.other", pe.Subject)
	require.Equal(t, `permission denied: the NATS server does not allow this user to publish on confiture.requests.other (Permissions Violation for Publish to "confiture.requests.other")`, err.Error())
	require.Eventually(t, func() bool { return handled.Load() > 0 }, 5*time.Second, 10*time.Millisecond,
		"the caller's error handler still gets the error")

	// Following another target's events: the consumer it asks for is refused.
	start = time.Now()
	err = c.Follow(ctx, "other", contract.RunID("other", "req-2"), func(*contract.Event) error { return nil })
	require.Less(t, time.Since(start), 5*time.Second)
	require.ErrorAs(t, err, &pe)
	require.Contains(t, err.Error(), "follow events: permission denied: the NATS server does not allow this user to publish on $JS.API.CONSUMER.CREATE.CONFITURE_EVENTS.")

	// Following its own target's events works (it stops when the context ends).
	fctx, fcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer fcancel()
	err = c.Follow(fctx, "allowed", pub.Run, func(*contract.Event) error { return nil })
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestRefusedInboxFailsAtOnce(t *testing.T) {
	t.Parallel()
	url := restrictedServer(t)
	c := connectAs(t, url, "deaf", "deaf-pw")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.PublishRaw(ctx, "allowed", "req-1", []byte(`{}`))
	require.Less(t, time.Since(start), 5*time.Second)
	var pe *client.PermissionError
	require.True(t, errors.As(err, &pe), err)
	require.Equal(t, "subscribe to", pe.Op)
	require.Contains(t, err.Error(), "does not allow this user to subscribe to _INBOX.")
}
