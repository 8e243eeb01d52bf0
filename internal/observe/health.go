package observe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/confiture-io/confiture-worker/internal/redact"
	"net/http"
	"sync"
	"time"
)

// Check reports whether one dependency is usable: nil when it is. It must return soon after ctx
// ends; a check that does not is reported as timed out all the same, and left to finish in the
// background.
type Check func(ctx context.Context) error

// DefaultCheckTimeout bounds each readiness check when HealthOptions.Timeout is zero.
const DefaultCheckTimeout = 2 * time.Second

// Readiness statuses, the status field of a Report.
const (
	StatusReady    = "ready"
	StatusNotReady = "not ready"
)

// maxCheckText bounds the error text of one check in a readiness report.
const maxCheckText = 512

// HealthOptions configures a Health.
type HealthOptions struct {
	// Timeout bounds each check. Defaults to DefaultCheckTimeout (2s).
	Timeout time.Duration
	// Redact rewrites the error text of a failing check before it is served, since errors may
	// quote connection strings. The worker passes one that knows its DSNs. Defaults to
	// redact.String.
	Redact func(string) string
}

// Health serves the liveness (/healthz) and readiness (/readyz) probes. Its checks run at each
// readiness request, concurrently, each within the timeout.
type Health struct {
	timeout time.Duration
	redact  func(string) string

	mu     sync.RWMutex
	checks map[string]Check
}

// NewHealth returns a Health with no checks: ready until some are added.
func NewHealth(opts HealthOptions) *Health {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultCheckTimeout
	}
	if opts.Redact == nil {
		opts.Redact = func(s string) string { return redact.String(s) }
	}
	return &Health{timeout: opts.Timeout, redact: opts.Redact, checks: map[string]Check{}}
}

// Add registers a readiness check under name (say "postgres", "nats", "river", "migrations").
// Like river.AddWorker it panics on a programming error: an empty name, a nil check, or a name
// already added.
func (h *Health) Add(name string, check Check) {
	if name == "" || check == nil {
		panic("observe: Health.Add needs a name and a check")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.checks[name]; dup {
		panic(fmt.Sprintf("observe: readiness check %q added twice", name))
	}
	h.checks[name] = check
}

// Report is the result of the readiness checks, as /readyz serves it.
type Report struct {
	// Status is StatusReady when every check passed, StatusNotReady otherwise.
	Status string `json:"status"`
	// Checks maps each check's name to "ok" or to its redacted error text.
	Checks map[string]string `json:"checks"`
}

// Ready reports whether every check passed.
func (r Report) Ready() bool { return r.Status == StatusReady }

// Run runs every check concurrently, each bounded by the timeout, and returns once all have
// answered or timed out.
func (h *Health) Run(ctx context.Context) Report {
	h.mu.RLock()
	checks := make(map[string]Check, len(h.checks))
	for name, c := range h.checks {
		checks[name] = c
	}
	h.mu.RUnlock()

	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(checks))
	for name, c := range checks {
		go func() { results <- result{name, h.runOne(ctx, c)} }()
	}
	rep := Report{Status: StatusReady, Checks: make(map[string]string, len(checks))}
	for range checks {
		r := <-results
		if r.err == nil {
			rep.Checks[r.name] = "ok"
			continue
		}
		rep.Status = StatusNotReady
		text := h.redact(r.err.Error())
		if len(text) > maxCheckText {
			text = text[:maxCheckText] + "..."
		}
		rep.Checks[r.name] = text
	}
	return rep
}

// errCheckTimeout is what a check that did not answer within the timeout reports.
var errCheckTimeout = errors.New("timed out")

// runOne runs c within the timeout. It returns at the timeout even if c ignores its context;
// c's goroutine then ends whenever c does (its result has room in a buffered channel).
func (h *Health) runOne(ctx context.Context, c Check) error {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("check panicked: %v", p)
			}
		}()
		done <- c(ctx)
	}()
	select {
	case err := <-done:
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w after %s: %w", errCheckTimeout, h.timeout, err)
		}
		return err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w after %s", errCheckTimeout, h.timeout)
		}
		return ctx.Err() // the request went away
	}
}

// LiveHandler serves /healthz: 200 "ok" while the process can answer at all. It checks nothing
// else on purpose: a liveness failure gets the process restarted, which a dependency outage
// does not warrant.
func (h *Health) LiveHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
}

// ReadyHandler serves /readyz: the Report as JSON, with status 200 when ready and 503 when not.
func (h *Health) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := h.Run(r.Context())
		body, err := json.Marshal(rep)
		if err != nil { // a map of strings always marshals
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !rep.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write(append(body, '\n'))
	})
}
