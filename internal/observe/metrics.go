package observe

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Run statuses, the values of the status label of confiture_runs_total.
const (
	RunCompleted = "completed"
	RunFailed    = "failed"
	RunRejected  = "rejected"
	// RunDuplicate is a request whose id already had a run: no new run was made.
	RunDuplicate = "duplicate"
)

// Outcomes of a phase attempt or a hook, the values of the outcome labels.
const (
	OutcomeCompleted = "completed"
	OutcomeFailed    = "failed"
	// OutcomeRetrying is a phase attempt that failed and will be tried again.
	OutcomeRetrying = "retrying"
)

// OutboxLagTimeout bounds the outbox lag query made at each scrape.
const OutboxLagTimeout = time.Second

// DurationBuckets returns the upper bounds, in seconds, of the duration histograms: 20
// exponential buckets from 5 ms to 30 min, each about 1.96 times the previous one.
//
// Why this range: the fastest hooks are single validation queries (a few ms), the slowest are
// batched backfills and CREATE INDEX CONCURRENTLY, bounded by the default phase timeout of
// 30 min; anything longer lands in +Inf and is visible as such. A factor near 2 keeps a
// quantile estimate within a factor of 2 of the truth at a cost of 23 series per label set (21
// buckets with +Inf, sum and count), which the bounded label values (phases, outcomes, hook
// types) keep small. Intake lag uses the same buckets: milliseconds when healthy, minutes when
// a backlog builds up.
func DurationBuckets() []float64 {
	return prometheus.ExponentialBucketsRange(0.005, 30*60, 20)
}

// Metrics holds the worker's Prometheus collectors on a registry of its own (with the Go
// runtime and process collectors), so tests and several workers in one process never clash
// on the global registry.
//
// Its methods are safe for concurrent use and cheap: one label lookup and one atomic update.
// Label values must come from small fixed sets (statuses, phases, outcomes, hook types), never
// from run ids or user-declared names, or the number of series grows without bound.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	runs          *prometheus.CounterVec
	phaseDuration *prometheus.HistogramVec
	hookDuration  *prometheus.HistogramVec
	hookFailures  *prometheus.CounterVec
	phaseRetries  *prometheus.CounterVec
	backfillRows  prometheus.Counter
	intakeLag     prometheus.Histogram

	outboxLag *outboxLag
}

// NewMetrics returns Metrics with every collector registered.
func NewMetrics() *Metrics {
	buckets := DurationBuckets()
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "confiture_runs_total",
			Help: "Requests that ended, by status: completed, failed, rejected, or duplicate (no new run).",
		}, []string{"status"}),
		phaseDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "confiture_phase_duration_seconds",
			Help:    "Duration of phase attempts, by phase and outcome (completed, failed, retrying).",
			Buckets: buckets,
		}, []string{"phase", "outcome"}),
		hookDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "confiture_hook_duration_seconds",
			Help:    "Duration of hook executions, by hook type, phase and outcome.",
			Buckets: buckets,
		}, []string{"hook", "phase", "outcome"}),
		hookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "confiture_hook_failures_total",
			Help: "Hook executions that failed, by hook type and phase.",
		}, []string{"hook", "phase"}),
		phaseRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "confiture_phase_retries_total",
			Help: "Phase attempts that failed and were scheduled again, by phase.",
		}, []string{"phase"}),
		backfillRows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "confiture_backfill_rows_total",
			Help: "Rows written by batched backfills.",
		}),
		intakeLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "confiture_intake_lag_seconds",
			Help:    "Time from a request's publication to its run being recorded.",
			Buckets: buckets,
		}),
		outboxLag: newOutboxLag(OutboxLagTimeout),
	}
	// Known statuses start at zero, so rate() and absent() work before the first run.
	for _, s := range []string{RunCompleted, RunFailed, RunRejected, RunDuplicate} {
		m.runs.WithLabelValues(s)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.runs, m.phaseDuration, m.hookDuration, m.hookFailures, m.phaseRetries,
		m.backfillRows, m.intakeLag, m.outboxLag,
	)
	m.handler = promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:      m.reg,
		ErrorHandling: promhttp.ContinueOnError,
		// Each scrape may query the queue database (outbox lag); a few scrapers are plenty.
		MaxRequestsInFlight: 4,
	}))
	return m
}

// RunFinished counts a request that ended with status (RunCompleted, RunFailed, RunRejected or
// RunDuplicate).
func (m *Metrics) RunFinished(status string) {
	m.runs.WithLabelValues(status).Inc()
}

// PhaseDone records the duration of one phase attempt with its outcome (OutcomeCompleted,
// OutcomeFailed or OutcomeRetrying).
func (m *Metrics) PhaseDone(phase, outcome string, d time.Duration) {
	m.phaseDuration.WithLabelValues(phase, outcome).Observe(d.Seconds())
}

// HookDone records the duration of one hook execution, and counts it as a failure when outcome
// is OutcomeFailed. hook is the hook's type (bounded), not its declared name.
func (m *Metrics) HookDone(hook, phase, outcome string, d time.Duration) {
	m.hookDuration.WithLabelValues(hook, phase, outcome).Observe(d.Seconds())
	if outcome == OutcomeFailed {
		m.hookFailures.WithLabelValues(hook, phase).Inc()
	}
}

// PhaseRetried counts a phase attempt that will be retried.
func (m *Metrics) PhaseRetried(phase string) {
	m.phaseRetries.WithLabelValues(phase).Inc()
}

// BackfillRows adds n rows written by a backfill batch; n <= 0 is ignored.
func (m *Metrics) BackfillRows(n int64) {
	if n > 0 {
		m.backfillRows.Add(float64(n))
	}
}

// IntakeLag records the time from a request's publication to its run being recorded. A negative
// d (the publisher's clock ahead of ours) counts as zero.
func (m *Metrics) IntakeLag(d time.Duration) {
	m.intakeLag.Observe(max(d, 0).Seconds())
}

// SetOutboxLag installs the function behind the gauge confiture_outbox_lag_seconds: the age of
// the oldest unpublished event, zero when there is none. It is called at scrape time with a
// context bounded by OutboxLagTimeout and must honour it. When it fails, the gauge keeps its
// last good value (zero before any) and confiture_outbox_lag_errors_total counts the failure,
// so alert on both. Scrapes that arrive while a call is in flight get the last value instead
// of queuing more queries. Until a function is set (or after nil is set) the gauge reports its
// last value; a later call replaces the function.
func (m *Metrics) SetOutboxLag(fn func(ctx context.Context) (time.Duration, error)) {
	m.outboxLag.fn.Store(&fn)
}

// Register adds collectors owned by other packages (the log sinks' dropped-records counter,
// for one) to the registry. It registers all of them or none: on an error (a duplicate name,
// for one; see prometheus.AlreadyRegisteredError) those registered by this call are removed.
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := m.reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				m.reg.Unregister(done)
			}
			return fmt.Errorf("observe: register collector %d: %w", i, err)
		}
	}
	return nil
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Gatherer returns the registry, for tests that read values without an HTTP round trip.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// outboxLag collects confiture_outbox_lag_seconds and confiture_outbox_lag_errors_total
// together, so that a scrape whose measurement fails also shows the failure counted (the
// registry collects separate collectors concurrently, in no set order).
type outboxLag struct {
	lagDesc, errorsDesc *prometheus.Desc
	timeout             time.Duration

	fn     atomic.Pointer[func(context.Context) (time.Duration, error)]
	busy   sync.Mutex    // held while fn runs; other scrapes report the last value meanwhile
	last   atomic.Uint64 // math.Float64bits of the last good value, in seconds
	errors atomic.Uint64
}

func newOutboxLag(timeout time.Duration) *outboxLag {
	return &outboxLag{
		lagDesc: prometheus.NewDesc("confiture_outbox_lag_seconds",
			"Age of the oldest event not yet published to NATS (0 when none).", nil, nil),
		errorsDesc: prometheus.NewDesc("confiture_outbox_lag_errors_total",
			"Scrapes at which the outbox lag could not be measured (the gauge kept its last value).", nil, nil),
		timeout: timeout,
	}
}

func (o *outboxLag) Describe(ch chan<- *prometheus.Desc) {
	ch <- o.lagDesc
	ch <- o.errorsDesc
}

func (o *outboxLag) Collect(ch chan<- prometheus.Metric) {
	v := o.measure()
	ch <- prometheus.MustNewConstMetric(o.lagDesc, prometheus.GaugeValue, v)
	ch <- prometheus.MustNewConstMetric(o.errorsDesc, prometheus.CounterValue, float64(o.errors.Load()))
}

func (o *outboxLag) measure() float64 {
	last := math.Float64frombits(o.last.Load())
	fn := o.fn.Load()
	if fn == nil || *fn == nil || !o.busy.TryLock() {
		return last
	}
	defer o.busy.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	d, err := callLag(ctx, *fn)
	if err != nil {
		o.errors.Add(1)
		return last
	}
	v := max(d, 0).Seconds()
	o.last.Store(math.Float64bits(v))
	return v
}

// callLag calls fn, turning a panic into an error: the registry collects in goroutines of its
// own, where a panic would end the process.
func callLag(ctx context.Context, fn func(context.Context) (time.Duration, error)) (d time.Duration, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("outbox lag panicked: %v", p)
		}
	}()
	return fn(ctx)
}
