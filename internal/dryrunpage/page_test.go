package dryrunpage

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

func renderString(t *testing.T, reps ...*contract.DryRunReport) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, Render(&b, reps...))
	return b.String()
}

func TestClassOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		blocks []string
		want   string
	}{
		{blocksAccessExclusive, classReadsWrites},
		{[]string{"reads"}, classReadsWrites},
		{blocksShare, classWrites},
		{[]string{"writes", "row_locks", "maintenance", "ddl"}, classWrites}, // EXCLUSIVE
		{blocksShareUpdateExcl, classNone},
		{blocksRowExclusive, classNone},
		{nil, classNone},
	} {
		require.Equal(t, tc.want, classOfBlocks(tc.blocks), "%v", tc.blocks)
		require.Equal(t, tc.want, classOf(contract.DryRunBlock{Blocks: tc.blocks}), "%v", tc.blocks)
	}
	require.Equal(t, classNew, classOf(contract.DryRunBlock{Blocks: []string{}, New: true}))
}

func TestLayoutOfTheSample(t *testing.T) {
	t.Parallel()
	rep := sample()
	sts := steps("r1", rep)
	c := layout(rep, sts, warningSteps(rep, sts), "r1")

	// A lane per table, in the order the steps first locked them, labelled with its size.
	var names []string
	for _, l := range c.Lanes {
		names = append(names, l.Table)
	}
	require.Equal(t, []string{"users", "orders", "audit_log"}, names)
	require.Equal(t, "150.0 MiB, ~2M rows", c.Lanes[0].Size)

	// users: the assert (grey), the rewrite (red), the index build (orange), the backfill (grey).
	users := c.Lanes[0]
	classes := map[string]string{}
	for _, b := range users.Bars {
		classes[b.Step] = b.Class
	}
	require.Equal(t, map[string]string{"r1-s1": classNone, "r1-s2": classReadsWrites, "r1-s3": classWrites, "r1-s6": classNone}, classes)
	// The gravest is drawn last (on top), on the first row.
	last := users.Bars[len(users.Bars)-1]
	require.Equal(t, classReadsWrites, last.Class)
	require.Equal(t, users.Y+markerStrip, last.Y, "the lane has markers: its bars start below their strip")
	// The rewrite's bar spans its hold: from 6 ms, 1199 ms of the 2250 the chart covers.
	require.Equal(t, 2250.0, c.Span)
	require.Equal(t, labelWidth+2, last.X) // 880 * 6 / 2250 = 2.3
	require.InDelta(t, plotWidth*1199/2250, last.W, 1)
	require.InDelta(t, plotWidth*1100/2250, last.RunW, 1)
	// The index build overlaps the rewrite's hold: a row of its own.
	for _, b := range users.Bars {
		if b.Class == classWrites {
			require.Equal(t, last.Y+barHeight+barGap, b.Y)
		}
	}
	// The emulated CREATE INDEX CONCURRENTLY on orders blocks nothing an application does.
	require.Len(t, c.Lanes[1].Bars, 1)
	require.True(t, c.Lanes[1].Bars[0].Emulated)
	require.Equal(t, classNone, c.Lanes[1].Bars[0].Class)

	// Warnings: on the lane of the table they name, or on the warnings row when their step
	// locked nothing (the VACUUM not executed, the hook not executed).
	require.Len(t, c.Markers, 6)
	onLane := map[string]int{}
	for _, m := range c.Markers {
		onLane[m.Anchor] = m.Y
	}
	require.Equal(t, users.Y+1, onLane["r1-w1"])
	require.Equal(t, c.Lanes[1].Y+1, onLane["r1-w3"])
	require.Equal(t, c.WarningY+2, onLane["r1-w4"])
	require.Equal(t, c.WarningY+2, onLane["r1-w6"])
	// Two warnings at one place are set side by side.
	require.NotEqual(t, c.Markers[0].X, c.Markers[1].X)

	// Bands: the migration over its phases with steps, and those phases.
	require.Len(t, c.Migrations, 1)
	var phases []string
	for _, p := range c.Phases {
		phases = append(phases, p.Label)
	}
	require.Equal(t, []string{"before_validation", "ddl", "after_ddl"}, phases)
	require.Equal(t, "ddl", c.Phases[1].Short)
	require.Empty(t, c.Phases[0].Short, "3 ms of 2.25 s: too narrow for a label")

	// Ticks: 0, 500 ms, ... 2 s.
	var labels []string
	for _, tk := range c.Ticks {
		labels = append(labels, tk.Label)
	}
	require.Equal(t, []string{"0 ms", "500 ms", "1.0 s", "1.5 s", "2.0 s"}, labels)
}

func TestTicks(t *testing.T) {
	t.Parallel()
	require.Equal(t, []float64{0, 100, 200, 300, 400, 500}, ticks(520))
	require.Equal(t, []float64{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}, ticks(1))
	require.Equal(t, []float64{0, 20_000, 40_000, 60_000}, ticks(61_000))
}

func TestPageOfTheSample(t *testing.T) {
	t.Parallel()
	out := renderString(t, sample())
	for _, s := range []string{
		"<title>Dry-run of default · confiture</title>",
		`<strong class="status-succeeded">succeeded</strong>`,
		"<svg class=\"timeline\"",
		`<g class="lane" data-table="users">`, `<g class="lane" data-table="orders">`, `<g class="lane" data-table="audit_log">`,
		`class="bar hold rw"`, `class="bar hold w"`, `class="bar hold none emulated"`,
		`<a href="#r1-s2" data-step="r1-s2">`,
		"blocks reads and writes", "blocks writes", "blocks nothing an application does",
		`<path class="warning"`, `<path class="info"`,
		`<tr id="r1-s2">`, `<tr id="r1-w1">`,
		"ALTER TABLE users ADD COLUMN email text DEFAULT md5(random()::text)",
		"emulated: cannot run in a transaction block: ran as CREATE INDEX",
		"skipped: VACUUM cannot run inside a transaction block",
		"sampled: ran its first batches only",
		"ACCESS EXCLUSIVE on a table over 100.0 MiB; reads or writes waiting over 1.0 s on a table over 10.0 MiB",
	} {
		require.Contains(t, out, s)
	}
	// The warnings are listed gravest first.
	require.Less(t, strings.Index(out, ">table_rewrite<"), strings.Index(out, ">emulated<"))
	// users waits for 1.2 s of reads and writes (the rewrite's hold, the index build inside it).
	require.Regexp(t, `<td>users</td>.*\n<td class="num"><span class="swatch rw"></span>1.2 s</td>`, out)
}

// The page is one file: nothing it shows comes from elsewhere.
func TestPageIsSelfContained(t *testing.T) {
	t.Parallel()
	out := renderString(t, sample(), failed(), nothingPending(), fifty())
	for _, s := range []string{"<link", "src=", "@import", "url(", "https://"} {
		require.NotContains(t, out, s)
	}
	require.Equal(t, []string{"http://www.w3.org/2000/svg"}, uniq(regexp.MustCompile(`http://[^"' ]+`).FindAllString(out, -1)))
	require.Equal(t, 1, strings.Count(out, "<script>"), "the page's own script only")
}

func uniq(ss []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// What the report says is text: SQL, names and messages are escaped wherever they go (HTML,
// SVG titles, attributes).
func TestPageEscapesTheReport(t *testing.T) {
	t.Parallel()
	rep := sample()
	evil := `<script>alert("x")</script>`
	ddl := &rep.Migrations[0].Phases[2]
	ddl.Statements[0].SQL = "INSERT INTO users VALUES ('" + evil + "')"
	ddl.Statements[0].Error = evil
	ddl.Statements[0].Blocks[0].Table = `users"><script>alert(1)</script>`
	rep.Migrations[0].Name = evil
	rep.Target = evil
	rep.Warnings[0].Message = evil
	rep.Warnings[0].Migration = rep.Migrations[0].ID()
	out := renderString(t, rep)
	require.NotContains(t, out, "<script>alert")
	require.NotContains(t, out, `"><script>`)
	require.Contains(t, out, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;")
	require.Equal(t, 1, strings.Count(out, "<script>"))
}

func TestPageOfAFailedReport(t *testing.T) {
	t.Parallel()
	out := renderString(t, failed())
	for _, s := range []string{
		`<strong class="status-failed">failed</strong>`,
		"The dry-run failed: 002_orders_fk: line 2: ERROR: canceling statement due to lock timeout (SQLSTATE 55P03)",
		`<path class="failure"`, `<path class="error"`,
		"error: ERROR: canceling statement due to lock timeout",
		`<g class="lane" data-table="orders">`,
	} {
		require.Contains(t, out, s)
	}
}

func TestPageWithNothingPending(t *testing.T) {
	t.Parallel()
	out := renderString(t, nothingPending())
	require.Contains(t, out, `<strong class="status-nothing">nothing pending</strong>`)
	require.Contains(t, out, "Nothing pending: every migration of the request is already applied on default, so the dry-run ran nothing and nothing would wait.")
	require.NotContains(t, out, "<svg")
	require.NotContains(t, out, "<h3>Statements</h3>")
}

func TestPageWithoutBlocks(t *testing.T) {
	t.Parallel()
	rep := sample()
	for mi := range rep.Migrations {
		for pi := range rep.Migrations[mi].Phases {
			p := &rep.Migrations[mi].Phases[pi]
			for i := range p.Statements {
				p.Statements[i].Blocks = nil
			}
			for i := range p.Hooks {
				p.Hooks[i].Blocks = nil
			}
		}
	}
	out := renderString(t, rep)
	require.Contains(t, out, "No statement or hook locked a table that other sessions use")
	require.Contains(t, out, "<svg", "the phases and warnings still have their timeline")
	require.NotContains(t, out, `class="lane"`)
	require.NotContains(t, out, "<h3>Tables</h3>")
}

// A table the migrations create has a lane of its own kind: nothing waits for it.
func TestPageOfNewTables(t *testing.T) {
	t.Parallel()
	rep := sample()
	ddl := &rep.Migrations[0].Phases[2]
	ddl.Statements = append([]contract.DryRunStatementReport{{Line: 9, SQL: "CREATE TABLE email_log (id int)", DurationMS: 2, Executed: true,
		StartMS: 5.6, Transaction: 2, HeldMS: 1199.9, Created: []string{"email_log (table)"},
		Locks:  []contract.DryRunLock{{Relation: "email_log", Mode: "AccessExclusiveLock"}},
		Blocks: []contract.DryRunBlock{{Table: "email_log", Mode: "AccessExclusiveLock", Blocks: []string{}, New: true, Bytes: 8192}}}}, ddl.Statements...)
	sts := steps("r1", rep)
	c := layout(rep, sts, warningSteps(rep, sts), "r1")
	require.Equal(t, "users", c.Lanes[0].Table, "locked first, by the hook before the DDL")
	require.False(t, c.Lanes[0].New)
	require.Equal(t, "email_log", c.Lanes[1].Table)
	require.True(t, c.Lanes[1].New)
	require.True(t, c.NewTables)
	require.Equal(t, classNew, c.Lanes[1].Bars[0].Class)
	require.Contains(t, c.Lanes[1].Bars[0].Title, "a new table (the migrations create it): no application uses it yet")

	out := renderString(t, rep)
	for _, s := range []string{`class="bar hold new"`, `<tspan class="size" dx="6">new, 8.0 KiB</tspan>`, "a new table: nothing uses it yet",
		`<td>email_log <span class="muted">(new)</span></td>`} {
		require.Contains(t, out, s)
	}
	require.NotContains(t, renderString(t, sample()), "a new table: nothing uses it yet", "no legend for what is not drawn")
}

// A report of a worker before version 2 has no times: its tables, no timeline.
func TestPageOfAVersion1Report(t *testing.T) {
	t.Parallel()
	rep := sample()
	rep.Schema = ""
	out := renderString(t, rep)
	require.Contains(t, out, "a version-1 report, from a worker older than this page")
	require.NotContains(t, out, "<svg")
	require.Contains(t, out, `<tr id="r1-s2">`)
}

func TestPageOfSeveralReports(t *testing.T) {
	t.Parallel()
	b := failed()
	b.Target = "orders"
	out := renderString(t, sample(), b)
	require.Contains(t, out, "<title>Dry-run report · confiture</title>")
	require.Contains(t, out, `<section class="report" id="r1">`)
	require.Contains(t, out, `<section class="report" id="r2">`)
	require.Contains(t, out, "<h2>Target default</h2>")
	require.Contains(t, out, "<h2>Target orders</h2>")
	require.Contains(t, out, `<tr id="r2-s1">`)
	require.Error(t, Render(&bytes.Buffer{}, sample(), nil))
}

// A migration of 50 statements: a bar each, and a page of a reasonable size.
func TestPageOfFiftyStatements(t *testing.T) {
	t.Parallel()
	out := renderString(t, fifty())
	require.Equal(t, 50, strings.Count(out, `class="bar hold `))
	require.Equal(t, 10, strings.Count(out, `<g class="lane"`))
	require.Less(t, len(out), 150_000)
	t.Logf("50 statements: %d bytes", len(out))
	small := renderString(t, sample())
	t.Logf("the sample: %d bytes", len(small))
}

func TestDecodeIsLenient(t *testing.T) {
	t.Parallel()
	data, err := json.Marshal(sample())
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	m["from_a_newer_worker"] = map[string]any{"x": 1}
	data, err = json.Marshal(m)
	require.NoError(t, err)
	rep, err := Decode(data)
	require.NoError(t, err)
	require.Equal(t, sample(), rep)

	_, err = Decode([]byte(`{"rows": 3}`))
	require.ErrorContains(t, err, "not a dry-run report: it has no success field")
	_, err = Decode([]byte(`[`))
	require.ErrorContains(t, err, "not a dry-run report")
}

func TestLabelsFit(t *testing.T) {
	t.Parallel()
	require.Equal(t, "users", cut("users", 22))
	require.Equal(t, "a_very_long_table_nam…", cut("a_very_long_table_name_of_an_app", 22))
	require.Equal(t, "tâbl…", cut("tâble_été", 5), "characters, not bytes")
	require.Equal(t, "after_ddl", band{Label: "after_ddl", W: 80}.fit().Short)
	require.Equal(t, "after…", band{Label: "after_ddl", W: 50}.fit().Short)
	require.Empty(t, band{Label: "after_ddl", W: 20}.fit().Short)
}
