// Package backfill is the built-in `backfill` hook: it fills a table (usually a column just
// added in after_ddl) in short, resumable, throttled batches, each committed with its
// checkpoint, so that no batch holds row locks for long, no row is done twice or skipped when
// a worker dies, and progress can be watched. docs/BACKFILL.md is the user's guide; this is how
// it works.
//
// # Declaring it
//
// In a hooks file:
//
//	after_ddl:
//	  - name: fill_email_lower
//	    hook: backfill
//	    params: {table: users, set: "email_lower = lower(email)", where: "email_lower IS NULL"}
//
// Params (params.go) lists every parameter with its default: table ("name" or "schema.name");
// set, the SET list, or update, a whole UPDATE with {{range}} where each batch's key range goes
// (for joins, with alias qualifying the key); where, which selects the rows still to do (with
// set); key, the key columns (default: the primary key; composite keys work; they must be the
// columns, in order, of a valid unique index without expressions or predicate, and NOT NULL,
// else the hook fails with ErrNoKey and is not retried); batch_size (first batch, 1000),
// min_batch_size and max_batch_size (100 and 100,000), target_batch_ms (200); rows_per_second
// and pause_ms; lock_timeout_ms (1000), batch_timeout_ms (statement_timeout, 30,000),
// retry_pause_ms (1000) and max_retries (30); sample_ms (1000) and dry_run_complete_ms (30000), for a dry-run. Identifiers are
// quoted by the hook; set, where and update are the migration author's SQL, run as written, by
// design. The hook implements hooks.Batched: the phase pipeline (internal/jobs) calls
// RunBatches outside the phase's transaction.
//
// # One batch
//
// Each batch is one transaction on the target:
//
//  1. set lock_timeout and statement_timeout for this transaction;
//  2. take the target's advisory lock and read the checkpoint (CheckpointStore.Load): two
//     workers can never run batches of one backfill at once, and a worker that finds the
//     checkpoint moved (another slice ran) goes on from it;
//  3. find the batch's last key, the n-th key after the checkpoint, reading only the key index
//     (no row: fewer than n keys are left, and this batch is the last one, without upper bound);
//  4. update that range of keys, and nothing else;
//  5. write the new checkpoint (CheckpointStore.Save), then COMMIT.
//
// For a table "t" keyed by "id" bigint, steps 3 and 4 are (the first planned with enable_sort
// off, the second with enable_seqscan off, see below):
//
//	SELECT "id"::text FROM "t" WHERE ("id") > ($1::text::bigint) ORDER BY "t"."id" OFFSET $2 LIMIT 1
//	UPDATE "t" SET <set> WHERE ("id") > ($1::text::bigint) AND ("id") <= ($2::text::bigint) [AND (<where>)]
//
// With the worker's ledger store that is eight round trips with BEGIN and COMMIT, about 1 ms on
// a local server against 150-200 ms of work: not worth merging statements for.
//
// Composite keys compare as rows: ("tenant", "seq") > ($1::text::int, $2::text::int). Keys
// travel as text, so every key type works and the checkpoint is plain JSON.
//
// # Why bounded key ranges
//
// The usual keyset batch, UPDATE t SET ... FROM (SELECT id FROM t WHERE id > $1 ORDER BY id
// LIMIT n) s WHERE t.id = s.id, leaves the join to the planner, which may hash the n keys and
// scan the whole table to probe them: it is known to flip to that plan when the statistics
// change during a run (100-180 ms per 10,000-row batch becoming 550-600 ms). A range of the key,
// between two known values, can only be read through the key index (or, for a range covering a
// large part of the table, a scan that the planner prices right). The planner's choices for
// the two statements here, captured with testdata/explain.sql (custom plans, with the values,
// which is what the first executions of a prepared statement get; the generic plans PostgreSQL
// switches to afterwards estimate a range at 0.5% of the table and stay on the index too), at
// a batch of 50,000 rows on a table of 1,000,000 written in key order, vacuumed and analyzed,
// with its first 300,000 rows done:
//
// Before ANALYZE (the statistics of the table as loaded):
//
//	Limit  (cost=1782.43..1782.46 rows=1 width=40)
//	  ->  Index Only Scan using t_pkey on t  (cost=0.43..32457.73 rows=910680 width=40)
//	        Index Cond: (id > '300000'::bigint)
//
//	Update on t  (cost=0.43..2827.85 rows=0 width=0)
//	  ->  Index Scan using t_pkey on t  (cost=0.43..2827.85 rows=65930 width=10)
//	        Index Cond: ((id > '300000'::bigint) AND (id <= '350000'::bigint))
//
// After ANALYZE (300,000 rows have a new version at the end of the table; relallvisible fell):
//
//	Limit  (cost=3351.46..3351.53 rows=1 width=40)
//	  ->  Index Only Scan using t_pkey on t  (cost=0.42..47023.41 rows=701605 width=40)
//	        Index Cond: (id > '300000'::bigint)
//
//	Update on t  (cost=1237.04..14268.05 rows=0 width=0)
//	  ->  Bitmap Heap Scan on t  (cost=1237.04..14268.05 rows=50401 width=10)
//	        Recheck Cond: ((id > '300000'::bigint) AND (id <= '350000'::bigint))
//	        ->  Bitmap Index Scan on t_pkey  (cost=0.00..1224.43 rows=50401 width=0)
//	              Index Cond: ((id > '300000'::bigint) AND (id <= '350000'::bigint))
//
// The UPDATE moves from an index scan to a bitmap scan of the same index, which still reads
// only the range's pages (469 heap blocks, 215 ms for the 50,000 rows when run). The LIMIT
// shape is a hash join over a sequential scan of the whole table both before and after the
// ANALYZE at this size:
//
//	Update on t  (cost=4226.53..30750.53 rows=0 width=0)
//	  ->  Hash Join  (cost=4226.53..30750.53 rows=50000 width=42)
//	        Hash Cond: (t.id = s.id)
//	        ->  Seq Scan on t  (cost=0.00..22149.00 rows=1000000 width=18)
//	        ->  Hash  (cost=3601.53..3601.53 rows=50000 width=40)
//	              ->  Subquery Scan on s  (cost=0.42..3601.53 rows=50000 width=40)
//	                    ->  Limit  (cost=0.42..3101.53 rows=50000 width=8)
//	                          ->  Index Only Scan using t_pkey on t t_1  (cost=0.42..43515.39 rows=701605 width=8)
//	                                Index Cond: (id > '300000'::bigint)
//
// and took 405 ms for the next 50,000 rows, reading all 1,000,000.
//
// The bounded shape alone is not enough when the statistics are wrong about the key. On a table
// written in random key order, analyzed at 100,000 rows and grown to 1,000,000 (the histogram
// ends at 100,000), the planner believes 7,766 keys follow 300,000 instead of 700,000 and, to
// find the 50,000th, sorts them all (300 ms, spilling 17 MB to disk; on a larger table this
// grows with the rows left, not with the batch):
//
//	Limit  (actual rows=1)
//	  ->  Sort  (rows=7766) (actual rows=50000)
//	        Sort Method: external merge  Disk: 17896kB
//	        ->  Bitmap Heap Scan on r  (rows=7766) (actual rows=700000)
//
// and it believes the range (50000, 100000] holds half the table, and scans all of it (355 ms,
// 950,000 rows filtered out):
//
//	Update on r  (cost=0.00..25559.60 rows=0 width=0) (actual rows=0 loops=1)
//	  ->  Seq Scan on r  (cost=0.00..25559.60 rows=488008 width=10) (actual rows=50000 loops=1)
//	        Filter: ((id > '50000'::bigint) AND (id <= '100000'::bigint))
//
// So the hook plans the bound query with enable_sort off (an Index Only Scan, 35-65 ms there)
// and the UPDATE with enable_seqscan off (a Bitmap Heap Scan of the range, 222 ms), each for
// its own statement only: the settings are put back as they were right after it, in the same
// round trip. A table scan still happens where nothing else can be done (a joined table of an
// update template without an index), only not in place of the key index. The benchmark logs
// the plans every batch statement ran with (auto_explain), across an ANALYZE issued in the
// middle of a run on stale statistics: index only scans for the bound, index or bitmap scans of
// the key index for the UPDATE, nothing else.
//
// # Exactly once
//
// The checkpoint (Checkpoint: the last key done, as text, rows and batches so far, the next
// batch size, the time spent, done) is written by CheckpointStore.Save in the batch's own
// transaction. In the worker it is the hook's row of the target's hook ledger
// (confiture.hook_ledger, or the target's tracking schema: status 'running', column checkpoint,
// jsonb), under the target's advisory lock. The batch and its checkpoint commit together or not
// at all: a crash, a lost connection, a failed commit, a retry of the phase or another worker
// resumes exactly after the last committed batch. No row is done twice, none is skipped
// (TestBackfillSurvivesSIGKILL in internal/worker kills a worker process during a backfill and
// checks every row was incremented exactly once). When the last batch commits with done set,
// the pipeline marks the ledger row completed.
//
// # Batch size
//
// Batches start at batch_size keys (or at the size the checkpoint carries over from the last
// slice) and adapt after each one: the next size is 80% of target_batch_ms over the time per key
// measured (the batch's transaction, from the bound query to its commit), at most twice and at
// least half the last size, within min_batch_size and max_batch_size. The time per key is
// smoothed: a slower batch counts at once, a faster one only halfway, so one lucky batch does
// not double the next into a long one. The 20% margin is there because batch durations at the
// same size vary by a third from one batch to the next (WAL flushes, writeback, other
// sessions), and target_batch_ms is what a batch should not exceed: measured, p50 about
// 155 ms and p99 200-240 ms for the default 200 (BENCHMARKS.md).
//
// # Timeouts and retries
//
// Each batch runs with lock_timeout_ms and batch_timeout_ms (statement_timeout). A batch that
// hits either, or a deadlock, is rolled back with its checkpoint, and retried at half the size
// (not below min_batch_size) after retry_pause_ms; only max_retries such batches in a row fail
// the hook, and then its phase is retried by River like any failure. Other errors fail the hook
// at once.
//
// # Throttling
//
// rows_per_second caps the rate: after each batch the hook waits until the rows done in this
// slice are within the cap. pause_ms adds a fixed pause between batches. Neither is counted in
// the batch durations (no lock is held while waiting).
//
// # Cancellation
//
// A batch in progress runs to its commit, even when its context ends (it uses
// context.WithoutCancel; statement_timeout bounds it): cancelling stops the backfill after that
// batch, with its checkpoint, and RunBatches returns the context's error. In the worker,
// cancelling the phase job in River UI pauses the backfill; retrying the job resumes it.
//
// # Rows written while it runs
//
// The backfill updates the rows whose keys it passes. Rows inserted after the backfill passed
// their key are NOT updated, and neither are rows that come to match where behind the
// checkpoint: where is evaluated when the batch reaches the row, and a row is never revisited.
// The application must write the new column itself from the moment the column exists (deploy
// code that writes it, then backfill), or a trigger or a column DEFAULT must. Rows ahead of the
// checkpoint are updated when the backfill reaches them.
//
// # Slices of one River job
//
// A backfill of hours cannot be one River job with no timeout: it would hold a worker slot for
// hours, need its lease kept fresh against River's rescuer, and hold up a graceful shutdown
// until it ends. It runs instead as a chain of slices of one River job (internal/jobs,
// batched.go): RunBatches works until BatchContext.Until (Config.BackfillSlice, 1 minute by
// default, at most half the phase timeout), stops after the batch in progress and returns with
// Done false; the job then returns river.JobSnooze(0), which does not use up an attempt, and
// the next slice, on any worker, resumes from the checkpoint. So a backfill never holds a
// worker slot longer than a slice, never outlives River's job timeout or its rescuer, and a
// graceful shutdown stops it after the current batch; a worker that dies mid-slice is rescued
// like any job and the next attempt resumes after the last committed batch.
//
// # Dry-run
//
// A dry-run calls the hook's Run (hooks.Hook) instead, inside the dry-run's transaction, which
// is rolled back: it runs batches in savepoints for sample_ms, with the same statements and
// the same adaptive size, measures their rate and extrapolates it to the rows the planner
// expects (or reports the whole backfill when it finished within the sample). When the rate
// says the rest takes at most dry_run_complete_ms, it runs the rest too, so later hooks see
// every row filled.
//
// # Performance
//
// BenchmarkBackfillVsSingleUpdate (bench_test.go) compares the hook with a single UPDATE of a
// whole 1,000,000-row table on the same database in the same run; BENCHMARKS.md has the
// results and how to reproduce them.
package backfill
