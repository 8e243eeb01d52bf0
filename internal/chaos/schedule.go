package chaos

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/tcpproxy"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// Bounds of a schedule's waits once its faults are healed.
const (
	// settleBound is how long every run gets to reach an end (or a pause) after the heal, and
	// again after the paused runs are resumed.
	settleBound = 3 * time.Minute
	// wedgeBound is how long the final request of each target gets to complete.
	wedgeBound = 3 * time.Minute
	// drainBound is how long the outbox gets to be published to the end.
	drainBound = time.Minute
)

// harnessApp is the application_name of the harness's own connections: terminate_backend
// leaves them alone.
const harnessApp = "confiture-chaos"

// The worker configuration of every child (see baseEnv).
var workerSettings = []string{
	"CONFITURE_HTTP_ADDR=off",
	"CONFITURE_PHASE_TIMEOUT=10s", "CONFITURE_RESCUE_AFTER=10s",
	"CONFITURE_RECONCILE_INTERVAL=1s", "CONFITURE_OUTAGE_TOLERANCE=30s",
	"CONFITURE_MAX_ATTEMPTS=5", "CONFITURE_RETRY_BACKOFF=50ms", "CONFITURE_RETRY_BACKOFF_MAX=1s",
	"CONFITURE_BACKFILL_SLICE=1s", "CONFITURE_SHUTDOWN_TIMEOUT=2s", "CONFITURE_LIVENESS_WINDOW=8s",
	"CONFITURE_CONCURRENCY=4",
}

// schedule is one schedule being run: its databases, proxies, NATS server and workers.
type schedule struct {
	t     *testing.T
	plan  *Plan
	res   *Result
	exe   string
	start time.Time

	logDir, dataDir, pluginDir string
	harnessLog                 *os.File

	queueDSN string
	queueDB  string
	queue    *pgxpool.Pool
	targets  []*targetEnv
	nats     *natsServer
	slots    [3]*slot
	river    *river.Client[pgx.Tx]
	client   *client.Client

	// wg counts the goroutines of faults and restarts.
	wg       sync.WaitGroup
	stopping atomic.Bool

	mu sync.Mutex // guards res and published
	// published maps each request id acknowledged by JetStream to its run.
	published map[string]publishedRequest
	// resumed maps each run resumed to the outbox seq of the run.paused it was resumed from.
	resumed map[string]int64
	// rollouts maps each fleet rollout request acknowledged by JetStream to its rollout.
	rollouts map[string]string

	// The fleet's database (fleet.go): the harness's pool, the workers' DSN and configuration.
	fleetDSN, fleetWorkerDSN, fleetConfig string
	fleet                                 *pgxpool.Pool
}

type publishedRequest struct {
	Target string
	Run    string
	K      int
	Final  bool
}

type targetEnv struct {
	plan     *TargetPlan
	dsn      string // direct, for the harness
	db       string
	proxyDSN string // through the proxy, for the workers
	proxy    *tcpproxy.Proxy
	pool     *pgxpool.Pool
}

// RunSchedule runs the schedule of plan with workers started from exe (the test binary), and
// returns what it found. It fails t only when the harness itself cannot go on; violations are
// in the result.
func RunSchedule(t *testing.T, plan *Plan, exe string) *Result {
	e := &schedule{t: t, plan: plan, exe: exe, start: time.Now(), published: map[string]publishedRequest{}, resumed: map[string]int64{},
		rollouts: map[string]string{},
		res: &Result{Seed: plan.Seed, Window: plan.Window.String(), Faults: map[FaultKind]int{}, Skipped: map[FaultKind]int{},
			Runs: map[string]int{}, Violations: []Violation{}}}
	e.setup()
	defer e.teardown()
	e.say("seed %d: %d fault(s) in a %s window; plan, harness log and worker logs in %s", plan.Seed, len(plan.Faults), plan.Window, e.logDir)

	for _, s := range e.slots[:2] {
		if err := s.ensure(time.Now().Add(90 * time.Second)); err != nil {
			t.Fatalf("seed %d: start worker: %v", plan.Seed, err)
		}
	}
	e.connectClients()

	e.window()
	e.heal()
	e.settleAndResume("the heal", settleBound)
	snap := e.snapshot()
	e.checkEffects(snap, false)
	e.checkTracking(snap)

	e.checkFleet(snap, false)

	e.finalRequests()
	snap = e.snapshot()
	e.checkWedge(snap)
	e.checkEffects(snap, true)
	e.checkFleet(snap, true)
	e.checkTracking(snap)
	e.checkRuns(snap)
	e.checkStream()

	for _, r := range snap.Runs {
		if !e.isFinal(r.RequestID) {
			e.res.Runs[r.Status]++
		}
	}
	e.res.LogDir = e.logDir
	e.res.WallSeconds = time.Since(e.start).Seconds()
	if len(e.res.Violations) > 0 {
		e.writeEvidence(snap)
		e.say("seed %d: %d violation(s); logs and evidence in %s", plan.Seed, len(e.res.Violations), e.logDir)
	}
	return e.res
}

// setup creates the schedule's databases, proxies, NATS server and plugin.
func (e *schedule) setup() {
	t := e.t
	var err error
	if e.logDir, err = os.MkdirTemp("", fmt.Sprintf("confiture-chaos-%d-", e.plan.Seed)); err != nil {
		t.Fatal(err)
	}
	if e.harnessLog, err = os.Create(filepath.Join(e.logDir, "harness.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.logDir, "plan.txt"), []byte(e.plan.Describe()), 0o644); err != nil {
		t.Fatal(err)
	}
	e.dataDir, e.pluginDir = t.TempDir(), t.TempDir()
	if err := writePlugin(e.pluginDir); err != nil {
		t.Fatal(err)
	}
	e.queueDSN = testdb.New(t)
	e.queueDB = dbName(t, e.queueDSN)
	e.queue = harnessPool(t, e.queueDSN)
	for i := range e.plan.Targets {
		tp := &e.plan.Targets[i]
		te := &targetEnv{plan: tp, dsn: testdb.New(t)}
		te.db = dbName(t, te.dsn)
		te.pool = harnessPool(t, te.dsn)
		u, err := url.Parse(te.dsn)
		if err != nil {
			t.Fatal(err)
		}
		if te.proxy, err = tcpproxy.New(u.Host); err != nil {
			t.Fatal(err)
		}
		u.Host = te.proxy.Addr()
		q := u.Query()
		q.Set("sslmode", "disable")
		q.Set("connect_timeout", "5")
		u.RawQuery = q.Encode()
		te.proxyDSN = u.String()
		e.targets = append(e.targets, te)
	}
	e.setupFleet()
	if e.nats, err = startNATS(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	for i := range e.slots {
		e.slots[i] = &slot{e: e, idx: i}
	}
}

// teardown stops everything the schedule started; the databases go with the test.
func (e *schedule) teardown() {
	e.stopping.Store(true)
	var wg sync.WaitGroup
	for _, s := range e.slots {
		wg.Add(1)
		go func() { defer wg.Done(); s.stop(syscall.SIGTERM) }()
	}
	wg.Wait()
	e.waitBackground(time.Minute)
	if e.client != nil {
		e.client.Close()
	}
	e.nats.stop()
	for _, te := range e.targets {
		te.proxy.Close()
		te.pool.Close()
	}
	e.fleet.Close()
	e.queue.Close()
	e.harnessLog.Close()
	if len(e.res.Violations) == 0 && os.Getenv("CHAOS_KEEP_LOGS") == "" {
		_ = os.RemoveAll(e.logDir)
	}
}

func dbName(t *testing.T, dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// harnessPool is a small pool of the harness's own, named so that faults spare it.
func harnessPool(t *testing.T, dsn string) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 3
	cfg.ConnConfig.RuntimeParams["application_name"] = harnessApp
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// baseEnv is a child worker's environment: the test process's, less its CONFITURE_ variables,
// plus the campaign's worker settings.
func (e *schedule) baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONFITURE_") {
			env = append(env, kv)
		}
	}
	env = append(env, workerSettings...)
	env = append(env, "CONFITURE_DATABASE_URL="+e.queueDSN, "CONFITURE_NATS_URL="+e.nats.url(),
		"CONFITURE_PLUGIN_PATH="+e.pluginDir)
	for _, te := range e.targets {
		env = append(env, "CONFITURE_TARGET_"+strings.ToUpper(te.plan.Name)+"="+te.proxyDSN)
	}
	return append(env, e.fleetEnv()...)
}

func (e *schedule) connectClients() {
	var err error
	e.client, err = client.Connect(e.nats.url(), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		e.t.Fatalf("seed %d: NATS client: %v", e.plan.Seed, err)
	}
	// Insert-only, as River UI's: it cancels and retries jobs.
	e.river, err = river.NewClient(riverpgxv5.New(e.queue), &river.Config{Schema: runstore.DefaultRiverSchema})
	if err != nil {
		e.t.Fatalf("seed %d: River client: %v", e.plan.Seed, err)
	}
}

// logf writes to the schedule's harness log.
func (e *schedule) logf(format string, args ...any) {
	line := fmt.Sprintf("%8.3fs ", time.Since(e.start).Seconds()) + fmt.Sprintf(format, args...) + "\n"
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = e.harnessLog.WriteString(line)
}

// say logs to the harness log and the test's output.
func (e *schedule) say(format string, args ...any) {
	e.logf(format, args...)
	e.t.Logf(format, args...)
}

func (e *schedule) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.logf("note: %s", msg)
	e.mu.Lock()
	e.res.Notes = append(e.res.Notes, msg)
	e.mu.Unlock()
}

// maxViolations bounds the violations recorded per invariant and schedule: past it, one broken
// thing would bury the others.
const maxViolations = 25

// violate records a violation (once: the checks run before and after the final requests).
func (e *schedule) violate(v Violation) {
	v.Seed = e.plan.Seed
	e.mu.Lock()
	n := 0
	for _, old := range e.res.Violations {
		if old == v {
			e.mu.Unlock()
			return
		}
		if old.Invariant == v.Invariant {
			n++
		}
	}
	if n == maxViolations {
		v = Violation{Seed: v.Seed, Invariant: v.Invariant, What: fmt.Sprintf("more violations of invariant %d left out; see the harness log", v.Invariant)}
	}
	if n <= maxViolations {
		e.res.Violations = append(e.res.Violations, v)
	}
	e.mu.Unlock()
	e.logf("VIOLATION %s", v)
	if n <= maxViolations {
		e.t.Logf("VIOLATION %s", v)
	}
}

func (e *schedule) countFaultDeath() {
	e.mu.Lock()
	e.res.FaultPointDeaths++
	e.mu.Unlock()
}

// background runs fn in a goroutine that heal and teardown wait for.
func (e *schedule) background(fn func()) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		fn()
	}()
}

func (e *schedule) waitBackground(bound time.Duration) bool {
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(bound):
		return false
	}
}

// window publishes the requests and injects the faults at their times.
func (e *schedule) window() {
	type pub struct {
		at time.Duration
		tp *TargetPlan // nil: a rollout of the fleet
		q  Request
	}
	var pubs []pub
	for i := range e.plan.Targets {
		tp := &e.plan.Targets[i]
		for _, q := range tp.Requests {
			pubs = append(pubs, pub{q.At, tp, q})
			if q.Again > 0 {
				pubs = append(pubs, pub{q.At + q.Again, tp, q})
			}
		}
	}
	for _, q := range e.plan.Fleet.Rollouts {
		pubs = append(pubs, pub{q.At, nil, q})
	}
	slices.SortStableFunc(pubs, func(a, b pub) int { return int(a.at - b.at) })
	var pubWG sync.WaitGroup
	start := time.Now()
	stopResumer := make(chan struct{})
	resumerDone := make(chan struct{})
	go func() { defer close(resumerDone); e.resumer(stopResumer) }()
	defer func() { close(stopResumer); <-resumerDone }()
	faults := e.plan.Faults
	for len(pubs) > 0 || len(faults) > 0 {
		if len(faults) == 0 || (len(pubs) > 0 && pubs[0].at <= faults[0].At) {
			p := pubs[0]
			pubs = pubs[1:]
			time.Sleep(time.Until(start.Add(p.at)))
			pubWG.Add(1)
			go func() {
				defer pubWG.Done()
				if p.tp == nil {
					e.publishRollout(p.q)
				} else {
					e.publish(p.tp, p.q, false)
				}
			}()
			continue
		}
		f := faults[0]
		faults = faults[1:]
		time.Sleep(time.Until(start.Add(f.At)))
		e.background(func() { e.inject(f) })
	}
	time.Sleep(time.Until(start.Add(e.plan.Window)))
	e.say("seed %d: fault window over; waiting for the requests in flight", e.plan.Seed)
	pubWG.Wait()
}

// resumeAfter is how long a run stays paused during the window before the harness, as an
// operator would, resumes it.
const resumeAfter = 3 * time.Second

// resumer resumes, during the window, each run that has been paused for resumeAfter: a paused
// run holds its target, and the target's later requests would wait out the window behind it.
func (e *schedule) resumer(stop <-chan struct{}) {
	seen := map[string]time.Time{} // run and the seq of its run.paused -> when first seen
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Second):
		}
		ctx, cancel := qctx()
		runs, err := e.readRuns(ctx)
		var last map[string]runEvent
		if err == nil {
			last, err = e.lastRunLevel(ctx)
		}
		cancel()
		if err != nil {
			continue
		}
		for _, r := range runs {
			ev := last[r.ID]
			if r.Status != runstore.RunPaused || ev.Kind != contract.KindRunPaused {
				continue
			}
			e.mu.Lock()
			done := e.resumed[r.ID] == ev.Seq
			e.mu.Unlock()
			key := fmt.Sprintf("%s/%d", r.ID, ev.Seq)
			if first, ok := seen[key]; !done && !ok {
				seen[key] = time.Now()
			} else if !done && time.Since(first) >= resumeAfter {
				e.resume(r)
			}
		}
	}
}

// publish publishes request q of tp, trying again for a while if NATS is down.
func (e *schedule) publish(tp *TargetPlan, q Request, final bool) {
	e.publishRetrying(tp.request(q), fmt.Sprintf("request %s (%s 1..%d)", q.ID, tp.Name, q.K), func(p client.Published) {
		e.published[q.ID] = publishedRequest{Target: tp.Name, Run: p.Run, K: q.K, Final: final}
	})
}

// publishRetrying publishes req (what, in words), trying again for 45 s if NATS is down, and
// once JetStream acknowledges it, calls record with e.mu held and counts it.
func (e *schedule) publishRetrying(req *contract.Request, what string, record func(client.Published)) {
	deadline := time.Now().Add(45 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		p, err := e.client.Publish(ctx, req)
		cancel()
		if err == nil {
			e.logf("%s published; duplicate=%v; run %s", what, p.Duplicate, p.Run)
			e.mu.Lock()
			record(p)
			e.res.Requests++
			e.mu.Unlock()
			return
		}
		if time.Now().After(deadline) {
			e.note("%s was not published in 45s: %v", what, err)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (e *schedule) isFinal(requestID string) bool { return strings.HasSuffix(requestID, "-final") }

// heal ends every fault: NATS up, every proxy open, the faulty workers replaced by clean ones,
// and at least the two clean workers of slots 0 and 1 running.
func (e *schedule) heal() {
	if !e.waitBackground(3 * time.Minute) {
		e.note("faults still in progress 3 minutes after the window; healing anyway")
	}
	if err := e.nats.start(); err != nil {
		e.t.Fatalf("seed %d: heal: start NATS: %v", e.plan.Seed, err)
	}
	for _, te := range e.targets {
		if err := te.proxy.Heal(); err != nil {
			e.t.Fatalf("seed %d: heal: %v", e.plan.Seed, err)
		}
	}
	for _, s := range e.slots {
		if p := s.current(); p != nil && p.fault != "" {
			e.logf("heal: worker %d still runs with %s; replacing it", s.idx, p.fault)
			s.stop(syscall.SIGKILL)
		}
	}
	for _, s := range e.slots[:2] {
		if err := s.ensure(time.Now().Add(90 * time.Second)); err != nil {
			e.t.Fatalf("seed %d: heal: %v", e.plan.Seed, err)
		}
	}
	e.say("seed %d: healed (workers live: %v %v %v)", e.plan.Seed, e.slots[0].live(), e.slots[1].live(), e.slots[2].live())
}

// qctx returns a context for one harness query.
func qctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}
