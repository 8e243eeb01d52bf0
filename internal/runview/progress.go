package runview

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// Backfill progress.
//
// A backfill hook publishes backfill.progress events (at most one a second) until its
// hook.completed or hook.failed event. On a terminal (RenderOptions.Terminal) the Renderer
// draws them as one progress bar, redrawn in place on the last line: a bar with the percentage
// while the rows done are below the planner's estimate, a spinner when the estimate is unknown
// (or already passed). The bar is cleared before any other line is written, so that line
// stays intact, and the next progress event draws it again under it; the hook's end, the run's
// end and Close remove it. Elsewhere each progress event is one plain line.
//
// The bar is drawn only from Render, on the caller's goroutine: the spinner is advanced by
// the events, not by a timer (the library's timer would write from its own goroutine).

// Layout of the progress bar.
const (
	barWidth  = 30 // the bar itself, shrunk by the library to fit a narrower terminal
	barIndent = "    "
	// barReserve is what a determinate bar needs beside its description: " 45% ", the
	// bar's ends, ten cells of bar and the trailing blanks.
	barReserve = 5 + 2 + 10 + 3
)

// spinnerFrames draw an indeterminate bar, indented like hook lines.
var spinnerFrames = func() []string {
	var fs []string
	for _, f := range []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"} {
		fs = append(fs, barIndent+f)
	}
	return fs
}()

// backfillProgress is what a backfill.progress event tells.
type backfillProgress struct {
	hook string
	contract.BackfillProgress
	// detailed: the event carried its data (an older worker sends only rows and a message).
	detailed bool
}

func decodeProgress(ev *contract.Event) backfillProgress {
	p := backfillProgress{hook: strings.ReplaceAll(clean(fallback(ev.Hook, "backfill")), "\n", " ")}
	if len(ev.Data) > 0 && json.Unmarshal(ev.Data, &p.BackfillProgress) == nil {
		p.detailed = true
	}
	if !p.detailed || p.Rows < ev.RowsAffected {
		p.Rows = ev.RowsAffected
	}
	return p
}

// known reports whether the total is known and not yet reached: then the progress has a
// percentage.
func (p backfillProgress) known() bool { return p.EstimatedTotal > 0 && p.Rows < p.EstimatedTotal }

func (p backfillProgress) percent() int64 { return p.Rows * 100 / p.EstimatedTotal }

// rate is "12000 rows/s", or "" when unknown.
func (p backfillProgress) rate() string {
	if p.RowsPerSecond <= 0 {
		return ""
	}
	return fmt.Sprintf("%.0f rows/s", p.RowsPerSecond)
}

// eta is "ETA 46s", or "" when unknown.
func (p backfillProgress) eta() string {
	if p.ETAMS <= 0 || !p.known() {
		return ""
	}
	d := (time.Duration(p.ETAMS) * time.Millisecond).Round(time.Second)
	if d < time.Second {
		d = time.Second
	}
	return "ETA " + d.String()
}

// plain is the line of a progress event when no bar is drawn:
//
//	... fill_email: 450000 of about 1000000 rows (45%), 12000 rows/s, batch 5000, ETA 46s
func (p backfillProgress) plain(ev *contract.Event) string {
	if !p.detailed { // only rows and a message
		return p.hook + ": " + rows(p.Rows) + " so far" + suffix(", ", ev.Message)
	}
	parts := []string{rows(p.Rows) + " so far"}
	if p.known() {
		parts[0] = fmt.Sprintf("%d of about %d rows (%d%%)", p.Rows, p.EstimatedTotal, p.percent())
	}
	if r := p.rate(); r != "" {
		parts = append(parts, r)
	}
	if p.BatchSize > 0 {
		parts = append(parts, fmt.Sprintf("batch %d", p.BatchSize))
	}
	if e := p.eta(); e != "" {
		parts = append(parts, e)
	}
	return p.hook + ": " + strings.Join(parts, ", ")
}

// barText is the description drawn with the bar: the hook, the rows, the rate and the time
// left.
func (p backfillProgress) barText() string {
	parts := []string{rows(p.Rows) + " so far"}
	if p.known() {
		parts[0] = fmt.Sprintf("%d/%d rows", p.Rows, p.EstimatedTotal)
	}
	if r := p.rate(); r != "" {
		parts = append(parts, r)
	}
	if e := p.eta(); e != "" {
		parts = append(parts, e)
	}
	return p.hook + "  " + strings.Join(parts, ", ")
}

// liveBar is the progress bar of one backfill hook (of one phase attempt).
type liveBar struct {
	key   string
	bar   *progressbar.ProgressBar
	known bool  // a bar with a percentage, rather than a spinner
	max   int64 // the bar's total, when known
	rows  int64
	width int  // the widest description so far: descriptions are padded to it, so the bar does not jump left
	shown bool // drawn on the current line
}

func barKey(ev *contract.Event) string { return phaseKey(ev) + "/" + ev.Hook }

// progress shows a backfill.progress event: a plain line, or the progress bar on a terminal.
func (r *Renderer) progress(ev *contract.Event) {
	r.showPhaseStart(ev)
	p := decodeProgress(ev)
	if !r.opts.Terminal {
		r.line("    " + r.paint(ansiDim, "...") + " " + p.plain(ev))
		return
	}
	if r.err != nil {
		return
	}
	key, known := barKey(ev), p.known()
	if b := r.bar; b != nil && (b.key != key || b.known != known || p.Rows < b.rows) {
		r.endBar() // another hook, another kind of bar, or rows going back (a new attempt)
	}
	b := r.bar
	if b == nil {
		b = &liveBar{key: key, known: known}
	}
	desc := p.barText()
	if limit := r.descWidth(known); limit > 0 && utf8.RuneCountInString(desc) > limit {
		desc = string([]rune(desc)[:limit-1]) + "…"
	}
	b.width = max(b.width, utf8.RuneCountInString(desc))
	desc = pad(desc, b.width)
	if known { // a spinner's frames carry the indent
		desc = barIndent + desc
	}
	if b.bar == nil {
		r.startBar(b, p, desc)
		r.bar = b
	}
	// The bar's total must stay above its count: the library marks a bar that reaches its
	// total finished and then draws it no more. known() keeps rows below the estimate.
	if known && p.EstimatedTotal != b.max {
		b.bar.ChangeMax64(p.EstimatedTotal)
		b.max = p.EstimatedTotal
	}
	_ = b.bar.Set64(p.Rows)
	b.rows = p.Rows
	b.bar.Describe(desc) // draws the bar
	b.shown = true
}

// runBarMin is the fewest migrations of a run that draws the run's progress bar.
const runBarMin = 10

// runBarKey is the key of the run's progress bar (a backfill's is its phase and hook).
const runBarKey = "run"

// runProgress draws, on a terminal, the run's progress below its lines: the migrations
// completed of the plan's. A backfill's bar takes its place while it runs, and the next
// migration that completes draws it again.
func (r *Renderer) runProgress() {
	if !r.opts.Terminal || r.err != nil || r.planned < runBarMin || r.done >= r.planned {
		return // the library draws a bar at its total no more: the run's end says it all
	}
	if b := r.bar; b != nil && b.key != runBarKey {
		r.endBar()
	}
	desc := barIndent + fmt.Sprintf("migrations %d of %d", r.done, r.planned)
	b := r.bar
	if b == nil {
		b = &liveBar{key: runBarKey, known: true}
		r.startBar(b, backfillProgress{BackfillProgress: contract.BackfillProgress{EstimatedTotal: int64(r.planned)}}, desc)
		r.bar = b
	}
	_ = b.bar.Set64(int64(r.done))
	b.bar.Describe(desc) // draws the bar
	b.shown = true
}

// startBar starts b's progress bar, not yet drawn.
func (r *Renderer) startBar(b *liveBar, p backfillProgress, desc string) {
	b.max = -1 // a spinner
	if b.known {
		b.max = p.EstimatedTotal
	}
	b.bar = progressbar.NewOptions64(b.max,
		progressbar.OptionSetWriter(r.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionUseANSICodes(true), // redraw with "erase line", without padding blanks
		progressbar.OptionSetWidth(barWidth),
		progressbar.OptionSetPredictTime(false), // the worker's ETA and rate, in the description
		progressbar.OptionSetElapsedTime(false),
		progressbar.OptionSpinnerCustom(spinnerFrames),
		progressbar.OptionSetSpinnerChangeInterval(0), // no timer goroutine: only Render draws
		progressbar.OptionThrottle(0),
	)
}

// descWidth is the longest description that fits on the terminal with the bar, or 0 when the
// terminal's width is unknown.
func (r *Renderer) descWidth(known bool) int {
	w := termWidth(r.w)
	if w <= 0 {
		return 0
	}
	if known {
		w -= len(barIndent) + barReserve
	} else {
		w -= len(barIndent) + 4 // the spinner, its blanks and the trailing blank
	}
	return max(w, 10)
}

// termWidth is the width of the terminal w writes to, or 0.
func termWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}

// hideBar erases the progress bar from the screen, before another line is written there.
// The next progress event draws it again.
func (r *Renderer) hideBar() {
	if r.bar == nil || !r.bar.shown {
		return
	}
	r.bar.shown = false
	if err := r.bar.bar.Clear(); err != nil {
		r.fail(err)
	}
}

// endBar erases the progress bar and forgets it.
func (r *Renderer) endBar() {
	if r.bar == nil {
		return
	}
	r.hideBar()
	_ = r.bar.bar.Exit()
	r.bar = nil
}

// endsBar reports whether ev ends the progress bar: its hook's end, or the run's.
func (r *Renderer) endsBar(ev *contract.Event) bool {
	if r.bar == nil {
		return false
	}
	switch ev.Kind {
	case contract.KindHookCompleted, contract.KindHookFailed:
		return barKey(ev) == r.bar.key
	}
	return contract.IsTerminal(ev.Kind)
}

// Close erases a progress bar still drawn. Call it once no more events are to be rendered,
// before writing anything else to the terminal.
func (r *Renderer) Close() { r.endBar() }
