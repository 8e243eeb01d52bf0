package runview

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// progressData sets a backfill.progress event's rows and data.
func progressData(p contract.BackfillProgress) func(*contract.Event) {
	return func(ev *contract.Event) {
		ev.RowsAffected = p.Rows
		ev.Data, _ = json.Marshal(p)
		ev.Message = "worker summary"
	}
}

// backfillRun is a run with a backfill hook reporting its progress three times.
func backfillRun() *events {
	const m1 = "003_fill_email"
	in := phase(m1, contract.PhaseAfterDDL, 1)
	es := &events{}
	es.add(contract.KindMigrationStarted, mig(m1)).
		add(contract.KindPhaseStarted, in, msg("1 hook(s)")).
		add(contract.KindHookStarted, in, hook("fill_email")).
		add(contract.KindBackfillProgress, in, hook("fill_email"), progressData(contract.BackfillProgress{
			Rows: 120000, EstimatedTotal: 1000000, BatchSize: 5000, RowsPerSecond: 118000, ETAMS: 7460, LastBatchMS: 41})).
		add(contract.KindBackfillProgress, in, hook("fill_email"), progressData(contract.BackfillProgress{
			Rows: 450000, EstimatedTotal: 1000000, BatchSize: 10000, RowsPerSecond: 149500, ETAMS: 3680, LastBatchMS: 66})).
		add(contract.KindBackfillProgress, in, hook("fill_email"), progressData(contract.BackfillProgress{
			Rows: 830000, EstimatedTotal: 1000000, BatchSize: 10000, RowsPerSecond: 165900, ETAMS: 1020, LastBatchMS: 59})).
		add(contract.KindHookCompleted, in, hook("fill_email"), took(6012, 1000000), msg("backfilled 1000000 row(s) of users in 104 batch(es)")).
		add(contract.KindPhaseCompleted, in, took(6020, 1000000), msg("1 hook(s)")).
		add(contract.KindMigrationCompleted, mig(m1))
	return es
}

const backfillDone = `003_fill_email
  after_ddl          started   1 hook(s)
    ✓ fill_email               1000000 rows    6.0s  backfilled 1000000 row(s) of users in 104 batch(es)
  after_ddl          done      1000000 rows    6.0s  1 hook(s)
003_fill_email completed
`

func TestRenderBackfillProgressPlain(t *testing.T) {
	t.Parallel()
	got := render(RenderOptions{}, backfillRun().list)
	require.Equal(t, `003_fill_email
  after_ddl          started   1 hook(s)
    ... fill_email: 120000 of about 1000000 rows (12%), 118000 rows/s, batch 5000, ETA 7s
    ... fill_email: 450000 of about 1000000 rows (45%), 149500 rows/s, batch 10000, ETA 4s
    ... fill_email: 830000 of about 1000000 rows (83%), 165900 rows/s, batch 10000, ETA 1s
    ✓ fill_email               1000000 rows    6.0s  backfilled 1000000 row(s) of users in 104 batch(es)
  after_ddl          done      1000000 rows    6.0s  1 hook(s)
003_fill_email completed
`, got)
	require.NotContains(t, got, "\r", "no redrawing off a terminal")
	require.NotContains(t, got, "\x1b")
}

func TestRenderBackfillProgressPlainWithoutTotal(t *testing.T) {
	t.Parallel()
	in := phase("003_fill_email", contract.PhaseAfterDDL, 1)
	es := &events{}
	es.add(contract.KindBackfillProgress, in, hook("fill"), progressData(contract.BackfillProgress{Rows: 5000, RowsPerSecond: 4990, BatchSize: 1000})).
		// rows beyond the planner's estimate: no percentage
		add(contract.KindBackfillProgress, in, hook("fill"), progressData(contract.BackfillProgress{Rows: 12000, EstimatedTotal: 10000, RowsPerSecond: 5500, BatchSize: 1000, ETAMS: 0}))
	require.Equal(t, `    ... fill: 5000 rows so far, 4990 rows/s, batch 1000
    ... fill: 12000 rows so far, 5500 rows/s, batch 1000
`, render(RenderOptions{}, es.list))
}

func TestRenderBackfillProgressBar(t *testing.T) {
	t.Parallel()
	evs := backfillRun().list
	var b strings.Builder
	r := NewRenderer(&b, RenderOptions{Terminal: true})
	snapshots := map[int]string{}
	for i, ev := range evs {
		r.Render(ev)
		snapshots[i] = b.String()
	}
	r.Close()
	out := b.String()
	require.NoError(t, r.Err())

	// While the backfill runs, the last line is the bar: the hook, the rows, the worker's
	// rate and ETA, the percentage, and no line of "..." per event.
	for i, want := range map[int][]string{
		3: {"fill_email  120000/1000000 rows, 118000 rows/s, ETA 7s", " 12% |"},
		4: {"fill_email  450000/1000000 rows, 149500 rows/s, ETA 4s", " 45% |"},
		5: {"fill_email  830000/1000000 rows, 165900 rows/s, ETA 1s", " 83% |"},
	} {
		lines := screen(snapshots[i])
		last := lines[len(lines)-1]
		require.True(t, strings.HasPrefix(last, "    fill_email  "), "snapshot %d: %q", i, last)
		for _, w := range want {
			require.Contains(t, last, w, "snapshot %d", i)
		}
		require.Contains(t, last, "█")
		require.Equal(t, []string{"003_fill_email", "  after_ddl          started   1 hook(s)"}, lines[:len(lines)-1],
			"snapshot %d: the bar is redrawn in place", i)
	}
	require.NotContains(t, out, "...")

	// Once the hook completed, the bar is gone and every line is intact.
	require.Equal(t, backfillDone, strings.Join(screen(out), "\n")+"\n")
	require.True(t, strings.HasSuffix(out, backfillDone[strings.Index(backfillDone, "    ✓"):]),
		"the lines after the bar are written whole: %q", out)
	require.Contains(t, out, "\x1b[2K\r    ✓ fill_email", "the bar is erased before the hook's line")
}

func TestRenderBackfillProgressBarMakesWayForOtherLines(t *testing.T) {
	t.Parallel()
	const m1 = "004_two_fills"
	in := phase(m1, contract.PhaseAfterDDL, 1)
	es := &events{}
	es.add(contract.KindPhaseStarted, in, msg("2 hook(s)")).
		add(contract.KindHookStarted, in, hook("fill_a")).
		add(contract.KindBackfillProgress, in, hook("fill_a"), progressData(contract.BackfillProgress{Rows: 100, EstimatedTotal: 1000, RowsPerSecond: 100, ETAMS: 9000})).
		// an event for something else comes while the bar is drawn
		add("run.note", msg("something to say")).
		add(contract.KindBackfillProgress, in, hook("fill_a"), progressData(contract.BackfillProgress{Rows: 500, EstimatedTotal: 2000, RowsPerSecond: 250, ETAMS: 6000})).
		add(contract.KindHookCompleted, in, hook("fill_a"), took(4000, 1000)).
		// the next backfill has no estimate: a spinner
		add(contract.KindHookStarted, in, hook("fill_b")).
		add(contract.KindBackfillProgress, in, hook("fill_b"), progressData(contract.BackfillProgress{Rows: 300, RowsPerSecond: 300})).
		add(contract.KindBackfillProgress, in, hook("fill_b"), progressData(contract.BackfillProgress{Rows: 600, RowsPerSecond: 300}))

	var b strings.Builder
	r := NewRenderer(&b, RenderOptions{Terminal: true})
	for _, ev := range es.list[:5] {
		r.Render(ev)
	}
	lines := screen(b.String())
	require.Equal(t, []string{m1, "  after_ddl          started   2 hook(s)", "run.note: something to say"}, lines[:3],
		"the migration's name heads its first phase event when no migration.started came")
	require.Len(t, lines, 4)
	require.Contains(t, lines[3], "fill_a  500/2000 rows, 250 rows/s, ETA 6s", "drawn again under the line, with the new total")
	require.Contains(t, lines[3], " 25% |")

	for _, ev := range es.list[5:] {
		r.Render(ev)
	}
	lines = screen(b.String())
	require.Len(t, lines, 5)
	require.Equal(t, "    ✓ fill_a                   1000 rows    4.0s", lines[3])
	require.Regexp(t, `^    [⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] fill_b  600 rows so far, 300 rows/s\s*$`, lines[4])

	r.Close()
	require.Equal(t, []string{m1, "  after_ddl          started   2 hook(s)", "run.note: something to say",
		"    ✓ fill_a                   1000 rows    4.0s"}, screen(b.String()), "Close erases the bar")
}

func TestRenderBackfillProgressJSONUnaffected(t *testing.T) {
	t.Parallel()
	evs := backfillRun().list
	out := render(RenderOptions{JSON: true, Terminal: true, Color: true}, evs)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, len(evs))
	for i, l := range lines {
		want, err := json.Marshal(evs[i])
		require.NoError(t, err)
		require.Equal(t, string(want), l)
	}
}

var escape = regexp.MustCompile(`^\x1b\[([0-9;]*)([A-Za-z])`)

// screen is what a terminal shows after s: its lines, with carriage returns and the
// "erase line" sequences applied.
func screen(s string) []string {
	var lines []string
	var cur []rune
	col := 0
	for len(s) > 0 {
		if m := escape.FindStringSubmatch(s); m != nil {
			switch {
			case m[2] == "K" && m[1] == "2":
				cur = nil
			case m[2] == "K" && (m[1] == "" || m[1] == "0"):
				if col < len(cur) {
					cur = cur[:col]
				}
			}
			s = s[len(m[0]):]
			continue
		}
		c, n := utf8.DecodeRuneInString(s)
		s = s[n:]
		switch c {
		case '\n':
			lines = append(lines, strings.TrimRight(string(cur), " "))
			cur, col = nil, 0
		case '\r':
			col = 0
		default:
			for len(cur) <= col {
				cur = append(cur, ' ')
			}
			cur[col] = c
			col++
		}
	}
	if l := strings.TrimRight(string(cur), " "); l != "" {
		lines = append(lines, l)
	}
	return lines
}

// A run of many migrations draws its progress below its lines on a terminal: migrations done
// of the plan's; the run's end erases it. Without a terminal, no bar.
func TestRenderRunProgressBar(t *testing.T) {
	t.Parallel()
	const n = 12
	plan := contract.RunPlan{Direction: "up"}
	for i := range n {
		plan.Versions = append(plan.Versions, fmt.Sprintf("%03d", i+1))
	}
	data, err := json.Marshal(plan)
	require.NoError(t, err)
	es := &events{}
	es.add(contract.KindRunStarted, msg("applying 12 migration(s)"), func(ev *contract.Event) { ev.Data = data })
	for i := range n {
		m := fmt.Sprintf("%03d_plain", i+1)
		es.add(contract.KindMigrationCompleted, mig(m), took(2, 0), msg("applied "+m+": 1 statement(s)"))
	}
	var b strings.Builder
	r := NewRenderer(&b, RenderOptions{Terminal: true})
	for _, ev := range es.list[:6] {
		r.Render(ev)
	}
	lines := screen(b.String())
	require.Len(t, lines, 7, "run started, 5 migrations, the bar: %q", lines)
	require.Equal(t, "005_plain completed  0 rows        2ms  applied 005_plain: 1 statement(s)", lines[5])
	require.Contains(t, lines[6], "migrations 5 of 12")
	require.Contains(t, lines[6], " 41% |")

	es.add(contract.KindRunCompleted, msg("applied 12 migration(s)"))
	for _, ev := range es.list[6:] {
		r.Render(ev)
	}
	lines = screen(b.String())
	require.Len(t, lines, n+2, "the bar is gone: %q", lines)
	require.NotContains(t, strings.Join(lines, "\n"), "migrations 1")

	plain := render(RenderOptions{}, es.list)
	require.NotContains(t, plain, "migrations 5 of 12", "no bar without a terminal")
}
