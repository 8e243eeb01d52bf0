// Package chaos runs the randomized fault campaign: seeded random schedules of crashes,
// cancellations and outages against real worker processes, each followed by a check of the
// guarantees of SPEC.md that survive any fault.
//
// # Running it
//
// TestChaos runs only with CONFITURE_CHAOS=1 (so `make test` skips it):
//
//	make chaos                                   # 5 schedules of a 60 s fault window
//	make chaos CHAOS_SEED=42 CHAOS_SCHEDULES=1   # replay one schedule
//	make chaos-ci                                # 2 schedules of 40 s, as CI runs it
//
// Knobs, from the environment: CHAOS_SEED is the first schedule's seed (default: the clock,
// printed), each next schedule taking the seed after; CHAOS_SCHEDULES (5); CHAOS_DURATION, the
// fault window of each schedule (60s); CHAOS_REPORT, a path for the report as JSON;
// CHAOS_KEEP_LOGS=1 keeps the logs of schedules that found nothing too.
//
// The workers are the test binary itself, re-executed as a worker (TestMain, WorkerMain):
// worker.New with the built-in hooks, configured from CONFITURE_* variables through
// worker.ApplyEnv, running until SIGTERM. The campaign is built without the race detector: every
// worker is a copy of the test binary, and three workers and the harness under -race on two
// cores would slow the phases down until the timeouts the campaign relies on (a 10 s phase
// timeout, River's rescue after it) fire for the wrong reasons. The race detector runs in
// `make test`.
//
// # A schedule
//
// Everything a schedule does comes from its seed (math/rand/v2, a PCG source seeded with it):
// Generate draws the Plan, which plan.txt in the schedule's log directory describes. The same
// seed and window give the same migrations, requests and faults, at the same offsets, on any
// machine. What the machine's timing makes of them does vary: which phase a SIGKILL interrupts,
// which job a cancellation finds, which backend a termination hits, whether a worker reaches
// its fault point at all. A seed replays a schedule, not an interleaving.
//
// A schedule has a queue database and three target databases (package testdb), each target
// reached by the workers through a TCP proxy the harness can close, an in-process NATS server
// with JetStream that it can stop and start again on the same port with the same store, and
// two worker processes (a third joins and leaves), configured for short timeouts: phase
// timeout and River's rescue 10 s, reconciler every second, outage tolerance 30 s, 5 attempts
// with a back-off from 50 ms to 1 s, backfill slices of 1 s, shutdown timeout 2 s.
//
// Each target gets 4 to 6 generated migrations. The first creates counters(name, n) and
// plugin_keys(key, name). Every effect, that is the DDL and each sql hook (in before_ddl,
// after_ddl, after_validation, cleanup or on_error), bumps its own counter named
// <version>.<phase>.<hook> (the DDL's hook is "ddl"). Three other migrations have roles: one
// runs the campaign's plugin (chaos_tally, a shell script: in one psql transaction it inserts
// its idempotency key into plugin_keys and bumps its counter only if the key was new, so a
// re-run with the same key changes nothing and a counter of 2 means the key changed); one
// builds an index with CREATE INDEX CONCURRENTLY on a table with rows (its counter comes after
// the index, in the DDL's last transaction, which writes the tracking row); one creates
// big(id, counter) with 20k to 50k rows and fills it in after_ddl with the batched backfill
// hook (counter = counter + 1, small batches, a rate cap so that it lasts 3 to 6 s). Some of the
// others are no_transaction migrations (goose's NO TRANSACTION), each DDL statement committed on
// its own: a counter <version>.ddl.early before the last statement, which a retry must not bump
// again and which may be there without the tracking row. Some hooks
// sleep a little, so that faults land in the middle of phases. Requests for a target arrive at
// random times in the first 85% of the window: request k holds migrations 1..k, like
// successive deploys; some repeat an earlier set (nothing to do), some are published twice.
//
// The fleet: a fourth database holds 4 to 6 schemas, the members of the target group
// "tenants" (schema per tenant, on the target "fleet"); two rollouts (migrations 1..2, then
// 1..3; a canary of one, waves of two, two runs at once) are published at random times in the
// first 70% of the window, and a final rollout of every migration after it. Each migration
// bumps a counter in its DDL and in an after_ddl hook, in the member's schema.
//
// # Faults
//
// A fault strikes every 1 to 4.5 s of the window, drawn from (FaultKinds):
//
//   - sigkill: SIGKILL a live worker; it restarts after 0 to 3 s.
//   - fault_point: restart a worker slot with CONFITURE_FAULT=<point>=kill@<n> (package fault:
//     intake.after_commit, phase.before_commit, phase.after_commit, outbox.after_publish,
//     backfill.after_batch; the two phase points twice as often, n small); it dies there if it
//     gets there, and restarts clean. A retry after a phase's target commit is where a
//     repeated effect would show: a SIGKILL at a random moment rarely lands there.
//   - sigterm: stop a live worker gracefully; it restarts after 0 to 3 s.
//   - cancel_job: cancel a River job of a confiture_* kind that is not finalized, with River's
//     JobCancel on an insert-only client, as River UI does.
//   - terminate_backend: pg_terminate_backend of a client backend of the queue or a target
//     database (never the harness's own connections), two times in three one that is not
//     idle when there is one.
//   - nats_down: stop NATS for 2 to 8 s.
//   - target_down: close a target's proxy for 2 to 10 s: new connections are refused, open
//     ones cut.
//   - worker_churn: the third worker joins, or leaves if it runs.
//
// A fault that finds nothing to strike (no live worker free, no unfinished job, NATS already
// down) is counted as skipped. A run paused during the window (its backfill's job was
// cancelled) holds its target; the harness resumes it after 3 s, as an operator would, by
// retrying the job that paused it, so that the target's later requests do not wait out the
// window. After the window every fault is healed: NATS runs, every proxy
// is open, a worker still carrying a fault point is replaced, and the two clean workers of
// slots 0 and 1 run.
//
// # Invariants
//
// Then the harness waits (3 minutes at most) until every run is completed or failed, or paused
// with run.paused as its last run-level event (or queued behind such a run), resumes every
// paused run by retrying with River's JobRetry the job that paused it (runs.stopped_by_job,
// which the run.paused message names too), and waits again (up to four such rounds). Then it
// checks:
//
//  1. Runs end, and say so. Every request JetStream acknowledged has its run; every run ended
//     completed or failed, or paused with its event, within the bound of each round (a run
//     still neither at the end of a round is a violation then, with the River jobs that have
//     been running for long as notes: a job of a dead worker holds on until River's rescuer
//     takes it back); its status in the runs table is what its last run-level event in the
//     outbox says (run.completed, run.failed); no valid request was rejected; a paused run's
//     stopped_by_job is the job its run.paused names (SPEC "Guarantees" 5 and 6: every run
//     reaches an end state or stays visibly paused; none holds its target for ever).
//  2. Every effect exactly once. No counter above 1, big's counters all 0 or 1 (each batch
//     commits with its checkpoint), big holding the rows its DDL inserted, every index valid
//     once its migration's DDL committed (Guarantees 2 and 3). A plugin counter of 2 is a key
//     that changed between runs of the same hook.
//  3. The tracking table is what the events say. For each target whose runs have all ended,
//     the incomplete rows of confiture.schema_migrations (version, name, phase) are those the
//     data.incomplete of its last finished run's final event lists; every migration a
//     migration.completed reported is complete; and effects agree with the phase reached
//     (expectedCount): a complete migration has every effect once; one without a tracking row
//     has no effect of its DDL or later phases (before_ddl may have committed); one incomplete
//     at phase R has every effect of the phases up to R, and none after R, except in the
//     phase in progress (the first after R with hooks) when it commits in several
//     transactions (a backfill or a plugin among its hooks); on_error effects may be there
//     once or not at all. big exists exactly when the backfill's migration has its tracking
//     row, and is all 1 once after_ddl committed. A final event whose worker could not read the
//     tracking table says so (data.unread; only a failed run's can: a completed run waits until
//     it can read it): that is a note, not a violation.
//  4. No event lost or doubled. Once the outbox is published to the end, every outbox event
//     id is on the CONFITURE_EVENTS stream exactly once (the stream is read unfiltered), and
//     the stream holds no message that is not in the outbox (Guarantee 4). Workers go on
//     meanwhile (a request whose worker died before its ack is delivered again after the ack
//     wait and answered with a run.duplicate), so the outbox is read before the stream for
//     the first half and after it for the second.
//  5. No target wedged. A final request with all of a target's migrations completes on each
//     target within 3 minutes, and leaves no incomplete migration; invariants 2 and 3 are
//     checked again then, when every migration must be complete with every effect once.
//  6. Rollouts end, and agree with their runs. Every rollout JetStream acknowledged is
//     recorded with every member of the group and ends completed (a halted one, whose wave
//     failed under the faults, is resumed by the harness, retrying its failed members, as an
//     operator would); each member's state is its run's status; the rollout's last event
//     counts what its members say; every effect of a member's migrations is there at most
//     once, and, after the final rollout, exactly once in every member. The members' runs are
//     checked with every other run by invariant 1, and the rollouts' events by invariant 4.
//
// A worker that exits by itself (not signalled by the harness, not at its fault point) is
// reported as invariant 0: the worker is to survive transient trouble (Guarantee 6).
//
// # Reading a failure
//
// Each violation names its seed, and its target, run and version where it has them. The
// schedule's log directory (printed) keeps plan.txt (the drawn plan), harness.log (what the
// harness did when, every fault with what it struck), worker-<slot>-<n>.log (each worker
// process's JSON log records) and evidence.txt (the runs with their events, each target's
// tracking table, counters and hook ledger, and River's jobs, as the schedule ended). The
// report, printed at the end and written to CHAOS_REPORT, counts schedules, faults by kind,
// runs by final status and violations.
package chaos
