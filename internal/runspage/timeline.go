package runspage

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// Timeline is a run's phases and hooks laid out in time, ready for the SVG: one lane each, in
// the order they began.
type Timeline struct {
	Lanes []Lane
	// Backfills are the latest progress of each backfill hook, a line each.
	Backfills []string
	// Width and Height are the SVG's size; Axis marks its time scale.
	Width, Height int
	Axis          []Tick
	// Span is how long the timeline covers.
	Span time.Duration
}

// Lane is one phase, or one hook within it, or a migration without hooks (its DDL alone).
type Lane struct {
	Label string
	// Hook says the lane is a hook's (drawn indented, in another colour).
	Hook bool
	// X, W and Y place its bar; Open says it has not ended (as far as the events tell).
	X, W, Y int
	Open    bool
	// State is "completed", "failed", "retrying" or "running".
	State string
	// Marks are its retries and failures, at their time.
	Marks []Mark
	// Title is the bar's tooltip: what, how long, with what result.
	Title string
}

// Mark is a point on a lane: a retry or a failure.
type Mark struct {
	X     int
	Kind  string // "retry" or "failure"
	Title string
}

// Tick is one mark of the time axis.
type Tick struct {
	X     int
	Label string
}

// Drawing constants, in SVG units.
const (
	labelWidth = 300
	plotWidth  = 640
	laneHeight = 22
	topMargin  = 24
)

type laneKey struct{ migration, phase, hook string }

// Build lays out the timeline of a run from its events, oldest first.
func Build(evs []contract.Event) Timeline {
	var tl Timeline
	if len(evs) == 0 {
		return tl
	}
	start, end := evs[0].Time, evs[len(evs)-1].Time
	type span struct {
		key        laneKey
		from, to   time.Time
		ended      bool
		state      string
		marks      []markAt
		rows       int64
		message    string
		progress   string
		durationMS int64
	}
	var order []laneKey
	spans := map[laneKey]*span{}
	get := func(k laneKey, at time.Time) *span {
		s, ok := spans[k]
		if !ok {
			s = &span{key: k, from: at, to: at, state: "running"}
			spans[k] = s
			order = append(order, k)
		}
		return s
	}
	seen := map[string]bool{} // migrations with phase events
	for _, ev := range evs {
		k := laneKey{migration: ev.Migration, phase: ev.Phase}
		if ev.Phase != "" {
			seen[ev.Migration] = true
		}
		switch ev.Kind {
		case contract.KindPhaseStarted:
			s := get(k, ev.Time)
			if s.ended { // a later attempt
				s.ended, s.state = false, "running"
			}
		case contract.KindPhaseCompleted, contract.KindPhaseFailed:
			s := get(k, ev.Time)
			s.to, s.ended, s.durationMS, s.rows = ev.Time, true, ev.DurationMS, ev.RowsAffected
			s.state = "completed"
			if ev.Kind == contract.KindPhaseFailed {
				s.state = "failed"
				s.marks = append(s.marks, markAt{ev.Time, "failure", errText(ev)})
			}
		case contract.KindPhaseRetrying:
			s := get(k, ev.Time)
			s.to, s.ended, s.state = ev.Time, true, "retrying"
			s.marks = append(s.marks, markAt{ev.Time, "retry", errText(ev)})
		case contract.KindHookStarted:
			k.hook = ev.Hook
			get(k, ev.Time)
		case contract.KindHookCompleted, contract.KindHookFailed:
			k.hook = ev.Hook
			s := get(k, ev.Time.Add(-time.Duration(ev.DurationMS)*time.Millisecond))
			s.to, s.ended, s.durationMS, s.rows, s.message = ev.Time, true, ev.DurationMS, ev.RowsAffected, ev.Message
			s.state = "completed"
			if ev.Kind == contract.KindHookFailed {
				s.state = "failed"
				s.marks = append(s.marks, markAt{ev.Time, "failure", errText(ev)})
			}
		case contract.KindBackfillProgress:
			k.hook = ev.Hook
			s := get(k, ev.Time)
			s.to = ev.Time
			s.progress = progressText(ev)
		case contract.KindMigrationCompleted:
			if seen[ev.Migration] {
				continue
			}
			// A migration without hooks: its one event carries what its DDL took.
			k.phase = contract.PhaseDDL
			s := get(k, ev.Time.Add(-time.Duration(ev.DurationMS)*time.Millisecond))
			s.to, s.ended, s.durationMS, s.state, s.message = ev.Time, true, ev.DurationMS, "completed", ev.Message
		}
	}
	total := end.Sub(start)
	if total <= 0 {
		total = time.Millisecond
	}
	x := func(t time.Time) int {
		return labelWidth + int(float64(plotWidth)*float64(t.Sub(start))/float64(total))
	}
	for i, k := range order {
		s := spans[k]
		label := strings.TrimSpace(k.migration + " " + k.phase)
		if k.hook != "" {
			label = k.hook
		}
		lane := Lane{Label: label, Hook: k.hook != "", X: x(s.from), Y: topMargin + i*laneHeight, Open: !s.ended, State: s.state}
		lane.W = max(x(s.to)-lane.X, 2)
		title := fmt.Sprintf("%s: %s", label, s.state)
		if s.durationMS > 0 {
			title += ", " + took(s.durationMS)
		}
		if s.rows > 0 {
			title += fmt.Sprintf(", %d row(s)", s.rows)
		}
		if s.progress != "" {
			title += ", " + s.progress
			tl.Backfills = append(tl.Backfills, label+": "+s.progress)
		}
		if s.message != "" {
			title += ": " + s.message
		}
		lane.Title = strings.TrimSpace(title)
		for _, m := range s.marks {
			lane.Marks = append(lane.Marks, Mark{X: x(m.at), Kind: m.kind, Title: m.title})
		}
		tl.Lanes = append(tl.Lanes, lane)
	}
	tl.Width = labelWidth + plotWidth + 60 // room for the last tick's label
	tl.Height = topMargin + len(order)*laneHeight + 10
	tl.Span = total
	for i := 0; i <= 4; i++ {
		at := time.Duration(float64(total) * float64(i) / 4)
		tl.Axis = append(tl.Axis, Tick{X: labelWidth + plotWidth*i/4, Label: "+" + took(at.Milliseconds())})
	}
	return tl
}

type markAt struct {
	at          time.Time
	kind, title string
}

func errText(ev contract.Event) string {
	if ev.Error != nil {
		return ev.Error.Code + ": " + ev.Error.Message
	}
	return ev.Message
}

// progressText says how far a backfill.progress event's backfill got: its rows, of the
// estimate, at what rate, and the time left when known.
func progressText(ev contract.Event) string {
	var p contract.BackfillProgress
	_ = json.Unmarshal(ev.Data, &p) // an older worker sends rows only
	rows := max(p.Rows, ev.RowsAffected)
	text := fmt.Sprintf("%d row(s) so far", rows)
	if p.EstimatedTotal > 0 && rows < p.EstimatedTotal {
		text = fmt.Sprintf("%d of about %d row(s) (%d%%)", rows, p.EstimatedTotal, rows*100/p.EstimatedTotal)
	}
	if p.RowsPerSecond > 0 {
		text += fmt.Sprintf(", %.0f rows/s", p.RowsPerSecond)
	}
	if p.ETAMS > 0 {
		text += ", about " + took(p.ETAMS) + " left"
	}
	return text + " (at " + ev.Time.UTC().Format("15:04:05") + ")"
}
