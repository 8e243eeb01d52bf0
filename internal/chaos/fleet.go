package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// The fleet: a target group of schema targets in a database of its own, migrated by rollouts
// while the faults strike (docs/FLEETS.md). Its members' runs are ordinary runs, so invariants
// 1 and 4 cover them with every other run; the fleet adds, as invariant 6: every rollout
// acknowledged is recorded, ends completed (the harness resumes a halted one, retrying its
// failed members, as an operator would), its members agree with their runs and its last event
// with its members; every effect of a member's migrations is there at most once, and, after a
// final rollout of every migration, exactly once in every member.

// FleetGroup is the fleet's target group; FleetTarget the target its members are schemas of.
const (
	FleetGroup  = "tenants"
	FleetTarget = "fleet"
)

// FleetPlan is the fleet's members, migrations and rollouts.
type FleetPlan struct {
	Members    int
	Migrations []Migration
	Rollouts   []Request
}

// generateFleet draws 4 to 6 members, 3 migrations (each bumping a counter in its DDL and in an
// after_ddl hook, some of them slowly), and 2 rollouts (migrations 1..2, then 1..3) at random
// times in the first 70% of the window.
func generateFleet(r *rand.Rand, seed uint64, window time.Duration) FleetPlan {
	f := FleetPlan{Members: 4 + r.IntN(3)}
	for i := 1; i <= 3; i++ {
		v := fmt.Sprintf("%03d", i)
		up := bump(v + ".ddl.ddl")
		if i == 1 {
			up = "CREATE TABLE counters (name text PRIMARY KEY, n int NOT NULL);\n" + up
		}
		hookName := "count"
		hookSQL := sleepSQL(r) + bump(v+".after_ddl."+hookName)
		m := Migration{Migration: contract.Migration{Version: v, Name: "fleet", UpSQL: up, Checksum: contract.Checksum(up),
			Hooks: []contract.HookSpec{{Phase: contract.PhaseAfterDDL, Name: hookName, Hook: "sql", Params: map[string]any{"sql": hookSQL}}}},
			Effects: []Effect{{Phase: contract.PhaseDDL, Hook: "ddl", Name: v + ".ddl.ddl"}, {Phase: contract.PhaseAfterDDL, Hook: hookName, Name: v + ".after_ddl." + hookName}}}
		f.Migrations = append(f.Migrations, m)
	}
	for i, k := range []int{2, 3} {
		f.Rollouts = append(f.Rollouts, Request{At: between(r, window/20, window*70/100), ID: fmt.Sprintf("chaos-%d-fleet-%02d", seed, i+1), K: k})
	}
	slices.SortFunc(f.Rollouts, func(a, b Request) int { return int(a.At - b.At) })
	return f
}

// memberName is the target name of member i (from 1).
func memberName(i int) string { return fmt.Sprintf("%s-tenant_%d", FleetGroup, i) }

// rolloutRequest is the contract request of the fleet's rollout q: a canary of one, waves of
// two, two runs at once.
func (f *FleetPlan) rolloutRequest(q Request) *contract.Request {
	migs := make([]contract.Migration, q.K)
	for i := range migs {
		migs[i] = f.Migrations[i].Migration
	}
	one := 1
	return &contract.Request{Schema: contract.RequestSchemaV1, ID: q.ID, Group: FleetGroup, Direction: contract.DirectionUp,
		RequestedBy: "chaos", Migrations: migs, Rollout: &contract.RolloutPolicy{Canary: &one, WaveSize: 2, MaxConcurrent: 2}}
}

// setupFleet creates the fleet's database with its member schemas, and the worker
// configuration file that declares the group.
func (e *schedule) setupFleet() {
	t := e.t
	e.fleetDSN = testdb.New(t)
	e.fleet = harnessPool(t, e.fleetDSN)
	for i := 1; i <= e.plan.Fleet.Members; i++ {
		if _, err := e.fleet.Exec(context.Background(), fmt.Sprintf("CREATE SCHEMA tenant_%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	u, err := url.Parse(e.fleetDSN)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("connect_timeout", "5")
	u.RawQuery = q.Encode()
	e.fleetWorkerDSN = u.String()
	e.fleetConfig = filepath.Join(t.TempDir(), "fleet.yaml")
	config := fmt.Sprintf("target_groups:\n  - name: %s\n    schemas: {target: %s, match: \"tenant_*\"}\n", FleetGroup, FleetTarget)
	if err := os.WriteFile(e.fleetConfig, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fleetEnv is the workers' configuration of the fleet.
func (e *schedule) fleetEnv() []string {
	return []string{"CONFITURE_CONFIG=" + e.fleetConfig, "CONFITURE_TARGET_" + strings.ToUpper(FleetTarget) + "=" + e.fleetWorkerDSN}
}

// publishRollout publishes the fleet's rollout q, trying again for a while if NATS is down.
func (e *schedule) publishRollout(q Request) {
	e.publishRetrying(e.plan.Fleet.rolloutRequest(q), fmt.Sprintf("rollout %s (1..%d)", q.ID, q.K), func(p client.Published) {
		e.rollouts[q.ID] = p.Run
	})
}

// rolloutRow is a rollout as the queue database records it, with its members.
type rolloutRow struct {
	ID, RequestID, State string
	Members              map[string]string // target -> state
}

func (e *schedule) readRollouts(ctx context.Context) (map[string]*rolloutRow, error) {
	rows, err := e.queue.Query(ctx, `SELECT r.id::text, r.request_id, r.state, m.target, m.state
		FROM confiture_queue.rollouts r JOIN confiture_queue.rollout_members m ON m.rollout = r.id`)
	if err != nil {
		return nil, err
	}
	out := map[string]*rolloutRow{}
	for rows.Next() {
		var id, reqID, state, target, mstate string
		if err := rows.Scan(&id, &reqID, &state, &target, &mstate); err != nil {
			return nil, err
		}
		r := out[id]
		if r == nil {
			r = &rolloutRow{ID: id, RequestID: reqID, State: state, Members: map[string]string{}}
			out[id] = r
		}
		r.Members[target] = mstate
	}
	return out, rows.Err()
}

// ackedRollouts returns the fleet's rollout requests acknowledged by JetStream, with their
// rollouts.
func (e *schedule) ackedRollouts() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.rollouts)
}

// unsettledRollouts lists what keeps the fleet from being settled: an acknowledged rollout
// not recorded, or one still running. A halted rollout is resumed, retrying its failed
// members, as an operator would.
func (e *schedule) unsettledRollouts() ([]pending, error) {
	ctx, cancel := qctx()
	defer cancel()
	recorded, err := e.readRollouts(ctx)
	if err != nil {
		return nil, err
	}
	var out []pending
	acked := e.ackedRollouts()
	for id, ro := range acked {
		if recorded[ro] == nil {
			out = append(out, pending{Target: FleetGroup, Run: ro, What: fmt.Sprintf("rollout %s: not recorded", id)})
		}
	}
	for _, r := range recorded {
		switch r.State {
		case contract.RolloutCompleted:
		case contract.RolloutHalted:
			e.resumeRollout(r)
			out = append(out, pending{Target: FleetGroup, Run: r.ID, What: fmt.Sprintf("rollout %s: halted, resumed", r.RequestID)})
		default:
			out = append(out, pending{Target: FleetGroup, Run: r.ID, What: fmt.Sprintf("rollout %s: %s", r.RequestID, r.State)})
		}
	}
	return out, nil
}

// resumeRollout resumes a halted rollout through the service API, retrying its failed members.
func (e *schedule) resumeRollout(r *rolloutRow) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := e.client.ResumeRollout(ctx, FleetGroup, r.ID, contract.FailedRetry, "the chaos harness, as an operator", nil)
	var ae *client.APIError
	switch {
	case err == nil:
		e.logf("rollout %s (%s) was halted: resumed, retrying its failed members", r.ID, r.RequestID)
		e.mu.Lock()
		e.res.RolloutsResumed++
		e.mu.Unlock()
	case errors.As(err, &ae) && ae.Code == contract.APIErrConflict:
	default:
		e.logf("resuming rollout %s: %v", r.ID, err)
	}
}

// finalRollout publishes a rollout of every fleet migration and waits until it is settled.
func (e *schedule) finalRollout() {
	e.publishRollout(Request{ID: fmt.Sprintf("chaos-%d-fleet-final", e.plan.Seed), K: len(e.plan.Fleet.Migrations)})
}

// checkFleet checks invariant 6 (see the top of this file) on the fleet as it is now; final:
// after the final rollout, when every effect must be there exactly once.
func (e *schedule) checkFleet(s *snapshot, final bool) {
	ctx, cancel := qctx()
	defer cancel()
	recorded, err := e.readRollouts(ctx)
	if err != nil {
		e.violate(Violation{Invariant: 6, Target: FleetGroup, What: "reading the rollouts: " + err.Error()})
		return
	}
	status := map[string]string{}
	for _, r := range s.Runs {
		status[r.ID] = r.Status
	}
	acked := e.ackedRollouts()
	for id, ro := range acked {
		r := recorded[ro]
		if r == nil {
			e.violate(Violation{Invariant: 6, Target: FleetGroup, Run: ro, What: fmt.Sprintf("rollout %s was acknowledged by JetStream but not recorded", id)})
			continue
		}
		if r.State != contract.RolloutCompleted {
			e.violate(Violation{Invariant: 6, Target: FleetGroup, Run: ro, What: fmt.Sprintf("rollout %s never completed: %s", id, r.State)})
		}
		if len(r.Members) != e.plan.Fleet.Members {
			e.violate(Violation{Invariant: 6, Target: FleetGroup, Run: ro, What: fmt.Sprintf("rollout %s has %d members, the group %d", id, len(r.Members), e.plan.Fleet.Members)})
		}
		counts := map[string]int{}
		for target, state := range r.Members {
			counts[state]++
			run := contract.RunID(target, r.RequestID)
			want := map[string]string{contract.MemberCompleted: "completed", contract.MemberFailed: "failed", contract.MemberSkipped: "failed"}[state]
			if got := status[run]; want == "" || got != want {
				e.violate(Violation{Invariant: 6, Target: target, Run: run, What: fmt.Sprintf("rollout %s: member %s is %s, its run %q", id, target, state, got)})
			}
		}
		var last *contract.RolloutStatus
		for _, o := range s.ByRun[ro] {
			if o.Event.Kind == contract.KindRolloutCompleted || o.Event.Kind == contract.KindRolloutHalted || o.Event.Kind == contract.KindRolloutProgress {
				var st contract.RolloutStatus
				if jsonUnmarshal(o.Event.Data, &st) == nil {
					last = &st
				}
			}
		}
		if last == nil || last.Completed != counts[contract.MemberCompleted] || last.Failed != counts[contract.MemberFailed] || last.State != r.State {
			e.violate(Violation{Invariant: 6, Target: FleetGroup, Run: ro, What: fmt.Sprintf("rollout %s: its last event says %+v, its members %v (%s)", id, last, counts, r.State)})
		}
	}
	for i := 1; i <= e.plan.Fleet.Members; i++ {
		e.checkMemberEffects(ctx, i, final)
	}
}

// checkMemberEffects checks that member i has every effect of its migrations at most once,
// and, when final, exactly once.
func (e *schedule) checkMemberEffects(ctx context.Context, i int, final bool) {
	name := memberName(i)
	rows, err := e.fleet.Query(ctx, fmt.Sprintf(`SELECT name, n FROM tenant_%d.counters`, i))
	counters := map[string]int{}
	if err == nil {
		var n int
		var c string
		_, err = pgx.ForEachRow(rows, []any{&c, &n}, func() error { counters[c] = n; return nil })
	}
	if err != nil && !(strings.Contains(err.Error(), "does not exist") && !final) {
		e.violate(Violation{Invariant: 6, Target: name, What: "reading its counters: " + err.Error()})
		return
	}
	for _, m := range e.plan.Fleet.Migrations {
		for _, ef := range m.Effects {
			n := counters[ef.Name]
			if n > 1 || (final && n != 1) {
				e.violate(Violation{Invariant: 6, Target: name, What: fmt.Sprintf("effect %s counted %d time(s)", ef.Name, n)})
			}
		}
	}
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
