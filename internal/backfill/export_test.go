package backfill

import (
	"context"

	"github.com/confiture-io/confiture-worker/internal/hooks"
)

// RunWithStats is RunBatches that also returns the batch durations and retries.
func RunWithStats(ctx context.Context, h *Hook, bc *hooks.BatchContext) (hooks.BatchOutcome, Stats, error) {
	return h.runBatches(ctx, bc)
}
