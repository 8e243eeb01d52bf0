package runview

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

const testRun = "5f0c2b0e-5d1a-4c57-9a53-3f0c1e7d2a41"

// events builds a run's events; each gets a distinct id.
type events struct {
	list []*contract.Event
}

func (es *events) add(kind string, set ...func(*contract.Event)) *events {
	n := len(es.list) + 1
	ev := &contract.Event{
		Schema: contract.EventSchemaV1, ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", n),
		Time: time.Date(2025, 1, 2, 3, 4, 5, n*1000, time.UTC), Kind: kind, Run: testRun,
		RequestID: "deploy-1", Target: "default",
	}
	for _, f := range set {
		f(ev)
	}
	es.list = append(es.list, ev)
	return es
}

func mig(id string) func(*contract.Event) {
	return func(ev *contract.Event) {
		ev.Migration, ev.Version = id, strings.SplitN(id, "_", 2)[0]
	}
}

func phase(id, p string, attempt int) func(*contract.Event) {
	return func(ev *contract.Event) {
		mig(id)(ev)
		ev.Phase, ev.Attempt = p, attempt
	}
}

func hook(name string) func(*contract.Event) { return func(ev *contract.Event) { ev.Hook = name } }

func msg(m string) func(*contract.Event) { return func(ev *contract.Event) { ev.Message = m } }

func took(ms, rows int64) func(*contract.Event) {
	return func(ev *contract.Event) { ev.DurationMS, ev.RowsAffected = ms, rows }
}

func fails(code, message, sqlstate string, retryable bool) func(*contract.Event) {
	return func(ev *contract.Event) {
		ev.Error = &contract.EventError{Code: code, Message: message, SQLState: sqlstate, Retryable: retryable}
	}
}

func render(opts RenderOptions, evs []*contract.Event) string {
	var b bytes.Buffer
	r := NewRenderer(&b, opts)
	for _, ev := range evs {
		r.Render(ev)
	}
	return b.String()
}

func TestRenderCompletedRun(t *testing.T) {
	t.Parallel()
	const m1, m2 = "001_create_users", "002_add_email"
	es := &events{}
	es.add(contract.KindRunAccepted, msg("up of 2 migration(s) accepted")).
		add(contract.KindRunStarted, msg("applying 2 migration(s): 001, 002")).
		add(contract.KindMigrationStarted, mig(m1)).
		add(contract.KindPhaseStarted, phase(m1, contract.PhaseBeforeValidation, 1), msg("1 hook(s)")).
		add(contract.KindHookStarted, phase(m1, contract.PhaseBeforeValidation, 1), hook("users_exist")).
		add(contract.KindHookCompleted, phase(m1, contract.PhaseBeforeValidation, 1), hook("users_exist"), took(2, 1), msg("assertion held")).
		add(contract.KindPhaseCompleted, phase(m1, contract.PhaseBeforeValidation, 1), took(3, 1), msg("1 hook(s)")).
		add(contract.KindPhaseStarted, phase(m1, contract.PhaseBeforeDDL, 1), msg("0 hook(s)")).
		add(contract.KindPhaseCompleted, phase(m1, contract.PhaseBeforeDDL, 1), msg("0 hook(s)")).
		add(contract.KindPhaseStarted, phase(m1, contract.PhaseDDL, 1)).
		add(contract.KindPhaseCompleted, phase(m1, contract.PhaseDDL, 1), took(12, 0)).
		add(contract.KindPhaseStarted, phase(m1, contract.PhaseAfterDDL, 1), msg("1 hook(s)")).
		add(contract.KindHookStarted, phase(m1, contract.PhaseAfterDDL, 1), hook("seed")).
		add(contract.KindHookFailed, phase(m1, contract.PhaseAfterDDL, 1), hook("seed"), took(1, 0),
			fails(contract.CodeSQLError, "deadlock detected", "40P01", true)).
		add(contract.KindPhaseRetrying, phase(m1, contract.PhaseAfterDDL, 1), hook("seed"), took(1, 0),
			fails(contract.CodeSQLError, "deadlock detected", "40P01", true), msg("attempt 1 of 5 failed; retrying in about 1s")).
		add(contract.KindPhaseStarted, phase(m1, contract.PhaseAfterDDL, 2), msg("1 hook(s)")).
		add(contract.KindHookStarted, phase(m1, contract.PhaseAfterDDL, 2), hook("seed")).
		add(contract.KindHookCompleted, phase(m1, contract.PhaseAfterDDL, 2), hook("seed"), took(4, 3)).
		add(contract.KindPhaseCompleted, phase(m1, contract.PhaseAfterDDL, 2), took(5, 3), msg("1 hook(s)")).
		add(contract.KindPhaseStarted, phase(m1, contract.PhaseCleanup, 1), msg("0 hook(s)")).
		add(contract.KindPhaseCompleted, phase(m1, contract.PhaseCleanup, 1), msg("0 hook(s)")).
		add(contract.KindMigrationCompleted, mig(m1)).
		add(contract.KindMigrationStarted, mig(m2)).
		add(contract.KindPhaseStarted, phase(m2, contract.PhaseDDL, 1)).
		add(contract.KindPhaseCompleted, phase(m2, contract.PhaseDDL, 1), took(1234, 2)).
		add(contract.KindMigrationCompleted, mig(m2)).
		add(contract.KindRunCompleted, took(1400, 0), msg("applied 2 migration(s)"))

	// Every event twice: repeats (same id) are dropped.
	var twice []*contract.Event
	for _, ev := range es.list {
		twice = append(twice, ev, ev)
	}
	got := render(RenderOptions{}, twice)
	want := `run 5f0c2b0e-5d1a-4c57-9a53-3f0c1e7d2a41 accepted: up of 2 migration(s) accepted
run started: applying 2 migration(s): 001, 002
001_create_users
  before_validation  started   1 hook(s)
    ✓ users_exist              1 row         2ms  assertion held
  before_validation  done      1 row         3ms  1 hook(s)
  ddl                started
  ddl                done      0 rows       12ms
  after_ddl          started   1 hook(s)
    ✗ seed (attempt 1): sql_error (SQLSTATE 40P01): deadlock detected
  after_ddl          retrying  attempt 1 of 5 failed; retrying in about 1s
  after_ddl          started   attempt 2, 1 hook(s)
    ✓ seed                     3 rows        4ms
  after_ddl          done      3 rows        5ms  1 hook(s)
001_create_users completed
002_add_email
  ddl                started
  ddl                done      2 rows       1.2s
002_add_email completed
run completed in 1.4s: applied 2 migration(s)
`
	require.Equal(t, want, got)
	require.NotContains(t, got, "\x1b", "no colours unless asked")
	require.NotContains(t, got, "before_ddl", "phases without hooks are not shown")

	colored := render(RenderOptions{Color: true}, es.list)
	require.Contains(t, colored, ansiGreen+"✓"+ansiReset)
	require.Equal(t, want, stripANSI(colored), "colours change nothing but colours")
}

func TestRenderFailedRunWithHookError(t *testing.T) {
	t.Parallel()
	const m1 = "001_create_users"
	es := &events{}
	es.add(contract.KindRunAccepted, msg("up of 1 migration(s) accepted")).
		add(contract.KindRunStarted, msg("applying 1 migration(s): 001")).
		add(contract.KindMigrationStarted, mig(m1)).
		add(contract.KindPhaseStarted, phase(m1, contract.PhaseDDL, 1)).
		add(contract.KindPhaseCompleted, phase(m1, contract.PhaseDDL, 1), took(7, 0)).
		add(contract.KindPhaseStarted, phase(m1, contract.PhaseAfterDDL, 1), msg("2 hook(s)")).
		add(contract.KindHookStarted, phase(m1, contract.PhaseAfterDDL, 1), hook("backfill")).
		add(contract.KindHookStarted, phase(m1, contract.PhaseAfterDDL, 1), hook("check")).
		add(contract.KindHookFailed, phase(m1, contract.PhaseAfterDDL, 1), hook("check"), took(1, 0),
			fails(contract.CodeHookFailed, "assertion failed: users need an email\n(select count(*) = 0 ...)", "", false)).
		add(contract.KindPhaseFailed, phase(m1, contract.PhaseAfterDDL, 1), hook("check"), took(9, 0),
			fails(contract.CodeHookFailed, "assertion failed: users need an email", "", false)).
		add(contract.KindMigrationFailed, mig(m1), func(ev *contract.Event) { ev.Phase, ev.Hook = contract.PhaseAfterDDL, "check" }).
		add(contract.KindPhaseStarted, phase(m1, contract.PhaseOnError, 1), msg("1 hook(s)")).
		add(contract.KindHookStarted, phase(m1, contract.PhaseOnError, 1), hook("notify")).
		add(contract.KindHookCompleted, phase(m1, contract.PhaseOnError, 1), hook("notify"), took(1, 1)).
		add(contract.KindPhaseCompleted, phase(m1, contract.PhaseOnError, 1), took(2, 1), msg("1 hook(s)")).
		add(contract.KindRunFailed, mig(m1), took(2500, 0), func(ev *contract.Event) { ev.Phase, ev.Hook = contract.PhaseAfterDDL, "check" },
			fails(contract.CodeHookFailed, "assertion failed: users need an email", "", false),
			msg(`migration 001_create_users failed at hook "check" in after_ddl: assertion failed: users need an email`))

	got := render(RenderOptions{}, es.list)
	want := `run 5f0c2b0e-5d1a-4c57-9a53-3f0c1e7d2a41 accepted: up of 1 migration(s) accepted
run started: applying 1 migration(s): 001
001_create_users
  ddl                started
  ddl                done      0 rows        7ms
  after_ddl          started   2 hook(s)
    ✗ check (attempt 1): hook_failed: assertion failed: users need an email
      (select count(*) = 0 ...)
  after_ddl          failed    after 9ms in hook check
001_create_users failed at after_ddl (hook check)
  on_error           started   1 hook(s)
    ✓ notify                   1 row         1ms
  on_error           done      1 row         2ms  1 hook(s)
run failed after 2.5s: migration 001_create_users failed at hook "check" in after_ddl: assertion failed: users need an email
  migration: 001_create_users
  phase:     after_ddl
  hook:      check
  error:     hook_failed: assertion failed: users need an email
`
	require.Equal(t, want, got)
}

func TestRenderDDLErrorShowsTheError(t *testing.T) {
	t.Parallel()
	const m1 = "001_bad"
	es := &events{}
	es.add(contract.KindMigrationStarted, mig(m1)).
		add(contract.KindPhaseStarted, phase(m1, contract.PhaseDDL, 1)).
		add(contract.KindPhaseFailed, phase(m1, contract.PhaseDDL, 1), took(3, 0),
			fails(contract.CodeSQLError, `syntax error at or near "CREAT"`, "42601", false))
	got := render(RenderOptions{}, es.list)
	require.Equal(t, `001_bad
  ddl                started
  ddl                failed    after 3ms
    ✗ sql_error (SQLSTATE 42601): syntax error at or near "CREAT"
`, got)
}

func TestRenderRejectedRun(t *testing.T) {
	t.Parallel()
	es := &events{}
	es.add(contract.KindRunRejected, fails(contract.CodeUnknownTarget, `unknown target "nope" (configured: [default])`, "", false),
		msg(`request rejected: unknown target "nope" (configured: [default])`))
	require.Equal(t, "run rejected (unknown_target): unknown target \"nope\" (configured: [default])\n",
		render(RenderOptions{}, es.list))
}

func TestRenderDuplicateAndUnknownKinds(t *testing.T) {
	t.Parallel()
	es := &events{}
	es.add(contract.KindRunDuplicate, msg("request deploy-1 was received before (run x, completed): nothing more to do")).
		add(contract.KindBackfillProgress, phase("001_a", contract.PhaseAfterDDL, 1), hook("fill"), took(0, 5000), msg("50%")).
		add("run.archived", msg("waiting\x1b[31m for\tsomething"))
	require.Equal(t, `note: request deploy-1 was received before (run x, completed): nothing more to do
    ... fill: 5000 rows so far, 50%
run.archived: waiting?[31m for something
`, render(RenderOptions{}, es.list))
}

func TestRenderPauseResumeAndRetry(t *testing.T) {
	t.Parallel()
	es := &events{}
	es.add(contract.KindRunRetrying, fails(contract.CodeUnavailable, `target "app": dial tcp 127.0.0.1:5432: connect: connection refused`, "", true),
		msg("transient trouble; retrying in about 1s")).
		add(contract.KindRunPaused, msg("paused: job 7 was cancelled while hook \"fill\" ran")).
		add(contract.KindRunResumed, msg("resumed: job 7 was retried")).
		add(contract.KindRunRetried, msg("retried by an operator"))
	out := render(RenderOptions{}, es.list)
	require.Contains(t, out, "retrying: transient trouble; retrying in about 1s\n")
	require.Contains(t, out, "connection refused")
	require.Contains(t, out, "run paused: paused: job 7 was cancelled")
	require.Contains(t, out, "run resumed: resumed: job 7 was retried")
	require.Contains(t, out, "run retried: retried by an operator")
}

func TestRenderJSONLines(t *testing.T) {
	t.Parallel()
	es := &events{}
	es.add(contract.KindRunAccepted, msg("up of 1 migration(s) accepted")).
		add(contract.KindRunRejected, fails(contract.CodeDrift, "checksum drift", "", false), msg("checksum drift"))
	out := render(RenderOptions{JSON: true, Color: true}, append(es.list, es.list[0]))
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 2, "one line per event, repeats dropped")
	for i, l := range lines {
		ev, err := contract.DecodeEvent([]byte(l))
		require.NoError(t, err)
		require.Equal(t, es.list[i], ev)
		want, err := json.Marshal(es.list[i])
		require.NoError(t, err)
		require.Equal(t, string(want), l)
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	for ms, want := range map[int64]string{0: "0ms", 999: "999ms", 1000: "1.0s", 1449: "1.4s", 59_949: "59.9s", 125_400: "2m5s"} {
		require.Equal(t, want, Duration(ms), "%d ms", ms)
	}
}

func stripANSI(s string) string {
	for _, c := range []string{ansiReset, ansiBold, ansiRed, ansiGreen, ansiYellow, ansiDim} {
		s = strings.ReplaceAll(s, c, "")
	}
	return s
}
