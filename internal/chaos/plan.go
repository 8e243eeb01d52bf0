package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/fault"
)

// Plan is everything one schedule does, drawn from its seed and nothing else: the migrations of
// each target, when each request is published, and which fault strikes when. Generate gives the
// same Plan for the same seed and window on any machine; what the machine's timing makes of it
// (which job a cancel finds, which backend a termination hits) varies.
type Plan struct {
	Seed    uint64
	Window  time.Duration
	Targets []TargetPlan
	// Fleet is a target group of schema targets migrated by rollouts (fleet.go).
	Fleet  FleetPlan
	Faults []Fault
}

// TargetPlan is one target's migrations and the requests published for it.
type TargetPlan struct {
	Name       string
	Migrations []Migration
	Requests   []Request
}

// Migration roles: the migrations that exercise non-transactional work.
const (
	RolePlugin   = "plugin"   // a hook run by an external plugin (chaos_tally)
	RoleIndex    = "index"    // a CREATE INDEX CONCURRENTLY in its DDL
	RoleBackfill = "backfill" // the big table and its batched backfill in after_ddl
)

// Migration is a generated migration with what the harness knows of its effects.
type Migration struct {
	contract.Migration
	// Role is "" or one of the Role constants.
	Role string
	// Effects are the counters its DDL, its sql hooks and its plugin hook bump, one each.
	Effects []Effect
	// Segmented lists the phases whose hooks commit in more than one target transaction (a
	// batched hook or a plugin among them): such a phase may be seen half done.
	Segmented map[string]bool
	// Rows is the size of the table its DDL fills (big, or the indexed table); 0 otherwise.
	Rows int
	// Index is the name of the index its DDL builds concurrently (RoleIndex).
	Index string
}

// Effect is one counter that a piece of a migration bumps when it commits.
type Effect struct {
	Phase string
	Hook  string
	// Name is the counter: "<version>.<phase>.<hook>" (the DDL's hook is "ddl").
	Name string
}

// Request is one publication of a request for a target.
type Request struct {
	At time.Duration
	ID string
	// K: the request holds migrations 1..K.
	K int
	// Again, when positive, publishes the same request a second time this long after.
	Again time.Duration
}

// FaultKind names a kind of fault.
type FaultKind string

// The faults of a campaign.
const (
	// FaultSIGKILL kills a live worker with SIGKILL and restarts it after Fault.Delay.
	FaultSIGKILL FaultKind = "sigkill"
	// FaultPoint restarts a worker slot with CONFITURE_FAULT=<Point>=kill@<N>: it dies there (if
	// it gets there) and is restarted clean.
	FaultPoint FaultKind = "fault_point"
	// FaultSIGTERM stops a live worker with SIGTERM (graceful) and restarts it after Delay.
	FaultSIGTERM FaultKind = "sigterm"
	// FaultCancelJob cancels a River job of the pipeline that is not finalized.
	FaultCancelJob FaultKind = "cancel_job"
	// FaultTerminateBackend terminates a client backend of the queue or a target database.
	FaultTerminateBackend FaultKind = "terminate_backend"
	// FaultNATSDown stops the NATS server for Duration.
	FaultNATSDown FaultKind = "nats_down"
	// FaultTargetDown makes a target unreachable for Duration: its proxy refuses new
	// connections and cuts the open ones.
	FaultTargetDown FaultKind = "target_down"
	// FaultChurn makes the third worker join, or leave if it runs.
	FaultChurn FaultKind = "worker_churn"
)

// FaultKinds lists every kind, in the order reports show them.
var FaultKinds = []FaultKind{FaultSIGKILL, FaultPoint, FaultSIGTERM, FaultCancelJob, FaultTerminateBackend,
	FaultNATSDown, FaultTargetDown, FaultChurn}

// faultWeights is how often each kind is drawn, relative to the others.
var faultWeights = map[FaultKind]int{
	FaultSIGKILL: 3, FaultPoint: 4, FaultSIGTERM: 2, FaultCancelJob: 3, FaultTerminateBackend: 3,
	FaultNATSDown: 1, FaultTargetDown: 2, FaultChurn: 1,
}

// faultPoints are the points of package fault, with the largest n drawn for each. The points
// between a phase's target commit and its queue commit come twice: a worker lives long enough
// to reach only a few, and a retry after a target commit is where a repeated effect would show.
var faultPoints = []struct {
	point string
	maxN  int
}{
	{fault.IntakeAfterCommit, 2},
	{fault.PhaseBeforeCommit, 4},
	{fault.PhaseBeforeCommit, 4},
	{fault.PhaseAfterCommit, 5},
	{fault.PhaseAfterCommit, 5},
	{fault.OutboxAfterPublish, 4},
	{fault.BackfillAfterBatch, 30},
}

// Fault is one fault of a schedule. Every field is drawn for every kind (so that the random
// stream does not depend on which kinds came before); each kind uses the ones it needs.
type Fault struct {
	At   time.Duration
	Kind FaultKind
	// Pick chooses among what is there when the fault strikes (live workers, unfinished jobs,
	// client backends, targets), modulo their number, in a stable order.
	Pick uint64
	// Delay is how long a killed or stopped worker stays down (0-3s).
	Delay time.Duration
	// Duration is how long NATS (2-8s) or a target (2-10s) stays down.
	Duration time.Duration
	// Point and N are the fault point of FaultPoint: CONFITURE_FAULT=<Point>=kill@<N>.
	Point string
	N     int
}

func (f Fault) String() string {
	s := fmt.Sprintf("%6.2fs %s", f.At.Seconds(), f.Kind)
	switch f.Kind {
	case FaultSIGKILL, FaultSIGTERM:
		s += fmt.Sprintf(" pick=%d restart_after=%s", f.Pick%1000, f.Delay.Round(time.Millisecond))
	case FaultPoint:
		s += fmt.Sprintf(" pick=%d %s=kill@%d", f.Pick%1000, f.Point, f.N)
	case FaultNATSDown, FaultTargetDown:
		s += fmt.Sprintf(" pick=%d for=%s", f.Pick%1000, f.Duration.Round(time.Millisecond))
	default:
		s += fmt.Sprintf(" pick=%d", f.Pick%1000)
	}
	return s
}

// TargetNames are the targets of every schedule.
var TargetNames = []string{"t1", "t2", "t3"}

// Generate draws the plan of the schedule with seed, whose fault window lasts window.
func Generate(seed uint64, window time.Duration) *Plan {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := &Plan{Seed: seed, Window: window}
	for _, name := range TargetNames {
		tp := TargetPlan{Name: name, Migrations: generateMigrations(r)}
		tp.Requests = generateRequests(r, seed, name, len(tp.Migrations), window)
		p.Targets = append(p.Targets, tp)
	}
	p.Faults = generateFaults(r, window)
	p.Fleet = generateFleet(r, seed, window)
	return p
}

// between draws a duration in [lo, hi).
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

func chance(r *rand.Rand, percent int) bool { return r.IntN(100) < percent }

// bump is the statement of an effect: it counts itself in counters.
func bump(name string) string {
	return fmt.Sprintf("INSERT INTO counters VALUES ('%s', 1) ON CONFLICT (name) DO UPDATE SET n = counters.n + 1;", name)
}

// sleepSQL sometimes makes a piece of work last, so that faults land in the middle of phases.
func sleepSQL(r *rand.Rand) string {
	if !chance(r, 40) {
		return ""
	}
	return fmt.Sprintf("SELECT pg_sleep(%.2f); ", 0.1+0.7*r.Float64())
}

// generateMigrations draws 4 to 6 migrations: the first creates the counters; three of the
// others take the plugin, index and backfill roles; every migration gets sql hooks in some of
// its phases, each bumping its own counter, except that a migration with no role or the index
// role has none at all, sometimes.
func generateMigrations(r *rand.Rand) []Migration {
	n := 4 + r.IntN(3)
	roles := make([]string, n)
	others := r.Perm(n - 1)
	roles[others[0]+1], roles[others[1]+1], roles[others[2]+1] = RolePlugin, RoleIndex, RoleBackfill
	migs := make([]Migration, n)
	for i := range migs {
		v := fmt.Sprintf("%03d", i+1)
		m := Migration{Role: roles[i], Segmented: map[string]bool{}}
		m.Version = v
		effect := func(phase, hook string) string {
			name := v + "." + phase + "." + hook
			m.Effects = append(m.Effects, Effect{Phase: phase, Hook: hook, Name: name})
			return name
		}
		sqlHook := func(phase, hook string) {
			sql := sleepSQL(r) + bump(effect(phase, hook))
			m.Hooks = append(m.Hooks, contract.HookSpec{Phase: phase, Name: hook, Hook: "sql", Params: map[string]any{"sql": sql}})
		}
		var up strings.Builder
		switch {
		case i == 0:
			m.Name = "counters"
			up.WriteString("CREATE TABLE counters (name text PRIMARY KEY, n int NOT NULL);\n")
			up.WriteString("CREATE TABLE plugin_keys (key text PRIMARY KEY, name text NOT NULL);\n")
		case m.Role == RoleIndex:
			m.Name = "indexed"
			m.Rows = 10000 + r.IntN(20001)
			m.Index = "indexed_" + v + "_k"
			fmt.Fprintf(&up, "CREATE TABLE indexed_%s (id int PRIMARY KEY, k int NOT NULL);\n", v)
			fmt.Fprintf(&up, "INSERT INTO indexed_%s SELECT g, g %% 997 FROM generate_series(1, %d) g;\n", v, m.Rows)
			// The index is built outside a transaction; the counter comes after it, in the DDL's
			// last transaction, which also writes the tracking row.
			fmt.Fprintf(&up, "CREATE INDEX CONCURRENTLY %s ON indexed_%s (k);\n", m.Index, v)
			m.Segmented[contract.PhaseDDL] = true
		case m.Role == RoleBackfill:
			m.Name = "big"
			m.Rows = 20000 + r.IntN(30001)
			up.WriteString("CREATE TABLE big (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);\n")
			fmt.Fprintf(&up, "INSERT INTO big (id) SELECT g FROM generate_series(1, %d) g;\nANALYZE big;\n", m.Rows)
		case m.Role == RolePlugin:
			m.Name = "tallied"
			fmt.Fprintf(&up, "CREATE TABLE tallied_%s (id int);\n", v)
		default:
			m.Name = "step"
			fmt.Fprintf(&up, "CREATE TABLE step_%s (id int);\n", v)
			// Sometimes without a transaction (goose's NO TRANSACTION): each statement commits
			// on its own, and a retry must not run the early one again.
			if chance(r, 40) {
				m.NoTransaction = true
				up.WriteString(bump(effect(contract.PhaseDDL, "early")) + "\n")
			}
		}
		if s := sleepSQL(r); s != "" {
			up.WriteString(s + "\n")
		}
		up.WriteString(bump(effect(contract.PhaseDDL, "ddl")) + "\n")
		m.UpSQL = up.String()

		if chance(r, 30) {
			m.Hooks = append(m.Hooks, contract.HookSpec{Phase: contract.PhaseBeforeValidation, Name: "sane", Hook: "assert",
				Params: map[string]any{"sql": "SELECT true", "message": "always holds"}})
		}
		// counters exists from the first migration's DDL on: its before_ddl and on_error have
		// nowhere to count.
		if i > 0 && chance(r, 50) {
			sqlHook(contract.PhaseBeforeDDL, "prep")
		}
		var afterDDL []func()
		if chance(r, 60) {
			afterDDL = append(afterDDL, func() { sqlHook(contract.PhaseAfterDDL, "after1") })
			if chance(r, 40) {
				afterDDL = append(afterDDL, func() { sqlHook(contract.PhaseAfterDDL, "after2") })
			}
		}
		if m.Role == RoleBackfill {
			rps := float64(m.Rows) / (3 + 3*r.Float64()) // the backfill spans 3 to 6 seconds
			fill := func() {
				m.Hooks = append(m.Hooks, contract.HookSpec{Phase: contract.PhaseAfterDDL, Name: "fill", Hook: "backfill",
					Params: map[string]any{"table": "big", "set": "counter = counter + 1", "batch_size": 500,
						"max_batch_size": 1000, "rows_per_second": int(rps)}})
				m.Segmented[contract.PhaseAfterDDL] = true
			}
			at := r.IntN(len(afterDDL) + 1) // among the sql hooks, in declaration order
			afterDDL = slices.Insert(afterDDL, at, fill)
		}
		for _, add := range afterDDL {
			add()
		}
		if chance(r, 40) {
			m.Hooks = append(m.Hooks, contract.HookSpec{Phase: contract.PhaseAfterValidation, Name: "check", Hook: "assert",
				Params: map[string]any{"sql": "SELECT count(*) >= 0 FROM counters"}})
		}
		if chance(r, 30) {
			sqlHook(contract.PhaseAfterValidation, "verify")
		}
		if chance(r, 50) {
			sqlHook(contract.PhaseCleanup, "tidy")
		}
		if m.Role == RolePlugin {
			phase := []string{contract.PhaseAfterDDL, contract.PhaseAfterValidation, contract.PhaseCleanup}[r.IntN(3)]
			if chance(r, 50) {
				sqlHook(phase, "pre_tally")
			}
			effect(phase, "tally")
			m.Hooks = append(m.Hooks, contract.HookSpec{Phase: phase, Name: "tally", Hook: PluginName})
			m.Segmented[phase] = true
			if chance(r, 50) {
				sqlHook(phase, "post_tally")
			}
		}
		if i > 0 && chance(r, 50) {
			sqlHook(contract.PhaseOnError, "undo")
		}
		// Sometimes none at all: such migrations in a row share one job, and the one with the
		// index builds it outside a transaction in that job.
		if i > 0 && (m.Role == "" || m.Role == RoleIndex) && chance(r, 40) {
			m.Hooks = nil
			m.Effects = slices.DeleteFunc(m.Effects, func(e Effect) bool { return e.Phase != contract.PhaseDDL })
		}
		m.Checksum = contract.Checksum(m.UpSQL)
		migs[i] = m
	}
	return migs
}

// generateRequests draws 4 to 8 requests for a target with n migrations, at random times in the
// first 85% of the window: each holds migrations 1..k like successive deploys (k grows by 1 or
// 2), sometimes repeats an earlier set (nothing to do), and sometimes is published twice.
func generateRequests(r *rand.Rand, seed uint64, target string, n int, window time.Duration) []Request {
	count := 4 + r.IntN(5)
	reqs := make([]Request, count)
	for i := range reqs {
		reqs[i].At = between(r, window/50, window*85/100)
	}
	slices.SortFunc(reqs, func(a, b Request) int { return int(a.At - b.At) })
	k := 0
	var seen []int
	for i := range reqs {
		if len(seen) > 0 && chance(r, 20) {
			reqs[i].K = seen[r.IntN(len(seen))]
		} else {
			k = min(n, k+1+r.IntN(2))
			reqs[i].K = k
		}
		seen = append(seen, reqs[i].K)
		reqs[i].ID = fmt.Sprintf("chaos-%d-%s-%02d", seed, target, i+1)
		if chance(r, 20) {
			reqs[i].Again = between(r, 200*time.Millisecond, 3*time.Second)
		}
	}
	return reqs
}

// generateFaults draws a fault every 1 to 4.5 seconds of the window.
func generateFaults(r *rand.Rand, window time.Duration) []Fault {
	total := 0
	for _, k := range FaultKinds {
		total += faultWeights[k]
	}
	var out []Fault
	for at := between(r, 1500*time.Millisecond, 3500*time.Millisecond); at < window-time.Second; at += between(r, time.Second, 4500*time.Millisecond) {
		f := Fault{At: at}
		w := r.IntN(total)
		for _, k := range FaultKinds {
			if w -= faultWeights[k]; w < 0 {
				f.Kind = k
				break
			}
		}
		f.Pick = r.Uint64()
		f.Delay = between(r, 0, 3*time.Second)
		fp := faultPoints[r.IntN(len(faultPoints))]
		f.Point, f.N = fp.point, 1+r.IntN(fp.maxN)
		switch f.Kind {
		case FaultNATSDown:
			f.Duration = between(r, 2*time.Second, 8*time.Second)
		default:
			f.Duration = between(r, 2*time.Second, 10*time.Second)
		}
		out = append(out, f)
	}
	return out
}

// request is the contract request of tp's request q.
func (tp *TargetPlan) request(q Request) *contract.Request {
	migs := make([]contract.Migration, q.K)
	for i := range migs {
		migs[i] = tp.Migrations[i].Migration
	}
	return &contract.Request{Schema: contract.RequestSchemaV1, ID: q.ID, Target: tp.Name, Direction: contract.DirectionUp,
		RequestedBy: "chaos", Migrations: migs}
}

// Describe writes the plan in a few lines per target and one per fault.
func (p *Plan) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, window %s\n", p.Seed, p.Window)
	for _, tp := range p.Targets {
		fmt.Fprintf(&b, "target %s:\n", tp.Name)
		for _, m := range tp.Migrations {
			var hooks []string
			for _, h := range m.Hooks {
				hooks = append(hooks, h.Phase+"/"+h.Name+"("+h.Hook+")")
			}
			role := m.Role
			if role == "" {
				role = "-"
			}
			fmt.Fprintf(&b, "  %s_%s role=%s rows=%d hooks=%s\n", m.Version, m.Name, role, m.Rows, strings.Join(hooks, " "))
		}
		for _, q := range tp.Requests {
			again := ""
			if q.Again > 0 {
				again = fmt.Sprintf(" (again after %s)", q.Again.Round(time.Millisecond))
			}
			fmt.Fprintf(&b, "  %6.2fs request %s: 1..%d%s\n", q.At.Seconds(), q.ID, q.K, again)
		}
	}
	fmt.Fprintf(&b, "fleet: group %s of %d schema targets on target %s, 3 migrations (a counter in each DDL and after_ddl hook)\n",
		FleetGroup, p.Fleet.Members, FleetTarget)
	for _, q := range p.Fleet.Rollouts {
		fmt.Fprintf(&b, "  %6.2fs rollout %s: 1..%d, canary 1, waves of 2, 2 at once\n", q.At.Seconds(), q.ID, q.K)
	}
	b.WriteString("faults:\n")
	for _, f := range p.Faults {
		b.WriteString("  " + f.String() + "\n")
	}
	return b.String()
}
