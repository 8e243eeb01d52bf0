package hooks

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"
)

// Batched is a hook whose work is too large for one transaction (a batched backfill): it does
// its work in many short transactions of its own, each committing a checkpoint together with
// its step, so that a crash, a retry or another worker resumes exactly after the last committed
// step.
//
// The phase pipeline calls RunBatches, never inside the phase's transaction: the hooks declared
// before it in the phase commit first, the ones after it run in a transaction of their own once
// it is done. RunBatches works until it is done or until BatchContext.Until passes, and then
// returns with Done false: the pipeline gives the worker slot back and calls it again later
// (see internal/jobs).
//
// Run, the Hook method, only measures: it runs the first batches inside hc.Tx, which a dry-run
// rolls back, and reports their rate and the duration extrapolated to the whole table.
type Batched interface {
	Hook
	RunBatches(ctx context.Context, bc *BatchContext) (BatchOutcome, error)
}

// Beginner starts transactions on the target: a *pgxpool.Pool.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// CheckpointStore keeps a Batched hook's checkpoint in the hook ledger of the target.
type CheckpointStore interface {
	// Load takes the target's lock for the rest of tx and returns the last checkpoint
	// committed (nil before the first).
	Load(ctx context.Context, tx pgx.Tx) (json.RawMessage, error)
	// Save records checkpoint in tx, with the rows done so far: it commits with the step.
	Save(ctx context.Context, tx pgx.Tx, checkpoint json.RawMessage, rows int64) error
}

// BatchContext is what RunBatches gets. Context.Tx is nil.
type BatchContext struct {
	Context
	// DB opens the hook's own transactions on the target.
	DB          Beginner
	Checkpoints CheckpointStore
	// Until is when RunBatches should stop, after the step in progress, and return with Done
	// false. Zero means no limit.
	Until time.Time
	// Progress, when set, is called after every committed step.
	Progress func(BatchProgress)
}

// BatchProgress is how far a Batched hook has come.
type BatchProgress struct {
	// Rows done so far, over every slice.
	Rows int64
	// EstimatedTotal is the planner's estimate of the rows to do in all; 0 when unknown.
	EstimatedTotal int64
	// BatchSize is the size of the next batch.
	BatchSize int
	// RowsPerSecond is the rate of the current slice.
	RowsPerSecond float64
	// ETA is the estimated time left; 0 when unknown.
	ETA time.Duration
	// LastBatch is how long the last batch held its transaction, LastBatchRows what it did.
	LastBatch     time.Duration
	LastBatchRows int64
}

// BatchOutcome is what RunBatches returns.
type BatchOutcome struct {
	// Done is set once all the work is committed; otherwise the pipeline calls again later.
	Done bool
	// Result is the hook's result once Done.
	Result Result
	// Rows done so far, over every slice.
	Rows int64
	// Elapsed is the time spent on the hook so far, over every slice.
	Elapsed time.Duration
}
