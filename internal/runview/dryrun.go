package runview

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/units"
)

// Values of --fail-on: the lowest warning severity of a dry-run report that makes its Verdict
// Warnings.
const (
	FailOnWarning = "warning"
	FailOnError   = "error"
	FailOnNone    = "none"
	// DefaultFailOn is the default of --fail-on.
	DefaultFailOn = FailOnError
)

// ValidFailOn reports whether v is one of the values of --fail-on.
func ValidFailOn(v string) bool { return v == FailOnWarning || v == FailOnError || v == FailOnNone }

// decodeReport reads the data of a dryrun.report event. It is lenient, so that a report of a
// newer worker (with fields this version does not know) still counts; ok is false when the data
// is not a report at all.
func decodeReport(raw json.RawMessage) (*contract.DryRunReport, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	var rep contract.DryRunReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return nil, false
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, false
	}
	if _, has := probe["success"]; !has {
		return nil, false
	}
	return &rep, true
}

// atOrAbove reports whether a warning of severity sev reaches the --fail-on threshold. A
// severity this version does not know counts as an error: a gate fails closed.
func atOrAbove(sev, failOn string) bool {
	if failOn == FailOnNone {
		return false
	}
	rank := contract.DryRunSeverityRank(sev)
	if rank < 0 {
		rank = contract.DryRunSeverityRank(contract.DryRunSeverityError)
	}
	return rank >= contract.DryRunSeverityRank(failOn)
}

// Verdict is how a run ended for the person who asked for it: the command maps it to its exit
// code.
type Verdict int

// Verdicts.
const (
	// OK: the run completed, and a dry-run's report has no warning at or above failOn.
	OK Verdict = iota
	// Failed: the run failed, left incomplete migrations, or could not be judged.
	Failed
	// Rejected: the worker rejected the request.
	Rejected
	// Warnings: the dry-run succeeded with a warning at or above failOn.
	Warnings
)

// Verdict decides submit's exit code once a followed run has ended with the event final, from
// that event and, when one was seen, the run's dry-run report. reason says why for a person;
// it is empty when the final event says it all.
//
//   - run.rejected: Rejected.
//   - a report with success false, or run.failed: Failed.
//   - a run that ends with incomplete migrations left on the target: Failed, even when it
//     completed (the next request that includes them resumes them).
//   - a successful report with a warning at or above failOn: Warnings.
//   - otherwise OK; but when a dry-run was asked for (dryRun) and failOn is not "none",
//     a run that ends without a report is Failed: --fail-on could not be checked.
func (r *Renderer) Verdict(final *contract.Event, dryRun bool, failOn string) (v Verdict, reason string) {
	if final == nil {
		return Failed, "the run's final event was not received"
	}
	rep := r.report
	switch {
	case final.Kind == contract.KindRunRejected:
		return Rejected, ""
	case rep != nil && !rep.Success:
		return Failed, "the dry-run failed: " + firstFailure(rep) + "; everything was rolled back"
	case summaryOf(final).Unread != "":
		return Failed, "could not tell whether the target has incomplete migrations (" + clean(summaryOf(final).Unread) + "); check its confiture.schema_migrations"
	case len(incompleteOf(final)) > 0:
		return Failed, "the target has " + describeIncomplete(incompleteOf(final)) +
			"; once the cause is fixed, submit them again: each resumes at its first phase not done"
	case final.Kind != contract.KindRunCompleted:
		return Failed, ""
	case rep == nil && dryRun && failOn != FailOnNone:
		return Failed, "the run ended without a dryrun.report event, so --fail-on=" + failOn + " could not be checked"
	case rep == nil:
		return OK, ""
	}
	var n int
	for _, w := range rep.Warnings {
		if atOrAbove(w.Severity, failOn) {
			n++
		}
	}
	if n > 0 {
		return Warnings, fmt.Sprintf("the dry-run succeeded but found %s at or above --fail-on=%s", count(n, "warning"), failOn)
	}
	return OK, ""
}

// summaryOf returns the summary a run's final event carries.
func summaryOf(final *contract.Event) contract.RunSummary {
	var sum contract.RunSummary
	if len(final.Data) > 0 {
		_ = json.Unmarshal(final.Data, &sum) // an event without one has none
	}
	return sum
}

// incompleteOf returns the incomplete migrations a run's final event lists.
func incompleteOf(final *contract.Event) []contract.IncompleteMigration {
	return summaryOf(final).Incomplete
}

// describeIncomplete names incomplete migrations for a person.
func describeIncomplete(ms []contract.IncompleteMigration) string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = clean(fmt.Sprintf("%s_%s (after %s)", m.Version, m.Name, m.Phase))
	}
	return count(len(ms), "incomplete migration") + ": " + strings.Join(names, ", ")
}

// Report returns the dry-run report of the last dryrun.report event rendered, or nil.
func (r *Renderer) Report() *contract.DryRunReport { return r.report }

// firstFailure is the error of the first migration that failed.
func firstFailure(rep *contract.DryRunReport) string {
	if m := rep.Failed(); m != nil {
		return clean(m.ID() + ": " + fallback(m.Error, "failed"))
	}
	return "a statement or hook failed"
}

// dryRunReport renders a dryrun.report event: the report as tables, or, when the data is not a
// report this version can read, the data as indented JSON.
func (r *Renderer) dryRunReport(ev *contract.Event) {
	rep, ok := decodeReport(ev.Data)
	if !ok {
		head := "dry-run report"
		if ev.Migration != "" {
			head += " for " + migrationName(ev)
		}
		if ev.DurationMS > 0 || ev.RowsAffected > 0 {
			head += ": " + rows(ev.RowsAffected) + " in " + Duration(ev.DurationMS)
		}
		r.line(r.paint(ansiBold, head) + suffix("  ", ev.Message))
		r.errorLine(ev.Error)
		r.data("  ", ev.Data)
		return
	}

	if rep.Success && len(rep.Migrations) == 0 {
		r.line(fmt.Sprintf("dry-run report (%s): %s", clean(fallback(rep.Direction, contract.DirectionUp)),
			r.paint(ansiGreen, fallback(clean(ev.Message), "nothing pending"))))
		return
	}
	status, color := "succeeded", ansiGreen
	if !rep.Success {
		status, color = "failed", ansiRed
	}
	head := fmt.Sprintf("dry-run report (%s): %s in %s, %s, %s; everything was rolled back",
		clean(fallback(rep.Direction, contract.DirectionUp)), r.paint(color, status), msDuration(rep.DurationMS),
		count(len(rep.Migrations), "migration"), count(len(rep.Warnings), "warning"))
	r.line(head)
	for i := range rep.Migrations {
		r.dryRunMigration(&rep.Migrations[i])
	}
	r.dryRunWarnings(rep.Warnings)
}

func (r *Renderer) dryRunMigration(m *contract.DryRunMigrationReport) {
	mark, status := r.paint(ansiGreen, "✓"), "ok"
	if !m.Success {
		mark, status = r.paint(ansiRed, "✗"), r.paint(ansiRed, "failed")
	}
	r.line(mark + " " + r.paint(ansiBold, clean(m.ID())) + "  " + status + "  " + msDuration(m.DurationMS))
	if m.Error != "" && !stepFailed(m) { // a failed step shows the error itself
		r.block("         ", "  "+r.paint(ansiRed, "error:")+" "+clean(m.Error))
	}
	for i := range m.Phases {
		p := &m.Phases[i]
		if p.Phase != contract.PhaseDDL && len(p.Hooks) == 0 && len(p.Statements) == 0 {
			continue // a hook phase without hooks: nothing to show
		}
		r.line("  " + pad(clean(p.Phase), phaseWidth) + "  " + msDuration(p.DurationMS))
		if len(p.Statements) > 0 {
			r.statements(p.Statements)
		}
		if len(p.Hooks) > 0 {
			r.hooks(p.Hooks)
		}
	}
}

// stepFailed reports whether a statement or hook of m carries an error.
func stepFailed(m *contract.DryRunMigrationReport) bool {
	for _, p := range m.Phases {
		for _, s := range p.Statements {
			if s.Error != "" {
				return true
			}
		}
		for _, h := range p.Hooks {
			if h.Error != "" {
				return true
			}
		}
	}
	return false
}

// A row of a statement or hook table: its cells, then detail lines shown under it.
type tableRow struct {
	cells   []string
	details []string
}

// Indent of the tables under a phase, and of a row's detail lines.
const (
	tableIndent  = "    "
	detailIndent = tableIndent + "    "
)

// timeAndRows are the TIME and ROWS cells of a statement or hook: "-" for what was not
// executed (and took no time).
func timeAndRows(durationMS float64, rows int64, executed bool) (string, string) {
	tm, n := msDuration(durationMS), strconv.FormatInt(rows, 10)
	if !executed {
		n = "-"
		if durationMS == 0 {
			tm = "-"
		}
	}
	return tm, n
}

func (r *Renderer) statements(stmts []contract.DryRunStatementReport) {
	header := []string{"LINE", "TX", "TIME", "HELD", "ROWS", "BLOCKS", "STATEMENT"}
	var rowsOut []tableRow
	for _, s := range stmts {
		tm, n := timeAndRows(s.DurationMS, s.Rows, s.Executed)
		row := tableRow{
			cells: []string{strconv.Itoa(s.Line), txText(s.Transaction), tm, heldText(s.HeldMS, s.Executed), n,
				r.blocksCell(s.Blocks, s.Executed), clean(s.SQL)},
		}
		if s.Emulated {
			row.details = append(row.details, fmt.Sprintf("emulated: ran as %s; a real run takes %s (its time here is an estimate)",
				clean(s.EmulatedAs), locksText(s.RealLocks)))
		}
		row.details = append(row.details, lockDetails(s.Locks, s.Blocks, s.HeldMS)...)
		row.details = append(row.details, details(s.Rewrites, s.Created, s.Dropped, s.Tables, s.Skipped, s.Error)...)
		rowsOut = append(rowsOut, row)
	}
	r.table(header, []bool{true, true, true, true, true, false, false}, rowsOut)
}

func (r *Renderer) hooks(hs []contract.DryRunHookReport) {
	header := []string{"HOOK", "TX", "TIME", "HELD", "ROWS", "BLOCKS", "TYPE"}
	var rowsOut []tableRow
	for _, h := range hs {
		tm, n := timeAndRows(h.DurationMS, h.Rows, h.Executed)
		row := tableRow{
			cells: []string{clean(h.Name), txText(h.Transaction), tm, heldText(h.HeldMS, h.Executed), n,
				r.blocksCell(h.Blocks, h.Executed), clean(h.Hook)},
			details: append(lockDetails(h.Locks, h.Blocks, h.HeldMS), details(h.Rewrites, h.Created, h.Dropped, h.Tables, h.Skipped, h.Error)...),
		}
		if h.Sampled && h.Message != "" {
			// The sample's rate and extrapolated duration come first: they are what it is for.
			row.details = append([]string{"estimate: " + clean(h.Message)}, row.details...)
		}
		rowsOut = append(rowsOut, row)
	}
	r.table(header, []bool{false, true, true, true, true, false, false}, rowsOut)
}

// txText is the TX cell: the step's transaction in a real run, "-" when it has none.
func txText(n int) string {
	if n <= 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// heldText is the HELD cell: how long the step's locks would be held in a real run.
func heldText(heldMS float64, executed bool) string {
	if !executed || heldMS <= 0 {
		return "-"
	}
	return msDuration(heldMS)
}

// blocksCell says in a few words what the step keeps applications from doing, on the table
// where it blocks most: "reads+writes", "writes", or "-" for nothing an application does
// (readers and writers go on; only maintenance or DDL of others waits).
func (r *Renderer) blocksCell(bs []contract.DryRunBlock, executed bool) string {
	if !executed {
		return "-"
	}
	if r.report != nil && r.report.Schema == "" {
		return "?" // a version-1 report (an older worker) does not say
	}
	reads, writes := false, false
	for _, b := range bs {
		reads = reads || slices.Contains(b.Blocks, contract.DryRunBlocksReads)
		writes = writes || slices.Contains(b.Blocks, contract.DryRunBlocksWrites)
	}
	switch {
	case reads:
		return r.paint(ansiRed, "reads+writes")
	case writes:
		return r.paint(ansiYellow, "writes")
	}
	return "-"
}

// lockDetails are the detail lines of a step's locks: per table what other sessions could not
// do while it was held, and every lock it took when that says more (a lock on an index, a
// weaker mode on the way to the strongest, a version-1 report without blocks). Locks on a
// table the dry-run created say nothing: no application uses it yet.
func lockDetails(ls []contract.DryRunLock, bs []contract.DryRunBlock, heldMS float64) []string {
	var out []string
	for _, l := range ls {
		covered := slices.ContainsFunc(bs, func(b contract.DryRunBlock) bool {
			return b.Table == l.Relation && (b.Mode == l.Mode || b.New)
		})
		if !covered {
			out = append(out, "locks:    "+locksText(ls))
			break
		}
	}
	for _, b := range bs {
		if b.New {
			continue
		}
		what := "nothing"
		if len(b.Blocks) > 0 {
			what = strings.ReplaceAll(strings.Join(b.Blocks, ", "), "_", " ")
		}
		mode := clean(strings.TrimSuffix(b.Mode, "Lock"))
		if b.Inferred {
			mode += " (inferred: held from an earlier transaction)"
		}
		out = append(out, fmt.Sprintf("blocks:   %s on %s (%s) for %s: %s", mode, clean(b.Table),
			units.Bytes(b.Bytes), msDuration(heldMS), what))
	}
	return out
}

// locksText renders locks shortly: "relation Mode" with pg_locks' "Lock" suffix dropped.
func locksText(ls []contract.DryRunLock) string {
	if len(ls) == 0 {
		return "no lock on a table"
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = clean(l.Relation) + " " + clean(strings.TrimSuffix(l.Mode, "Lock"))
	}
	return strings.Join(parts, ", ")
}

// table writes a header and rows with aligned columns (right-aligned where right says so), the
// last column unpadded, and each row's details indented under it.
func (r *Renderer) table(header []string, right []bool, rowsOut []tableRow) {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len([]rune(h))
	}
	for _, row := range rowsOut {
		for i, c := range row.cells {
			if n := visibleLen(c); n > widths[i] {
				widths[i] = n
			}
		}
	}
	format := func(cells []string) string {
		var b strings.Builder
		b.WriteString(tableIndent)
		for i, c := range cells {
			if i > 0 {
				b.WriteString("  ")
			}
			switch {
			case i == len(cells)-1:
				b.WriteString(c)
			case right[i]:
				b.WriteString(strings.Repeat(" ", widths[i]-visibleLen(c)) + c)
			default:
				b.WriteString(c + strings.Repeat(" ", widths[i]-visibleLen(c)))
			}
		}
		return b.String()
	}
	r.line(r.paint(ansiDim, format(header)))
	for _, row := range rowsOut {
		r.line(format(row.cells))
		for _, d := range row.details {
			r.block(detailIndent+"  ", detailIndent+d)
		}
	}
}

// details are the lines under a statement or hook: what it rewrote, created and dropped, the
// tables it touched, why it was skipped, and its error.
func details(rewrites, created, dropped []string, tables []contract.DryRunTableStat, skipped, errText string) []string {
	var out []string
	if len(rewrites) > 0 {
		out = append(out, "rewrites: "+cleanJoin(rewrites))
	}
	if len(created) > 0 {
		out = append(out, "created:  "+cleanJoin(created))
	}
	if len(dropped) > 0 {
		out = append(out, "dropped:  "+cleanJoin(dropped))
	}
	if len(tables) > 0 {
		parts := make([]string, len(tables))
		for i, t := range tables {
			parts[i] = fmt.Sprintf("%s (%s, ~%s)", clean(t.Name), units.Bytes(t.Bytes), rows(t.EstimatedRows))
		}
		out = append(out, "tables:   "+strings.Join(parts, ", "))
	}
	if skipped != "" {
		out = append(out, "skipped:  "+clean(skipped))
	}
	if errText != "" {
		out = append(out, "error:    "+clean(errText))
	}
	return out
}

// severityOrder lists the warning groups, gravest first.
var severityOrder = []string{contract.DryRunSeverityError, contract.DryRunSeverityWarning, contract.DryRunSeverityInfo}

func (r *Renderer) dryRunWarnings(ws []contract.DryRunWarning) {
	if len(ws) == 0 {
		r.line("no warnings")
		return
	}
	groups := map[string][]contract.DryRunWarning{}
	order := append([]string(nil), severityOrder...)
	for _, w := range ws {
		if _, known := groups[w.Severity]; !known && contract.DryRunSeverityRank(w.Severity) < 0 {
			order = append(order, w.Severity) // unknown severities last, in order of appearance
		}
		groups[w.Severity] = append(groups[w.Severity], w)
	}
	r.line(r.paint(ansiBold, "warnings"))
	for _, sev := range order {
		g := groups[sev]
		if len(g) == 0 {
			continue
		}
		color := ""
		switch sev {
		case contract.DryRunSeverityError:
			color = ansiRed
		case contract.DryRunSeverityWarning:
			color = ansiYellow
		}
		r.line("  " + r.paint(color, clean(fallback(sev, "unknown"))) + fmt.Sprintf(" (%d)", len(g)))
		for _, w := range g {
			var where []string
			if w.Migration != "" {
				where = append(where, clean(w.Migration))
			}
			if w.Phase != "" {
				where = append(where, clean(w.Phase))
			}
			if w.Line > 0 {
				where = append(where, fmt.Sprintf("line %d", w.Line))
			}
			if w.Hook != "" {
				where = append(where, "hook "+clean(w.Hook))
			}
			at := ""
			if len(where) > 0 {
				at = " [" + strings.Join(where, " ") + "]"
			}
			r.block("        ", "    "+clean(fallback(w.Code, "warning"))+at+": "+clean(w.Message))
		}
	}
}

func cleanJoin(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = clean(s)
	}
	return strings.Join(out, ", ")
}

// count is "1 warning", "3 warnings".
func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// msDuration renders fractional milliseconds: 0.42ms, 7.5ms, 812ms, 1.2s.
func msDuration(ms float64) string {
	switch {
	case ms < 0:
		return "-"
	case ms < 1:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 10:
		return fmt.Sprintf("%.1fms", ms)
	default:
		return Duration(int64(ms + 0.5))
	}
}

// visibleLen is the width of s on a terminal: its runes, less the ANSI colour sequences
// (ESC [ ... m) that paint adds.
func visibleLen(s string) int {
	n, esc := 0, false
	for _, c := range s {
		switch {
		case esc:
			esc = c != 'm'
		case c == '\x1b':
			esc = true
		default:
			n++
		}
	}
	return n
}
