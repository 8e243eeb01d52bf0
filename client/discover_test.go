package client

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadURL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	url, path, err := ReadURL(dir)
	require.NoError(t, err, "no file: no URL, and no error")
	require.Empty(t, url)
	require.Equal(t, URLPath(dir), path)

	for _, u := range []string{"nats://127.0.0.1:40123", "tls://nats.internal:4222", "ws://127.0.0.1:8080"} {
		require.NoError(t, os.WriteFile(URLPath(dir), []byte(u+"\n"), 0o644))
		url, _, err = ReadURL(dir)
		require.NoError(t, err)
		require.Equal(t, u, url)
	}
	for _, bad := range []string{"", "127.0.0.1:4222", "nats://a:1 nats://b:2", "http://127.0.0.1:8222"} {
		require.NoError(t, os.WriteFile(URLPath(dir), []byte(bad), 0o644))
		_, _, err = ReadURL(dir)
		require.ErrorContains(t, err, URLPath(dir)+" does not hold a NATS URL", "%q", bad)
	}
}
