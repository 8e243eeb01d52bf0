package dryrunpage

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/units"
)

// What a lock keeps other sessions from doing, in three classes: the colours of the bars.
const (
	// classReadsWrites: reads and writes wait (it blocks "reads").
	classReadsWrites = "rw"
	// classWrites: writes wait, reads go on (it blocks "writes", not "reads").
	classWrites = "w"
	// classNone: nothing an application does waits (maintenance or DDL only).
	classNone = "none"
	// classNew: a table the dry-run created, which no application uses yet: nothing waits.
	classNew = "new"
)

// classRank orders the classes from the mildest.
var classRank = map[string]int{"": -2, classNew: -1, classNone: 0, classWrites: 1, classReadsWrites: 2}

// classText says what a class blocks, for the legend and the tooltips.
var classText = map[string]string{
	classReadsWrites: "blocks reads and writes",
	classWrites:      "blocks writes",
	classNone:        "blocks nothing an application does",
	classNew:         "a new table (the migrations create it): no application uses it yet",
}

// classOf is the class of one block.
func classOf(b contract.DryRunBlock) string {
	if b.New {
		return classNew
	}
	return classOfBlocks(b.Blocks)
}

// classOfBlocks is the class of what a lock blocks.
func classOfBlocks(blocks []string) string {
	class := classNone
	for _, b := range blocks {
		switch b {
		case contract.DryRunBlocksReads:
			return classReadsWrites
		case contract.DryRunBlocksWrites:
			class = classWrites
		}
	}
	return class
}

// blockedText names what other sessions wait for: "reads, writes, row locks, maintenance, DDL"
// (row locks: SELECT ... FOR UPDATE/SHARE; maintenance: VACUUM, ANALYZE, CREATE INDEX
// CONCURRENTLY).
func blockedText(blocks []string) string {
	words := map[string]string{
		contract.DryRunBlocksReads:       "reads",
		contract.DryRunBlocksWrites:      "writes",
		contract.DryRunBlocksRowLocks:    "row locks",
		contract.DryRunBlocksMaintenance: "maintenance",
		contract.DryRunBlocksDDL:         "DDL",
	}
	var out []string
	for _, b := range blocks {
		if w, ok := words[b]; ok {
			out = append(out, w)
		} else {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, ", ")
}

// Drawing constants, in SVG units (pixels at 100 %).
const (
	labelWidth = 280 // lane labels, left of the plot
	// maxLabel is the most characters of a table's name a lane label shows.
	maxLabel    = 22
	plotWidth   = 880
	rightMargin = 40 // room for the last tick's label
	axisHeight  = 18
	rowHeight   = 18 // the migrations, phases and warnings rows
	barHeight   = 12
	barGap      = 3
	lanePad     = 4
	markerStrip = 15 // above the bars of a lane with markers
	// maxSubRows bounds the rows of one lane: bars that overlap in time go on rows of their
	// own, up to this many; beyond, they share the last.
	maxSubRows = 8
)

// chart is a report's lock timeline, laid out for the SVG.
type chart struct {
	Width, Height int
	PlotX, PlotW  int
	// Span is the time the plot covers, in milliseconds.
	Span  float64
	Ticks []tick
	// MigrationY, PhaseY, WarningY are the tops of the rows above the lanes; LanesY the top of
	// the first lane.
	MigrationY, PhaseY, WarningY, LanesY int
	Migrations                           []band
	Phases                               []band
	Lanes                                []lane
	// NewTables says a lane is a table the migrations create.
	NewTables bool
	// Markers are the warnings and failures, on their step's lane or on the warnings row.
	Markers []marker
}

type tick struct {
	X     int
	Label string
}

// band is a migration or a phase: a span of time, drawn across the lanes.
type band struct {
	X, W  int
	Label string
	// Short is the label when the band is too narrow for Label, "" when it is too narrow for
	// any.
	Short string
	Title string
	Alt   bool // every other band is shaded
}

// lane is one table.
type lane struct {
	Table string
	// New says the migrations create the table (every step that locked it ran after).
	New   bool
	Label string
	Size  string
	Title string
	Y, H  int
	Bars  []bar
}

// bar is the time one step held its locks on the lane's table.
type bar struct {
	X, Y, W int
	// RunW is the part of W the step itself ran (its duration); the rest it held its locks
	// waiting for its transaction to commit.
	RunW     int
	Class    string
	Emulated bool
	Failed   bool
	Step     string // the step's anchor
	Title    string
}

// marker is a warning, or a step that failed.
type marker struct {
	X, Y     int
	Severity string // a warning's severity, or "failure"
	Anchor   string // where it is described below
	Title    string
}

// step is a statement or a hook, as the page lists it.
type step struct {
	Anchor    string
	Statement bool
	Migration string
	Phase     string
	// Where is "line 3" for a statement, the hook's name for a hook.
	Where string
	Line  int
	Hook  string
	// Text is a statement's SQL, a hook's type.
	Text       string
	StartMS    float64
	DurationMS float64
	HeldMS     float64
	// PhaseStartMS places a step the report gives no start (one not executed).
	PhaseStartMS float64
	Transaction  int
	Rows         int64
	Executed     bool
	Sampled      bool
	Skipped      string
	Error        string
	Message      string
	Locks        string
	Blocks       []blockRow
	Rewrites     string
	Created      string
	Dropped      string
	Emulated     string // how it was emulated, "" when it was not
	Class        string // its gravest block's class, "" without blocks
	Warnings     int
}

type blockRow struct {
	Table, Mode, What, Class string
	New                      bool
	Bytes, EstimatedRows     int64
}

// steps lists the statements and hooks of a report, in report order, with their anchors.
func steps(prefix string, rep *contract.DryRunReport) []step {
	var out []step
	for mi := range rep.Migrations {
		m := &rep.Migrations[mi]
		for pi := range m.Phases {
			p := &m.Phases[pi]
			for i := range p.Statements {
				s := &p.Statements[i]
				st := step{
					Anchor: fmt.Sprintf("%s-s%d", prefix, len(out)+1), Statement: true, Migration: m.ID(), Phase: p.Phase,
					Where: "line " + strconv.Itoa(s.Line), Line: s.Line, Text: s.SQL,
					StartMS: s.StartMS, DurationMS: s.DurationMS, HeldMS: s.HeldMS, PhaseStartMS: p.StartMS, Transaction: s.Transaction,
					Rows: s.Rows, Executed: s.Executed, Skipped: s.Skipped, Error: s.Error,
					Locks: locksText(s.Locks), Rewrites: strings.Join(s.Rewrites, ", "),
					Created: strings.Join(s.Created, ", "), Dropped: strings.Join(s.Dropped, ", "),
				}
				if s.Emulated {
					st.Emulated = "cannot run in a transaction block: ran as " + fallback(s.EmulatedAs, "its transactional equivalent") +
						"; its duration is an estimate"
					if len(s.RealLocks) > 0 {
						st.Emulated += "; as written it takes " + locksText(s.RealLocks) + " (the emulation took " + fallback(st.Locks, "none") + ")"
						st.Locks = locksText(s.RealLocks)
					}
				}
				st.setBlocks(s.Blocks)
				out = append(out, st)
			}
			for i := range p.Hooks {
				h := &p.Hooks[i]
				st := step{
					Anchor: fmt.Sprintf("%s-s%d", prefix, len(out)+1), Migration: m.ID(), Phase: p.Phase,
					Where: h.Name, Hook: h.Name, Text: h.Hook,
					StartMS: h.StartMS, DurationMS: h.DurationMS, HeldMS: h.HeldMS, PhaseStartMS: p.StartMS, Transaction: h.Transaction,
					Rows: h.Rows, Executed: h.Executed, Sampled: h.Sampled, Skipped: h.Skipped, Error: h.Error, Message: h.Message,
					Locks: locksText(h.Locks), Rewrites: strings.Join(h.Rewrites, ", "),
					Created: strings.Join(h.Created, ", "), Dropped: strings.Join(h.Dropped, ", "),
				}
				st.setBlocks(h.Blocks)
				out = append(out, st)
			}
		}
	}
	return out
}

func (s *step) setBlocks(blocks []contract.DryRunBlock) {
	for _, b := range blocks {
		c := classOf(b)
		s.Blocks = append(s.Blocks, blockRow{Table: b.Table, Mode: b.Mode, What: blockedText(b.Blocks), Class: c, New: b.New, Bytes: b.Bytes, EstimatedRows: b.EstimatedRows})
		if classRank[c] > classRank[s.Class] {
			s.Class = c
		}
	}
}

// at is when the step began: its start, or its phase's for a step that was not executed and
// has none.
func (s *step) at() float64 {
	if s.StartMS == 0 && !s.Executed {
		return s.PhaseStartMS
	}
	return s.StartMS
}

// heldMS is how long the step held its locks: HeldMS, or its duration from a report that
// gives none.
func (s *step) heldMS() float64 {
	if s.HeldMS > 0 {
		return s.HeldMS
	}
	return s.DurationMS
}

func locksText(ls []contract.DryRunLock) string {
	parts := make([]string, 0, len(ls))
	for _, l := range ls {
		parts = append(parts, l.Relation+":"+strings.TrimSuffix(l.Mode, "Lock"))
	}
	return strings.Join(parts, " ")
}

// timed reports whether the report places its steps in time (version 2 and later): a
// version-1 report has no start_ms.
func timed(rep *contract.DryRunReport) bool {
	return rep.Schema != ""
}

// layout builds the chart of a report's steps and warnings. warnAt maps a warning's index to
// the step it is about (-1: none).
func layout(rep *contract.DryRunReport, sts []step, warnAt []int, prefix string) *chart {
	c := &chart{PlotX: labelWidth, PlotW: plotWidth}
	// The span: the whole dry-run, or further if a step's hold reaches beyond it.
	span := rep.DurationMS
	for i := range sts {
		span = max(span, sts[i].at()+sts[i].heldMS(), sts[i].at()+sts[i].DurationMS)
	}
	for _, m := range rep.Migrations {
		for _, p := range m.Phases {
			span = max(span, p.StartMS+p.DurationMS)
		}
	}
	if span <= 0 {
		span = 1
	}
	c.Span = span
	x := func(ms float64) int { return labelWidth + int(math.Round(float64(plotWidth)*ms/span)) }
	w := func(from, ms float64) int { return max(x(from+ms)-x(from), 2) }

	c.MigrationY = axisHeight + 2
	c.PhaseY = c.MigrationY + rowHeight + 2
	c.WarningY = c.PhaseY + rowHeight + 4
	c.LanesY = c.WarningY + rowHeight + 6

	// Bands: each migration over its phases, each phase with steps (and the DDL phase).
	for mi, m := range rep.Migrations {
		from, to, any := math.Inf(1), math.Inf(-1), false
		for _, p := range m.Phases {
			if p.Phase != contract.PhaseDDL && len(p.Hooks) == 0 && len(p.Statements) == 0 {
				continue
			}
			from, to, any = math.Min(from, p.StartMS), math.Max(to, p.StartMS+p.DurationMS), true
			b := band{X: x(p.StartMS), W: w(p.StartMS, p.DurationMS), Label: p.Phase, Alt: len(c.Phases)%2 == 1,
				Title: fmt.Sprintf("%s %s: from %s, %s", m.ID(), p.Phase, units.Millis(p.StartMS), units.Millis(p.DurationMS))}
			c.Phases = append(c.Phases, b.fit())
		}
		if !any {
			continue
		}
		status := "ok"
		if !m.Success {
			status = "failed"
		}
		b := band{X: x(from), W: w(from, to-from), Label: m.ID(), Alt: mi%2 == 1,
			Title: fmt.Sprintf("%s: %s, %s", m.ID(), status, units.Millis(m.DurationMS))}
		c.Migrations = append(c.Migrations, b.fit())
	}

	// Lanes: one per table, in the order steps first locked them.
	index := map[string]int{}
	type item struct {
		bar      bar
		rank     int
		from, to float64 // the hold, in milliseconds
	}
	var items [][]item
	for i := range sts {
		s := &sts[i]
		for _, b := range s.Blocks {
			li, ok := index[b.Table]
			if !ok {
				li = len(c.Lanes)
				index[b.Table] = li
				c.Lanes = append(c.Lanes, lane{Table: b.Table, Label: cut(b.Table, maxLabel), New: true})
				items = append(items, nil)
			}
			l := &c.Lanes[li]
			l.New = l.New && b.New
			l.Size = units.Bytes(b.Bytes)
			if b.EstimatedRows > 0 {
				l.Size += ", ~" + countText(b.EstimatedRows) + " rows"
			}
			from := s.at()
			what := classText[b.Class]
			if !b.New {
				what += " (" + b.What + ")"
			}
			title := fmt.Sprintf("%s %s %s: %s on %s, %s; held %s from %s", s.Migration, s.Phase, s.Where,
				b.Mode, b.Table, what, units.Millis(s.heldMS()), units.Millis(from))
			if s.Statement {
				title += "; " + s.Text
			} else {
				title += " (" + s.Text + ")"
			}
			if s.Emulated != "" {
				title += "; emulated: " + s.Emulated
			}
			if s.Error != "" {
				title += "; failed: " + s.Error
			}
			bw := w(from, s.heldMS())
			items[li] = append(items[li], item{bar: bar{
				X: x(from), W: bw, RunW: min(w(from, s.DurationMS), bw), Class: b.Class,
				Emulated: s.Emulated != "", Failed: s.Error != "", Step: s.Anchor, Title: title,
			}, rank: classRank[b.Class], from: from, to: from + s.heldMS()})
		}
	}

	// Markers: each warning at its step's start, on the lane of the table it names (else its
	// step's first), or on the warnings row; each failed step on the warnings row. A lane with
	// markers gets a strip above its bars for them.
	type pending struct {
		marker
		lane int // -1: the warnings row
	}
	var marks []pending
	for wi, wr := range rep.Warnings {
		p := pending{lane: -1, marker: marker{X: labelWidth, Severity: wr.Severity, Anchor: fmt.Sprintf("%s-w%d", prefix, wi+1),
			Title: wr.Severity + " " + wr.Code + ": " + wr.Message}}
		if si := warnAt[wi]; si >= 0 {
			s := &sts[si]
			p.X = x(s.at())
			if li, ok := laneOf(index, s, wr.Message); ok {
				p.lane = li
			}
		} else if ph := phaseOf(rep, wr); ph != nil {
			p.X = x(ph.StartMS)
		}
		marks = append(marks, p)
	}
	for i := range sts {
		s := &sts[i]
		if s.Error != "" {
			marks = append(marks, pending{lane: -1, marker: marker{X: x(s.at()), Severity: "failure", Anchor: s.Anchor,
				Title: fmt.Sprintf("failed: %s %s %s: %s", s.Migration, s.Phase, s.Where, s.Error)}})
		}
	}
	marked := map[int]bool{}
	for _, m := range marks {
		marked[m.lane] = true
	}

	y := c.LanesY
	for li := range c.Lanes {
		l := &c.Lanes[li]
		// Rows: the gravest bars first, each on the first row where it overlaps no other bar,
		// up to maxSubRows; the gravest drawn last, on top.
		its := items[li]
		sort.SliceStable(its, func(a, b int) bool {
			if its[a].rank != its[b].rank {
				return its[a].rank > its[b].rank
			}
			return its[a].from < its[b].from
		})
		var rows [][]item
		for i := range its {
			it := &its[i]
			row := -1
			for r := range rows {
				free := true
				for _, o := range rows[r] {
					if it.from < o.to && o.from < it.to {
						free = false
						break
					}
				}
				if free {
					row = r
					break
				}
			}
			if row < 0 && len(rows) < maxSubRows {
				row = len(rows)
				rows = append(rows, nil)
			}
			if row < 0 { // every row is taken: the last
				row = len(rows) - 1
			}
			it.bar.Y = row
			rows[row] = append(rows[row], *it)
		}
		top := lanePad
		if marked[li] {
			top = markerStrip
		}
		n := max(len(rows), 1)
		l.Y, l.H = y, top+lanePad+n*barHeight+(n-1)*barGap
		l.Title = fmt.Sprintf("%s (%s): %d step(s) locked it", l.Table, l.Size, len(its))
		if l.New {
			l.Title += "; the migrations create it, so no application uses it yet"
			c.NewTables = true
		}
		for i := len(its) - 1; i >= 0; i-- {
			b := its[i].bar
			b.Y = y + top + b.Y*(barHeight+barGap)
			l.Bars = append(l.Bars, b)
		}
		y += l.H
	}
	c.Height = y + 4
	c.Width = labelWidth + plotWidth + rightMargin

	seen := map[[2]int]int{} // markers already at a place, to set the next one beside them
	for _, m := range marks {
		m.Y = c.WarningY + 2
		if m.lane >= 0 {
			m.Y = c.Lanes[m.lane].Y + 1
		}
		k := [2]int{m.X, m.Y}
		m.X += seen[k] * 9
		seen[k]++
		c.Markers = append(c.Markers, m.marker)
	}

	for _, t := range ticks(span) {
		c.Ticks = append(c.Ticks, tick{X: x(t), Label: units.Millis(t)})
	}
	return c
}

// laneOf is the lane a warning about step s goes on: the table its message names, else the
// step's first.
func laneOf(index map[string]int, s *step, message string) (int, bool) {
	for _, b := range s.Blocks {
		if strings.Contains(message, b.Table) {
			return index[b.Table], true
		}
	}
	if len(s.Blocks) > 0 {
		return index[s.Blocks[0].Table], true
	}
	return 0, false
}

// phaseOf is the phase a warning names, or nil.
func phaseOf(rep *contract.DryRunReport, w contract.DryRunWarning) *contract.DryRunPhaseReport {
	for mi := range rep.Migrations {
		m := &rep.Migrations[mi]
		if m.ID() != w.Migration {
			continue
		}
		for pi := range m.Phases {
			if m.Phases[pi].Phase == w.Phase {
				return &m.Phases[pi]
			}
		}
	}
	return nil
}

// warningSteps maps each warning to the step it is about: the statement of its migration,
// phase and line, or the hook of its migration, phase and name; -1 when there is none.
func warningSteps(rep *contract.DryRunReport, sts []step) []int {
	out := make([]int, len(rep.Warnings))
	for wi, w := range rep.Warnings {
		out[wi] = -1
		if w.Line == 0 && w.Hook == "" {
			continue
		}
		for si := range sts {
			s := &sts[si]
			if s.Migration != w.Migration || (w.Phase != "" && s.Phase != w.Phase) {
				continue
			}
			if (w.Line > 0 && s.Statement && s.Line == w.Line) || (w.Hook != "" && !s.Statement && s.Hook == w.Hook) {
				out[wi] = si
				sts[si].Warnings++
				break
			}
		}
	}
	return out
}

// cut shortens s to at most n characters, ending with "…" when it was longer.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// fit chooses the label that fits the band's width (about 6.5 units a character): Label,
// or its start and "…", or none.
func (b band) fit() band {
	n := int((float64(b.W) - 6) / 6.5)
	switch {
	case len([]rune(b.Label)) <= n:
		b.Short = b.Label
	case n >= 4:
		b.Short = cut(b.Label, n)
	}
	return b
}

// ticks are the times of the axis marks: 0 and multiples of a 1-2-5 step, 3 to 7 of them.
func ticks(span float64) []float64 {
	raw := span / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			step = m * mag
			break
		}
	}
	var out []float64
	for i := 0; float64(i)*step <= span*1.0001; i++ {
		out = append(out, float64(i)*step)
	}
	return out
}
