package chaos

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	if os.Getenv(ChildEnv) != "" {
		os.Exit(WorkerMain())
	}
	os.Exit(m.Run())
}

// Campaign knobs, from the environment.
const (
	envEnable    = "CONFITURE_CHAOS"
	envSeed      = "CHAOS_SEED"
	envSchedules = "CHAOS_SCHEDULES"
	envDuration  = "CHAOS_DURATION"
	envReport    = "CHAOS_REPORT"
)

// TestChaos runs the campaign: CHAOS_SCHEDULES seeded random schedules (5) of faults against
// worker processes, each with a fault window of CHAOS_DURATION (60s), the first from CHAOS_SEED
// (time-based when unset) and each next one from the seed after. It fails if any invariant
// broke; every violation names the seed that reproduces its schedule. `make chaos` runs it.
func TestChaos(t *testing.T) {
	if os.Getenv(envEnable) != "1" {
		t.Skipf("the chaos campaign runs only with %s=1 (make chaos, make chaos-ci)", envEnable)
	}
	seed := uint64(time.Now().UnixNano()) % 1_000_000_000 // short enough to type back
	if v := os.Getenv(envSeed); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "%s must be an unsigned integer", envSeed)
	}
	schedules := 5
	if v := os.Getenv(envSchedules); v != "" {
		var err error
		schedules, err = strconv.Atoi(v)
		require.NoError(t, err, "%s must be an integer", envSchedules)
		require.Positive(t, schedules, envSchedules)
	}
	window := 60 * time.Second
	if v := os.Getenv(envDuration); v != "" {
		var err error
		window, err = time.ParseDuration(v)
		require.NoError(t, err, "%s must be a duration like 60s", envDuration)
		require.GreaterOrEqual(t, window, 10*time.Second, envDuration)
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	t.Logf("chaos campaign: %d schedule(s) from seed %d, fault window %s (reproduce one: %s=<seed> %s=1 %s=%s)",
		schedules, seed, window, envSeed, envSchedules, envDuration, window)

	started := time.Now()
	var results []*Result
	for i := 0; i < schedules; i++ {
		s := seed + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
			res := RunSchedule(t, Generate(s, window), exe)
			results = append(results, res)
			for _, v := range res.Violations {
				t.Errorf("%s (logs and evidence: %s)", v, res.LogDir)
			}
		})
	}
	report := NewReport(seed, window, results, time.Since(started))
	t.Log("\n" + report.String())
	if path := os.Getenv(envReport); path != "" {
		require.NoError(t, report.WriteJSON(path))
		t.Logf("report written to %s", path)
	}
}
