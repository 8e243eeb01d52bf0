package observe_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/observe"
)

// scrape fetches url (a /metrics endpoint) and parses the text exposition format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

// metricsServer serves m's handler and returns a scrape function for it.
func metricsServer(t *testing.T, m *observe.Metrics) func() map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return func() map[string]*dto.MetricFamily { return scrape(t, srv.URL) }
}

// find returns the metric of family name whose labels are exactly labels (name=value pairs).
func find(t *testing.T, families map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	fam, ok := families[name]
	require.True(t, ok, "metric family %s not exposed", name)
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range fam.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, lp := range m.GetLabel() {
			if v, ok := want[lp.GetName()]; !ok || v != lp.GetValue() {
				continue next
			}
		}
		return m
	}
	require.Failf(t, "metric not found", "%s%v among %v", name, want, fam.GetMetric())
	return nil
}

func TestMetricsExposedWithNamesAndLabels(t *testing.T) {
	t.Parallel()
	m := observe.NewMetrics()
	get := metricsServer(t, m)

	before := get()
	for _, s := range []string{"completed", "failed", "rejected", "duplicate"} {
		require.Zero(t, find(t, before, "confiture_runs_total", "status", s).GetCounter().GetValue(), s)
	}
	require.Zero(t, find(t, before, "confiture_outbox_lag_seconds").GetGauge().GetValue())
	require.Contains(t, before, "go_goroutines", "Go collector")
	require.Contains(t, before, "process_start_time_seconds", "process collector")

	m.RunFinished(observe.RunCompleted)
	m.RunFinished(observe.RunCompleted)
	m.RunFinished(observe.RunDuplicate)
	m.PhaseDone("after_ddl", observe.OutcomeCompleted, 1500*time.Millisecond)
	m.PhaseDone("after_ddl", observe.OutcomeRetrying, 10*time.Millisecond)
	m.HookDone("sql", "after_ddl", observe.OutcomeCompleted, 20*time.Millisecond)
	m.HookDone("sql", "after_ddl", observe.OutcomeFailed, 3*time.Millisecond)
	m.HookDone("sql", "after_ddl", observe.OutcomeFailed, 4*time.Millisecond)
	m.PhaseRetried("after_ddl")
	m.BackfillRows(1000)
	m.BackfillRows(234)
	m.BackfillRows(-5) // ignored, never a panic
	m.IntakeLag(40 * time.Millisecond)
	m.IntakeLag(-time.Second) // clock skew: counted as zero

	after := get()
	require.InDelta(t, 2, find(t, after, "confiture_runs_total", "status", "completed").GetCounter().GetValue(), 0)
	require.InDelta(t, 1, find(t, after, "confiture_runs_total", "status", "duplicate").GetCounter().GetValue(), 0)
	require.Zero(t, find(t, after, "confiture_runs_total", "status", "failed").GetCounter().GetValue())

	ph := find(t, after, "confiture_phase_duration_seconds", "phase", "after_ddl", "outcome", "completed").GetHistogram()
	require.EqualValues(t, 1, ph.GetSampleCount())
	require.InDelta(t, 1.5, ph.GetSampleSum(), 1e-9)
	require.EqualValues(t, 1, find(t, after, "confiture_phase_duration_seconds", "phase", "after_ddl", "outcome", "retrying").GetHistogram().GetSampleCount())

	hk := find(t, after, "confiture_hook_duration_seconds", "hook", "sql", "phase", "after_ddl", "outcome", "failed").GetHistogram()
	require.EqualValues(t, 2, hk.GetSampleCount())
	require.InDelta(t, 0.007, hk.GetSampleSum(), 1e-9)
	require.EqualValues(t, 1, find(t, after, "confiture_hook_duration_seconds", "hook", "sql", "phase", "after_ddl", "outcome", "completed").GetHistogram().GetSampleCount())
	require.InDelta(t, 2, find(t, after, "confiture_hook_failures_total", "hook", "sql", "phase", "after_ddl").GetCounter().GetValue(), 0)

	require.InDelta(t, 1, find(t, after, "confiture_phase_retries_total", "phase", "after_ddl").GetCounter().GetValue(), 0)
	require.InDelta(t, 1234, find(t, after, "confiture_backfill_rows_total").GetCounter().GetValue(), 0)

	lag := find(t, after, "confiture_intake_lag_seconds").GetHistogram()
	require.EqualValues(t, 2, lag.GetSampleCount())
	require.InDelta(t, 0.04, lag.GetSampleSum(), 1e-9)

	// The documented buckets: 5 ms to 30 min.
	buckets := ph.GetBucket()
	require.Len(t, buckets, 21) // the last is +Inf
	require.InDelta(t, 0.005, buckets[0].GetUpperBound(), 1e-12)
	require.InDelta(t, 1800, buckets[19].GetUpperBound(), 1e-9)
}

func TestOutboxLag(t *testing.T) {
	t.Parallel()
	m := observe.NewMetrics()
	get := metricsServer(t, m)
	lag := func(f map[string]*dto.MetricFamily) float64 {
		return find(t, f, "confiture_outbox_lag_seconds").GetGauge().GetValue()
	}
	errs := func(f map[string]*dto.MetricFamily) float64 {
		return find(t, f, "confiture_outbox_lag_errors_total").GetCounter().GetValue()
	}

	m.SetOutboxLag(func(context.Context) (time.Duration, error) { return 3 * time.Second, nil })
	f := get()
	require.InDelta(t, 3, lag(f), 1e-9)
	require.Zero(t, errs(f))

	// A failure keeps the last value and is counted.
	m.SetOutboxLag(func(context.Context) (time.Duration, error) { return 0, errors.New("connection refused") })
	f = get()
	require.InDelta(t, 3, lag(f), 1e-9)
	require.InDelta(t, 1, errs(f), 0)

	// A query that does not answer is cut at OutboxLagTimeout, and counts as a failure.
	var deadline time.Time
	m.SetOutboxLag(func(ctx context.Context) (time.Duration, error) {
		deadline, _ = ctx.Deadline()
		<-ctx.Done()
		return 0, ctx.Err()
	})
	start := time.Now()
	f = get()
	require.Less(t, time.Since(start), observe.OutboxLagTimeout+2*time.Second)
	require.WithinDuration(t, start.Add(observe.OutboxLagTimeout), deadline, time.Second)
	require.InDelta(t, 3, lag(f), 1e-9)
	require.InDelta(t, 2, errs(f), 0)

	m.SetOutboxLag(func(context.Context) (time.Duration, error) { panic("nil pool") })
	f = get()
	require.InDelta(t, 3, lag(f), 1e-9)
	require.InDelta(t, 3, errs(f), 0)

	m.SetOutboxLag(func(context.Context) (time.Duration, error) { return 0, nil })
	require.Zero(t, lag(get()))
}

func TestRegisterForeignCollectors(t *testing.T) {
	t.Parallel()
	m := observe.NewMetrics()
	get := metricsServer(t, m)

	dropped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "confiture_log_records_dropped_total", Help: "Log records the NATS sink dropped.",
	})
	require.NoError(t, m.Register(dropped))
	dropped.Add(7)
	require.InDelta(t, 7, find(t, get(), "confiture_log_records_dropped_total").GetCounter().GetValue(), 0)

	// All or nothing: a clash leaves none of the call's collectors registered.
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "confiture_other_total", Help: "x"})
	clash := prometheus.NewCounter(prometheus.CounterOpts{Name: "confiture_log_records_dropped_total", Help: "Log records the NATS sink dropped."})
	err := m.Register(other, clash)
	var are prometheus.AlreadyRegisteredError
	require.ErrorAs(t, err, &are)
	other.Inc()
	require.NotContains(t, get(), "confiture_other_total")
	require.NoError(t, m.Register(other))
}
