package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
	"github.com/confiture-io/confiture-worker/internal/worker"
)

// Sizes of the benchmark; the environment can change them.
var (
	sequentialRuns = envInt("BENCH_SEQUENTIAL", 40)
	inFlight       = envInt("BENCH_IN_FLIGHT", 200)
	targets        = envInt("BENCH_TARGETS", 30)
	maxWorkers     = envInt("BENCH_MAX_WORKERS", 30)
	fetchCooldown  = envDuration("BENCH_FETCH_COOLDOWN", worker.Config{}.WithDefaults().FetchCooldown)
)

const chainLength = 7

// BenchmarkEndToEnd prints, for the worker and for the bare River chain on the same database
// with the same River settings: latency p50/p99 one at a time, and completions per second with
// many in flight.
func BenchmarkEndToEnd(b *testing.B) {
	dsn := testdb.New(b)
	ctx := context.Background()
	b.Logf("machine: %d CPUs; FetchCooldown %s; MaxWorkers %d; %d sequential, %d in flight over %d targets",
		cpuCount(), fetchCooldown, maxWorkers, sequentialRuns, inFlight, targets)

	base := runBaseline(b, ctx, dsn)
	ours := runWorker(b, ctx, dsn)

	fmt.Printf("\nend-to-end, publish -> run.completed received (single migration, a no-op hook in every phase)\n")
	fmt.Printf("%-34s %10s %10s %12s\n", "", "p50", "p99", "per second")
	fmt.Printf("%-34s %10s %10s %12.1f\n", "bare River chain of 7 jobs", base.p50.Round(100*time.Microsecond), base.p99.Round(100*time.Microsecond), base.perSecond)
	fmt.Printf("%-34s %10s %10s %12.1f\n", "confiture run (7 jobs + NATS)", ours.p50.Round(100*time.Microsecond), ours.p99.Round(100*time.Microsecond), ours.perSecond)
	latency, throughput := float64(ours.p50)/float64(base.p50), ours.perSecond/base.perSecond
	fmt.Printf("ratio: latency p50 %.2fx the chain's (target <= 1.5x: %s), throughput %.2f of the chain's (target >= 0.6: %s)\n\n",
		latency, met(latency <= 1.5), throughput, met(throughput >= 0.6))
	b.ReportMetric(float64(ours.p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(ours.perSecond, "runs/s")
	b.ReportMetric(float64(base.p50.Microseconds())/1000, "chain-p50-ms")
	b.ReportMetric(base.perSecond, "chains/s")
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

type result struct {
	p50, p99  time.Duration
	perSecond float64
}

func summarize(lat []time.Duration, n int, elapsed time.Duration) result {
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	return result{p50: pct(0.50), p99: pct(0.99), perSecond: float64(n) / elapsed.Seconds()}
}

// --- the baseline: a chain of seven River jobs ---------------------------------------------

type chainArgs struct {
	Chain int `json:"chain"`
	Step  int `json:"step"`
}

func (chainArgs) Kind() string { return "bench_chain" }

func runBaseline(b *testing.B, ctx context.Context, dsn string) result {
	pool := newPool(b, ctx, dsn, int32(maxWorkers+5))
	defer pool.Close()
	_, err := pool.Exec(ctx, `CREATE SCHEMA bench_river`)
	require.NoError(b, err)
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: "bench_river"})
	require.NoError(b, err)
	_, err = migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	require.NoError(b, err)

	var mu sync.Mutex
	finished := map[int]chan time.Time{}
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[chainArgs]) error {
		client := river.ClientFromContext[pgx.Tx](ctx)
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if job.Args.Step < chainLength {
				if _, err := client.InsertTx(ctx, tx, chainArgs{Chain: job.Args.Chain, Step: job.Args.Step + 1}, nil); err != nil {
					return err
				}
			}
			if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
				return err
			}
			if job.Args.Step == chainLength {
				defer func() {
					mu.Lock()
					ch := finished[job.Args.Chain]
					mu.Unlock()
					ch <- time.Now()
				}()
			}
			return nil
		})
	}))
	rc, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Schema: "bench_river", Workers: workers, Logger: slog.New(slog.DiscardHandler),
		Queues:        map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: maxWorkers}},
		FetchCooldown: fetchCooldown, FetchPollInterval: worker.Config{}.WithDefaults().FetchPollInterval,
	})
	require.NoError(b, err)
	require.NoError(b, rc.Start(ctx))
	defer func() { require.NoError(b, rc.Stop(ctx)) }()

	next := 0
	start := func() (int, chan time.Time) {
		next++
		ch := make(chan time.Time, 1)
		mu.Lock()
		finished[next] = ch
		mu.Unlock()
		_, err := rc.Insert(ctx, chainArgs{Chain: next, Step: 1}, nil)
		require.NoError(b, err)
		return next, ch
	}
	// Warm up, then one at a time.
	for range 5 {
		_, ch := start()
		<-ch
	}
	var lat []time.Duration
	for range sequentialRuns {
		t0 := time.Now()
		_, ch := start()
		lat = append(lat, (<-ch).Sub(t0))
	}
	seq := summarize(lat, len(lat), 1)
	// Many in flight.
	t0 := time.Now()
	chans := make([]chan time.Time, 0, inFlight)
	for range inFlight {
		_, ch := start()
		chans = append(chans, ch)
	}
	for _, ch := range chans {
		<-ch
	}
	elapsed := time.Since(t0)
	return result{p50: seq.p50, p99: seq.p99, perSecond: float64(inFlight) / elapsed.Seconds()}
}

// --- the worker: single-migration runs with a no-op hook in every phase ----------------------

func runWorker(b *testing.B, ctx context.Context, dsn string) result {
	cfg := worker.Config{
		DatabaseURL: dsn, DataDir: b.TempDir(), EmbeddedNATSPort: -1,
		Concurrency: maxWorkers, FetchCooldown: fetchCooldown,
		Logger: slog.New(slog.DiscardHandler),
	}
	for i := range targets {
		cfg.Targets = append(cfg.Targets, target.Config{Name: fmt.Sprintf("t%d", i), DSN: dsn, Schema: fmt.Sprintf("t%d", i), MaxConns: 1})
	}
	admin := newPool(b, ctx, dsn, 2)
	for i := range targets {
		_, err := admin.Exec(ctx, fmt.Sprintf(`CREATE SCHEMA t%d`, i))
		require.NoError(b, err)
	}
	admin.Close()
	w, err := worker.New(cfg)
	require.NoError(b, err)
	require.NoError(b, w.Start(ctx))
	defer func() { require.NoError(b, w.Stop(ctx)) }()
	cl, err := client.Connect(w.NATSURL())
	require.NoError(b, err)
	defer cl.Close()

	// A plain subscription sees events as JetStream stores them.
	var mu sync.Mutex
	completed := map[string]chan time.Time{}
	sub, err := cl.NC.Subscribe(contract.EventSubjectPrefix+"*.*."+contract.KindRunCompleted, func(m *nats.Msg) {
		now := time.Now()
		ev, err := contract.DecodeEvent(m.Data)
		if err != nil {
			return
		}
		mu.Lock()
		ch := completed[ev.Run]
		mu.Unlock()
		if ch != nil {
			select {
			case ch <- now:
			default:
			}
		}
	})
	require.NoError(b, err)
	defer sub.Unsubscribe() //nolint:errcheck
	require.NoError(b, cl.NC.Flush())

	n := 0
	publish := func(targetIdx int) chan time.Time {
		n++
		req := noopRequest(fmt.Sprintf("t%d", targetIdx), n)
		ch := make(chan time.Time, 1)
		mu.Lock()
		completed[contract.RunID(req.Target, req.ID)] = ch
		mu.Unlock()
		_, err := cl.Publish(ctx, req)
		require.NoError(b, err)
		return ch
	}
	wait := func(ch chan time.Time) time.Time {
		select {
		case t := <-ch:
			return t
		case <-time.After(2 * time.Minute):
			b.Fatal("a run did not complete within 2 minutes")
			return time.Time{}
		}
	}
	for i := range targets { // warm up every target's connection and tracking schema
		wait(publish(i))
	}
	var lat []time.Duration
	for i := range sequentialRuns {
		t0 := time.Now()
		lat = append(lat, wait(publish(i%targets)).Sub(t0))
	}
	seq := summarize(lat, len(lat), 1)
	t0 := time.Now()
	chans := make([]chan time.Time, 0, inFlight)
	for i := range inFlight {
		chans = append(chans, publish(i%targets))
	}
	for _, ch := range chans {
		wait(ch)
	}
	elapsed := time.Since(t0)
	return result{p50: seq.p50, p99: seq.p99, perSecond: float64(inFlight) / elapsed.Seconds()}
}

// noopRequest is one fresh migration (a new version each time, so every run has work to do)
// with a no-op sql hook in every hook phase.
func noopRequest(targetName string, n int) *contract.Request {
	up := fmt.Sprintf("SELECT %d;", n)
	m := contract.Migration{Version: fmt.Sprintf("%08d", n), Name: "noop", UpSQL: up, Checksum: contract.Checksum(up)}
	for _, p := range []string{"before_validation", "before_ddl", "after_ddl", "after_validation", "cleanup"} {
		m.Hooks = append(m.Hooks, contract.HookSpec{Phase: p, Name: "noop_" + p, Hook: "sql", Params: map[string]any{"sql": "SELECT 1"}})
	}
	return &contract.Request{Schema: contract.RequestSchemaV1, ID: fmt.Sprintf("bench-%d", n),
		Target: targetName, Direction: "up", Migrations: []contract.Migration{m}}
}

func newPool(b *testing.B, ctx context.Context, dsn string, maxConns int32) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(b, err)
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(b, err)
	return pool
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func cpuCount() int { return runtimeNumCPU() }

var runtimeNumCPU = runtime.NumCPU
