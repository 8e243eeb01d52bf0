package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
	"github.com/confiture-io/confiture-worker/internal/worker"
)

// Sizes and settings of the fleet benchmark.
var (
	fleetTargets       = envInt("BENCH_FLEET_TARGETS", 1000)
	fleetWaveSize      = envInt("BENCH_FLEET_WAVE_SIZE", 100)
	fleetMaxConcurrent = envInt("BENCH_FLEET_MAX_CONCURRENT", 20)
	// fleetConcurrency is the worker's --concurrency (River workers); 0 keeps its default.
	fleetConcurrency = envInt("BENCH_FLEET_CONCURRENCY", 0)
	fleetGooseProcs  = envInt("BENCH_FLEET_GOOSE_PARALLEL", 4)
	// fleetServerConns is the worker's max_server_conns, the cap on its target connections to
	// one PostgreSQL server.
	fleetServerConns = envInt("BENCH_FLEET_MAX_SERVER_CONNS", target.DefaultMaxServerConns)
	// fleetGoose off measures the worker alone, to try its settings quickly.
	fleetGoose = os.Getenv("BENCH_FLEET_GOOSE") != "off"
)

// fleetSampleEvery is how often connections and queue depth are sampled.
const fleetSampleEvery = 50 * time.Millisecond

// fleetRiverSchema is the worker's River schema (worker.Config.RiverSchema's default).
const fleetRiverSchema = "confiture_river"

// The three migrations of every tenant. The third's after_ddl hook updates the small table it
// creates; goose's copy runs the same UPDATE at the end of the migration's Up section.
var fleetMigrations = []struct{ name, up, down, hook string }{
	{
		name: "001_create_accounts",
		up: "CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());\n" +
			"CREATE INDEX accounts_email ON accounts (email);\n",
		down: "DROP TABLE accounts;\n",
	},
	{
		name: "002_add_accounts_plan",
		up:   "ALTER TABLE accounts ADD COLUMN plan text NOT NULL DEFAULT 'free';\n",
		down: "ALTER TABLE accounts DROP COLUMN plan;\n",
	},
	{
		name: "003_create_settings",
		up: "CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL, updated_at timestamptz);\n" +
			"INSERT INTO settings (key, value) VALUES ('theme', 'light'), ('locale', 'en'), ('timezone', 'UTC'), ('digest', 'weekly');\n",
		down: "DROP TABLE settings;\n",
		hook: "UPDATE settings SET value = 'dark', updated_at = now() WHERE key = 'theme';",
	},
}

// BenchmarkFleetRollout applies three migrations (one with an after_ddl hook) to
// BENCH_FLEET_TARGETS schemas of one database, each a target: the worker in one rollout of a
// target group (canary 1, waves of BENCH_FLEET_WAVE_SIZE, at most BENCH_FLEET_MAX_CONCURRENT
// runs at once), beside goose over the same schemas (search_path per schema) one after
// another and with BENCH_FLEET_GOOSE_PARALLEL processes at once; each on a fresh database,
// after a checkpoint. Wall time, targets per second, peak connections and, for the worker,
// peak River queue depth, sampled every 50 ms; where the worker's CPU and its jobs' time go.
// The worker's queue database is a fresh database of its own on the same server, so that its
// connections to the tenants' database are the targets' alone (those max_server_conns caps).
// BENCH_FLEET_CONCURRENCY sets its --concurrency, BENCH_FLEET_MAX_SERVER_CONNS its cap;
// BENCH_FLEET_GOOSE=off leaves goose out, BENCH_FLEET_LOG=FILE keeps the worker's log.
func BenchmarkFleetRollout(b *testing.B) {
	ctx := context.Background()
	bin := buildTools(b, b.TempDir())
	dirs := writeFleetMigrations(b)
	schemas := make([]string, fleetTargets)
	for i := range schemas {
		schemas[i] = fmt.Sprintf("tenant_%04d", i+1)
	}
	b.Logf("machine: %d CPUs; %d targets, waves of %d, max_concurrent %d, worker concurrency %s; goose in %d processes",
		cpuCount(), fleetTargets, fleetWaveSize, fleetMaxConcurrent, orDefault(fleetConcurrency), fleetGooseProcs)

	// Every database first, each with the same empty schemas.
	tenantsDB, queueDB := testdb.New(b), testdb.New(b)
	var serialDB, parallelDB string
	if fleetGoose {
		serialDB, parallelDB = testdb.New(b), testdb.New(b)
	}
	for _, db := range []string{serialDB, parallelDB, tenantsDB} {
		if db != "" {
			createSchemas(b, ctx, db, schemas)
		}
	}

	var serial, parallel gooseResult
	if fleetGoose {
		checkpoint(b, ctx)
		serial = runGoose(b, ctx, bin, dirs.goose, serialDB, schemas, 1)
		verifyGoose(b, ctx, serialDB, schemas)

		checkpoint(b, ctx)
		parallel = runGoose(b, ctx, bin, dirs.goose, parallelDB, schemas, fleetGooseProcs)
		verifyGoose(b, ctx, parallelDB, schemas)
	}

	checkpoint(b, ctx)
	ours := runFleetRollout(b, ctx, bin, dirs.ours, queueDB, tenantsDB)
	verifyOurs(b, ctx, tenantsDB, schemas)

	n := float64(fleetTargets)
	fmt.Printf("\nfleet: %d schema targets in one database, 3 migrations each (one with an after_ddl hook updating a small table), fresh databases\n", fleetTargets)
	fmt.Printf("%-60s %10s %10s %22s %12s %18s\n", "", "wall", "targets/s", "peak conns (tgt/all)", "peak queue", "CPU tool/machine")
	row := func(name string, r fleetResult, queue string) {
		fmt.Printf("%-60s %10s %10.1f %22s %12s %18s\n", name, r.wall.Round(time.Millisecond), n/r.wall.Seconds(),
			fmt.Sprintf("%d / %d", r.peakTarget, r.peakAll), queue,
			fmt.Sprintf("%.0fs / %.0fs", r.toolCPU.Seconds(), r.machineCPU.Seconds()))
	}
	if fleetGoose {
		row("goose "+gooseVersion+", one schema after another", serial.fleetResult, "-")
		row(fmt.Sprintf("goose "+gooseVersion+", %d processes in parallel", fleetGooseProcs), parallel.fleetResult, "-")
	}
	row(fmt.Sprintf("confiture: one rollout (canary 1, waves of %d, %d at once)", fleetWaveSize, fleetMaxConcurrent), ours.fleetResult, strconv.Itoa(ours.peakQueue))
	fmt.Printf("worker: %s; %s; its queue pool up to %d connections (not capped)\n", ours.settings, ours.capText, ours.queuePool)
	fmt.Printf("rollout: %d waves; %s\n", ours.waves, ours.waveTimes)
	fmt.Printf("member runs, accepted to completed: p50 %s, p99 %s, max %s; runs at once (sampled): peak %d\n",
		ours.runP50.Round(time.Millisecond), ours.runP99.Round(time.Millisecond), ours.runMax.Round(time.Millisecond), ours.peakRunning)
	fmt.Printf("River jobs completed: %s\n", ours.jobs)
	fmt.Printf("CPU during the rollout: %s\n", ours.backendCPU)
	fmt.Printf("worker's backends over the samples: %s\n", ours.states)
	b.ReportMetric(ours.wall.Seconds(), "fleet-s")
	b.ReportMetric(n/ours.wall.Seconds(), "targets/s")
	if fleetGoose {
		ratio := float64(ours.wall) / float64(parallel.wall)
		fmt.Printf("target: faster than %d parallel goose processes: %s (%.2fx their time, %.2fx one goose after another); within the connection cap: %s (peak %d target connections, %s)\n\n",
			fleetGooseProcs, met(ratio < 1), ratio, float64(ours.wall)/float64(serial.wall), met(ours.withinCap), ours.peakTarget, ours.capText)
		b.ReportMetric(n/parallel.wall.Seconds(), "goose-parallel-targets/s")
		b.ReportMetric(n/serial.wall.Seconds(), "goose-serial-targets/s")
		b.ReportMetric(ratio, "x-goose-parallel")
	} else {
		fmt.Printf("target: goose not run (BENCH_FLEET_GOOSE=off); within the connection cap: %s (peak %d target connections, %s)\n\n",
			met(ours.withinCap), ours.peakTarget, ours.capText)
	}
	b.ReportMetric(float64(ours.peakTarget), "peak-target-conns")
	b.ReportMetric(float64(ours.peakAll), "peak-conns")
	b.ReportMetric(float64(ours.peakQueue), "peak-queue")
}

func orDefault(n int) string {
	if n == 0 {
		return "default"
	}
	return strconv.Itoa(n)
}

type fleetDirs struct{ ours, goose string }

// writeFleetMigrations writes the three migrations in our layout (with a hooks file) and in
// goose's.
func writeFleetMigrations(b *testing.B) fleetDirs {
	b.Helper()
	root := b.TempDir()
	d := fleetDirs{ours: filepath.Join(root, "ours"), goose: filepath.Join(root, "goose")}
	require.NoError(b, os.MkdirAll(d.ours, 0o755))
	require.NoError(b, os.MkdirAll(d.goose, 0o755))
	for _, m := range fleetMigrations {
		require.NoError(b, os.WriteFile(filepath.Join(d.ours, m.name+".up.sql"), []byte(m.up), 0o644))
		require.NoError(b, os.WriteFile(filepath.Join(d.ours, m.name+".down.sql"), []byte(m.down), 0o644))
		gooseUp := m.up
		if m.hook != "" {
			hooks := "after_ddl:\n  - name: settings_theme\n    hook: sql\n    params:\n      sql: " + m.hook + "\n"
			require.NoError(b, os.WriteFile(filepath.Join(d.ours, m.name+".hooks.yaml"), []byte(hooks), 0o644))
			gooseUp += m.hook + "\n"
		}
		require.NoError(b, os.WriteFile(filepath.Join(d.goose, m.name+".sql"), []byte("-- +goose Up\n"+gooseUp+"\n-- +goose Down\n"+m.down), 0o644))
	}
	return d
}

func createSchemas(b *testing.B, ctx context.Context, dsn string, schemas []string) {
	b.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(b, err)
	defer conn.Close(ctx)
	var sql strings.Builder
	for _, s := range schemas {
		sql.WriteString("CREATE SCHEMA " + s + ";\n")
	}
	_, err = conn.Exec(ctx, sql.String())
	require.NoError(b, err)
}

// fleetResult is what every contender gets measured by.
type fleetResult struct {
	wall                time.Duration
	peakTarget, peakAll int           // client backends: the tool's on the tenants' database / on all its databases
	toolCPU, machineCPU time.Duration // the tool's processes; the whole machine (PostgreSQL included)
}

// --- goose -----------------------------------------------------------------------------------

type gooseResult struct{ fleetResult }

// runGoose runs `goose up` for every schema, procs processes at a time, each with the schema
// as its search_path.
func runGoose(b *testing.B, ctx context.Context, bin tools, dir, dsn string, schemas []string, procs int) gooseResult {
	b.Helper()
	s := startSampler(b, ctx, testdb.AdminURL(), dbName(b, dsn), []string{dbName(b, dsn)}, false)
	cpu0 := machineCPU(b)
	work := make(chan string)
	var mu sync.Mutex
	var toolCPU time.Duration
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for range procs {
		wg.Go(func() {
			for schema := range work {
				cmd := exec.Command(bin.goose, "-dir", dir, "postgres", withSearchPath(b, dsn, schema), "up")
				out, err := cmd.CombinedOutput()
				mu.Lock()
				if cmd.ProcessState != nil {
					toolCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				}
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("goose up in %s: %v: %s", schema, err, out)
				}
				mu.Unlock()
			}
		})
	}
	for _, schema := range schemas {
		work <- schema
	}
	close(work)
	wg.Wait()
	wall := time.Since(start)
	machine := machineCPU(b) - cpu0
	s.stop(b)
	require.NoError(b, firstErr)
	return gooseResult{fleetResult{wall: wall, peakTarget: s.peakTarget, peakAll: s.peakAll, toolCPU: toolCPU, machineCPU: machine}}
}

// withSearchPath is dsn with search_path=schema as a connection parameter: pgx sends it in the
// startup message, so every statement of the session, goose's own table included, lands in
// the schema.
func withSearchPath(b *testing.B, dsn, schema string) string {
	u, err := url.Parse(dsn)
	require.NoError(b, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func dbName(b *testing.B, dsn string) string {
	u, err := url.Parse(dsn)
	require.NoError(b, err)
	return strings.TrimPrefix(u.Path, "/")
}

// verifyGoose checks that every schema got its own goose_db_version with the three
// migrations, and their work.
func verifyGoose(b *testing.B, ctx context.Context, dsn string, schemas []string) {
	b.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(b, err)
	defer conn.Close(ctx)
	var tables, outside int
	require.NoError(b, conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE schemaname LIKE 'tenant\_%'), count(*) FILTER (WHERE schemaname NOT LIKE 'tenant\_%')
		FROM pg_tables WHERE tablename = 'goose_db_version'`).Scan(&tables, &outside))
	require.Equal(b, len(schemas), tables, "a goose_db_version in every schema")
	require.Zero(b, outside, "no goose_db_version outside the tenants' schemas")
	require.Equal(b, 3*len(schemas), sumOver(b, ctx, conn, schemas, `SELECT count(*) FROM %s.goose_db_version WHERE version_id > 0 AND is_applied`))
	verifyWork(b, ctx, conn, schemas)
}

// --- the worker ------------------------------------------------------------------------------

type oursResult struct {
	fleetResult
	peakQueue, peakRunning int
	queuePool              int
	settings, capText      string
	withinCap              bool
	waves                  int
	waveTimes, states      string
	jobs, backendCPU       string
	runP50, runP99, runMax time.Duration
}

// runFleetRollout starts a worker on queueDB whose configuration has the group "tenants" (the
// schemas tenant_* of tenantsDB, a target of its own), publishes one rollout of the migrations
// in dir to it and follows it to rollout.completed.
func runFleetRollout(b *testing.B, ctx context.Context, bin tools, dir, queueDB, tenantsDB string) oursResult {
	b.Helper()
	cfg := filepath.Join(b.TempDir(), "worker.yaml")
	yaml := fmt.Sprintf(`max_server_conns: %d
targets:
  - name: fleet
    dsn: %q
target_groups:
  - name: tenants
    schemas: {target: fleet, match: "tenant_*"}
    rollout: {canary: 1, wave_size: %d, max_concurrent: %d}
`, fleetServerConns, tenantsDB, fleetWaveSize, fleetMaxConcurrent)
	require.NoError(b, os.WriteFile(cfg, []byte(yaml), 0o644))
	args := []string{"--config", cfg, "--log-level", "info"}
	concurrency, which := worker.Config{}.WithDefaults().Concurrency, ", the worker's default"
	if fleetConcurrency > 0 {
		which = ""
		concurrency = fleetConcurrency
		args = append(args, "--concurrency", strconv.Itoa(fleetConcurrency))
	}
	w := startWorkerOn(b, bin, queueDB, args...)
	defer w.stop(b)
	cl, err := client.Connect(w.nats)
	require.NoError(b, err)
	defer cl.Close()

	migs, err := client.LoadDir(dir)
	require.NoError(b, err)
	one := 1
	req := &contract.Request{
		Schema: contract.RequestSchemaV1, ID: fmt.Sprintf("fleet-%d", time.Now().UnixNano()),
		Group: "tenants", Direction: contract.DirectionUp, Migrations: migs,
		Rollout: &contract.RolloutPolicy{Canary: &one, WaveSize: fleetWaveSize, MaxConcurrent: fleetMaxConcurrent},
	}

	s := startSampler(b, ctx, queueDB, dbName(b, tenantsDB), []string{dbName(b, tenantsDB), dbName(b, queueDB)}, true)
	cpu0, wcpu0 := machineCPU(b), processCPU(b, w.cmd.Process.Pid)
	backends0 := backendCPU(b, ctx, queueDB, dbName(b, queueDB), dbName(b, tenantsDB))
	start := time.Now()
	pub, err := cl.Publish(ctx, req)
	require.NoError(b, err)
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	var waveEnds []time.Duration
	final, err := cl.WaitRollout(waitCtx, "tenants", pub.Run, func(ev *contract.Event) {
		if ev.Kind == contract.KindWaveCompleted {
			waveEnds = append(waveEnds, time.Since(start))
		}
	})
	wall := time.Since(start)
	machine, wcpu := machineCPU(b)-cpu0, processCPU(b, w.cmd.Process.Pid)-wcpu0
	backends := backendCPU(b, ctx, queueDB, dbName(b, queueDB), dbName(b, tenantsDB))
	s.stop(b)
	require.NoError(b, err)
	require.NotNil(b, final)
	require.Equal(b, contract.KindRolloutCompleted, final.Kind, "the rollout ended with %s: %s", final.Kind, final.Message)
	var st contract.RolloutStatus
	require.NoError(b, json.Unmarshal(final.Data, &st))
	require.Equal(b, fleetTargets, st.Total)
	require.Equal(b, fleetTargets, st.Completed, "every member completed: %+v", st)

	r := oursResult{
		fleetResult: fleetResult{wall: wall, peakTarget: s.peakTarget, peakAll: s.peakAll, toolCPU: wcpu, machineCPU: machine},
		peakQueue:   s.peakQueue, peakRunning: s.peakRunning, queuePool: 2*concurrency + 6,
		settings: fmt.Sprintf("--concurrency %d (River workers%s), rollout max_concurrent %d, wave_size %d; queue database and tenants' database apart, on the same server",
			concurrency, which, fleetMaxConcurrent, fleetWaveSize),
		waves: st.Waves, states: s.stateSummary(),
	}
	r.backendCPU = fmt.Sprintf("worker process %.1fs; its PostgreSQL backends %.1fs on the queue database, %.1fs on the tenants'; the whole machine %.1fs (other sessions included)",
		wcpu.Seconds(), (backends[dbName(b, queueDB)] - backends0[dbName(b, queueDB)]).Seconds(),
		(backends[dbName(b, tenantsDB)] - backends0[dbName(b, tenantsDB)]).Seconds(), machine.Seconds())
	r.capText, r.withinCap = fmt.Sprintf("max_server_conns %d", fleetServerConns), s.peakTarget <= fleetServerConns
	var waves []string
	prev := time.Duration(0)
	for i, end := range waveEnds {
		name := fmt.Sprintf("wave %d", i)
		if i == 0 {
			name = "canary"
		}
		waves = append(waves, fmt.Sprintf("%s %s", name, (end-prev).Round(10*time.Millisecond)))
		prev = end
	}
	r.waveTimes = strings.Join(waves, ", ")
	r.runP50, r.runP99, r.runMax = runDurations(b, ctx, queueDB, pub.Run)
	r.jobs = jobStats(b, ctx, queueDB)
	if keep := os.Getenv("BENCH_FLEET_LOG"); keep != "" {
		data, err := os.ReadFile(w.log)
		require.NoError(b, err)
		require.NoError(b, os.WriteFile(keep, data, 0o644))
	}
	return r
}

// jobStats says, per kind, how many River jobs completed in the queue database (fresh: the
// rollout's), how long they ran and how long they waited to start, on average.
func jobStats(b *testing.B, ctx context.Context, queueDB string) string {
	b.Helper()
	conn, err := pgx.Connect(ctx, queueDB)
	require.NoError(b, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT kind, count(*), avg(finalized_at - attempted_at), avg(attempted_at - scheduled_at), sum(attempt - 1)
		FROM `+fleetRiverSchema+`.river_job WHERE state = 'completed' GROUP BY kind ORDER BY count(*) DESC`)
	require.NoError(b, err)
	var parts []string
	for rows.Next() {
		var kind string
		var n, retries int
		var ran, waited time.Duration
		require.NoError(b, rows.Scan(&kind, &n, &ran, &waited, &retries))
		parts = append(parts, fmt.Sprintf("%s %d (ran %s, waited %s on average; %d retries)", kind, n,
			ran.Round(100*time.Microsecond), waited.Round(100*time.Microsecond), retries))
	}
	require.NoError(b, rows.Err())
	return strings.Join(parts, ", ")
}

// runDurations returns the p50, p99 and max of the rollout's runs, from created (accepted) to
// finished.
func runDurations(b *testing.B, ctx context.Context, queueDB, rollout string) (p50, p99, maxD time.Duration) {
	b.Helper()
	conn, err := pgx.Connect(ctx, queueDB)
	require.NoError(b, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT finished_at - created_at FROM confiture_queue.runs WHERE rollout = $1 AND finished_at IS NOT NULL`, rollout)
	require.NoError(b, err)
	ds, err := pgx.CollectRows(rows, pgx.RowTo[time.Duration])
	require.NoError(b, err)
	require.NotEmpty(b, ds)
	slices.Sort(ds)
	return ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*99/100)], ds[len(ds)-1]
}

// verifyOurs checks that every schema has the three migrations in its tracking table, and
// their work.
func verifyOurs(b *testing.B, ctx context.Context, dsn string, schemas []string) {
	b.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(b, err)
	defer conn.Close(ctx)
	tracking := make([]string, len(schemas))
	for i, s := range schemas {
		tracking[i] = "confiture_" + s
	}
	require.Equal(b, 3*len(schemas), sumOver(b, ctx, conn, tracking, `SELECT count(*) FROM %s.schema_migrations WHERE complete`))
	verifyWork(b, ctx, conn, schemas)
}

// verifyWork checks the migrations' work in every schema, and none outside them.
func verifyWork(b *testing.B, ctx context.Context, conn *pgx.Conn, schemas []string) {
	b.Helper()
	var plans, outside int
	require.NoError(b, conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE table_schema LIKE 'tenant\_%'),
		(SELECT count(*) FROM pg_tables WHERE tablename IN ('accounts', 'settings') AND schemaname NOT LIKE 'tenant\_%')
		FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'plan'`).Scan(&plans, &outside))
	require.Equal(b, len(schemas), plans, "accounts.plan in every schema")
	require.Zero(b, outside, "no migration ran outside the tenants' schemas")
	require.Equal(b, len(schemas), sumOver(b, ctx, conn, schemas, `SELECT count(*) FROM %s.settings WHERE key = 'theme' AND value = 'dark'`),
		"the settings updated in every schema")
}

// sumOver sums query, a count with one %s for the schema, over schemas.
func sumOver(b *testing.B, ctx context.Context, conn *pgx.Conn, schemas []string, query string) int {
	b.Helper()
	total := 0
	for chunk := range slices.Chunk(schemas, 200) {
		parts := make([]string, len(chunk))
		for i, s := range chunk {
			parts[i] = "(" + fmt.Sprintf(query, s) + ")"
		}
		var n int
		require.NoError(b, conn.QueryRow(ctx, "SELECT "+strings.Join(parts, " + ")).Scan(&n))
		total += n
	}
	return total
}

// --- sampling --------------------------------------------------------------------------------

// sampler samples, every fleetSampleEvery, the client backends on the tool's databases (and,
// with queue, the worker's River queue depth and its runs running), keeping the peaks.
type sampler struct {
	done, stopped chan struct{}
	err           error

	peakTarget, peakAll, peakQueue, peakRunning int
	samples                                     int
	states                                      map[string]int // the worker's backends: state and wait event, over all samples
}

// startSampler connects to dsn (the queue database when queue is set) and samples until stop.
// targetDB is the tenants' database, dbs every database the tool uses.
func startSampler(b *testing.B, ctx context.Context, dsn, targetDB string, dbs []string, queue bool) *sampler {
	b.Helper()
	cc, err := pgx.ParseConfig(dsn)
	require.NoError(b, err)
	cc.RuntimeParams["application_name"] = "confiture-bench"
	conn, err := pgx.ConnectConfig(ctx, cc)
	require.NoError(b, err)
	s := &sampler{done: make(chan struct{}), stopped: make(chan struct{}), states: map[string]int{}}
	go func() {
		defer close(s.stopped)
		defer conn.Close(ctx)
		tick := time.NewTicker(fleetSampleEvery)
		defer tick.Stop()
		for {
			if err := s.sample(ctx, conn, targetDB, dbs, queue); err != nil {
				s.err = err
				return
			}
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) sample(ctx context.Context, conn *pgx.Conn, targetDB string, dbs []string, queue bool) error {
	rows, err := conn.Query(ctx, `SELECT datname, coalesce(application_name, ''), coalesce(state, ''), coalesce(wait_event_type || ':' || wait_event, '')
		FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = ANY($1)`, dbs)
	if err != nil {
		return err
	}
	target, all := 0, 0
	for rows.Next() {
		var db, app, state, wait string
		if err := rows.Scan(&db, &app, &state, &wait); err != nil {
			return err
		}
		all++
		if db == targetDB && (!queue || app == "confiture-worker") {
			target++
		}
		if queue && app == "confiture-worker" {
			key := state
			if wait != "" {
				key += " (" + wait + ")"
			}
			s.states[key]++
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	s.samples++
	s.peakTarget, s.peakAll = max(s.peakTarget, target), max(s.peakAll, all)
	if queue {
		var depth, running int
		err := conn.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM `+fleetRiverSchema+`.river_job WHERE state IN ('available', 'scheduled', 'running', 'retryable')),
			(SELECT count(*) FROM confiture_queue.runs WHERE status = 'running')`).Scan(&depth, &running)
		if err != nil {
			return err
		}
		s.peakQueue, s.peakRunning = max(s.peakQueue, depth), max(s.peakRunning, running)
	}
	return nil
}

func (s *sampler) stop(b *testing.B) {
	b.Helper()
	close(s.done)
	<-s.stopped
	require.NoError(b, s.err, "sampling pg_stat_activity")
}

// stateSummary is the share of each state (and wait event) of the worker's backends over the
// samples, largest first.
func (s *sampler) stateSummary() string {
	total := 0
	for _, n := range s.states {
		total += n
	}
	keys := make([]string, 0, len(s.states))
	for k := range s.states {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return s.states[keys[i]] > s.states[keys[j]] })
	var parts []string
	for _, k := range keys[:min(len(keys), 8)] {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", k, 100*float64(s.states[k])/float64(max(total, 1))))
	}
	return fmt.Sprintf("%.1f on average; %s", float64(total)/float64(max(s.samples, 1)), strings.Join(parts, ", "))
}

// --- CPU -------------------------------------------------------------------------------------

const clockTick = 100 // USER_HZ on Linux

// machineCPU is the busy CPU time of the whole machine so far (every CPU: not idle, not
// waiting for I/O).
func machineCPU(b *testing.B) time.Duration {
	b.Helper()
	data, err := os.ReadFile("/proc/stat")
	require.NoError(b, err)
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)[1:]
	var busy int64
	for i, v := range f {
		n, err := strconv.ParseInt(v, 10, 64)
		require.NoError(b, err)
		if i != 3 && i != 4 && i < 8 { // user nice system idle iowait irq softirq steal; guest is in user
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / clockTick
}

// backendCPU is the CPU time so far of the worker's PostgreSQL backends (application_name
// confiture-worker), by database. The worker's pools keep their connections through a
// rollout, so the difference of two readings is what its backends spent in between.
func backendCPU(b *testing.B, ctx context.Context, dsn string, dbs ...string) map[string]time.Duration {
	b.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(b, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT pid, datname FROM pg_stat_activity WHERE application_name = 'confiture-worker' AND datname = ANY($1)`, dbs)
	require.NoError(b, err)
	out := map[string]time.Duration{}
	for rows.Next() {
		var pid int
		var db string
		require.NoError(b, rows.Scan(&pid, &db))
		if d, err := cpuOf(pid); err == nil { // else PostgreSQL on another machine, or the backend just ended
			out[db] += d
		}
	}
	require.NoError(b, rows.Err())
	return out
}

// processCPU is the CPU time (user and system) of process pid so far.
func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	d, err := cpuOf(pid)
	require.NoError(b, err)
	return d
}

func cpuOf(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	_, rest, _ := strings.Cut(string(data), ") ")
	f := strings.Fields(rest) // from field 3, state
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTick, nil
}
