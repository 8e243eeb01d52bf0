package dryrunpage

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

func reportEvent(t *testing.T, rep *contract.DryRunReport, run string) *contract.Event {
	t.Helper()
	data, err := json.Marshal(rep)
	require.NoError(t, err)
	return &contract.Event{Kind: contract.KindDryRunReport, Run: run, Target: rep.Target, Time: time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC), Data: data}
}

func get(t *testing.T, h http.Handler, path string) (int, http.Header, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	return rec.Code, rec.Header(), string(body)
}

func TestHandler(t *testing.T) {
	t.Parallel()
	orders := failed()
	orders.Target = "orders"
	events := map[string]*contract.Event{
		"default": reportEvent(t, sample(), "5f0c2b0e-5d1a-4c57-9a53-3f0c1e7d2a41"),
		"orders":  reportEvent(t, orders, "0f3c9a51-8d0e-5b6a-a1c4-2e7d9b3f4c10"),
		"garbled": {Kind: contract.KindDryRunReport, Run: "r", Data: json.RawMessage(`{"rows": 1}`)},
	}
	latest := func(_ context.Context, target string) (*contract.Event, error) {
		if target == "down" {
			return nil, errors.New("connection refused")
		}
		return events[target], nil
	}
	h := Handler([]string{"default", "orders", "idle", "down", "garbled"}, latest, nil)

	code, header, body := get(t, h, "/dryrun/")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, ContentSecurityPolicy, header.Get("Content-Security-Policy"))
	require.Contains(t, header.Get("Content-Security-Policy"), "script-src 'sha256-")
	for _, s := range []string{
		`<a href="#r1">default</a>`, `<a href="#r2">orders</a>`,
		`<span class="status-succeeded">succeeded</span> <span class="muted">2.25 s, 1 migration(s), 6 warning(s)</span>`,
		`<span class="status-failed">failed</span>`,
		"2026-03-01 12:30:00 UTC",
		`<a href="/runs/5f0c2b0e-5d1a-4c57-9a53-3f0c1e7d2a41">`,
		`<g class="lane" data-table="users">`, `<g class="lane" data-table="orders">`,
		"No dry-run report in the last 24 hours",
		"The report could not be read: the queue database did not answer.",
		"The latest dryrun.report event (run r) holds no report this worker can read.",
	} {
		require.Contains(t, body, s)
	}
	require.NotContains(t, body, "connection refused")

	code, _, body = get(t, h, "/dryrun/orders")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "<title>Dry-run of orders · confiture</title>")
	require.Contains(t, body, `<g class="lane" data-table="orders">`)
	require.NotContains(t, body, `data-table="users"`)

	code, _, body = get(t, h, "/dryrun/idle")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "submit DIR --target idle --dry-run --wait")

	code, _, body = get(t, h, "/dryrun/nope<b>")
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, body, "no target nope&lt;b&gt; in this worker's configuration")
}
