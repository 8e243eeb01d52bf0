package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// gooseVersion is the goose the fresh-database benchmark compares with, built from the Go
// module proxy.
const gooseVersion = "v3.30.1"

// Sizes of the fresh-database benchmark.
var (
	freshMigrations = envInt("BENCH_FRESH_MIGRATIONS", 200)
	largeMigrations = envInt("BENCH_LARGE_MIGRATIONS", 1000)
	freshRounds     = envInt("BENCH_FRESH_ROUNDS", 5)
)

// BenchmarkFreshDatabase brings an empty database up to date through migrations without hooks,
// each a CREATE TABLE with a primary key and a CREATE INDEX: the worker (a worker process on
// embedded NATS, then `submit --wait` timed as a process) beside goose (`goose up`) and psql
// with every file in one transaction, each on a fresh database, in rounds (a checkpoint before
// each measurement, the order turning with the rounds); the ratio to goose is the median of
// the rounds' ratios. Then one
// request of BENCH_LARGE_MIGRATIONS migrations on a fresh worker: its time, the worker's peak
// memory (VmHWM) beside a fresh worker's after the smaller request, and the events recorded.
func BenchmarkFreshDatabase(b *testing.B) {
	ctx := context.Background()
	tools := b.TempDir()
	bin := buildTools(b, tools)

	small := writeMigrations(b, freshMigrations)
	var ours, goose, psql []time.Duration
	var ratios []float64
	var smallRSS int64
	for round := range freshRounds {
		// Every database of the round first, then a checkpoint before each measurement, so that
		// none pays for another's writes; the order turns with the rounds.
		w := startWorkerProcess(b, bin)
		gooseDB, psqlDB := testdb.New(b), testdb.New(b)
		measure := []func(){
			func() {
				checkpoint(b, ctx)
				d, _ := w.submit(b, small.ours)
				ours = append(ours, d)
			},
			func() {
				checkpoint(b, ctx)
				goose = append(goose, timeCmd(b, exec.Command(bin.goose, "-dir", small.goose, "postgres", gooseDB, "up")))
			},
			func() {
				checkpoint(b, ctx)
				psql = append(psql, timeCmd(b, exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", small.psql, psqlDB)))
			},
		}
		for i := range measure {
			measure[(i+round)%len(measure)]()
		}
		ratios = append(ratios, float64(ours[round])/float64(goose[round]))
		if round == 0 {
			smallRSS = w.peakRSS(b)
		}
		w.stop(b)
	}
	o, g, p := median(ours), median(goose), median(psql)
	ratio := medianFloat(ratios)
	fmt.Printf("\nfresh database, %d migrations without hooks (CREATE TABLE with a primary key + CREATE INDEX each), %d rounds\n", freshMigrations, freshRounds)
	fmt.Printf("%-44s %10s\n", "", "median")
	fmt.Printf("%-44s %10s   (rounds: %s)\n", "psql, every file in one transaction", p.Round(time.Millisecond), list(psql))
	fmt.Printf("%-44s %10s   (rounds: %s)\n", "goose "+gooseVersion+" up", g.Round(time.Millisecond), list(goose))
	fmt.Printf("%-44s %10s   (rounds: %s)\n", "confiture: submit --wait (worker running)", o.Round(time.Millisecond), list(ours))
	fmt.Printf("ratio to goose, median of the rounds' ratios: %.2fx (target <= 1.3x: %s; rounds: %s); %.2fx psql's median\n",
		ratio, met(ratio <= 1.3), listFloat(ratios), float64(o)/float64(p))
	b.ReportMetric(float64(o.Milliseconds()), "fresh-ms")
	b.ReportMetric(ratio, "x-goose")

	large := writeMigrations(b, largeMigrations)
	w := startWorkerProcess(b, bin)
	d, run := w.submit(b, large.ours)
	rss := w.peakRSS(b)
	events := w.events(b, ctx, run)
	w.stop(b)
	fmt.Printf("\none request of %d migrations without hooks (their SQL and names: %s): completed in %s, %d events recorded\n",
		largeMigrations, mib(large.size), d.Round(time.Millisecond), events)
	fmt.Printf("worker peak memory (VmHWM): %s after %d migrations, %s after %d\n\n",
		mib(rss), largeMigrations, mib(smallRSS), freshMigrations)
	b.ReportMetric(float64(rss)/(1<<20), "peak-MiB")
	b.ReportMetric(float64(events), "events")
}

// tools are the programs the benchmark runs.
type tools struct{ worker, submit, goose string }

func buildTools(b *testing.B, dir string) tools {
	b.Helper()
	t := tools{worker: filepath.Join(dir, "worker"), submit: filepath.Join(dir, "submit"), goose: filepath.Join(dir, "goose")}
	for _, c := range [][]string{{"build", "-o", t.worker, "../../cmd/worker"}, {"build", "-o", t.submit, "../../cmd/submit"}} {
		out, err := exec.Command("go", c...).CombinedOutput()
		require.NoError(b, err, "go %v: %s", c, out)
	}
	// goose, pinned, from the module proxy (outside this module, so that it does not touch go.mod).
	cmd := exec.Command("go", "install", "github.com/pressly/goose/v3/cmd/goose@"+gooseVersion)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	require.NoError(b, err, "go install goose: %s", out)
	return t
}

// migrationSet is the same migrations in three layouts, and the size of their SQL and names.
type migrationSet struct {
	ours, goose, psql string
	size              int64
}

func writeMigrations(b *testing.B, n int) migrationSet {
	b.Helper()
	root := b.TempDir()
	s := migrationSet{ours: filepath.Join(root, "ours"), goose: filepath.Join(root, "goose"), psql: filepath.Join(root, "all.sql")}
	require.NoError(b, os.MkdirAll(s.ours, 0o755))
	require.NoError(b, os.MkdirAll(s.goose, 0o755))
	var all, req bytes.Buffer
	for i := 1; i <= n; i++ {
		up := fmt.Sprintf("CREATE TABLE t%[1]d (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());\nCREATE INDEX t%[1]d_name ON t%[1]d (name);\n", i)
		down := fmt.Sprintf("DROP TABLE t%d;\n", i)
		name := fmt.Sprintf("%05d_create_t%d", i, i)
		require.NoError(b, os.WriteFile(filepath.Join(s.ours, name+".up.sql"), []byte(up), 0o644))
		require.NoError(b, os.WriteFile(filepath.Join(s.ours, name+".down.sql"), []byte(down), 0o644))
		require.NoError(b, os.WriteFile(filepath.Join(s.goose, name+".sql"), []byte("-- +goose Up\n"+up+"\n-- +goose Down\n"+down), 0o644))
		all.WriteString(up)
		req.WriteString(up + down + name)
	}
	require.NoError(b, os.WriteFile(s.psql, all.Bytes(), 0o644))
	s.size = int64(req.Len())
	return s
}

// workerProcess is a worker started as a process of its own, on embedded NATS and a fresh
// queue database.
type workerProcess struct {
	cmd    *exec.Cmd
	nats   string
	queue  string
	log    string // its stdout and stderr
	tools  tools
	exited chan error
}

func startWorkerProcess(b *testing.B, t tools) *workerProcess {
	b.Helper()
	return startWorkerOn(b, t, testdb.New(b))
}

// startWorkerOn starts a worker process on the queue database queue; extra flags come after
// the others (the last of a flag given twice wins).
func startWorkerOn(b *testing.B, t tools, queue string, extra ...string) *workerProcess {
	b.Helper()
	dir := b.TempDir()
	w := &workerProcess{queue: queue, tools: t, exited: make(chan error, 1)}
	ready := filepath.Join(dir, "ready")
	args := []string{"--database-url", w.queue, "--data-dir", filepath.Join(dir, "data"),
		"--ready-file", ready, "--embedded-nats-port", "-1", "--http-addr", "off", "--log-level", "warn", "--log-format", "json"}
	w.cmd = exec.Command(t.worker, append(args, extra...)...)
	w.log = filepath.Join(dir, "worker.log")
	log, err := os.Create(w.log)
	require.NoError(b, err)
	w.cmd.Stdout, w.cmd.Stderr = log, log
	require.NoError(b, w.cmd.Start())
	go func() { w.exited <- w.cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(ready); err == nil && len(data) > 0 {
			w.nats = strings.TrimSpace(string(data))
			return w
		}
		select {
		case err := <-w.exited:
			out, _ := os.ReadFile(log.Name())
			b.Fatalf("the worker exited at start-up (%v): %s", err, out)
		case <-time.After(50 * time.Millisecond):
		}
	}
	b.Fatal("the worker was not ready within 2 minutes")
	return nil
}

// submit runs `submit DIR --wait` against the worker's default target (its queue database,
// fresh with each worker) and returns its wall time and the run's id.
func (w *workerProcess) submit(b *testing.B, dir string) (time.Duration, string) {
	b.Helper()
	cmd := exec.Command(w.tools.submit, dir, "--wait", "--timeout", "10m", "--nats-url", w.nats)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	require.NoError(b, err, "submit: %s", out.String())
	run := ""
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 2 && f[0] == "run" && f[2] == "accepted:" {
			run = f[1]
			break
		}
	}
	require.NotEmpty(b, run, "no run id in submit's output")
	return d, run
}

// peakRSS returns the worker's peak resident set (VmHWM), in bytes.
func (w *workerProcess) peakRSS(b *testing.B) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
	require.NoError(b, err)
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			require.NoError(b, err)
			return kb << 10
		}
	}
	b.Fatal("no VmHWM in /proc status")
	return 0
}

// events counts the events the worker recorded for run.
func (w *workerProcess) events(b *testing.B, ctx context.Context, run string) int {
	b.Helper()
	conn, err := pgx.Connect(ctx, w.queue)
	require.NoError(b, err)
	defer conn.Close(ctx)
	var n int
	require.NoError(b, conn.QueryRow(ctx, `SELECT count(*) FROM confiture_queue.outbox WHERE subject LIKE $1`, "confiture.events.%."+run+".%").Scan(&n))
	return n
}

func (w *workerProcess) stop(b *testing.B) {
	b.Helper()
	_ = w.cmd.Process.Signal(os.Interrupt)
	select {
	case <-w.exited:
	case <-time.After(time.Minute):
		_ = w.cmd.Process.Kill()
		<-w.exited
	}
}

func timeCmd(b *testing.B, cmd *exec.Cmd) time.Duration {
	b.Helper()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	require.NoError(b, err, "%s: %s", cmd.Path, out)
	return d
}

// checkpoint writes out the server's dirty buffers, so that the next measurement does not pay
// for the writes of the one before.
func checkpoint(b *testing.B, ctx context.Context) {
	b.Helper()
	conn, err := pgx.Connect(ctx, testdb.AdminURL())
	require.NoError(b, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CHECKPOINT")
	require.NoError(b, err)
}

func medianFloat(fs []float64) float64 {
	s := slices.Clone(fs)
	slices.Sort(s)
	return s[len(s)/2]
}

func listFloat(fs []float64) string {
	var parts []string
	for _, f := range fs {
		parts = append(parts, fmt.Sprintf("%.2f", f))
	}
	return strings.Join(parts, ", ")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func list(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, d.Round(time.Millisecond).String())
	}
	return strings.Join(parts, ", ")
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
