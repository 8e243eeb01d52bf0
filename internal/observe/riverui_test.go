package observe_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/observe"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

type noteArgs struct {
	Note string `json:"note"`
}

func (noteArgs) Kind() string { return "observe_test_note" }

// newRiverUI returns River UI on a queue database of its own, and the insert-only River client
// (never started, no workers) whose jobs it shows.
func newRiverUI(t *testing.T) (http.Handler, *river.Client[pgx.Tx]) {
	t.Helper()
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, testdb.New(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, runstore.Migrate(ctx, pool, runstore.DefaultSchema, runstore.DefaultRiverSchema, nil))
	logger := slog.New(slog.DiscardHandler)
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Schema: runstore.DefaultRiverSchema, Logger: logger})
	require.NoError(t, err)
	ui, stop, err := observe.NewRiverUI(ctx, client, logger)
	require.NoError(t, err)
	t.Cleanup(stop)
	return ui, client
}

func TestRiverUI(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ui, client := newRiverUI(t)
	inserted, err := client.Insert(ctx, noteArgs{Note: "hello"}, nil)
	require.NoError(t, err)
	s, err := observe.NewServer(observe.ServerOptions{Addr: "127.0.0.1:0", RiverUI: ui})
	require.NoError(t, err)
	base := startServer(t, s)

	code, hdr, body := get(t, base+"/riverui/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, hdr.Get("Content-Type"), "text/html")
	require.Contains(t, body, "<html")
	require.Contains(t, body, "/riverui/", "asset paths carry the prefix")

	// The mux sends the bare prefix to the mounted one.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/riverui", nil)
	require.NoError(t, err)
	resp, err := noRedirect.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Contains(t, []int{http.StatusMovedPermanently, http.StatusTemporaryRedirect}, resp.StatusCode)
	require.Equal(t, "/riverui/", resp.Header.Get("Location"))

	// The job list defaults to running jobs; the inserted one is available.
	code, hdr, body = get(t, base+"/riverui/api/jobs?state=available&limit=1")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, hdr.Get("Content-Type"), "application/json")
	var list struct {
		Data []struct {
			ID    int64  `json:"id"`
			Kind  string `json:"kind"`
			State string `json:"state"`
			Args  string `json:"args"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &list), body)
	require.Len(t, list.Data, 1)
	require.Equal(t, inserted.Job.ID, list.Data[0].ID)
	require.Equal(t, "observe_test_note", list.Data[0].Kind)
	require.Equal(t, "available", list.Data[0].State)
	require.JSONEq(t, `{"note":"hello"}`, list.Data[0].Args)

	code, _, body = get(t, base+"/riverui/api/jobs/"+strconv.FormatInt(inserted.Job.ID, 10))
	require.Equal(t, http.StatusOK, code, body)

	code, _, body = get(t, base+"/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `href="/riverui/"`)
}

func TestNewRiverUINeedsClient(t *testing.T) {
	t.Parallel()
	_, _, err := observe.NewRiverUI(t.Context(), (*river.Client[pgx.Tx])(nil), nil)
	require.Error(t, err)
}
