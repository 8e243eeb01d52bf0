package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Violation is a broken invariant, with the seed that reproduces the schedule it broke in.
type Violation struct {
	Seed uint64 `json:"seed"`
	// Invariant is the number of the invariant (see the package documentation); 0 is a worker
	// that exited by itself.
	Invariant int    `json:"invariant"`
	Target    string `json:"target,omitempty"`
	Run       string `json:"run,omitempty"`
	Version   string `json:"version,omitempty"`
	What      string `json:"what"`
}

func (v Violation) String() string {
	var where []string
	for _, kv := range [][2]string{{"target", v.Target}, {"run", v.Run}, {"version", v.Version}} {
		if kv[1] != "" {
			where = append(where, kv[0]+"="+kv[1])
		}
	}
	s := fmt.Sprintf("seed=%d invariant %d", v.Seed, v.Invariant)
	if len(where) > 0 {
		s += " " + strings.Join(where, " ")
	}
	return s + ": " + v.What
}

// Result is what one schedule did and found.
type Result struct {
	Seed   uint64 `json:"seed"`
	Window string `json:"window"`
	// Faults counts the faults injected, by kind; Skipped those that found nothing to strike
	// (no live worker free, no unfinished job, NATS already down, ...).
	Faults  map[FaultKind]int `json:"faults"`
	Skipped map[FaultKind]int `json:"faults_skipped"`
	// FaultPointDeaths counts the workers that reached their fault point and died there.
	FaultPointDeaths int `json:"fault_point_deaths"`
	// Requests counts the requests published (acknowledged by JetStream), repeats included.
	Requests int `json:"requests_published"`
	// Runs counts the campaign's runs by final status (not the final wedge-check runs).
	Runs map[string]int `json:"runs"`
	// Resumed counts paused runs resumed by retrying the job that paused them.
	Resumed int `json:"paused_runs_resumed"`
	// RolloutsResumed counts halted rollouts of the fleet resumed, retrying their failed members.
	RolloutsResumed int         `json:"rollouts_resumed"`
	Violations      []Violation `json:"violations"`
	// Notes are facts worth knowing that break no invariant.
	Notes       []string `json:"notes,omitempty"`
	LogDir      string   `json:"log_dir"`
	WallSeconds float64  `json:"wall_seconds"`
}

// Report sums up a campaign.
type Report struct {
	FirstSeed       uint64            `json:"first_seed"`
	Window          string            `json:"window"`
	Schedules       int               `json:"schedules"`
	Faults          map[FaultKind]int `json:"faults"`
	Skipped         map[FaultKind]int `json:"faults_skipped"`
	Runs            map[string]int    `json:"runs"`
	Resumed         int               `json:"paused_runs_resumed"`
	RolloutsResumed int               `json:"rollouts_resumed"`
	Violations      []Violation       `json:"violations"`
	WallSeconds     float64           `json:"wall_seconds"`
	Results         []*Result         `json:"schedules_detail"`
}

// NewReport sums results up.
func NewReport(firstSeed uint64, window time.Duration, results []*Result, wall time.Duration) *Report {
	r := &Report{FirstSeed: firstSeed, Window: window.String(), Schedules: len(results), Faults: map[FaultKind]int{},
		Skipped: map[FaultKind]int{}, Runs: map[string]int{}, Violations: []Violation{}, WallSeconds: wall.Seconds(), Results: results}
	for _, res := range results {
		for k, n := range res.Faults {
			r.Faults[k] += n
		}
		for k, n := range res.Skipped {
			r.Skipped[k] += n
		}
		for k, n := range res.Runs {
			r.Runs[k] += n
		}
		r.Resumed += res.Resumed
		r.RolloutsResumed += res.RolloutsResumed
		r.Violations = append(r.Violations, res.Violations...)
	}
	return r
}

// String is the report as the test prints it.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos campaign: %d schedule(s) from seed %d, fault window %s each, wall time %s\n",
		r.Schedules, r.FirstSeed, r.Window, (time.Duration(r.WallSeconds * float64(time.Second))).Round(time.Second))
	fmt.Fprintf(&b, "  faults injected: %s (total %d)\n", kindCounts(r.Faults), total(r.Faults))
	if total(r.Skipped) > 0 {
		fmt.Fprintf(&b, "  faults skipped (nothing to strike): %s\n", kindCounts(r.Skipped))
	}
	fmt.Fprintf(&b, "  runs by final status: %s; paused runs resumed: %d; halted rollouts resumed: %d\n", statusCounts(r.Runs), r.Resumed, r.RolloutsResumed)
	for _, res := range r.Results {
		fmt.Fprintf(&b, "  seed %d: %d fault(s), %d request(s), runs %s, %d violation(s), %s\n", res.Seed, total(res.Faults),
			res.Requests, statusCounts(res.Runs), len(res.Violations), (time.Duration(res.WallSeconds * float64(time.Second))).Round(time.Second))
		for _, n := range res.Notes {
			fmt.Fprintf(&b, "    note: %s\n", n)
		}
		if len(res.Violations) > 0 {
			fmt.Fprintf(&b, "    worker logs and evidence: %s\n", res.LogDir)
		}
	}
	fmt.Fprintf(&b, "  violations: %d\n", len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "    %s\n", v)
	}
	return b.String()
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func total[K comparable](m map[K]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func kindCounts(m map[FaultKind]int) string {
	var parts []string
	for _, k := range FaultKinds {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func statusCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}
