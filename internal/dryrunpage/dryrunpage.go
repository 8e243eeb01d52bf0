// Package dryrunpage draws dry-run reports (contract.DryRunReport) as one self-contained HTML
// page: a lock timeline in inline SVG (a lane per table, a bar per statement or hook for the
// time it held its locks, coloured by what it keeps other sessions from doing; the phases as
// bands; warnings and failures marked), then the report's tables. No external asset, no
// network: inline CSS and SVG, and a little inline script that opens a step's details in a
// side panel (without it, a bar links to its row in the tables).
//
// submit --dry-run --html writes it to a file (Render); the worker's HTTP server serves each
// target's latest report at /dryrun/ (Handler). It depends on the contract only.
package dryrunpage

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/units"
)

//go:embed page.html
var pageFS embed.FS

var tmpl = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"ms":    units.Millis,
	"size":  units.Bytes,
	"count": countText,
	"when":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") + " UTC" },
	"class": func(c string) string { return classText[c] },
	"add":   func(a, b int) int { return a + b },
	"sub":   func(a, b int) int { return a - b },
	"half":  func(a int) int { return a / 2 },
}).ParseFS(pageFS, "page.html"))

// script opens a step's or a warning's row in the side panel when its bar or marker is
// clicked, and the one the URL's fragment names on load. Its hash is in the served page's
// Content-Security-Policy.
const script = `(function () {
  var panel = document.getElementById("panel"), body = document.getElementById("panel-body");
  function show(id) {
    var row = document.getElementById(id);
    if (!row || row.tagName !== "TR") return false;
    var table = row.closest("table"), heads = table.tHead.rows[0].cells;
    var h = document.createElement("h3");
    h.textContent = table.getAttribute("data-what") || "";
    var dl = document.createElement("dl");
    for (var i = 0; i < row.cells.length && i < heads.length; i++) {
      if (!row.cells[i].textContent.trim()) continue;
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = heads[i].textContent;
      row.cells[i].childNodes.forEach(function (n) { dd.appendChild(n.cloneNode(true)); });
      dl.append(dt, dd);
    }
    var link = document.createElement("a");
    link.href = "#" + id;
    link.textContent = "its row in the tables below";
    body.replaceChildren(h, dl, link);
    panel.hidden = false;
    return true;
  }
  document.addEventListener("click", function (e) {
    var t = e.target.closest("[data-step]");
    if (t && show(t.getAttribute("data-step"))) {
      e.preventDefault();
      history.replaceState(null, "", "#" + t.getAttribute("data-step"));
    }
  });
  document.getElementById("panel-close").addEventListener("click", function () { panel.hidden = true; });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") panel.hidden = true; });
  if (location.hash.length > 1) show(decodeURIComponent(location.hash.slice(1)));
})();`

// scriptHash is the script's hash source for a Content-Security-Policy.
var scriptHash = func() string {
	sum := sha256.Sum256([]byte(script))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// ContentSecurityPolicy lets the page's own style and script run and nothing else load.
var ContentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; script-src " + scriptHash

// Render writes one HTML page with a section for each report.
func Render(w io.Writer, reports ...*contract.DryRunReport) error {
	p := page{Title: "Dry-run report"}
	for i, rep := range reports {
		if rep == nil {
			return fmt.Errorf("dryrunpage: report %d is nil", i+1)
		}
		s := newSection(fmt.Sprintf("r%d", i+1), rep)
		if len(reports) > 1 {
			s.Heading = "Target " + fallback(rep.Target, "?")
		}
		p.Sections = append(p.Sections, s)
	}
	if len(reports) == 1 && reports[0].Target != "" {
		p.Title = "Dry-run of " + reports[0].Target
	}
	return render(w, p)
}

func render(w io.Writer, p page) error {
	p.Script = template.JS(script)
	var b bytes.Buffer
	if err := tmpl.ExecuteTemplate(&b, "page", p); err != nil {
		return fmt.Errorf("dryrunpage: %w", err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// Decode reads the data of a dryrun.report event leniently, as submit does: fields this
// version does not know are ignored; data without a "success" field is not a report.
func Decode(data []byte) (*contract.DryRunReport, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("not a dry-run report: %w", err)
	}
	if _, ok := probe["success"]; !ok {
		return nil, errors.New("not a dry-run report: it has no success field")
	}
	var rep contract.DryRunReport
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("not a dry-run report: %w", err)
	}
	return &rep, nil
}

// page is what the template draws.
type page struct {
	Title string
	// Index lists the targets, on the served page.
	Index    []indexRow
	Served   bool
	Sections []section
	Script   template.JS
}

type indexRow struct {
	Target, Anchor, Status, Note string
	At                           time.Time
	Run                          string
}

// section is one report.
type section struct {
	Anchor  string
	Heading string
	Report  *contract.DryRunReport
	// At is when the report was made, RunHref where its run is shown; zero when unknown.
	At      time.Time
	RunHref string
	// Message is the event's message (on a report with nothing pending, what it says).
	Message string
	// Missing says why there is no report (Report is nil then).
	Missing string
	Status  string // succeeded, failed, nothing pending
	Failure string
	Timed   bool
	Chart   *chart
	// Statements and Hooks are the report's steps, Warnings its warnings, Tables its lanes
	// summed up.
	Statements []step
	Hooks      []step
	Phases     []phaseRow
	Warnings   []warningRow
	Tables     []tableRow
	Thresholds string
}

type phaseRow struct {
	Migration, Phase    string
	StartMS, DurationMS float64
	Steps               int
}

type warningRow struct {
	Anchor, Severity, Code, Message, Where, Step string
}

// tableRow sums up a lane: how long reads and writes of the table would wait.
type tableRow struct {
	Table, Size, Strongest string
	// New says the migrations create it.
	New                  bool
	Bytes, EstimatedRows int64
	Steps                int
	// ReadsBlocked and WritesBlocked are how long reads and writes would wait, when they
	// would (BlocksReads, BlocksWrites).
	ReadsBlocked, WritesBlocked float64
	BlocksReads, BlocksWrites   bool
}

func newSection(anchor string, rep *contract.DryRunReport) section {
	s := section{Anchor: anchor, Report: rep, Timed: timed(rep)}
	switch {
	case rep.Success && len(rep.Migrations) == 0:
		s.Status = "nothing pending"
		return s
	case rep.Success:
		s.Status = "succeeded"
	default:
		s.Status = "failed"
		s.Failure = firstFailure(rep)
	}
	sts := steps(anchor, rep)
	warnAt := warningSteps(rep, sts)
	if s.Timed {
		s.Chart = layout(rep, sts, warnAt, anchor)
	}
	for _, st := range sts {
		if st.Statement {
			s.Statements = append(s.Statements, st)
		} else {
			s.Hooks = append(s.Hooks, st)
		}
	}
	for _, m := range rep.Migrations {
		for _, p := range m.Phases {
			if p.Phase != contract.PhaseDDL && len(p.Hooks) == 0 && len(p.Statements) == 0 {
				continue
			}
			s.Phases = append(s.Phases, phaseRow{Migration: m.ID(), Phase: p.Phase, StartMS: p.StartMS, DurationMS: p.DurationMS, Steps: len(p.Statements) + len(p.Hooks)})
		}
	}
	for i, w := range rep.Warnings {
		where := strings.TrimSpace(w.Migration + " " + w.Phase)
		switch {
		case w.Line > 0:
			where += " line " + strconv.Itoa(w.Line)
		case w.Hook != "":
			where += " hook " + w.Hook
		}
		row := warningRow{Anchor: fmt.Sprintf("%s-w%d", anchor, i+1), Severity: w.Severity, Code: w.Code, Message: w.Message, Where: where}
		if warnAt[i] >= 0 {
			row.Step = sts[warnAt[i]].Anchor
		}
		s.Warnings = append(s.Warnings, row)
	}
	// The gravest first, then in report order.
	sort.SliceStable(s.Warnings, func(a, b int) bool {
		return contract.DryRunSeverityRank(s.Warnings[a].Severity) > contract.DryRunSeverityRank(s.Warnings[b].Severity)
	})
	s.Tables = tables(sts)
	if t := rep.Thresholds; t != nil {
		on := "any table"
		if t.BlockTableBytes > 0 {
			on = "a table over " + units.Bytes(t.BlockTableBytes)
		}
		s.Thresholds = fmt.Sprintf("ACCESS EXCLUSIVE on a table over %s; reads or writes waiting over %s on %s",
			units.Bytes(t.LargeTableBytes), units.Millis(t.BlockMS), on)
	}
	return s
}

// tables sums up each table the steps locked: its size, the strongest lock, and for how long
// reads and writes would wait (the union of the holds that block them).
func tables(sts []step) []tableRow {
	var out []tableRow
	index := map[string]int{}
	type span struct{ from, to float64 }
	reads, writes := map[string][]span{}, map[string][]span{}
	for _, s := range sts {
		for _, b := range s.Blocks {
			i, ok := index[b.Table]
			if !ok {
				i = len(out)
				index[b.Table] = i
				out = append(out, tableRow{Table: b.Table, New: true})
			}
			t := &out[i]
			t.New = t.New && b.New
			t.Steps++
			t.Bytes, t.EstimatedRows = b.Bytes, b.EstimatedRows
			if modeRank(b.Mode) > modeRank(t.Strongest) {
				t.Strongest = b.Mode
			}
			sp := span{s.StartMS, s.StartMS + s.heldMS()}
			switch b.Class {
			case classReadsWrites:
				reads[b.Table] = append(reads[b.Table], sp)
				writes[b.Table] = append(writes[b.Table], sp)
			case classWrites:
				writes[b.Table] = append(writes[b.Table], sp)
			}
		}
	}
	union := func(spans []span) (total float64) {
		if len(spans) == 0 {
			return 0
		}
		sort.Slice(spans, func(a, b int) bool { return spans[a].from < spans[b].from })
		cur := spans[0]
		for _, sp := range spans[1:] {
			if sp.from > cur.to {
				total += cur.to - cur.from
				cur = sp
				continue
			}
			cur.to = math.Max(cur.to, sp.to)
		}
		return total + cur.to - cur.from
	}
	for i := range out {
		t := &out[i]
		t.Size = units.Bytes(t.Bytes)
		t.ReadsBlocked, t.BlocksReads = union(reads[t.Table]), len(reads[t.Table]) > 0
		t.WritesBlocked, t.BlocksWrites = union(writes[t.Table]), len(writes[t.Table]) > 0
	}
	return out
}

// modeRank orders PostgreSQL's table lock modes from the weakest; an unknown mode ranks 0.
func modeRank(mode string) int { return slices.Index(contract.DryRunLockModes, mode) + 1 }

// firstFailure is the error of the first migration that failed.
func firstFailure(rep *contract.DryRunReport) string {
	if m := rep.Failed(); m != nil {
		return m.ID() + ": " + fallback(m.Error, "failed")
	}
	return "a statement or hook failed"
}

// countText renders a row count briefly: 950, 20k, 1.5M.
func countText(n int64) string {
	switch {
	case n < 10_000:
		return strconv.FormatInt(n, 10)
	case n < 1_000_000:
		return strconv.FormatInt((n+500)/1000, 10) + "k"
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/1e6), ".0") + "M"
}

func fallback(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
