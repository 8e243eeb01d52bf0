package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/confiture-io/confiture-worker/internal/hooks"
)

// Hook is a configured backfill. It implements hooks.Batched.
type Hook struct{ p Params }

var _ hooks.Batched = (*Hook)(nil)

// Checkpoint is what commits with every batch, in the hook ledger's checkpoint column.
type Checkpoint struct {
	// After is the last key done, one text value per key column; empty before the first batch.
	After []string `json:"after,omitempty"`
	// Rows counts the rows updated so far.
	Rows int64 `json:"rows"`
	// Batches counts the batches committed so far.
	Batches int64 `json:"batches"`
	// BatchSize is the size the next batch starts from.
	BatchSize int `json:"batch_size"`
	// ElapsedMS is the time spent so far, over every slice, pauses included.
	ElapsedMS int64 `json:"elapsed_ms"`
	// Done is set by the last batch.
	Done bool `json:"done,omitempty"`
}

// ErrNoKey is returned when the table has no usable key.
var ErrNoKey = errors.New("backfill: no usable key")

// Stats of one RunBatches or Run call.
type Stats struct {
	// Batches lists how long each batch held its transaction (from its UPDATE to its commit).
	Batches []time.Duration
	// Retries counts batches rolled back after a lock or statement timeout.
	Retries int
}

// table is what the hook learns of its table when it starts.
type table struct {
	ref   string   // quoted reference
	keys  []string // quoted key column names
	types []string // their types, format_type
}

// resolve looks the table and its key up.
func (h *Hook) resolve(ctx context.Context, q querier) (*table, error) {
	t := &table{ref: h.p.tableRef()}
	var oid *uint32
	if err := q.QueryRow(ctx, `SELECT to_regclass($1)::oid`, t.ref).Scan(&oid); err != nil {
		return nil, fmt.Errorf("backfill: look up table %s: %w", h.p.Table, err)
	}
	if oid == nil {
		return nil, hooks.Permanent(fmt.Errorf("backfill: table %s does not exist", t.ref))
	}
	keys := h.p.Key
	if len(keys) == 0 {
		rows, err := q.Query(ctx, `SELECT a.attname FROM pg_index i
			CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord`, *oid)
		if err != nil {
			return nil, fmt.Errorf("backfill: primary key of %s: %w", t.ref, err)
		}
		if keys, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return nil, fmt.Errorf("backfill: primary key of %s: %w", t.ref, err)
		}
		if len(keys) == 0 {
			return nil, hooks.Permanent(fmt.Errorf("%w: table %s has no primary key; set key to the columns of a unique index on NOT NULL columns", ErrNoKey, t.ref))
		}
	} else if err := checkKey(ctx, q, *oid, t.ref, keys); err != nil {
		return nil, err
	}
	for _, k := range keys {
		var typ string
		var notNull bool
		err := q.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
			WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped`, *oid, k).Scan(&typ, &notNull)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, hooks.Permanent(fmt.Errorf("%w: table %s has no column %q", ErrNoKey, t.ref, k))
		}
		if err != nil {
			return nil, fmt.Errorf("backfill: key column %q: %w", k, err)
		}
		if !notNull {
			return nil, hooks.Permanent(fmt.Errorf("%w: key column %q of %s may be NULL, and rows with a NULL key would be skipped", ErrNoKey, k, t.ref))
		}
		t.keys = append(t.keys, pgx.Identifier{k}.Sanitize())
		t.types = append(t.types, typ)
	}
	return t, nil
}

// checkKey verifies that keys are the columns, in order, of a valid unique index without
// expressions or predicate: keyset pagination over anything else skips or repeats rows.
func checkKey(ctx context.Context, q querier, oid uint32, ref string, keys []string) error {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (
		SELECT FROM pg_index i WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid
		AND i.indpred IS NULL AND i.indexprs IS NULL
		AND (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) = $2::text[])`, oid, keys).Scan(&ok)
	if err != nil {
		return fmt.Errorf("backfill: check key of %s: %w", ref, err)
	}
	if !ok {
		return hooks.Permanent(fmt.Errorf("%w: key (%s) of %s is not the column list of a unique index; keyset batches need one to be exact and fast",
			ErrNoKey, strings.Join(keys, ", "), ref))
	}
	return nil
}

type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// keyRow is "(k1, k2)", qualified by qual when it is set.
func (t *table) keyRow(qual string) string {
	cols := make([]string, len(t.keys))
	for i, k := range t.keys {
		if qual != "" {
			k = qual + "." + k
		}
		cols[i] = k
	}
	return "(" + strings.Join(cols, ", ") + ")"
}

// params is "($1::text::t1, $2::text::t2)" from index from.
func (t *table) params(from int) string {
	ps := make([]string, len(t.keys))
	for i, typ := range t.types {
		ps[i] = fmt.Sprintf("$%d::text::%s", from+i, typ)
	}
	return "(" + strings.Join(ps, ", ") + ")"
}

// boundSQL selects the key of the batch's last row: the n-th key after $1.. ($n is the
// offset, n-1). It reads only the key index.
func (t *table) boundSQL(after bool) string {
	var sb strings.Builder
	sb.WriteString("SELECT ")
	for i, k := range t.keys {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(k + "::text")
	}
	sb.WriteString(" FROM " + t.ref)
	n := 1
	if after {
		sb.WriteString(" WHERE " + t.keyRow("") + " > " + t.params(1))
		n += len(t.keys)
	}
	// Qualified: an unqualified name would sort by the text output column of the same name.
	order := make([]string, len(t.keys))
	for i, k := range t.keys {
		order[i] = t.ref + "." + k
	}
	fmt.Fprintf(&sb, " ORDER BY %s OFFSET $%d LIMIT 1", strings.Join(order, ", "), n)
	return sb.String()
}

// rangePredicate is the batch's key range: after $1.. and up to $k.. ; either may be absent.
func (t *table) rangePredicate(qual string, after, upTo bool) string {
	var parts []string
	n := 1
	if after {
		parts = append(parts, t.keyRow(qual)+" > "+t.params(n))
		n += len(t.keys)
	}
	if upTo {
		parts = append(parts, t.keyRow(qual)+" <= "+t.params(n))
	}
	if len(parts) == 0 {
		return "true"
	}
	return strings.Join(parts, " AND ")
}

// updateSQL is the batch's UPDATE.
func (h *Hook) updateSQL(t *table, after, upTo bool) string {
	if h.p.Update != "" {
		qual := t.ref
		if h.p.Alias != "" {
			qual = pgx.Identifier{h.p.Alias}.Sanitize()
		} else if parts := strings.Split(h.p.Table, "."); len(parts) == 2 {
			qual = pgx.Identifier{parts[1]}.Sanitize()
		}
		return strings.Replace(h.p.Update, RangePlaceholder, "("+t.rangePredicate(qual, after, upTo)+")", 1)
	}
	sql := "UPDATE " + t.ref + " SET " + h.p.Set + " WHERE " + t.rangePredicate("", after, upTo)
	if h.p.Where != "" {
		sql += " AND (" + h.p.Where + ")"
	}
	return sql
}

// estimate asks the planner how many rows after cp are still to do.
func (h *Hook) estimate(ctx context.Context, q querier, t *table, after []string) (int64, error) {
	sql := "EXPLAIN (FORMAT JSON) SELECT 1 FROM " + t.ref
	var conds []string
	args := []any{}
	if len(after) > 0 {
		conds = append(conds, t.keyRow("")+" > "+t.params(1))
		for _, a := range after {
			args = append(args, a)
		}
	}
	if h.p.Where != "" {
		conds = append(conds, "("+h.p.Where+")")
	}
	if len(conds) > 0 {
		sql += " WHERE " + strings.Join(conds, " AND ")
	}
	var plan []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	var raw []byte
	if err := q.QueryRow(ctx, sql, args...).Scan(&raw); err != nil {
		return 0, fmt.Errorf("backfill: estimate rows of %s: %w", t.ref, err)
	}
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) == 0 {
		return 0, fmt.Errorf("backfill: read the plan of %s: %v", t.ref, err)
	}
	return int64(plan[0].Plan.Rows), nil
}

// batch runs one batch in tx: it finds the batch's upper key and updates the range. It returns
// the rows updated, the new last key (nil when the batch reached the end of the table).
//
// Two round trips: the bound query, planned with enable_sort off, then the UPDATE, planned with
// enable_seqscan off; each setting is put back as it was right after its statement, so the
// rest of the transaction (a dry-run's, in Run) plans as before. Without them the planner
// leaves the key index when its statistics underestimate the rows left after the checkpoint or
// overestimate those in the range (stale statistics, a heap not in key order): it sorts every
// row after the checkpoint to find the bound, or scans the whole table for the UPDATE. See the
// package doc.
func (h *Hook) batch(ctx context.Context, tx pgx.Tx, t *table, after []string, size int) (rows int64, upTo []string, err error) {
	args := make([]any, 0, 2*len(t.keys)+1)
	for _, a := range after {
		args = append(args, a)
	}
	row := make([]*string, len(t.keys))
	dst := make([]any, len(row))
	for i := range row {
		dst[i] = &row[i]
	}
	var sortWas, seqscanWas string
	found := false
	b := &pgx.Batch{}
	b.Queue(`SELECT current_setting('enable_sort'), current_setting('enable_seqscan')`).
		QueryRow(func(r pgx.Row) error { return r.Scan(&sortWas, &seqscanWas) })
	b.Queue(`SELECT set_config('enable_sort', 'off', true)`)
	b.Queue(t.boundSQL(len(after) > 0), append(args, size-1)...).QueryRow(func(r pgx.Row) error {
		err := r.Scan(dst...)
		if errors.Is(err, pgx.ErrNoRows) {
			// Fewer than size rows are left: this batch takes them all.
			return nil
		}
		found = err == nil
		return err
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, nil, err
	}
	if found {
		for _, v := range row {
			upTo = append(upTo, *v)
			args = append(args, *v)
		}
	}
	b = &pgx.Batch{}
	b.Queue(`SELECT set_config('enable_sort', $1, true), set_config('enable_seqscan', 'off', true)`, sortWas)
	b.Queue(h.updateSQL(t, len(after) > 0, upTo != nil), args...).Exec(func(ct pgconn.CommandTag) error {
		rows = ct.RowsAffected()
		return nil
	})
	b.Queue(`SELECT set_config('enable_seqscan', $1, true)`, seqscanWas)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, nil, err
	}
	return rows, upTo, nil
}

// aim is the share of the target duration the sizer steers batches to: batch durations
// vary by a third or more from one batch to the next at the same size (WAL flushes, writeback,
// other sessions), and the target is what a batch should not exceed, not its average.
const aim = 0.8

// sizer adapts the batch size toward the target duration.
type sizer struct {
	size, lo, hi int
	target       time.Duration
	// cost is the time per key of the range, smoothed: a slower batch raises it at once, a
	// faster one lowers it halfway. So one fast batch does not double the next into a long one.
	cost float64
}

// after takes the duration of a batch of s.size keys and sets the next size: aim*target over
// the cost per key, within half and twice the last size and within the bounds.
func (s *sizer) after(d time.Duration) {
	c := float64(max(d, time.Millisecond)) / float64(max(s.size, 1))
	if s.cost == 0 || c > s.cost {
		s.cost = c
	} else {
		s.cost = (s.cost + c) / 2
	}
	next := aim * float64(s.target) / s.cost
	next = math.Min(math.Max(next, float64(s.size)/2), float64(s.size)*2)
	s.size = min(max(int(next), s.lo), s.hi)
}

func (s *sizer) shrink() { s.size = max(s.size/2, s.lo) }

// timedOut reports whether err is a lock timeout, a statement timeout or a deadlock: the batch
// can be retried smaller.
func timedOut(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "55P03" || pe.Code == "57014" || pe.Code == "40P01")
}

// RunBatches does the backfill in batches, each in its own transaction that commits the
// checkpoint with the batch. See the package doc.
func (h *Hook) RunBatches(ctx context.Context, bc *hooks.BatchContext) (hooks.BatchOutcome, error) {
	out, _, err := h.runBatches(ctx, bc)
	return out, err
}

func (h *Hook) runBatches(ctx context.Context, bc *hooks.BatchContext) (hooks.BatchOutcome, Stats, error) {
	var st Stats
	// A batch runs to its commit even when ctx ends: cancelling stops after the batch, with
	// its checkpoint. statement_timeout bounds it.
	bctx := context.WithoutCancel(ctx)
	log := bc.Logger
	var (
		t        *table
		cp       Checkpoint
		total    int64
		sliceAt  = time.Now()
		sliceRow int64
		retries  int
		lastHold time.Duration
		// mark is where the time counted in the checkpoint's ElapsedMS ends.
		mark = time.Now()
	)
	sz := &sizer{lo: h.p.MinBatchSize, hi: h.p.MaxBatchSize, target: ms(h.p.TargetBatchMS)}
	for first := true; ; first = false {
		if !first {
			if err := ctx.Err(); err != nil {
				return hooks.BatchOutcome{Rows: cp.Rows}, st, err
			}
			if !bc.Until.IsZero() && time.Now().After(bc.Until) {
				return hooks.BatchOutcome{Rows: cp.Rows}, st, nil
			}
		}
		tx, err := bc.DB.Begin(bctx)
		if err != nil {
			return hooks.BatchOutcome{Rows: cp.Rows}, st, err
		}
		// already: an earlier slice or worker finished the backfill.
		var already bool
		rows, done, hold, err := func() (int64, bool, time.Duration, error) {
			defer tx.Rollback(bctx) //nolint:errcheck // no-op after commit
			if _, err := tx.Exec(bctx, `SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)`,
				fmt.Sprint(h.p.LockTimeoutMS), fmt.Sprint(h.p.BatchTimeoutMS)); err != nil {
				return 0, false, 0, err
			}
			raw, err := bc.Checkpoints.Load(bctx, tx)
			if err != nil {
				return 0, false, 0, err
			}
			if len(raw) > 0 {
				var loaded Checkpoint
				if err := json.Unmarshal(raw, &loaded); err != nil {
					return 0, false, 0, hooks.Permanent(fmt.Errorf("backfill: read checkpoint: %w", err))
				}
				if first || loaded.Rows != cp.Rows || !slices.Equal(loaded.After, cp.After) {
					if !first {
						log.Warn("backfill checkpoint moved under this worker; continuing from it", "rows", loaded.Rows)
					}
					cp = loaded
				}
			}
			if cp.Done {
				already = true
				return 0, true, 0, nil
			}
			if t == nil {
				if t, err = h.resolve(bctx, tx); err != nil {
					return 0, false, 0, err
				}
				if total, err = h.estimate(bctx, tx, t, cp.After); err != nil {
					return 0, false, 0, err
				}
				total += cp.Rows
				if cp.BatchSize > 0 {
					sz.size = min(max(cp.BatchSize, sz.lo), sz.hi)
				} else {
					sz.size = h.p.BatchSize
				}
			}
			start := time.Now()
			n, upTo, err := h.batch(bctx, tx, t, cp.After, sz.size)
			if err != nil {
				return 0, false, 0, err
			}
			added := time.Since(mark).Milliseconds()
			next := Checkpoint{After: upTo, Rows: cp.Rows + n, Batches: cp.Batches + 1, Done: upTo == nil,
				ElapsedMS: cp.ElapsedMS + added}
			if upTo == nil {
				next.After = cp.After
			}
			hold := time.Since(start)
			probe := *sz
			probe.after(hold)
			next.BatchSize = probe.size
			data, _ := json.Marshal(next)
			if err := bc.Checkpoints.Save(bctx, tx, data, next.Rows); err != nil {
				return 0, false, 0, err
			}
			if err := tx.Commit(bctx); err != nil {
				return 0, false, 0, err
			}
			hold = time.Since(start)
			cp = next
			mark = mark.Add(time.Duration(added) * time.Millisecond)
			return n, next.Done, hold, nil
		}()
		if err != nil {
			if !timedOut(err) {
				return hooks.BatchOutcome{Rows: cp.Rows}, st, err
			}
			retries++
			st.Retries++
			if retries > h.p.MaxRetries {
				return hooks.BatchOutcome{Rows: cp.Rows}, st, fmt.Errorf("backfill of %s: %d batches in a row timed out: %w", h.p.Table, retries, err)
			}
			sz.shrink()
			log.Warn("backfill batch timed out; retrying smaller", "error", err.Error(), "batch_size", sz.size, "retry", retries)
			if err := sleep(ctx, ms(h.p.RetryPauseMS)); err != nil {
				return hooks.BatchOutcome{Rows: cp.Rows}, st, err
			}
			continue
		}
		retries = 0
		if already {
			return h.finished(cp), st, nil
		}
		st.Batches = append(st.Batches, hold)
		lastHold = hold
		sz.after(hold)
		sliceRow += rows
		if bc.Progress != nil {
			bc.Progress(progress(cp, total, sz.size, sliceRow, rows, time.Since(sliceAt), lastHold))
		}
		if done {
			return h.finished(cp), st, nil
		}
		if wait := h.wait(sliceAt, sliceRow); wait > 0 {
			if err := sleep(ctx, wait); err != nil {
				return hooks.BatchOutcome{Rows: cp.Rows}, st, err
			}
		}
	}
}

func (h *Hook) finished(cp Checkpoint) hooks.BatchOutcome {
	return hooks.BatchOutcome{Done: true, Rows: cp.Rows, Elapsed: time.Duration(cp.ElapsedMS) * time.Millisecond, Result: hooks.Result{
		RowsAffected: cp.Rows,
		Message:      fmt.Sprintf("backfilled %d row(s) of %s in %d batch(es)", cp.Rows, h.p.Table, cp.Batches),
	}}
}

// wait is the pause before the next batch: PauseMS, or longer to keep under RowsPerSecond.
func (h *Hook) wait(sliceAt time.Time, rows int64) time.Duration {
	wait := ms(h.p.PauseMS)
	if h.p.RowsPerSecond > 0 {
		due := time.Duration(float64(rows) / h.p.RowsPerSecond * float64(time.Second))
		wait = max(wait, due-time.Since(sliceAt))
	}
	return wait
}

func progress(cp Checkpoint, total int64, size int, sliceRows, lastRows int64, elapsed, last time.Duration) hooks.BatchProgress {
	p := hooks.BatchProgress{Rows: cp.Rows, EstimatedTotal: max(total, cp.Rows), BatchSize: size, LastBatch: last, LastBatchRows: lastRows}
	if cp.Done {
		p.EstimatedTotal = cp.Rows
	}
	if elapsed > 0 {
		p.RowsPerSecond = float64(sliceRows) / elapsed.Seconds()
	}
	if p.RowsPerSecond > 0 && p.EstimatedTotal > p.Rows {
		p.ETA = time.Duration(float64(p.EstimatedTotal-p.Rows) / p.RowsPerSecond * float64(time.Second))
	}
	return p
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Run samples the backfill inside hc.Tx for a dry-run: it runs batches in savepoints for up to
// SampleMS, measures their rate and extrapolates to the rows the planner expects. The caller
// rolls everything back.
func (h *Hook) Run(ctx context.Context, hc *hooks.Context) (hooks.Result, error) {
	t, err := h.resolve(ctx, hc.Tx)
	if err != nil {
		return hooks.Result{}, err
	}
	total, err := h.estimate(ctx, hc.Tx, t, nil)
	if err != nil {
		return hooks.Result{}, err
	}
	sz := &sizer{size: h.p.BatchSize, lo: h.p.MinBatchSize, hi: h.p.MaxBatchSize, target: ms(h.p.TargetBatchMS)}
	var after []string
	var rows, batches int64
	var busy, longest time.Duration
	until := time.Now().Add(ms(h.p.SampleMS))
	done, whole := false, false
	for !done && (whole || time.Now().Before(until)) {
		sp, err := hc.Tx.Begin(ctx)
		if err != nil {
			return hooks.Result{}, err
		}
		start := time.Now()
		n, upTo, err := h.batch(ctx, sp, t, after, sz.size)
		if err != nil {
			_ = sp.Rollback(ctx)
			return hooks.Result{}, err
		}
		if err := sp.Commit(ctx); err != nil {
			return hooks.Result{}, err
		}
		d := time.Since(start)
		busy += d
		longest = max(longest, d)
		sz.after(d)
		rows += n
		batches++
		if upTo == nil {
			done = true
		} else {
			after = upTo
		}
		if !whole && !done && !time.Now().Before(until) && rows > 0 {
			// The sample is over: finish the backfill when the rest is short enough.
			left := time.Duration(float64(max(total-rows, 0)) / (float64(rows) / busy.Seconds()) * float64(time.Second))
			whole = left <= ms(*h.p.DryRunCompleteMS)
		}
	}
	res := hooks.Result{RowsAffected: rows, Sampled: !done}
	rate := 0.0
	if busy > 0 {
		rate = float64(rows) / busy.Seconds()
	}
	total = max(total, rows)
	switch {
	case done && whole:
		res.Message = fmt.Sprintf("ran the whole backfill (its sample said at most %s): %d row(s) of %s in %d batch(es), %.0f ms (longest batch %.0f ms)",
			roundDuration(ms(*h.p.DryRunCompleteMS)), rows, h.p.Table, batches, ms64(busy), ms64(longest))
	case done:
		res.Message = fmt.Sprintf("sampled the whole backfill: %d row(s) of %s in %d batch(es), %.0f ms (longest batch %.0f ms)",
			rows, h.p.Table, batches, ms64(busy), ms64(longest))
	case rate > 0:
		eta := time.Duration(float64(total) / rate * float64(time.Second))
		if h.p.RowsPerSecond > 0 && h.p.RowsPerSecond < rate {
			eta = time.Duration(float64(total) / h.p.RowsPerSecond * float64(time.Second))
		}
		res.Message = fmt.Sprintf("sampled %d batch(es): %d row(s) in %.0f ms, %.0f rows/s (longest batch %.0f ms); about %d row(s) to do in %s: about %s",
			batches, rows, ms64(busy), rate, ms64(longest), total, h.p.Table, roundDuration(eta))
	default:
		res.Message = fmt.Sprintf("sampled %d batch(es) of %s: no rows changed; about %d row(s) to scan", batches, h.p.Table, total)
	}
	return res, nil
}

// roundDuration keeps two or three significant digits.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Minute:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

func ms64(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
