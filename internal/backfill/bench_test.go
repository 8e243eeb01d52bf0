package backfill_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/confiture-io/confiture-worker/internal/backfill"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// Targets of issue 6.
const (
	benchTargetRatio = 0.8 // backfill rows/s over the single UPDATE's, at least
	benchTargetP99   = 250 * time.Millisecond
)

// benchRows is the size of the generated table; BACKFILL_BENCH_ROWS changes it.
var benchRows = func() int {
	if v, err := strconv.Atoi(os.Getenv("BACKFILL_BENCH_ROWS")); err == nil && v > 0 {
		return v
	}
	return 1_000_000
}()

// benchParams are the hook's parameters in the benchmark: the defaults, with the SET of the
// single UPDATE. BACKFILL_BENCH_PARAMS (a JSON object) adds to them, to try other settings.
func benchParams(b *testing.B, table string) map[string]any {
	p := map[string]any{"table": table, "set": "a = a + 1"}
	if v := os.Getenv("BACKFILL_BENCH_PARAMS"); v != "" {
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			b.Fatalf("BACKFILL_BENCH_PARAMS: %v", err)
		}
	}
	return p
}

// benchDB is the benchmark's database: a target with its tracking schema (hook ledger).
type benchDB struct {
	b      *testing.B
	pool   *pgxpool.Pool
	target *target.Target
	// ctx is tagged with the target, for its shared pool.
	ctx  context.Context
	runs int
}

func newBenchDB(b *testing.B) *benchDB {
	ctx := context.Background()
	set, err := target.NewSet([]target.Config{{Name: "bench", DSN: testdb.New(b)}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(set.Close)
	t, err := set.Get("bench")
	if err != nil {
		b.Fatal(err)
	}
	ctx = target.WithTarget(ctx, t)
	pool, err := t.Pool(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return &benchDB{b: b, pool: pool, target: t, ctx: ctx}
}

func (d *benchDB) exec(sqls ...string) {
	d.b.Helper()
	for _, sql := range sqls {
		if _, err := d.pool.Exec(d.ctx, sql); err != nil {
			d.b.Fatalf("%s: %v", sql, err)
		}
	}
}

// freshTable (re)creates name with benchRows rows, vacuumed and analyzed (hint bits set, the
// visibility map full, statistics current) and ends with a CHECKPOINT: every measurement
// starts from the same state, its table just written and cached, no dirty buffers or WAL of an
// earlier measurement left to flush. Autovacuum is off on the table so that it runs neither in
// one measurement nor in another.
//
// With stale, the statistics are made stale on purpose: the table is analyzed when it holds
// its first 10% of rows, then filled and vacuumed without ANALYZE. The same rows end up in the
// same places, but the planner's histogram of the key stops at 10% of its real range.
func (d *benchDB) freshTable(name string, stale bool) {
	d.exec(`DROP TABLE IF EXISTS `+name,
		`CREATE TABLE `+name+` (id bigint PRIMARY KEY, a int NOT NULL, b text NOT NULL) WITH (autovacuum_enabled = off)`)
	fill := func(from, to int) string {
		return fmt.Sprintf(`INSERT INTO %s SELECT g, g %% 1000, md5(g::text) FROM generate_series(%d, %d) g`, name, from, to)
	}
	if stale {
		d.exec(fill(1, benchRows/10), `ANALYZE `+name, fill(benchRows/10+1, benchRows), `VACUUM `+name)
	} else {
		d.exec(fill(1, benchRows), `VACUUM (ANALYZE) `+name)
	}
	d.exec(`CHECKPOINT`)
}

// checkOnce fails unless every row of name was incremented exactly once.
func (d *benchDB) checkOnce(name string) {
	d.b.Helper()
	var bad, n int64
	if err := d.pool.QueryRow(d.ctx,
		`SELECT count(*) FILTER (WHERE a <> id % 1000 + 1), count(*) FROM `+name).Scan(&bad, &n); err != nil {
		d.b.Fatal(err)
	}
	if bad != 0 || n != int64(benchRows) {
		d.b.Fatalf("%s: %d of %d rows not incremented exactly once", name, bad, n)
	}
}

// measure is one timed run.
type measure struct {
	rows    int64
	elapsed time.Duration
	batches []time.Duration
	retries int
	// after are the batches that started after the concurrent ANALYZE ended.
	after []time.Duration
	note  string
	// wal is the WAL the measurement wrote, in bytes.
	wal int64
	// plans counts the plans the batch statements ran with, by shape, when they were logged.
	plans *planLog
}

func (m measure) rate() float64 { return float64(m.rows) / m.elapsed.Seconds() }

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	// Nearest rank.
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func msf(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000) }

// singleUpdate times one UPDATE of the whole table, in its own transaction, commit included.
func (d *benchDB) singleUpdate(name string) measure {
	lsn := d.lsn()
	start := time.Now()
	tag, err := d.pool.Exec(d.ctx, `UPDATE `+name+` SET a = a + 1`)
	if err != nil {
		d.b.Fatal(err)
	}
	m := measure{rows: tag.RowsAffected(), elapsed: time.Since(start)}
	m.wal = d.walSince(lsn)
	return m
}

func (d *benchDB) lsn() string {
	var lsn string
	if err := d.pool.QueryRow(d.ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		d.b.Fatal(err)
	}
	return lsn
}

func (d *benchDB) walSince(lsn string) int64 {
	var n int64
	if err := d.pool.QueryRow(d.ctx, `SELECT (pg_current_wal_lsn() - $1::pg_lsn)::bigint`, lsn).Scan(&n); err != nil {
		d.b.Fatal(err)
	}
	return n
}

// planLog collects the plans auto_explain reports (as notices) for the batch statements.
type planLog struct {
	mu     sync.Mutex
	table  string
	counts map[string]int
	order  []string
}

// notice takes one auto_explain notice: "duration: ... plan:\nQuery Text: ...\n<plan>". It
// keeps the plan's node names, and whether the plan is generic (parameters left as $n).
func (l *planLog) notice(_ *pgconn.PgConn, n *pgconn.Notice) {
	lines := strings.Split(n.Message, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[1], "Query Text: ") {
		return
	}
	query := strings.TrimPrefix(lines[1], "Query Text: ")
	var kind string
	switch {
	case strings.HasPrefix(query, `UPDATE "`+l.table+`"`):
		kind = "UPDATE"
	case strings.HasPrefix(query, "SELECT ") && strings.Contains(query, ` FROM "`+l.table+`"`):
		kind = "bound"
	default:
		return
	}
	var nodes []string
	generic := false
	for i, line := range lines[2:] {
		t := strings.TrimSpace(line)
		if i > 0 && !strings.HasPrefix(t, "->") {
			generic = generic || strings.Contains(t, "$1")
			continue
		}
		t = strings.TrimSpace(strings.TrimPrefix(t, "->"))
		if j := strings.Index(t, "  ("); j >= 0 {
			t = t[:j]
		}
		nodes = append(nodes, t)
	}
	shape := kind + ": " + strings.Join(nodes, " > ")
	if generic {
		shape += " (generic plan)"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts[shape] == 0 {
		l.order = append(l.order, shape)
	}
	l.counts[shape]++
}

func (l *planLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var sb strings.Builder
	for _, shape := range l.order {
		fmt.Fprintf(&sb, "  %4d x %s\n", l.counts[shape], shape)
	}
	return sb.String()
}

// explainingPool is a pool on the benchmark's database whose sessions log the plan of every
// statement with auto_explain, as notices that plans collects. It needs a superuser (LOAD); nil
// when that fails.
func (d *benchDB) explainingPool(plans *planLog) *pgxpool.Pool {
	cfg := d.pool.Config().Copy()
	cfg.ConnConfig.OnNotice = plans.notice
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_level = notice`)
		return err
	}
	// The copy keeps the shared pool's hooks: its connections too are prepared for the target.
	pool, err := pgxpool.NewWithConfig(d.ctx, cfg)
	if err == nil {
		err = pool.Ping(d.ctx)
	}
	if err != nil {
		d.b.Logf("no plans: auto_explain: %v", err)
		if pool != nil {
			pool.Close()
		}
		return nil
	}
	return pool
}

// backfill runs the hook over name to the end in one call (no slice limit). With analyzeAt > 0
// it starts an ANALYZE of the table from another connection once that many rows are done, and
// logs the plans of the batch statements.
func (d *benchDB) backfill(name string, analyzeAt int64) measure {
	d.runs++
	h, err := backfill.Definition().New(benchParams(d.b, name))
	if err != nil {
		d.b.Fatal(err)
	}
	// The checkpoint goes to the target's hook ledger with every batch, as in the worker.
	store := &target.Checkpoints{Target: d.target, Row: target.LedgerRow{
		Run: fmt.Sprintf("00000000-0000-0000-0000-%012d", d.runs), Version: "1", Phase: "after_ddl", Hook: "fill_" + name, Attempt: 1,
	}}
	var (
		mu       sync.Mutex
		started  bool
		analyzed = -1 // number of batches committed when the ANALYZE ended
		batches  int
		wg       sync.WaitGroup
		note     string
	)
	progress := func(p hooks.BatchProgress) {
		mu.Lock()
		defer mu.Unlock()
		batches++
		if analyzeAt <= 0 || started || p.Rows < analyzeAt {
			return
		}
		started = true
		note = fmt.Sprintf("ANALYZE started after %d rows (batch %d, size %d)", p.Rows, batches, p.BatchSize)
		wg.Go(func() {
			if _, err := d.pool.Exec(d.ctx, `ANALYZE `+name); err != nil {
				d.b.Error(err)
			}
			mu.Lock()
			analyzed = batches
			mu.Unlock()
		})
	}
	var db hooks.Beginner = d.pool
	var plans *planLog
	if analyzeAt > 0 {
		plans = &planLog{table: name, counts: map[string]int{}}
		if pool := d.explainingPool(plans); pool != nil {
			defer pool.Close()
			db = pool
		} else {
			plans = nil
		}
	}
	bc := &hooks.BatchContext{
		Context:     hooks.Context{Hook: store.Row.Hook, Phase: "after_ddl", Logger: slog.New(slog.DiscardHandler)},
		DB:          db,
		Checkpoints: store,
		Progress:    progress,
	}
	lsn := d.lsn()
	start := time.Now()
	out, st, err := backfill.RunWithStats(d.ctx, h.(*backfill.Hook), bc)
	elapsed := time.Since(start)
	if err != nil {
		d.b.Fatal(err)
	}
	if !out.Done {
		d.b.Fatal("backfill not done")
	}
	wg.Wait()
	m := measure{rows: out.Rows, elapsed: elapsed, batches: st.Batches, retries: st.Retries, note: note, wal: d.walSince(lsn), plans: plans}
	if analyzed >= 0 && analyzed < len(st.Batches) {
		// The batch in progress when the ANALYZE ended may have started before: count from
		// the next one.
		m.after = st.Batches[min(analyzed+1, len(st.Batches)):]
		m.note += fmt.Sprintf(", ended during batch %d of %d", analyzed+1, len(st.Batches))
	}
	return m
}

// BenchmarkBackfillVsSingleUpdate compares the backfill hook with a single UPDATE of a whole
// 1,000,000-row table (issue 6), on one database in one run. Each measurement runs on a table
// of its own (id bigint primary key, a int, b text), created, vacuumed and analyzed right
// before it and followed by a CHECKPOINT, so each starts from the same state and leaves the
// same bloat (one dead version of every row, autovacuum off):
//
//   - single UPDATE: UPDATE t SET a = a + 1, one statement, one transaction; measured first and
//     again last, and the backfill is compared with the faster of the two;
//   - backfill: the hook with its default parameters and the same SET, its checkpoint written
//     to the hook ledger with every batch as in the worker (target.Checkpoints);
//   - backfill, stale stats + ANALYZE at 30%: the same on a table whose statistics are stale
//     on purpose (see freshTable), with an ANALYZE of the table from another connection once
//     30% of the rows are done; auto_explain logs the plan of every batch statement.
//
// Every table is checked afterwards: each row incremented exactly once. Targets: the backfill
// at least 0.8 times the single UPDATE's rows/s, p99 batch duration at most 250 ms.
//
//	go test -run '^$' -bench BenchmarkBackfillVsSingleUpdate -benchtime 1x ./internal/backfill/
//
// BACKFILL_BENCH_ROWS changes the table size, BACKFILL_BENCH_PARAMS (JSON) the hook's
// parameters, e.g. '{"target_batch_ms": 100}'.
func BenchmarkBackfillVsSingleUpdate(b *testing.B) {
	d := newBenchDB(b)
	var single1, single2, bf, bfa measure
	run := func(name string, stale bool, f func() measure) measure {
		b.StopTimer()
		d.freshTable(name, stale)
		b.StartTimer()
		m := f()
		b.StopTimer()
		d.checkOnce(name)
		d.exec(`DROP TABLE ` + name)
		b.StartTimer()
		return m
	}
	for i := 0; i < b.N; i++ {
		single1 = run("single", false, func() measure { return d.singleUpdate("single") })
		bf = run("fill", false, func() measure { return d.backfill("fill", 0) })
		bfa = run("fill_analyze", true, func() measure { return d.backfill("fill_analyze", int64(benchRows)*3/10) })
		single2 = run("single", false, func() measure { return d.singleUpdate("single") })
	}
	single := max(single1.rate(), single2.rate())
	ratio := bf.rate() / single
	ratioA := bfa.rate() / single
	p99, p99A := quantile(bf.batches, 0.99), quantile(bfa.batches, 0.99)
	b.ReportMetric(ratio, "backfill/single")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99_batch_ms")
	b.ReportMetric(ratioA, "analyze_backfill/single")
	b.ReportMetric(float64(p99A.Microseconds())/1000, "analyze_p99_batch_ms")

	pass := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	mib := func(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "\nBackfill against a single UPDATE: %d rows, backfill params %v\n", benchRows, benchParams(b, "t"))
	fmt.Fprintln(w, "measure\tvalue\tcompared with\ttarget\t")
	fmt.Fprintf(w, "single UPDATE, first\t%.0f rows/s (%s, WAL %s)\t-\t-\t\n", single1.rate(), msf(single1.elapsed), mib(single1.wal))
	fmt.Fprintf(w, "single UPDATE, last\t%.0f rows/s (%s, WAL %s)\t-\t-\t\n", single2.rate(), msf(single2.elapsed), mib(single2.wal))
	row := func(label string, m measure, r float64) {
		fmt.Fprintf(w, "%s\t%.0f rows/s (%s, WAL %s)\tfaster single UPDATE: %.2fx\t>= %.1fx %s\t\n",
			label, m.rate(), msf(m.elapsed), mib(m.wal), r, benchTargetRatio, pass(r >= benchTargetRatio))
		p := quantile(m.batches, 0.99)
		fmt.Fprintf(w, "  batches: %d, retries: %d; p50 / p99 / max\t%s / %s / %s\ttarget_batch_ms\tp99 <= %s %s\t\n",
			len(m.batches), m.retries, msf(quantile(m.batches, 0.5)), msf(p), msf(slices.Max(m.batches)), msf(benchTargetP99), pass(p <= benchTargetP99))
	}
	row("backfill", bf, ratio)
	row("backfill, stale stats + ANALYZE at 30%", bfa, ratioA)
	if len(bfa.after) > 0 {
		pa := quantile(bfa.after, 0.99)
		fmt.Fprintf(w, "  after the ANALYZE: p50 / p99 / max\t%s / %s / %s\tsame run before it: p99 %s\tp99 <= %s %s\t\n",
			msf(quantile(bfa.after, 0.5)), msf(pa), msf(slices.Max(bfa.after)),
			msf(quantile(bfa.batches[:len(bfa.batches)-len(bfa.after)], 0.99)), msf(benchTargetP99), pass(pa <= benchTargetP99))
	}
	w.Flush()
	fmt.Printf("  (stale statistics at the start; %s)\n", bfa.note)
	if bfa.plans != nil {
		fmt.Printf("plans of the batch statements (auto_explain), backfill + ANALYZE:\n%s", bfa.plans)
	}
	for _, m := range []struct {
		label string
		m     measure
	}{{"backfill", bf}, {"backfill + ANALYZE", bfa}} {
		ds := make([]string, len(m.m.batches))
		for i, d := range m.m.batches {
			ds[i] = strconv.FormatInt(d.Milliseconds(), 10)
		}
		fmt.Printf("%s batch durations (ms): %s\n", m.label, strings.Join(ds, " "))
	}
}
