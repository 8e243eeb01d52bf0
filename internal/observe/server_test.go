package observe_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/observe"
	"github.com/confiture-io/confiture-worker/internal/syncbuf"
)

// holdPort listens on a free loopback port until the test ends and returns its address.
func holdPort(t *testing.T) string {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String()
}

// startServer starts s and shuts it down when the test ends.
func startServer(t *testing.T, s *observe.Server) string {
	t.Helper()
	require.NoError(t, s.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	})
	return "http://" + s.Addr()
}

func TestServerServesEndpoints(t *testing.T) {
	t.Parallel()
	m := observe.NewMetrics()
	h := observe.NewHealth(observe.HealthOptions{})
	h.Add("postgres", ok)
	s, err := observe.NewServer(observe.ServerOptions{Addr: "127.0.0.1:0", Metrics: m, Health: h})
	require.NoError(t, err)
	require.Empty(t, s.Addr(), "not listening before Start")
	base := startServer(t, s)
	require.NotEqual(t, "127.0.0.1:0", s.Addr())

	code, _, body := get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)

	code, rep := readyz(t, base)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, map[string]string{"postgres": "ok"}, rep.Checks)

	m.RunFinished(observe.RunFailed)
	require.InDelta(t, 1, find(t, scrape(t, base+"/metrics"), "confiture_runs_total", "status", "failed").GetCounter().GetValue(), 0)

	code, hdr, body := get(t, base+"/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, hdr.Get("Content-Type"), "text/html")
	for _, p := range []string{`href="/healthz"`, `href="/readyz"`, `href="/metrics"`} {
		require.Contains(t, body, p)
	}
	require.NotContains(t, body, "/riverui/", "River UI is listed only when mounted")

	code, _, _ = get(t, base+"/nowhere")
	require.Equal(t, http.StatusNotFound, code)
	code, _, _ = get(t, base+"/riverui/")
	require.Equal(t, http.StatusNotFound, code)
}

func TestServerWithoutMetrics(t *testing.T) {
	t.Parallel()
	s, err := observe.NewServer(observe.ServerOptions{Addr: "127.0.0.1:0"})
	require.NoError(t, err)
	base := startServer(t, s)
	code, _, _ := get(t, base+"/metrics")
	require.Equal(t, http.StatusNotFound, code)
	code, rep := readyz(t, base)
	require.Equal(t, http.StatusOK, code, "no Health given: no checks, ready")
	require.Empty(t, rep.Checks)
}

func TestServerFallsBackToFreePort(t *testing.T) {
	t.Parallel()
	taken := holdPort(t)
	var logs syncbuf.Buffer
	s, err := observe.NewServer(observe.ServerOptions{
		Addr: taken, FallbackOnConflict: true,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	require.NoError(t, err)
	base := startServer(t, s)
	require.NotEqual(t, taken, s.Addr())
	host, _, err := net.SplitHostPort(s.Addr())
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host)
	require.Contains(t, logs.String(), `"msg":"http address in use; listening on a free port instead"`)
	require.Contains(t, logs.String(), `"addr":"`+s.Addr()+`"`)
	code, _, _ := get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
}

func TestServerExplicitAddressTaken(t *testing.T) {
	t.Parallel()
	taken := holdPort(t)
	s, err := observe.NewServer(observe.ServerOptions{Addr: taken})
	require.NoError(t, err)
	err = s.Start(t.Context())
	require.ErrorContains(t, err, "listen on "+taken)
	require.ErrorContains(t, err, "address already in use")
	require.Empty(t, s.Addr())
	require.NoError(t, s.Shutdown(t.Context()), "nothing to shut down")
}

func TestServerInvalidAddr(t *testing.T) {
	t.Parallel()
	_, err := observe.NewServer(observe.ServerOptions{Addr: "9090"})
	require.ErrorContains(t, err, "ServerOptions.Addr")
}

func TestServerShutdown(t *testing.T) {
	t.Parallel()
	s, err := observe.NewServer(observe.ServerOptions{Addr: "127.0.0.1:0"})
	require.NoError(t, err)
	require.NoError(t, s.Start(t.Context()))
	require.ErrorIs(t, s.Start(t.Context()), observe.ErrServerStarted)
	addr := s.Addr()
	code, _, _ := get(t, "http://"+addr+"/healthz")
	require.Equal(t, http.StatusOK, code)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	var d net.Dialer
	conn, err := d.DialContext(t.Context(), "tcp", addr)
	if err == nil {
		_ = conn.Close()
	}
	require.Error(t, err, "nothing listens after Shutdown")
	require.NoError(t, s.Shutdown(ctx), "a second Shutdown is harmless")
}

func TestServerShutdownForcesAfterDeadline(t *testing.T) {
	t.Parallel()
	h := observe.NewHealth(observe.HealthOptions{Timeout: time.Minute})
	entered := make(chan struct{})
	h.Add("slow", func(ctx context.Context) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	})
	s, err := observe.NewServer(observe.ServerOptions{Addr: "127.0.0.1:0", Health: h})
	require.NoError(t, err)
	require.NoError(t, s.Start(t.Context()))
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+s.Addr()+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
		}
	}()
	<-entered
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	require.ErrorIs(t, s.Shutdown(ctx), context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
}
