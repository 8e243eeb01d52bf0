package dryrunpage

import (
	"bytes"
	"context"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/units"
)

// Prefix is the path the page is served under.
const Prefix = "/dryrun/"

// Latest returns the latest dryrun.report event of target, or nil when there is none.
type Latest func(ctx context.Context, target string) (*contract.Event, error)

// Handler serves each target's latest dry-run report: /dryrun/ all of targets, /dryrun/<target>
// one (404 for a target not in targets). latest reads the reports (the worker's outbox).
func Handler(targets []string, latest Latest, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{targets: targets, latest: latest, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"{$}", h.all)
	mux.HandleFunc("GET "+Prefix+"{target}", h.one)
	return mux
}

type handler struct {
	targets []string
	latest  Latest
	log     *slog.Logger
}

func (h *handler) all(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	p := page{Title: "Dry-runs", Served: true}
	for i, name := range h.targets {
		s, row := h.section(ctx, name, i+1)
		p.Index = append(p.Index, row)
		p.Sections = append(p.Sections, s)
	}
	h.write(w, p)
}

func (h *handler) one(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("target")
	if !slices.Contains(h.targets, name) {
		http.Error(w, "no target "+template.HTMLEscapeString(name)+" in this worker's configuration; /dryrun/ lists its targets", http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	s, row := h.section(ctx, name, 1)
	p := page{Title: "Dry-run of " + name, Served: true, Index: []indexRow{row}, Sections: []section{s}}
	h.write(w, p)
}

// section reads a target's latest report: its section of the page and its row of the index.
func (h *handler) section(ctx context.Context, name string, n int) (section, indexRow) {
	anchor := "r" + strconv.Itoa(n)
	row := indexRow{Target: name, Anchor: anchor}
	missing := func(why string) (section, indexRow) {
		row.Note = why
		return section{Anchor: anchor, Heading: "Target " + name, Missing: why}, row
	}
	ev, err := h.latest(ctx, name)
	if err != nil {
		h.log.Warn("dry-run page: read the latest report", "target", name, "error", err.Error())
		return missing("The report could not be read: the queue database did not answer.")
	}
	if ev == nil {
		return missing("No dry-run report in the last 24 hours (the outbox keeps events that long). Run one with: submit DIR --target " + name + " --dry-run --wait")
	}
	rep, err := Decode(ev.Data)
	if err != nil {
		h.log.Warn("dry-run page: decode the latest report", "target", name, "run", ev.Run, "error", err.Error())
		return missing("The latest dryrun.report event (run " + ev.Run + ") holds no report this worker can read.")
	}
	s := newSection(anchor, rep)
	s.Heading, s.At, s.Message = "Target "+name, ev.Time, ev.Message
	if ev.Run != "" {
		s.RunHref = "/runs/" + ev.Run
	}
	row.Status, row.At, row.Run = s.Status, ev.Time, ev.Run
	if s.Status != "nothing pending" {
		row.Note = units.Millis(rep.DurationMS) + ", " + strconv.Itoa(len(rep.Migrations)) + " migration(s), " + strconv.Itoa(len(rep.Warnings)) + " warning(s)"
	}
	return s, row
}

func (h *handler) write(w http.ResponseWriter, p page) {
	var b bytes.Buffer
	if err := render(&b, p); err != nil {
		h.log.Error("dry-run page: render", "error", err.Error())
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", ContentSecurityPolicy)
	_, _ = w.Write(b.Bytes())
}
