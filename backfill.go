package confiture

import (
	"context"
	"maps"
	"time"

	"github.com/confiture-io/confiture-worker/internal/backfill"
	"github.com/confiture-io/confiture-worker/internal/hooks"
)

// Backfill is a batched backfill defined in Go: what a `hook: backfill` declaration in a hooks
// file does, with its table and statement fixed in code. The worker updates the table in
// key-range batches, each in a transaction of its own that commits the batch's checkpoint in
// the target's hook ledger, so a crash or a retry resumes after the last committed batch: no
// row is done twice and none is skipped. The batch size adapts toward TargetBatch.
//
// Set, Update and Where are SQL, by design: they are written by the hook's author, never taken
// from a request.
type Backfill struct {
	// Table is "name" (on the search_path) or "schema.name", case-sensitive.
	Table string
	// Set is the SET list ("email_lower = lower(email)"); or Update is a whole UPDATE with
	// {{range}} where each batch's key range goes, its key columns qualified by Alias.
	Set, Update, Alias string
	// Where selects the rows still to do ("email_lower IS NULL"); with Set only.
	Where string
	// Key lists the key columns: a unique index's columns, NOT NULL. Default: the primary key.
	Key []string
	// BatchSize is the first batch's size; later ones adapt within MinBatchSize and
	// MaxBatchSize. Defaults: 1000, 100, 100000.
	BatchSize, MinBatchSize, MaxBatchSize int
	// TargetBatch is how long a batch should hold its row locks. Default 200ms.
	TargetBatch time.Duration
	// RowsPerSecond caps the rate; 0 is no cap. Pause is a wait between batches.
	RowsPerSecond float64
	Pause         time.Duration
	// LockTimeout and BatchTimeout bound each batch's waits for locks and its statements; a
	// batch that hits either is rolled back and retried smaller after RetryPause, up to
	// MaxRetries times in a row. Defaults: 1s, 30s, 1s, 30.
	LockTimeout, BatchTimeout, RetryPause time.Duration
	MaxRetries                            int
}

// params returns b as the backfill hook's parameters.
func (b Backfill) params() map[string]any {
	p := map[string]any{"table": b.Table}
	set := func(k string, v any, ok bool) {
		if ok {
			p[k] = v
		}
	}
	set("set", b.Set, b.Set != "")
	set("update", b.Update, b.Update != "")
	set("alias", b.Alias, b.Alias != "")
	set("where", b.Where, b.Where != "")
	set("key", b.Key, len(b.Key) > 0)
	set("batch_size", b.BatchSize, b.BatchSize != 0)
	set("min_batch_size", b.MinBatchSize, b.MinBatchSize != 0)
	set("max_batch_size", b.MaxBatchSize, b.MaxBatchSize != 0)
	set("target_batch_ms", b.TargetBatch.Milliseconds(), b.TargetBatch != 0)
	set("rows_per_second", b.RowsPerSecond, b.RowsPerSecond != 0)
	set("pause_ms", b.Pause.Milliseconds(), b.Pause != 0)
	set("lock_timeout_ms", b.LockTimeout.Milliseconds(), b.LockTimeout != 0)
	set("batch_timeout_ms", b.BatchTimeout.Milliseconds(), b.BatchTimeout != 0)
	set("retry_pause_ms", b.RetryPause.Milliseconds(), b.RetryPause != 0)
	set("max_retries", b.MaxRetries, b.MaxRetries != 0)
	return p
}

// Definition returns a hook type named name that runs this backfill, to Register. A hooks file
// then declares it by name, in before_ddl, after_ddl or cleanup; the declaration's params may
// tune it (batch_size, min_batch_size, max_batch_size, target_batch_ms, rows_per_second,
// pause_ms, lock_timeout_ms, batch_timeout_ms, retry_pause_ms, max_retries, sample_ms) but not
// change its table or statement. b is checked when the definition is registered.
//
// The hook does not run in the phase's transaction: the hooks declared before it in the phase
// commit first, and the ones after it run once it is done. Its New returns a Hook whose Run, on
// its own, only samples the backfill inside Context.Tx, as a dry-run does.
func (b Backfill) Definition(name, description string) Definition {
	if description == "" {
		description = "batched backfill of " + b.Table
	}
	base := b.params()
	return Definition{
		Name: name, Description: description,
		Phases:       []string{"before_ddl", "after_ddl", "cleanup"},
		ParamsSchema: backfill.TuningSchema(),
		backfill:     base,
		New: func(params map[string]any) (Hook, error) {
			h, err := newBackfill(base, params)
			if err != nil {
				return nil, err
			}
			return sampler{h}, nil
		},
	}
}

// newBackfill builds the backfill hook from its Go parameters and a declaration's tuning.
func newBackfill(base, tuning map[string]any) (*backfill.Hook, error) {
	merged := maps.Clone(base)
	maps.Copy(merged, tuning)
	var p backfill.Params
	if err := hooks.DecodeParams(merged, &p); err != nil {
		return nil, err
	}
	return backfill.New(p)
}

// sampler is a Go-defined backfill seen through the public Hook interface.
type sampler struct{ h *backfill.Hook }

func (s sampler) Run(ctx context.Context, c *Context) (Result, error) {
	res, err := s.h.Run(ctx, &hooks.Context{
		Run: c.Run, RequestID: c.RequestID, Target: c.Target, Migration: c.Migration, Version: c.Version,
		Phase: c.Phase, Hook: c.Hook, Attempt: c.Attempt, Tx: c.Tx, Logger: c.Logger,
	})
	return Result{RowsAffected: res.RowsAffected, Stats: res.Stats, Message: res.Message, Failed: res.Failed}, err
}

// toInternalBackfill completes toInternal for a Backfill's definition: its hooks are the
// worker's batched backfill itself, not adapted Go hooks.
func toInternalBackfill(d hooks.Definition, base map[string]any) hooks.Definition {
	d.Transactional = false
	d.New = func(params map[string]any) (hooks.Hook, error) { return newBackfill(base, params) }
	return d
}
