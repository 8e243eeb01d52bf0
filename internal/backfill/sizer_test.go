package backfill

import (
	"testing"
	"time"
)

func TestSizerAimsUnderTheTargetAndDampsFastBatches(t *testing.T) {
	s := &sizer{size: 10_000, lo: 100, hi: 100_000, target: 200 * time.Millisecond}
	steps := []struct {
		took time.Duration
		want int
	}{
		{100 * time.Millisecond, 16_000}, // 10 µs a key: 80% of 200 ms is 16,000 keys
		{160 * time.Millisecond, 16_000}, // on target
		{80 * time.Millisecond, 21_333},  // one fast batch (5 µs a key) counts halfway: 7.5 µs
		{320 * time.Millisecond, 10_666}, // a slow one (15 µs a key) counts at once, halving at most
		{1 * time.Millisecond, 21_200},   // however fast, halfway: 7.55 µs
	}
	for i, st := range steps {
		s.after(st.took)
		if s.size != st.want {
			t.Fatalf("step %d (%s): size %d, want %d", i, st.took, s.size, st.want)
		}
	}
	s = &sizer{size: 1000, lo: 100, hi: 100_000, target: 200 * time.Millisecond}
	if s.after(time.Millisecond); s.size != 2000 {
		t.Fatalf("more than doubling: %d", s.size)
	}
	s = &sizer{size: 150, lo: 100, hi: 1000, target: 200 * time.Millisecond}
	if s.after(10 * time.Second); s.size != 100 {
		t.Fatalf("below min_batch_size: %d", s.size)
	}
	if s.shrink(); s.size != 100 {
		t.Fatalf("shrink below min_batch_size: %d", s.size)
	}
}
