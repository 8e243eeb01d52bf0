package bus

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/natsauth"
	"github.com/confiture-io/confiture-worker/internal/natsauth/natsauthtest"
	"github.com/confiture-io/confiture-worker/internal/syncbuf"
)

func TestConnectWithCredentials(t *testing.T) {
	t.Parallel()
	const pw = "bus-s3cr3t-pw"
	s := natsauthtest.Start(t, &server.Options{Users: []*server.User{
		{Username: "worker", Password: pw, Permissions: natsauthtest.Perms(
			[]string{"$JS.API.>", "confiture.events.>"}, []string{"_INBOX.>"})},
	}})
	url := s.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	_, err := Connect(ctx, Options{URL: url})
	require.EqualError(t, err, "NATS authorization failed at "+url+": the server requires credentials and none were given (nats: Authorization Violation): give --nats-creds, --nats-nkey, --nats-user with a password, or a token")
	withPW := strings.Replace(url, "nats://", "nats://worker:wrong-"+pw+"@", 1)
	_, err = Connect(ctx, Options{URL: withPW})
	require.ErrorContains(t, err, "NATS authorization failed at nats://worker:xxxxx@127.0.0.1:")
	require.NotContains(t, err.Error(), pw)

	var logs syncbuf.Buffer
	b, err := Connect(ctx, Options{URL: url, Auth: natsauth.Options{User: "worker", Password: pw},
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	require.NoError(t, b.EnsureStreams(ctx, StreamOptions{}))

	// A subject the user may not publish on: the server's refusal is logged.
	require.NoError(t, b.NC.Publish("confiture.logs.info", []byte("{}")))
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), `"msg":"NATS error"`) &&
			strings.Contains(logs.String(), `Permissions Violation for Publish to \"confiture.logs.info\"`)
	}, 5*time.Second, 10*time.Millisecond, logs.String())

	// Options that do not validate fail before connecting.
	_, err = Connect(ctx, Options{URL: url, Auth: natsauth.Options{User: "worker"}})
	require.ErrorContains(t, err, `user "worker" has no password`)
}
