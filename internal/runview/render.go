package runview

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// RenderOptions choose how a Renderer writes events.
type RenderOptions struct {
	// JSON writes each event as one line of JSON, exactly the event as published, instead of
	// the live display.
	JSON bool
	// Color adds ANSI colours to the live display (for terminals only).
	Color bool
	// Terminal draws backfill progress as a progress bar redrawn in place on the last line
	// (for terminals only) instead of one line per backfill.progress event.
	Terminal bool
}

// Renderer writes a run's events as they arrive: a live display for a person, indented by
// migration, phase and hook, or JSON lines. It drops repeated events (same id), which an
// observer of the event stream may see. A dryrun.report event is shown as tables (per
// migration, phase, statement and hook, then the warnings by severity), and in either mode it
// keeps the report, from which Verdict decides the exit code. On a terminal
// (RenderOptions.Terminal) a backfill's progress is a live progress bar on the last line;
// call Close once the events stop. It is not safe for concurrent use.
type Renderer struct {
	w    io.Writer
	opts RenderOptions
	seen map[string]bool
	last *contract.Event
	err  error
	// report is the dry-run report of the last dryrun.report event, for Verdict.
	report *contract.DryRunReport

	// The phase attempt being displayed. Its phase.started line waits for its first hook (or
	// for anything else worth showing), so that phases without hooks stay out of the display.
	phaseKey     string
	phaseStart   *contract.Event
	phaseShown   bool
	phaseHasHook bool

	// bar is the backfill progress bar being drawn (RenderOptions.Terminal), or nil.
	bar *liveBar
	// planned counts the migrations of the run's plan (its run.started), and done those
	// completed since: a run of at least runBarMin draws its progress bar on a terminal.
	planned, done int
	// migration is the migration whose name heads the lines below it ("" for none): its
	// migration.started, or the first of its phase events (a migration without hooks has no
	// migration.started, only a migration.completed line, or a failure).
	migration string
}

// NewRenderer returns a Renderer writing to w.
func NewRenderer(w io.Writer, opts RenderOptions) *Renderer {
	return &Renderer{w: w, opts: opts, seen: map[string]bool{}}
}

// Err returns the first error writing to the output, if any.
func (r *Renderer) Err() error { return r.err }

// Last returns the last event rendered, or nil.
func (r *Renderer) Last() *contract.Event { return r.last }

// Layout of the live display.
const (
	phaseWidth  = 17 // len("before_validation")
	statusWidth = 8
	// hookWidth lines hook statistics up with phase statistics: the hook line's prefix
	// ("    ✓ ", 6 characters) plus hookWidth equals the phase line's prefix.
	hookWidth = 2 + phaseWidth + 2 + statusWidth - 6
)

// ANSI colours.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiDim    = "\x1b[2m"
)

// Render writes ev.
func (r *Renderer) Render(ev *contract.Event) {
	if ev == nil {
		return
	}
	if ev.ID != "" {
		if r.seen[ev.ID] {
			return
		}
		r.seen[ev.ID] = true
	}
	r.last = ev
	if ev.Kind == contract.KindDryRunReport {
		if rep, ok := decodeReport(ev.Data); ok {
			r.report = rep
		}
	}
	if r.opts.JSON {
		b, err := json.Marshal(ev)
		if err != nil {
			r.fail(err)
			return
		}
		r.write(string(b) + "\n")
		return
	}
	r.human(ev)
}

func (r *Renderer) human(ev *contract.Event) {
	if r.endsBar(ev) {
		r.endBar()
	}
	if strings.HasPrefix(ev.Kind, "phase.") || strings.HasPrefix(ev.Kind, "hook.") {
		if ev.Migration != "" && ev.Migration != r.migration {
			r.line(r.paint(ansiBold, migrationName(ev)))
			r.migration = ev.Migration
		}
	}
	switch ev.Kind {
	case contract.KindRunAccepted:
		r.line(r.paint(ansiBold, "run "+clean(ev.Run)+" accepted") + suffix(": ", ev.Message))
	case contract.KindRunDuplicate:
		if ev.Error != nil {
			r.line(r.paint(ansiYellow, "warning") + ": " + clean(ev.Message))
		} else {
			r.line("note: " + clean(fallback(ev.Message, "this request was received before")))
		}
	case contract.KindRunStarted:
		r.line(r.paint(ansiBold, "run started") + suffix(": ", ev.Message))
		var plan contract.RunPlan
		if json.Unmarshal(ev.Data, &plan) == nil {
			r.planned, r.done = len(plan.Versions), 0
		}
	case contract.KindRunCompleted:
		head := "run completed"
		if ev.DurationMS > 0 {
			head += " in " + Duration(ev.DurationMS)
		}
		r.line(r.paint(ansiBold+ansiGreen, head) + suffix(": ", ev.Message))
	case contract.KindRunFailed:
		r.runFailed(ev)
	case contract.KindRunRejected:
		r.runRejected(ev)
	case contract.KindRunRetrying:
		r.line(r.paint(ansiYellow, "retrying") + suffix(": ", ev.Message))
		r.errorLine(ev.Error)
	case contract.KindRunPaused:
		r.line(r.paint(ansiBold+ansiYellow, "run paused") + suffix(": ", ev.Message))
	case contract.KindRunResumed:
		r.line(r.paint(ansiBold, "run resumed") + suffix(": ", ev.Message))
	case contract.KindRunRetried:
		r.line(r.paint(ansiBold, "run retried") + suffix(": ", ev.Message))

	case contract.KindMigrationStarted:
		r.line(r.paint(ansiBold, migrationName(ev)))
		r.migration = ev.Migration
	case contract.KindMigrationCompleted:
		r.done++
		if r.migration != ev.Migration && ev.DurationMS > 0 {
			// A migration without hooks: its one line says what its ddl did.
			r.line(migrationName(ev) + " " + r.paint(ansiGreen, "completed") + "  " + strings.TrimSpace(stats(ev.RowsAffected, ev.DurationMS)) + suffix("  ", ev.Message))
		} else {
			r.line(migrationName(ev) + " " + r.paint(ansiGreen, "completed") + suffix("  ", ev.Message))
		}
		r.runProgress()
	case contract.KindMigrationFailed:
		where := ""
		if ev.Phase != "" {
			where = " at " + clean(ev.Phase)
			if ev.Hook != "" {
				where += " (hook " + clean(ev.Hook) + ")"
			}
		}
		r.line(migrationName(ev) + " " + r.paint(ansiRed, "failed") + where)

	case contract.KindPhaseStarted:
		r.phaseStarted(ev)
	case contract.KindPhaseCompleted:
		r.enterPhase(ev)
		if !r.phaseShown && !r.phaseHasHook && ev.Phase != contract.PhaseDDL {
			return // a phase without hooks: nothing to show
		}
		r.phaseLine(ev, "done", ansiGreen, stats(ev.RowsAffected, ev.DurationMS)+suffix("  ", ev.Message))
	case contract.KindPhaseRetrying:
		r.showPhaseStart(ev)
		r.phaseLine(ev, "retrying", ansiYellow, clean(ev.Message))
		if ev.Hook == "" { // a hook's error was shown with its hook.failed
			r.errorLine(ev.Error)
		}
	case contract.KindPhaseFailed:
		r.showPhaseStart(ev)
		rest := "after " + Duration(ev.DurationMS)
		if ev.Hook != "" {
			rest += " in hook " + clean(ev.Hook)
		}
		r.phaseLine(ev, "failed", ansiRed, rest)
		if ev.Hook == "" {
			r.errorLine(ev.Error)
		}

	case contract.KindHookStarted:
		r.showPhaseStart(ev)
		r.phaseHasHook = true
	case contract.KindHookCompleted:
		r.showPhaseStart(ev)
		r.phaseHasHook = true
		r.line("    " + r.paint(ansiGreen, "✓") + " " + pad(clean(ev.Hook), hookWidth) + "  " +
			stats(ev.RowsAffected, ev.DurationMS) + suffix("  ", ev.Message))
	case contract.KindHookFailed:
		r.showPhaseStart(ev)
		r.phaseHasHook = true
		head := "    " + r.paint(ansiRed, "✗") + " " + clean(ev.Hook)
		if ev.Attempt > 0 {
			head += fmt.Sprintf(" (attempt %d)", ev.Attempt)
		}
		r.block("      ", head+": "+errorText(ev.Error, ev.Message))

	case contract.KindBackfillProgress:
		r.progress(ev)
	case contract.KindDryRunReport:
		r.dryRunReport(ev)
	default: // a kind this version does not know: show it plainly
		r.line(clean(ev.Kind) + suffix(": ", ev.Message))
		r.errorLine(ev.Error)
	}
}

func (r *Renderer) runFailed(ev *contract.Event) {
	head := "run failed"
	if ev.DurationMS > 0 {
		head += " after " + Duration(ev.DurationMS)
	}
	r.block("  ", r.paint(ansiBold+ansiRed, head)+suffix(": ", ev.Message))
	if ev.Migration != "" {
		r.line("  migration: " + clean(ev.Migration))
	}
	if ev.Phase != "" {
		r.line("  phase:     " + clean(ev.Phase))
	}
	if ev.Hook != "" {
		r.line("  hook:      " + clean(ev.Hook))
	}
	if ev.Error != nil {
		r.block("             ", "  error:     "+errorText(ev.Error, ""))
	}
}

func (r *Renderer) runRejected(ev *contract.Event) {
	reason := ev.Message
	if ev.Error != nil && ev.Error.Message != "" {
		reason = ev.Error.Message
	}
	head := r.paint(ansiBold+ansiRed, "run rejected")
	if ev.Error != nil && ev.Error.Code != "" {
		head += " (" + clean(ev.Error.Code) + ")"
	}
	r.block("  ", head+": "+clean(fallback(reason, "no reason given")))
}

// phaseStarted begins a phase attempt. Its line is shown at once for ddl, and for the other
// phases with their first hook.
func (r *Renderer) phaseStarted(ev *contract.Event) {
	r.phaseKey = phaseKey(ev)
	r.phaseStart, r.phaseShown, r.phaseHasHook = ev, false, false
	if ev.Phase == contract.PhaseDDL {
		r.showPhaseStart(ev)
	}
}

// enterPhase switches to ev's phase attempt when ev belongs to another one.
func (r *Renderer) enterPhase(ev *contract.Event) {
	if k := phaseKey(ev); k != r.phaseKey {
		r.phaseKey, r.phaseStart, r.phaseShown, r.phaseHasHook = k, nil, false, false
	}
}

// showPhaseStart shows the pending phase.started line of ev's phase, once.
func (r *Renderer) showPhaseStart(ev *contract.Event) {
	r.enterPhase(ev)
	if r.phaseShown || r.phaseStart == nil {
		return
	}
	r.phaseShown = true
	st := r.phaseStart
	var rest []string
	if st.Attempt > 1 {
		rest = append(rest, fmt.Sprintf("attempt %d", st.Attempt))
	}
	if st.Message != "" {
		rest = append(rest, clean(st.Message))
	}
	r.phaseLine(st, "started", "", strings.Join(rest, ", "))
}

func phaseKey(ev *contract.Event) string {
	return fmt.Sprintf("%s/%s/%s/%d", ev.Run, ev.Version, ev.Phase, ev.Attempt)
}

// phaseLine writes "  <phase>  <status>  <rest>".
func (r *Renderer) phaseLine(ev *contract.Event, status, color, rest string) {
	r.line("  " + pad(clean(ev.Phase), phaseWidth) + "  " + r.paint(color, pad(status, statusWidth)) + suffix("  ", rest))
}

// errorLine writes an error object under a phase.
func (r *Renderer) errorLine(e *contract.EventError) {
	if e == nil {
		return
	}
	r.block("      ", "    "+r.paint(ansiRed, "✗")+" "+errorText(e, ""))
}

// data writes a JSON payload, indented.
func (r *Renderer) data(indent string, raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, indent, "  "); err != nil {
		return
	}
	r.block("", indent+clean(b.String())) // json.Indent indented the later lines already
}

// errorText renders an error object as "<code> (SQLSTATE <state>): <message>", leaving the
// SQLSTATE out when the message already names it.
func errorText(e *contract.EventError, fallbackMsg string) string {
	if e == nil {
		return clean(fallback(fallbackMsg, "failed"))
	}
	s := clean(fallback(e.Code, "error"))
	m := fallback(e.Message, fallbackMsg)
	if e.SQLState != "" && !strings.Contains(m, "SQLSTATE "+e.SQLState) {
		s += " (SQLSTATE " + clean(e.SQLState) + ")"
	}
	return s + ": " + clean(m)
}

func migrationName(ev *contract.Event) string {
	return clean(fallback(ev.Migration, ev.Version))
}

// line writes s and a newline, without trailing blanks. A multi-line s has its later lines
// indented two more spaces than its first.
func (r *Renderer) line(s string) {
	if strings.Contains(s, "\n") {
		indent := s[:len(s)-len(strings.TrimLeft(s, " "))]
		r.block(indent+"  ", s)
		return
	}
	r.write(strings.TrimRight(s, " ") + "\n")
}

// block writes s, indenting its second and later lines with indent.
func (r *Renderer) block(indent, s string) {
	for i, l := range strings.Split(s, "\n") {
		if i > 0 {
			l = indent + l
		}
		r.write(strings.TrimRight(l, " ") + "\n")
	}
}

func (r *Renderer) write(s string) {
	if r.err != nil {
		return
	}
	r.hideBar() // the line takes the bar's place; the next progress event draws it under
	if _, err := io.WriteString(r.w, s); err != nil {
		r.fail(err)
	}
}

func (r *Renderer) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *Renderer) paint(color, s string) string {
	if !r.opts.Color || color == "" || s == "" {
		return s
	}
	return color + s + ansiReset
}

// clean makes text from an event safe for a terminal: no escape sequences or other control
// characters (tabs become spaces, carriage returns go), and line breaks kept.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "?")
	return strings.Map(func(c rune) rune {
		switch {
		case c == '\n':
			return c
		case c == '\t':
			return ' '
		case c == '\r':
			return -1
		case unicode.IsControl(c) || c == '\u2028' || c == '\u2029':
			return '?'
		}
		return c
	}, strings.TrimRight(s, "\n"))
}

// pad pads s with spaces to width characters.
func pad(s string, width int) string {
	return fmt.Sprintf("%-*s", width, s)
}

func suffix(sep, s string) string {
	if s = clean(s); s == "" {
		return ""
	}
	return sep + s
}

func fallback(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func rows(n int64) string {
	if n == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}

// stats is the rows and duration columns.
func stats(n, ms int64) string {
	return fmt.Sprintf("%-9s %7s", rows(n), Duration(ms))
}

// Duration renders milliseconds for a person: 12ms, 1.4s, 2m5s.
func Duration(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", ms)
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		return d.Round(time.Second).String()
	}
}
