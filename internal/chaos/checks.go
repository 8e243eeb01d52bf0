package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// upPhases is the order of an up migration's phases (SPEC.md, "Phase order").
var upPhases = []string{contract.PhaseBeforeValidation, contract.PhaseBeforeDDL, contract.PhaseDDL,
	contract.PhaseAfterDDL, contract.PhaseAfterValidation, contract.PhaseCleanup}

func phaseIndex(p string) int { return slices.Index(upPhases, p) }

// runLevelKinds are the events that report a change of a run's status.
var runLevelKinds = []string{contract.KindRunAccepted, contract.KindRunStarted, contract.KindRunCompleted,
	contract.KindRunFailed, contract.KindRunPaused, contract.KindRunResumed, contract.KindRunRetried}

// statusEvents maps a run's status to the run-level events that may be its last.
var statusEvents = map[string][]string{
	runstore.RunCompleted: {contract.KindRunCompleted},
	runstore.RunFailed:    {contract.KindRunFailed},
	runstore.RunPaused:    {contract.KindRunPaused},
	runstore.RunQueued:    {contract.KindRunAccepted, contract.KindRunRetried},
	runstore.RunRunning:   {contract.KindRunStarted, contract.KindRunResumed},
}

type runRow struct {
	ID, Target, RequestID, Status string
	Seq, StoppedBy                int64
}

type outboxRow struct {
	Seq       int64
	ID        string
	Subject   string
	Published bool
	// Event is nil when the payload does not decode.
	Event *contract.Event
}

type trackingRow struct {
	Version, Name, Phase string
	Complete             bool
}

func (r trackingRow) String() string { return r.Version + "_" + r.Name + "@" + r.Phase }

type bigState struct{ Rows, Ones, Other int }

type targetState struct {
	Tracking map[string]trackingRow
	Counters map[string]int
	// Big is nil when the table does not exist.
	Big            *bigState
	Indexes        map[string]bool // index name -> valid
	InvalidIndexes []string
}

type snapshot struct {
	Runs    []runRow
	Outbox  []outboxRow
	ByRun   map[string][]*outboxRow
	Targets map[string]*targetState
}

func (e *schedule) readRuns(ctx context.Context) ([]runRow, error) {
	rows, err := e.queue.Query(ctx, `SELECT id::text, seq, target, request_id, status, coalesce(stopped_by_job, 0)
		FROM confiture_queue.runs ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []runRow
	for rows.Next() {
		var r runRow
		if err := rows.Scan(&r.ID, &r.Seq, &r.Target, &r.RequestID, &r.Status, &r.StoppedBy); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// runEvent is a run's last run-level event: its kind and outbox seq.
type runEvent struct {
	Kind string
	Seq  int64
}

// lastRunLevel returns each run's last run-level event in the outbox.
func (e *schedule) lastRunLevel(ctx context.Context) (map[string]runEvent, error) {
	rows, err := e.queue.Query(ctx, `SELECT DISTINCT ON (run) run, kind, seq FROM (
			SELECT split_part(subject, '.', 4) AS run, split_part(subject, '.', 5) || '.' || split_part(subject, '.', 6) AS kind, seq
			FROM confiture_queue.outbox) o
		WHERE kind = ANY($1) ORDER BY run, seq DESC`, runLevelKinds)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]runEvent{}
	for rows.Next() {
		var run string
		var ev runEvent
		if err := rows.Scan(&run, &ev.Kind, &ev.Seq); err != nil {
			return nil, err
		}
		out[run] = ev
	}
	return out, rows.Err()
}

// pending is a published request without its run, or a run neither ended nor paused.
type pending struct {
	Target, Run, What string
}

// settleState is the runs as the harness waits for them.
type settleState struct {
	runs []runRow
	last map[string]runEvent
	// paused are the runs paused with run.paused as their last run-level event, not yet
	// resumed from that very event (its retried job has yet to pick the run up).
	paused []runRow
}

// unsettled lists what keeps the schedule from being settled: a published request without its
// run, a run neither completed nor failed, unless it is paused (settleState.paused) or queued
// behind such a run of its target.
func (e *schedule) unsettled() ([]pending, *settleState, error) {
	ctx, cancel := qctx()
	defer cancel()
	st := &settleState{}
	var err error
	if st.runs, err = e.readRuns(ctx); err != nil {
		return nil, nil, err
	}
	if st.last, err = e.lastRunLevel(ctx); err != nil {
		return nil, nil, err
	}
	have := map[string]bool{}
	pausedTargets := map[string]bool{}
	e.mu.Lock()
	resumed := maps.Clone(e.resumed)
	e.mu.Unlock()
	isPaused := map[string]bool{}
	for _, r := range st.runs {
		have[r.ID] = true
		ev := st.last[r.ID]
		if r.Status == runstore.RunPaused && ev.Kind == contract.KindRunPaused && resumed[r.ID] != ev.Seq {
			isPaused[r.ID], pausedTargets[r.Target] = true, true
			st.paused = append(st.paused, r)
		}
	}
	var out []pending
	e.mu.Lock()
	for id, p := range e.published {
		if !have[p.Run] {
			out = append(out, pending{Target: p.Target, Run: p.Run, What: fmt.Sprintf("request %s: no run recorded", id)})
		}
	}
	e.mu.Unlock()
	for _, r := range st.runs {
		switch {
		case r.Status == runstore.RunCompleted || r.Status == runstore.RunFailed:
		case isPaused[r.ID]:
		case r.Status == runstore.RunQueued && pausedTargets[r.Target]:
		default:
			out = append(out, pending{Target: r.Target, Run: r.ID, What: fmt.Sprintf("request %s: status %s, last run-level event %s",
				r.RequestID, r.Status, st.last[r.ID].Kind)})
		}
	}
	fleet, err := e.unsettledRollouts()
	if err != nil {
		return nil, nil, err
	}
	out = append(out, fleet...)
	slices.SortFunc(out, func(a, b pending) int { return strings.Compare(a.What, b.What) })
	return out, st, nil
}

// waitSettled polls until the schedule is settled or bound passes; it returns what is not.
func (e *schedule) waitSettled(bound time.Duration) ([]pending, *settleState) {
	deadline := time.Now().Add(bound)
	for {
		out, st, err := e.unsettled()
		if err == nil && len(out) == 0 {
			return nil, st
		}
		if time.Now().After(deadline) {
			if err != nil {
				return []pending{{What: "reading the runs: " + err.Error()}}, &settleState{}
			}
			return out, st
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// settleAndResume waits for every run to end or pause, resumes the paused ones by retrying the
// job that paused them, and waits again, for up to four rounds of bound each. What is not
// settled at the end of a round breaks invariant 1.
func (e *schedule) settleAndResume(after string, bound time.Duration) {
	for round := 1; round <= 4; round++ {
		waited := time.Now()
		out, st := e.waitSettled(bound)
		for _, p := range out {
			e.violate(Violation{Invariant: 1, Target: p.Target, Run: p.Run, What: fmt.Sprintf(
				"neither ended nor paused %s after %s: %s", bound, after, p.What)})
		}
		if len(out) > 0 {
			e.noteStuckJobs()
		}
		state := "settled"
		if len(out) > 0 {
			state = fmt.Sprintf("%d run(s) or request(s) not settled", len(out))
		}
		e.say("seed %d: after %s: %s in %s (round %d); %d paused run(s) to resume", e.plan.Seed, after, state,
			time.Since(waited).Round(time.Second), round, len(st.paused))
		if len(st.paused) == 0 {
			return
		}
		for _, r := range st.paused {
			e.resume(r)
		}
		after = "resuming paused runs"
	}
}

// noteStuckJobs notes the River jobs that have been running for more than 15 s, with the
// River client that took them: a job of a worker that died stays running until River's rescuer
// takes it back.
func (e *schedule) noteStuckJobs() {
	ctx, cancel := qctx()
	defer cancel()
	rows, err := e.queue.Query(ctx, `SELECT concat_ws(' ', 'job', id, kind, args::text, 'running for',
			date_trunc('second', now() - attempted_at), 'taken by', attempted_by[array_length(attempted_by, 1)])
		FROM confiture_river.river_job WHERE state = 'running' AND attempted_at < now() - interval '15 seconds' ORDER BY id`)
	if err != nil {
		e.logf("stuck jobs: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var line string
		if rows.Scan(&line) == nil {
			e.note("while runs did not settle: %s", line)
		}
	}
}

var retryJobRe = regexp.MustCompile(`Retry job (\d+)`)

// resume retries the job that paused run r (River JobRetry), after checking that its last
// run.paused event names the same job.
func (e *schedule) resume(r runRow) {
	ctx, cancel := qctx()
	defer cancel()
	var payload []byte
	var seq int64
	err := e.queue.QueryRow(ctx, `SELECT seq, payload FROM confiture_queue.outbox WHERE subject = $1 ORDER BY seq DESC LIMIT 1`,
		contract.EventSubject(r.Target, r.ID, contract.KindRunPaused)).Scan(&seq, &payload)
	if err != nil {
		e.violate(Violation{Invariant: 1, Target: r.Target, Run: r.ID, What: "paused run without a readable run.paused event: " + err.Error()})
		return
	}
	var ev contract.Event
	_ = json.Unmarshal(payload, &ev)
	named := int64(0)
	if m := retryJobRe.FindStringSubmatch(ev.Message); m != nil {
		named, _ = strconv.ParseInt(m[1], 10, 64)
	}
	switch {
	case r.StoppedBy == 0:
		e.violate(Violation{Invariant: 1, Target: r.Target, Run: r.ID, What: fmt.Sprintf("paused run has no stopped_by_job to retry; its run.paused says %q", ev.Message)})
		return
	case named != r.StoppedBy:
		e.violate(Violation{Invariant: 1, Target: r.Target, Run: r.ID, What: fmt.Sprintf("paused run's stopped_by_job is %d but its run.paused says %q", r.StoppedBy, ev.Message)})
	}
	if _, err := e.river.JobRetry(ctx, r.StoppedBy); err != nil {
		e.violate(Violation{Invariant: 1, Target: r.Target, Run: r.ID, What: fmt.Sprintf("retrying job %d, which paused the run: %v", r.StoppedBy, err)})
		return
	}
	e.logf("resumed run %s (%s) by retrying job %d", r.ID, r.Target, r.StoppedBy)
	e.mu.Lock()
	e.resumed[r.ID] = seq
	e.res.Resumed++
	e.mu.Unlock()
}

// snapshot reads the runs, the outbox and every target.
func (e *schedule) snapshot() *snapshot {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := &snapshot{ByRun: map[string][]*outboxRow{}, Targets: map[string]*targetState{}}
	var err error
	if s.Runs, err = e.readRuns(ctx); err != nil {
		e.t.Fatalf("seed %d: read runs: %v", e.plan.Seed, err)
	}
	rows, err := e.queue.Query(ctx, `SELECT seq, id::text, subject, published_at IS NOT NULL, payload FROM confiture_queue.outbox ORDER BY seq`)
	if err != nil {
		e.t.Fatalf("seed %d: read outbox: %v", e.plan.Seed, err)
	}
	for rows.Next() {
		var o outboxRow
		var payload []byte
		if err := rows.Scan(&o.Seq, &o.ID, &o.Subject, &o.Published, &payload); err != nil {
			e.t.Fatalf("seed %d: read outbox: %v", e.plan.Seed, err)
		}
		ev, err := contract.DecodeEvent(payload)
		if err != nil {
			e.violate(Violation{Invariant: 4, What: fmt.Sprintf("outbox event %s on %s does not decode as confiture.event/v1: %v", o.ID, o.Subject, err)})
		} else {
			o.Event = ev
		}
		s.Outbox = append(s.Outbox, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		e.t.Fatalf("seed %d: read outbox: %v", e.plan.Seed, err)
	}
	for i := range s.Outbox {
		if ev := s.Outbox[i].Event; ev != nil {
			s.ByRun[ev.Run] = append(s.ByRun[ev.Run], &s.Outbox[i])
		}
	}
	for _, te := range e.targets {
		st, err := e.readTarget(ctx, te)
		if err != nil {
			e.t.Fatalf("seed %d: read target %s: %v", e.plan.Seed, te.plan.Name, err)
		}
		s.Targets[te.plan.Name] = st
	}
	return s
}

func (e *schedule) readTarget(ctx context.Context, te *targetEnv) (*targetState, error) {
	st := &targetState{Tracking: map[string]trackingRow{}, Counters: map[string]int{}, Indexes: map[string]bool{}}
	exists := func(rel string) (bool, error) {
		var ok bool
		err := te.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, rel).Scan(&ok)
		return ok, err
	}
	if ok, err := exists("confiture.schema_migrations"); err != nil {
		return nil, err
	} else if ok {
		rows, err := te.pool.Query(ctx, `SELECT version, name, phase, complete FROM confiture.schema_migrations ORDER BY version`)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var r trackingRow
			if err := rows.Scan(&r.Version, &r.Name, &r.Phase, &r.Complete); err != nil {
				rows.Close()
				return nil, err
			}
			st.Tracking[r.Version] = r
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	if ok, err := exists("public.counters"); err != nil {
		return nil, err
	} else if ok {
		rows, err := te.pool.Query(ctx, `SELECT name, n FROM counters`)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var name string
			var n int
			if err := rows.Scan(&name, &n); err != nil {
				rows.Close()
				return nil, err
			}
			st.Counters[name] = n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	if ok, err := exists("public.big"); err != nil {
		return nil, err
	} else if ok {
		b := &bigState{}
		if err := te.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE counter = 1), count(*) FILTER (WHERE counter NOT IN (0, 1)) FROM big`).
			Scan(&b.Rows, &b.Ones, &b.Other); err != nil {
			return nil, err
		}
		st.Big = b
	}
	rows, err := te.pool.Query(ctx, `SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name string
		var valid bool
		if err := rows.Scan(&name, &valid); err != nil {
			rows.Close()
			return nil, err
		}
		st.Indexes[name] = valid
		if !valid {
			st.InvalidIndexes = append(st.InvalidIndexes, name)
		}
	}
	rows.Close()
	return st, rows.Err()
}

// expectedCount is how many times an effect of phase p of m may have committed, given the
// migration's tracking row (tracked: it has one): [lo, hi].
//
//   - complete: every phase committed, each effect once;
//   - no tracking row: nothing at or after the DDL committed (the DDL's counter commits in the
//     transaction that writes the row); before_ddl may have committed, or not;
//   - incomplete at phase R: every phase up to R committed, each effect once; a later phase
//     committed nothing, except the phase in progress (the first phase after R that has hooks)
//     when it commits in several transactions (a batched hook or a plugin among its hooks):
//     its effects may be there, or not.
//
// on_error hooks are not ordered with the others: they may have run once, or not. A
// no_transaction migration commits each statement of its DDL on its own, the tracking row with
// the last: without the row, the DDL's effects before its last statement (hook "early") may be
// there, or not.
func expectedCount(m *Migration, row trackingRow, tracked bool, ef Effect) (lo, hi int) {
	p := ef.Phase
	switch {
	case p == contract.PhaseOnError:
		return 0, 1
	case tracked && row.Complete:
		return 1, 1
	case !tracked && p == contract.PhaseBeforeDDL:
		return 0, 1
	case !tracked && p == contract.PhaseDDL && m.NoTransaction && ef.Hook != "ddl":
		return 0, 1
	case !tracked:
		return 0, 0
	}
	reached := phaseIndex(row.Phase)
	if phaseIndex(p) <= reached {
		return 1, 1
	}
	if p == nextWithHooks(m, reached) && m.Segmented[p] {
		return 0, 1
	}
	return 0, 0
}

// nextWithHooks is the first phase after the one at index reached that has hooks in m.
func nextWithHooks(m *Migration, reached int) string {
	for _, p := range upPhases[reached+1:] {
		for _, h := range m.Hooks {
			if h.Phase == p {
				return p
			}
		}
	}
	return ""
}

// checkEffects checks invariants 2 and 3 on the effects: every effect at most once, each where
// the tracking table says its phase committed, the big table and the index as their migration
// left them, and no counter the plan does not know.
func (e *schedule) checkEffects(s *snapshot, final bool) {
	for _, te := range e.targets {
		tp, st := te.plan, s.Targets[te.plan.Name]
		known := map[string]bool{}
		for mi := range tp.Migrations {
			m := &tp.Migrations[mi]
			row, tracked := st.Tracking[m.Version]
			v := func(inv int, format string, args ...any) {
				e.violate(Violation{Invariant: inv, Target: tp.Name, Version: m.Version, What: fmt.Sprintf(format, args...)})
			}
			state := "no tracking row"
			if tracked {
				state = fmt.Sprintf("tracking row complete=%v phase=%s", row.Complete, row.Phase)
				if phaseIndex(row.Phase) < phaseIndex(contract.PhaseDDL) {
					v(3, "%s: the phase reached is not a phase at or after ddl", state)
					continue
				}
			}
			for _, ef := range m.Effects {
				known[ef.Name] = true
				n := st.Counters[ef.Name]
				if n > 1 {
					v(2, "effect %s committed %d times (%s)", ef.Name, n, state)
					continue
				}
				lo, hi := expectedCount(m, row, tracked, ef)
				switch {
				case n < lo:
					v(3, "effect %s missing although its phase committed (%s)", ef.Name, state)
				case n > hi:
					v(3, "effect %s committed although its phase did not (%s)", ef.Name, state)
				}
			}
			switch m.Role {
			case RoleBackfill:
				e.checkBig(m, st.Big, row, tracked, v)
			case RoleIndex:
				valid, exists := st.Indexes[m.Index]
				switch {
				case tracked && !exists:
					v(3, "index %s missing although its migration's DDL completed", m.Index)
				case exists && !valid && (tracked || final):
					v(2, "index %s is INVALID (%s)", m.Index, state)
				}
			}
		}
		for name, n := range st.Counters {
			if !known[name] {
				e.violate(Violation{Invariant: 2, Target: tp.Name, What: fmt.Sprintf("counter %s=%d is no effect of the plan", name, n)})
			}
		}
		for _, idx := range st.InvalidIndexes {
			if !isPlanIndex(tp, idx) {
				e.violate(Violation{Invariant: 2, Target: tp.Name, What: fmt.Sprintf("index %s is INVALID", idx)})
			}
		}
	}
}

func isPlanIndex(tp *TargetPlan, name string) bool {
	for _, m := range tp.Migrations {
		if m.Index == name {
			return true
		}
	}
	return false
}

// checkBig checks the backfill's table: it exists with its rows exactly when the migration's
// DDL committed (one transaction creates both), every counter is 0 or 1, and all are 1 once the
// backfill's phase (after_ddl) committed.
func (e *schedule) checkBig(m *Migration, b *bigState, row trackingRow, tracked bool, v func(int, string, ...any)) {
	switch {
	case b == nil && tracked:
		v(3, "table big missing although its migration's DDL committed")
	case b == nil:
	case !tracked:
		v(3, "table big exists without its migration's tracking row")
	default:
		if b.Rows != m.Rows {
			v(2, "table big has %d rows; its DDL inserts %d", b.Rows, m.Rows)
		}
		if b.Other > 0 {
			v(2, "%d row(s) of big have a counter other than 0 or 1: the backfill repeated batches", b.Other)
		}
		if (row.Complete || phaseIndex(row.Phase) >= phaseIndex(contract.PhaseAfterDDL)) && b.Ones != b.Rows {
			v(2, "the backfill's phase committed (complete=%v phase=%s) but only %d of %d rows have counter 1", row.Complete, row.Phase, b.Ones, b.Rows)
		}
	}
}

// unended returns a run of target that is neither completed nor failed, if there is one.
func (s *snapshot) unended(target string) *runRow {
	for i, r := range s.Runs {
		if r.Target == target && r.Status != runstore.RunCompleted && r.Status != runstore.RunFailed {
			return &s.Runs[i]
		}
	}
	return nil
}

// finalEvent returns the last run.completed or run.failed of the runs of target.
func (s *snapshot) finalEvent(target string) *outboxRow {
	var last *outboxRow
	for i := range s.Outbox {
		o := &s.Outbox[i]
		if o.Event != nil && o.Event.Target == target && (o.Event.Kind == contract.KindRunCompleted || o.Event.Kind == contract.KindRunFailed) {
			last = o
		}
	}
	return last
}

// checkTracking checks invariant 3 on the tracking table: its incomplete rows are the ones the
// final event of the target's last finished run lists, and every migration a migration.completed
// event reported is complete.
func (e *schedule) checkTracking(s *snapshot) {
	for _, te := range e.targets {
		name, st := te.plan.Name, s.Targets[te.plan.Name]
		var incomplete []string
		for _, r := range st.Tracking {
			if !r.Complete {
				incomplete = append(incomplete, r.String())
			}
		}
		slices.Sort(incomplete)
		if r := s.unended(name); r != nil {
			// Its runs are not all over (invariant 1 reports it): the last run's event need not
			// describe the target yet.
			e.logf("target %s: run %s is %s; its tracking table is not compared with the last final event", name, r.ID, r.Status)
			continue
		}
		last := s.finalEvent(name)
		if last == nil {
			if len(incomplete) > 0 {
				e.violate(Violation{Invariant: 3, Target: name, What: fmt.Sprintf("incomplete migrations %v but no run of the target ended", incomplete)})
			}
			continue
		}
		var sum contract.RunSummary
		if len(last.Event.Data) > 0 {
			if err := json.Unmarshal(last.Event.Data, &sum); err != nil {
				e.violate(Violation{Invariant: 3, Target: name, Run: last.Event.Run, What: fmt.Sprintf("%s data does not decode: %v", last.Event.Kind, err)})
				continue
			}
		}
		var said []string
		for _, m := range sum.Incomplete {
			said = append(said, trackingRow{Version: m.Version, Name: m.Name, Phase: m.Phase}.String())
		}
		slices.Sort(said)
		if !slices.Equal(said, incomplete) {
			if sum.Unread != "" {
				e.note("target %s: the last run's %s could not read the tracking table (%s), which has incomplete migrations %v",
					name, last.Event.Kind, sum.Unread, incomplete)
			} else {
				e.violate(Violation{Invariant: 3, Target: name, Run: last.Event.Run, What: fmt.Sprintf(
					"the tracking table's incomplete migrations are %v, the last run's %s (event %s) says %v", incomplete, last.Event.Kind, last.ID, said)})
			}
		}
		for _, r := range s.Runs {
			if r.Target != name {
				continue
			}
			for _, o := range s.ByRun[r.ID] {
				if o.Event.Kind != contract.KindMigrationCompleted {
					continue
				}
				if row, ok := st.Tracking[o.Event.Version]; !ok || !row.Complete {
					e.violate(Violation{Invariant: 3, Target: name, Run: r.ID, Version: o.Event.Version, What: fmt.Sprintf(
						"migration.completed (event %s) but the tracking row is %+v (present: %v)", o.ID, row, ok)})
				}
			}
		}
	}
}

// checkRuns checks invariant 1: every published request has its run, every run ended
// completed or failed, its status is what its last run-level event says, and no request of the
// campaign (all valid) was rejected.
func (e *schedule) checkRuns(s *snapshot) {
	have := map[string]runRow{}
	for _, r := range s.Runs {
		have[r.ID] = r
	}
	e.mu.Lock()
	published := make(map[string]publishedRequest, len(e.published))
	for k, v := range e.published {
		published[k] = v
	}
	e.mu.Unlock()
	for id, p := range published {
		if _, ok := have[p.Run]; !ok {
			e.violate(Violation{Invariant: 1, Target: p.Target, Run: p.Run, What: fmt.Sprintf("request %s was acknowledged by JetStream but no run was recorded", id)})
		}
	}
	for _, r := range s.Runs {
		var last *outboxRow
		for _, o := range s.ByRun[r.ID] {
			if slices.Contains(runLevelKinds, o.Event.Kind) {
				last = o
			}
			if o.Event.Kind == contract.KindRunRejected {
				e.violate(Violation{Invariant: 1, Target: r.Target, Run: r.ID, What: "a valid request was rejected: " + o.Event.Message})
			}
		}
		lastKind := "(none)"
		if last != nil {
			lastKind = last.Event.Kind
		}
		if r.Status != runstore.RunCompleted && r.Status != runstore.RunFailed {
			e.violate(Violation{Invariant: 1, Target: r.Target, Run: r.ID, What: fmt.Sprintf(
				"request %s: the run never ended: status %s when the schedule ended, last run-level event %s", r.RequestID, r.Status, lastKind)})
		}
		if last == nil || !slices.Contains(statusEvents[r.Status], lastKind) {
			e.violate(Violation{Invariant: 1, Target: r.Target, Run: r.ID, What: fmt.Sprintf(
				"request %s: status %s in the runs table, but the last run-level event is %s", r.RequestID, r.Status, lastKind)})
		}
	}
}

// finalRequests publishes, for each target, a request with all its migrations, and waits for
// the runs to end.
func (e *schedule) finalRequests() {
	for i := range e.plan.Targets {
		tp := &e.plan.Targets[i]
		e.publish(tp, Request{ID: e.finalID(tp.Name), K: len(tp.Migrations)}, true)
	}
	e.finalRollout()
	e.settleAndResume("the final requests", wedgeBound)
}

func (e *schedule) finalID(target string) string {
	return fmt.Sprintf("chaos-%d-%s-final", e.plan.Seed, target)
}

// checkWedge checks invariant 5: each target's final request completed, every migration of the
// target complete, none left incomplete.
func (e *schedule) checkWedge(s *snapshot) {
	for _, te := range e.targets {
		name := te.plan.Name
		e.mu.Lock()
		p, ok := e.published[e.finalID(name)]
		e.mu.Unlock()
		if !ok {
			e.violate(Violation{Invariant: 5, Target: name, What: "the final request could not be published"})
			continue
		}
		var status string
		for _, r := range s.Runs {
			if r.ID == p.Run {
				status = r.Status
			}
		}
		var final *contract.Event
		for _, o := range s.ByRun[p.Run] {
			if contract.IsTerminal(o.Event.Kind) {
				final = o.Event
			}
		}
		switch {
		case status != runstore.RunCompleted || final == nil || final.Kind != contract.KindRunCompleted:
			kind, msg := "(none)", ""
			if final != nil {
				kind, msg = final.Kind, final.Message
			}
			e.violate(Violation{Invariant: 5, Target: name, Run: p.Run, What: fmt.Sprintf(
				"the final request with all %d migrations did not complete within %s: status %q, final event %s %s", p.K, wedgeBound, status, kind, msg)})
		default:
			var sum contract.RunSummary
			_ = json.Unmarshal(final.Data, &sum)
			if len(sum.Incomplete) > 0 {
				e.violate(Violation{Invariant: 5, Target: name, Run: p.Run, What: fmt.Sprintf("the final run completed but lists incomplete migrations %+v", sum.Incomplete)})
			}
		}
		st := s.Targets[name]
		for _, m := range te.plan.Migrations {
			if row, ok := st.Tracking[m.Version]; !ok || !row.Complete {
				e.violate(Violation{Invariant: 5, Target: name, Version: m.Version, What: fmt.Sprintf("after the final request the migration is not complete: %+v (present: %v)", row, ok)})
			}
		}
	}
}

// checkStream checks invariant 4: once the outbox is published to the end, every outbox event
// is on the event stream exactly once, and the stream holds nothing else.
//
// Workers go on after the runs have settled (a request delivered to a worker that died
// before its ack comes again after the ack wait, and is answered with a run.duplicate), so
// the outbox is read on both sides of the stream: the events published before the stream is
// read must all be on it, and everything on it must be in the outbox read after.
func (e *schedule) checkStream() {
	deadline := time.Now().Add(drainBound)
	var unpublished int
	for {
		ctx, cancel := qctx()
		err := e.queue.QueryRow(ctx, `SELECT count(*) FROM confiture_queue.outbox WHERE published_at IS NULL`).Scan(&unpublished)
		cancel()
		if err == nil && unpublished == 0 {
			break
		}
		if time.Now().After(deadline) {
			e.violate(Violation{Invariant: 4, What: fmt.Sprintf("%d event(s) still unpublished %s after the last run ended (%v)", unpublished, drainBound, err)})
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	before, _ := e.outboxEvents(true)
	stored, err := e.streamIDs()
	if err != nil {
		e.t.Fatalf("seed %d: read the event stream: %v", e.plan.Seed, err)
	}
	after, subjects := e.outboxEvents(false)
	seen := map[string]int{}
	for _, id := range stored {
		seen[id]++
	}
	for _, id := range before {
		if seen[id] != 1 {
			e.violate(Violation{Invariant: 4, Run: runOfSubject(subjects[id]), What: fmt.Sprintf("event %s (%s) is stored %d times on the stream", id, subjects[id], seen[id])})
		}
	}
	for id, n := range seen {
		if _, ok := subjects[id]; !ok {
			e.violate(Violation{Invariant: 4, What: fmt.Sprintf("message id %q is on the stream %d time(s) but in no outbox row", id, n)})
		} else if n != 1 {
			e.violate(Violation{Invariant: 4, Run: runOfSubject(subjects[id]), What: fmt.Sprintf("event %s (%s) is stored %d times on the stream", id, subjects[id], n)})
		}
	}
	if late := len(after) - len(before); late > 0 {
		e.logf("stream check: %d event(s) recorded while the stream was read (late redeliveries)", late)
	}
	e.logf("stream check: %d outbox events, %d stream messages", len(before), len(stored))
}

// outboxEvents reads the ids of the outbox's events (only the published ones if published)
// in order, and the subject of each.
func (e *schedule) outboxEvents(published bool) ([]string, map[string]string) {
	ctx, cancel := qctx()
	defer cancel()
	rows, err := e.queue.Query(ctx, `SELECT id::text, subject FROM confiture_queue.outbox
		WHERE published_at IS NOT NULL OR NOT $1 ORDER BY seq`, published)
	if err != nil {
		e.t.Fatalf("seed %d: read outbox: %v", e.plan.Seed, err)
	}
	defer rows.Close()
	subjects := map[string]string{}
	var ids []string
	for rows.Next() {
		var id, subject string
		if err := rows.Scan(&id, &subject); err != nil {
			e.t.Fatalf("seed %d: read outbox: %v", e.plan.Seed, err)
		}
		subjects[id] = subject
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatalf("seed %d: read outbox: %v", e.plan.Seed, err)
	}
	return ids, subjects
}

func runOfSubject(subject string) string {
	parts := strings.Split(subject, ".")
	if len(parts) > 3 {
		return parts[3]
	}
	return ""
}

// streamIDs reads the message id of every message of the event stream, unfiltered (a filtered
// consumer needs a newer server than some deployments run).
func (e *schedule) streamIDs() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := e.client.JS.Stream(ctx, contract.EventStream)
	if err != nil {
		return nil, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, err
	}
	c, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, err
	}
	var ids []string
	for uint64(len(ids)) < info.State.Msgs {
		batch, err := c.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			ids = append(ids, m.Headers().Get(nats.MsgIdHdr))
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read %d of %d messages: %w", len(ids), info.State.Msgs, ctx.Err())
		}
	}
	return ids, nil
}
