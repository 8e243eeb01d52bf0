// Package runspage serves the runs page of the worker's HTTP server: /runs/ lists each target's
// latest runs, /runs/<run id> shows one run with a timeline of its phases and hooks (inline SVG:
// a bar for each, retries and failures marked, the latest backfill progress) and its events.
// Server-rendered with html/template; no script, no external asset.
package runspage

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/confiture-io/confiture-worker/internal/api"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// Prefix is the path the page is served under.
const Prefix = "/runs/"

// runsPerTarget is how many runs the list shows for each target.
const runsPerTarget = 10

//go:embed page.html
var pageFS embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"when":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	"clock": func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"took":  func(ms int64) string { return took(ms) },
	"short": func(id string) string {
		if len(id) > 8 {
			return id[:8]
		}
		return id
	},
}).ParseFS(pageFS, "page.html"))

// Handler serves the page from the queue database of store (River's tables in riverSchema),
// for targets.
func Handler(store *runstore.Store, riverSchema string, targets []string, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{store: store, riverSchema: riverSchema, targets: targets, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"{$}", h.list)
	mux.HandleFunc("GET "+Prefix+"{run}", h.run)
	return mux
}

type handler struct {
	store       *runstore.Store
	riverSchema string
	targets     []string
	log         *slog.Logger
}

type targetRuns struct {
	Name string
	Runs []contract.RunInfo
	Err  string
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	data := struct {
		Targets []targetRuns
	}{}
	for _, name := range h.targets {
		tr := targetRuns{Name: name}
		listed, err := h.store.ListRuns(ctx, name, runsPerTarget)
		if err != nil {
			h.log.Warn("runs page: list runs", "target", name, "error", err.Error())
			tr.Err = "the runs could not be read: the queue database did not answer"
		}
		for i := range listed {
			tr.Runs = append(tr.Runs, api.RunInfo(&listed[i]))
		}
		data.Targets = append(data.Targets, tr)
	}
	h.render(w, "list", data)
}

func (h *handler) run(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("run")
	if _, err := uuid.Parse(id); err != nil {
		http.Error(w, "not a run id: "+template.HTMLEscapeString(id), http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	l, err := h.store.ListedRun(ctx, "", id)
	switch {
	case errors.Is(err, runstore.ErrRunNotFound):
		http.Error(w, "no run "+id+" in this worker's queue database", http.StatusNotFound)
		return
	case err != nil:
		h.log.Warn("runs page: read run", "run", id, "error", err.Error())
		http.Error(w, "the run could not be read: the queue database did not answer", http.StatusServiceUnavailable)
		return
	}
	evs, err := outbox.RunEvents(ctx, h.store.Pool, h.store.Schema(), l.Target, l.ID)
	if err != nil {
		h.log.Warn("runs page: read events", "run", id, "error", err.Error())
		http.Error(w, "the run's events could not be read: the queue database did not answer", http.StatusServiceUnavailable)
		return
	}
	jobs, err := h.store.RunJobs(ctx, h.riverSchema, l.ID)
	if err != nil { // the page is still worth showing
		h.log.Warn("runs page: read jobs", "run", id, "error", err.Error())
	}
	data := struct {
		Run      contract.RunInfo
		Timeline Timeline
		Events   []contract.Event
		Complete bool
		Jobs     []runstore.RunJob
	}{Run: api.RunInfo(l), Timeline: Build(evs), Events: evs, Complete: len(evs) > 0 && evs[0].Kind == contract.KindRunAccepted, Jobs: jobs}
	h.render(w, "run", data)
}

func (h *handler) render(w http.ResponseWriter, name string, data any) {
	var b strings.Builder
	if err := page.ExecuteTemplate(&b, name, data); err != nil {
		h.log.Error("runs page: render", "page", name, "error", err.Error())
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = w.Write([]byte(b.String()))
}

func took(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	}
	return fmt.Sprintf("%dms", ms)
}
