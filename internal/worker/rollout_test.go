package worker

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/targetgroup"
)

// tenants creates the schemas tenant_<id> in the bundle's database and configures the group
// "tenants" over them (schema per tenant, on the default target).
func withTenants(policy *contract.RolloutPolicy, extra ...targetgroup.Config) func(*Config) {
	return func(c *Config) {
		c.TargetGroups = append([]targetgroup.Config{{Name: "tenants",
			Schemas: &targetgroup.Schemas{Target: "default", Match: "tenant_*"}, Rollout: policy}}, extra...)
	}
}

func createTenants(t *testing.T, dsn string, ids ...int) {
	t.Helper()
	db := poolFor(t, dsn)
	for _, id := range ids {
		_, err := db.Exec(context.Background(), fmt.Sprintf(`CREATE SCHEMA tenant_%d`, id))
		require.NoError(t, err)
	}
}

func groupRequest(group string, policy *contract.RolloutPolicy, migs ...contract.Migration) *contract.Request {
	req := request(contract.DirectionUp, migs...)
	req.Target, req.Group, req.Rollout = "", group, policy
	return req
}

// waitRollout waits until the rollout stops (completed, halted, or its request rejected) and
// returns its events.
func (b *bundle) waitRollout(t *testing.T, group, rollout string, past ...string) []*contract.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for {
		var evs []*contract.Event
		_, err := b.client.WaitRollout(ctx, group, rollout, func(ev *contract.Event) { evs = append(evs, ev) })
		require.NoError(t, err, "waiting for rollout %s; events so far: %v", rollout, kinds(evs))
		if len(past) == 0 || len(ofKind(evs, past[0])) >= len(past) {
			return evs
		}
	}
}

func rolloutStatus(t *testing.T, ev *contract.Event) contract.RolloutStatus {
	t.Helper()
	var st contract.RolloutStatus
	require.NoError(t, jsonUnmarshal(ev.Data, &st))
	return st
}

func TestRolloutCanaryThenWavesWithinItsConcurrency(t *testing.T) {
	t.Parallel()
	dsn := testdbNew(t)
	ids := []int{1, 2, 3, 4, 5, 6, 7}
	createTenants(t, dsn, ids...)
	one := 1
	b := setupOn(t, dsn, withTenants(&contract.RolloutPolicy{Canary: &one, WaveSize: 3, MaxConcurrent: 2}))

	req := groupRequest("tenants", nil, mig("001", "items", `CREATE TABLE items (id int PRIMARY KEY, note text)`, "",
		sqlHook(contract.PhaseAfterDDL, "seed", `INSERT INTO items VALUES (1, current_schema())`)))
	pub, err := b.client.Publish(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, contract.RolloutID("tenants", req.ID), pub.Run)
	evs := b.waitRollout(t, "tenants", pub.Run)

	final := last(evs)
	require.Equal(t, contract.KindRolloutCompleted, final.Kind, kinds(evs))
	st := rolloutStatus(t, final)
	require.Equal(t, 7, st.Total)
	require.Equal(t, 7, st.Completed)
	require.Equal(t, 3, st.Waves, "the canary, then waves of 3")
	require.Equal(t, contract.KindRunAccepted, evs[0].Kind)
	require.Equal(t, []string{contract.KindRolloutStarted, contract.KindWaveStarted, contract.KindRolloutProgress, contract.KindWaveCompleted,
		contract.KindWaveStarted, contract.KindRolloutProgress, contract.KindRolloutProgress, contract.KindRolloutProgress, contract.KindWaveCompleted,
		contract.KindWaveStarted, contract.KindRolloutProgress, contract.KindRolloutProgress, contract.KindRolloutProgress, contract.KindWaveCompleted,
		contract.KindRolloutCompleted}, kinds(evs[1:]))

	// Every member is an ordinary run with its own events, in its own schema.
	for _, id := range ids {
		member := fmt.Sprintf("tenants-tenant_%d", id)
		run := contract.RunID(member, req.ID)
		require.Equal(t, contract.KindRunCompleted, last(b.wait(t, member, run)).Kind)
		require.Equal(t, []string{fmt.Sprintf("tenant_%d", id)}, b.queryStrings(t, fmt.Sprintf(`SELECT note FROM tenant_%d.items`, id)))
		require.Equal(t, 1, b.count(t, fmt.Sprintf(`SELECT count(*) FROM confiture_tenant_%d.schema_migrations WHERE complete`, id)))
	}
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_tables WHERE tablename = 'items' AND schemaname NOT LIKE 'tenant\_%'`),
		"no member's migration ran outside its schema")

	// The canary ended before any other member's run was recorded, and never more than two
	// runs were running at once.
	type span struct{ start, end time.Time }
	var spans []span
	var canaryEnd time.Time
	rows, err := b.db.Query(context.Background(), `SELECT target, started_at, finished_at FROM confiture_queue.runs WHERE rollout = $1`, pub.Run)
	require.NoError(t, err)
	for rows.Next() {
		var target string
		var s span
		require.NoError(t, rows.Scan(&target, &s.start, &s.end))
		spans = append(spans, s)
		if target == "tenants-tenant_1" {
			canaryEnd = s.end
		}
	}
	require.NoError(t, rows.Err())
	require.Len(t, spans, 7)
	for _, s := range spans {
		require.False(t, s.start.Before(canaryEnd) && s.end != canaryEnd, "a member started before the canary ended")
	}
	type edge struct {
		at time.Time
		d  int
	}
	var edges []edge
	for _, s := range spans {
		edges = append(edges, edge{s.start, 1}, edge{s.end, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].d < edges[j].d
		}
		return edges[i].at.Before(edges[j].at)
	})
	running, peak := 0, 0
	for _, e := range edges {
		running += e.d
		peak = max(peak, running)
	}
	require.LessOrEqual(t, peak, 2, "max_concurrent")

	// The service API tells the same.
	got, err := b.client.Rollout(context.Background(), "tenants", req.ID)
	require.NoError(t, err)
	require.Equal(t, contract.RolloutCompleted, got.State)
	require.Equal(t, 7, got.Completed)
}

// oddFails is a migration that fails in a tenant schema whose id is odd, unless that schema has
// a table named fixed.
var oddFails = mig("001", "odd", `DO $$ BEGIN
	IF current_schema() ~ '[13579]$' AND to_regclass('fixed') IS NULL THEN
		RAISE EXCEPTION 'odd tenant %', current_schema();
	END IF;
END $$;
CREATE TABLE t (id int)`, "")

func TestRolloutHaltsPastItsThresholdAndResumes(t *testing.T) {
	t.Parallel()
	dsn := testdbNew(t)
	createTenants(t, dsn, 0, 1, 2, 3, 4, 5, 6, 7, 8)
	b := setupOn(t, dsn, withTenants(nil))

	one, canary := 1, 1
	req := groupRequest("tenants", &contract.RolloutPolicy{Canary: &canary, WaveSize: 4, MaxConcurrent: 4, FailureThreshold: &one}, oddFails)
	pub, err := b.client.Publish(context.Background(), req)
	require.NoError(t, err)

	// Wave 1 (tenants 1 to 4) fails twice, past its threshold of 1: halted, wave 2 not started.
	evs := b.waitRollout(t, "tenants", pub.Run)
	halted := last(evs)
	require.Equal(t, contract.KindRolloutHalted, halted.Kind, kinds(evs))
	st := rolloutStatus(t, halted)
	require.Equal(t, contract.RolloutHalted, st.State)
	require.Equal(t, 1, st.Wave)
	// Runs already running when it halted finish: wait for the wave's four.
	require.Eventually(t, func() bool {
		got, err := b.client.Rollout(context.Background(), "tenants", pub.Run)
		return err == nil && got.Running == 0
	}, 60*time.Second, 50*time.Millisecond)
	got, err := b.client.Rollout(context.Background(), "tenants", pub.Run)
	require.NoError(t, err)
	require.Equal(t, 3, got.Completed, "the canary, tenants 2 and 4")
	require.Equal(t, 2, got.Failed)
	require.Equal(t, 4, got.Pending, "wave 2 never started")
	var failed []string
	for _, f := range got.Failures {
		failed = append(failed, f.Target)
		require.Equal(t, contract.CodeSQLError, f.Error.Code)
		require.Contains(t, f.Error.Message, "odd tenant")
	}
	require.ElementsMatch(t, []string{"tenants-tenant_1", "tenants-tenant_3"}, failed)
	require.Zero(t, b.count(t, `SELECT count(*) FROM confiture_queue.runs WHERE target IN ('tenants-tenant_5', 'tenants-tenant_6', 'tenants-tenant_7', 'tenants-tenant_8')`))

	// Resume skipping the failed ones: wave 2 runs, and halts again on tenants 5 and 7.
	_, err = b.client.ResumeRollout(context.Background(), "tenants", pub.Run, contract.FailedSkip, "known bad tenants", nil)
	require.NoError(t, err)
	evs = b.waitRollout(t, "tenants", pub.Run, contract.KindRolloutHalted, contract.KindRolloutHalted)
	require.Len(t, ofKind(evs, contract.KindRolloutResumed), 1)
	// Its members still running when it halted end after it, each with a rollout.progress: the
	// halt is the second rollout.halted, not always the last event.
	st = rolloutStatus(t, ofKind(evs, contract.KindRolloutHalted)[1])
	require.Equal(t, 2, st.Wave)
	require.Equal(t, 2, st.Skipped)

	// A rollout that is not halted does not resume.
	require.Eventually(t, func() bool {
		got, err := b.client.Rollout(context.Background(), "tenants", pub.Run)
		return err == nil && got.Running == 0
	}, 60*time.Second, 50*time.Millisecond)

	// Fix tenants 5 and 7, and resume retrying them: they complete, and so does the rollout.
	for _, id := range []int{5, 7} {
		_, err := b.db.Exec(context.Background(), fmt.Sprintf(`CREATE TABLE tenant_%d.fixed ()`, id))
		require.NoError(t, err)
	}
	_, err = b.client.ResumeRollout(context.Background(), "tenants", req.ID, contract.FailedRetry, "", nil)
	require.NoError(t, err)
	evs = b.waitRollout(t, "tenants", pub.Run, contract.KindRolloutCompleted)
	done := rolloutStatus(t, last(evs))
	require.Equal(t, contract.RolloutCompleted, done.State)
	require.Equal(t, 7, done.Completed)
	require.Equal(t, 2, done.Skipped)
	require.Zero(t, done.Failed)

	_, err = b.client.ResumeRollout(context.Background(), "tenants", req.ID, contract.FailedRetry, "", nil)
	require.ErrorContains(t, err, "cannot resume rollout")
	require.ErrorContains(t, err, "it is completed")
}

func TestRolloutDryRunsTheCanaryOrEveryMember(t *testing.T) {
	t.Parallel()
	dsn := testdbNew(t)
	createTenants(t, dsn, 1, 2, 3)
	b := setupOn(t, dsn, withTenants(nil))

	m := mig("001", "items", `CREATE TABLE items (id int)`, "")
	req := groupRequest("tenants", nil, m)
	req.DryRun = true
	pub, err := b.client.Publish(context.Background(), req)
	require.NoError(t, err)
	evs := b.waitRollout(t, "tenants", pub.Run)
	st := rolloutStatus(t, last(evs))
	require.Equal(t, contract.KindRolloutCompleted, last(evs).Kind, kinds(evs))
	require.Equal(t, 1, st.Total, "a group's dry-run dry-runs its canary")
	require.True(t, st.DryRun)
	report := ofKind(b.wait(t, "tenants-tenant_1", contract.RunID("tenants-tenant_1", req.ID)), contract.KindDryRunReport)
	require.Len(t, report, 1)

	all := groupRequest("tenants", &contract.RolloutPolicy{DryRunAll: true}, m)
	all.DryRun = true
	pub, err = b.client.Publish(context.Background(), all)
	require.NoError(t, err)
	st = rolloutStatus(t, last(b.waitRollout(t, "tenants", pub.Run)))
	require.Equal(t, 3, st.Total)
	require.Equal(t, 3, st.Completed)
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_tables WHERE tablename = 'items'`), "a dry-run changes nothing")
}

func TestRolloutRequestsRefusedWithAReason(t *testing.T) {
	t.Parallel()
	dsn := testdbNew(t)
	createTenants(t, dsn, 1)
	b := setupOn(t, dsn, withTenants(nil,
		targetgroup.Config{Name: "nobody", Schemas: &targetgroup.Schemas{Target: "default", Match: "absent_*"}},
		targetgroup.Config{Name: "broken", Query: &targetgroup.Query{Target: "default", SQL: "SELECT id FROM no_such_catalog", Name: "t-{{.id}}", DSN: "postgres://x/{{.id}}"}}))
	m := mig("001", "items", `CREATE TABLE items (id int)`, "")

	for group, want := range map[string]string{
		"nope":    `unknown target group "nope"`,
		"nobody":  `discovery found no member`,
		"broken":  `no_such_catalog`,
		"tenants": `names target "default" and group "tenants"`,
	} {
		req := groupRequest(group, nil, m)
		if group == "tenants" {
			req.Target = "default"
		}
		pub, err := b.client.Publish(context.Background(), req)
		require.NoError(t, err)
		evs := b.waitRollout(t, group, pub.Run)
		rej := last(evs)
		require.Equal(t, contract.KindRunRejected, rej.Kind, "%s: %v", group, kinds(evs))
		require.Contains(t, rej.Error.Message, want, group)
		wantCode := contract.CodeUnknownGroup
		if group == "tenants" {
			wantCode = contract.CodeInvalidRequest
		}
		require.Equal(t, wantCode, rej.Error.Code, group)
	}
	require.Zero(t, b.count(t, `SELECT count(*) FROM confiture_queue.rollouts`), "nothing recorded")
	require.Zero(t, b.count(t, `SELECT count(*) FROM confiture_queue.runs`))
}

func TestRolloutPausesBetweenWaves(t *testing.T) {
	t.Parallel()
	dsn := testdbNew(t)
	createTenants(t, dsn, 1, 2, 3)
	b := setupOn(t, dsn, withTenants(nil))
	one := 1
	const pause = 700 * time.Millisecond
	req := groupRequest("tenants", &contract.RolloutPolicy{Canary: &one, WaveSize: 1, PauseMS: pause.Milliseconds()},
		mig("001", "items", `CREATE TABLE items (id int)`, ""))
	pub, err := b.client.Publish(context.Background(), req)
	require.NoError(t, err)
	evs := b.waitRollout(t, "tenants", pub.Run)
	require.Equal(t, contract.KindRolloutCompleted, last(evs).Kind, kinds(evs))
	completed, started := ofKind(evs, contract.KindWaveCompleted), ofKind(evs, contract.KindWaveStarted)
	require.Len(t, completed, 3)
	require.Len(t, started, 3)
	for w := range 2 {
		st := rolloutStatus(t, completed[w])
		require.NotNil(t, st.NextWaveAt, "wave %d", w)
		require.Contains(t, completed[w].Message, "the next wave starts in 700ms")
		require.GreaterOrEqual(t, started[w+1].Time.Sub(completed[w].Time), pause, "wave %d: the pause", w+1)
	}
	require.Nil(t, rolloutStatus(t, completed[2]).NextWaveAt, "no wave after the last")
}

// A member that cannot be reached is passing trouble at first: its run retries, then fails
// once the outage tolerance is over, and the failure counts against the wave's threshold.
func TestRolloutCountsAnUnreachableMemberAfterItsRetries(t *testing.T) {
	t.Parallel()
	dsn := testdbNew(t)
	good := dsn
	dead := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/nowhere?connect_timeout=1", freePort(t))
	b := setupOn(t, dsn, func(c *Config) {
		c.OutageTolerance = 2 * time.Second
		c.TargetGroups = []targetgroup.Config{{Name: "catalog", Query: &targetgroup.Query{Target: "default",
			SQL:  `SELECT id, CASE WHEN id = 1 THEN $$` + good + `$$ ELSE $$` + dead + `$$ END AS dsn FROM generate_series(1, 2) AS id`,
			Name: "tenant-{{.id}}", DSN: "{{.dsn}}"}}}
	})
	one := 1
	req := groupRequest("catalog", &contract.RolloutPolicy{Canary: &one}, mig("001", "items", `CREATE TABLE items (id int)`, ""))
	pub, err := b.client.Publish(context.Background(), req)
	require.NoError(t, err)
	evs := b.waitRollout(t, "catalog", pub.Run)
	require.Equal(t, contract.KindRolloutHalted, last(evs).Kind, kinds(evs))
	st := rolloutStatus(t, last(evs))
	require.Equal(t, 1, st.Completed)
	require.Len(t, st.Failures, 1)
	require.Equal(t, "tenant-2", st.Failures[0].Target)
	require.Equal(t, contract.CodeUnavailable, st.Failures[0].Error.Code, st.Failures[0].Error.Message)
	require.NotContains(t, st.Failures[0].Error.Message, "postgres://", "no connection string in an event")
	member := b.wait(t, "tenant-2", contract.RunID("tenant-2", req.ID))
	require.NotEmpty(t, ofKind(member, contract.KindRunRetrying), "retried first: %v", kinds(member))
}
