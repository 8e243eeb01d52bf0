package workercmd

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !ready.Load() {
			http.Error(w, "starting: queue database not migrated yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}))
	defer srv.Close()

	code, out, errOut := runMain(t, "healthcheck", "--url", srv.URL+"/readyz")
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, "healthy: "+srv.URL+"/readyz answered 200 OK")

	ready.Store(false)
	code, _, errOut = runMain(t, "healthcheck", "--url", srv.URL+"/readyz")
	require.Equal(t, ExitFailed, code)
	require.Contains(t, errOut, "not healthy: "+srv.URL+"/readyz answered 503 Service Unavailable: starting: queue database not migrated yet")

	srv.Close()
	code, _, errOut = runMain(t, "healthcheck", "--url", srv.URL+"/readyz", "--timeout", "2s")
	require.Equal(t, ExitFailed, code)
	require.Contains(t, errOut, "not healthy: ")

	code, _, errOut = runMain(t, "healthcheck", "--http-addr", "off")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "http_addr is off")
}

func TestReadyURL(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"":               "http://127.0.0.1:9090/readyz",
		"0.0.0.0:9090":   "http://127.0.0.1:9090/readyz",
		":8080":          "http://127.0.0.1:8080/readyz",
		"10.0.0.5:9000":  "http://10.0.0.5:9000/readyz",
		"[::]:9090":      "http://127.0.0.1:9090/readyz",
		"localhost:9091": "http://localhost:9091/readyz",
	} {
		got, err := readyURL(addr)
		require.NoError(t, err, addr)
		require.Equal(t, want, got, addr)
	}
	_, err := readyURL("nonsense")
	require.Error(t, err)
}
