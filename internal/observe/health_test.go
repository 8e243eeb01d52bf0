package observe_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/observe"
)

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(body)
}

// healthServer serves h's probes at /healthz and /readyz.
func healthServer(t *testing.T, h *observe.Health) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/healthz", h.LiveHandler())
	mux.Handle("/readyz", h.ReadyHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func readyz(t *testing.T, base string) (int, observe.Report) {
	t.Helper()
	code, hdr, body := get(t, base+"/readyz")
	require.Equal(t, "application/json", hdr.Get("Content-Type"))
	var rep observe.Report
	require.NoError(t, json.Unmarshal([]byte(body), &rep), body)
	return code, rep
}

func ok(context.Context) error { return nil }

func TestHealthz(t *testing.T) {
	t.Parallel()
	h := observe.NewHealth(observe.HealthOptions{})
	h.Add("postgres", func(context.Context) error { return errors.New("down") })
	code, _, body := get(t, healthServer(t, h)+"/healthz")
	require.Equal(t, http.StatusOK, code, "liveness ignores dependencies")
	require.Equal(t, "ok\n", body)
}

func TestReadyzAllPass(t *testing.T) {
	t.Parallel()
	h := observe.NewHealth(observe.HealthOptions{})
	for _, name := range []string{"postgres", "nats", "river", "migrations"} {
		h.Add(name, ok)
	}
	code, rep := readyz(t, healthServer(t, h))
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, observe.Report{Status: "ready", Checks: map[string]string{
		"postgres": "ok", "nats": "ok", "river": "ok", "migrations": "ok",
	}}, rep)
}

func TestReadyzNoChecksIsReady(t *testing.T) {
	t.Parallel()
	code, rep := readyz(t, healthServer(t, observe.NewHealth(observe.HealthOptions{})))
	require.Equal(t, http.StatusOK, code)
	require.True(t, rep.Ready())
}

func TestReadyzFailingCheckRedacted(t *testing.T) {
	t.Parallel()
	const dsn = "postgres://app:hunter2-s3cret@db.internal:5432/app"
	h := observe.NewHealth(observe.HealthOptions{
		Redact: func(s string) string { return strings.ReplaceAll(s, dsn, "postgres://app:xxxxx@db.internal:5432/app") },
	})
	h.Add("nats", ok)
	h.Add("postgres", func(context.Context) error {
		return errors.New("failed to connect to `" + dsn + "`: connection refused")
	})
	code, rep := readyz(t, healthServer(t, h))
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready", rep.Status)
	require.Equal(t, "ok", rep.Checks["nats"])
	require.Equal(t, "failed to connect to `postgres://app:xxxxx@db.internal:5432/app`: connection refused", rep.Checks["postgres"])
}

func TestReadyzDefaultRedaction(t *testing.T) {
	t.Parallel()
	h := observe.NewHealth(observe.HealthOptions{})
	h.Add("postgres", func(context.Context) error {
		return errors.New("connect postgres://app:hunter2@db/app and host=db password=hunter2 user=app")
	})
	h.Add("nats", func(context.Context) error { return errors.New("dial nats://tok3n@nats:4222: refused") })
	code, _, body := get(t, healthServer(t, h)+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.NotContains(t, body, "hunter2")
	require.NotContains(t, body, "tok3n")
	require.Contains(t, body, "postgres://app:xxxxx@db/app")
	require.Contains(t, body, "nats://xxxxx@nats:4222")
}

func TestReadyzSlowCheckTimesOut(t *testing.T) {
	t.Parallel()
	h := observe.NewHealth(observe.HealthOptions{Timeout: 50 * time.Millisecond})
	h.Add("postgres", ok)
	h.Add("nats", func(ctx context.Context) error { // honours its context
		<-ctx.Done()
		return ctx.Err()
	})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	h.Add("river", func(context.Context) error { // ignores it
		<-release
		return nil
	})
	base := healthServer(t, h)
	start := time.Now()
	code, rep := readyz(t, base)
	require.Less(t, time.Since(start), 2*time.Second, "a check that ignores its context must not hold the response")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "ok", rep.Checks["postgres"])
	require.Contains(t, rep.Checks["nats"], "timed out after 50ms")
	require.Equal(t, "timed out after 50ms", rep.Checks["river"])
}

func TestReadyzChecksRunConcurrently(t *testing.T) {
	t.Parallel()
	h := observe.NewHealth(observe.HealthOptions{Timeout: 5 * time.Second})
	// Each check waits for all the others to have started: only concurrent checks pass.
	const n = 4
	started := make(chan struct{}, n)
	for _, name := range []string{"a", "b", "c", "d"} {
		h.Add(name, func(ctx context.Context) error {
			started <- struct{}{}
			for len(started) < n {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Millisecond):
				}
			}
			return nil
		})
	}
	rep := h.Run(t.Context())
	require.True(t, rep.Ready(), rep)
}

func TestReadyzPanickingCheck(t *testing.T) {
	t.Parallel()
	h := observe.NewHealth(observe.HealthOptions{})
	h.Add("migrations", func(context.Context) error { panic("nil store") })
	code, rep := readyz(t, healthServer(t, h))
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "check panicked: nil store", rep.Checks["migrations"])
}

func TestHealthAddMisuse(t *testing.T) {
	t.Parallel()
	h := observe.NewHealth(observe.HealthOptions{})
	h.Add("postgres", ok)
	require.Panics(t, func() { h.Add("postgres", ok) })
	require.Panics(t, func() { h.Add("", ok) })
	require.Panics(t, func() { h.Add("nats", nil) })
}
