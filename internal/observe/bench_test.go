package observe_test

import (
	"testing"
	"time"

	"github.com/confiture-io/confiture-worker/internal/observe"
)

// BenchmarkHookDone is the cost the phase pipeline pays per hook: one histogram observation and,
// on failure, one counter increment. A hook takes milliseconds at least, so the figure to watch
// is allocs/op, which must stay 0 (label lookups without building anything).
func BenchmarkHookDone(b *testing.B) {
	m := observe.NewMetrics()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		outcome := observe.OutcomeCompleted
		if i%10 == 0 {
			outcome = observe.OutcomeFailed
		}
		m.HookDone("sql", "after_ddl", outcome, 12*time.Millisecond)
	}
}

func BenchmarkRunFinished(b *testing.B) {
	m := observe.NewMetrics()
	b.ReportAllocs()
	for b.Loop() {
		m.RunFinished(observe.RunCompleted)
	}
}
