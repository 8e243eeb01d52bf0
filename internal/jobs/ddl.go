package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/sqlscript"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// ddlLedgerHook is the hook name of the ddl phase's own ledger row, which holds its checkpoint.
const ddlLedgerHook = "ddl"

// ddlCheckpoint is how far a ddl phase got: the index of the next segment to run.
type ddlCheckpoint struct {
	Next int   `json:"next_segment"`
	Rows int64 `json:"rows_affected"`
	MS   int64 `json:"duration_ms"`
	// Started is 1 + the index of a segment that cannot run in a transaction and that was
	// started without its checkpoint being recorded since; 0 when none.
	Started int `json:"started_segment,omitempty"`
	// StartedFailed says the server answered the started segment's statement with an error:
	// it did not do what it does (but may have left an INVALID index behind).
	StartedFailed bool `json:"started_failed,omitempty"`
}

// segment is a run of statements that execute together: consecutive transactional statements
// in one transaction, or a single statement that cannot run in a transaction block.
type segment struct {
	stmts []sqlscript.Statement
	inTx  bool
}

// segments splits a migration body into segments, refusing transaction control but a BEGIN
// and COMMIT around the whole body (sqlscript.Unwrap). Without noTx, consecutive
// transactional statements share a segment; with it (the migration's no_transaction), each
// statement is a segment of its own, committed on its own.
func segments(script string, serverVersion int, noTx bool) ([]segment, error) {
	stmts, err := sqlscript.SplitFor(script, serverVersion)
	if err != nil {
		return nil, err
	}
	stmts, _ = sqlscript.Unwrap(stmts)
	var segs []segment
	for _, s := range stmts {
		switch s.Class {
		case sqlscript.TxControl:
			return nil, fmt.Errorf("line %d: %s: the worker runs each migration in a transaction it manages; remove transaction control from the migration (a BEGIN and a COMMIT around the whole of it are accepted)", s.Line, s.Summary())
		case sqlscript.NonTransactional:
			segs = append(segs, segment{stmts: []sqlscript.Statement{s}})
		default:
			if n := len(segs); n > 0 && segs[n-1].inTx && !noTx {
				segs[n-1].stmts = append(segs[n-1].stmts, s)
			} else {
				segs = append(segs, segment{stmts: []sqlscript.Statement{s}, inTx: true})
			}
		}
	}
	return segs, nil
}

// runDDL applies (up) or reverts (down) a migration's SQL. Transactional statements run in one
// target transaction that also writes (or deletes) the tracking row and the ledger row. A body
// with statements that cannot run in a transaction block is run segment by segment, in order,
// with a checkpoint in the ledger after each, so a retry resumes after the last segment done.
// Every step reads the checkpoint while holding the target's lock, so even two executions of
// the same job that overlap (a rescue while a stuck attempt still runs) never repeat a segment.
func (pa *phaseAttempt) runDDL(ctx context.Context, t *target.Target) error {
	a := pa.attempt
	pool, err := t.Pool(ctx)
	if err != nil {
		return err
	}
	script := pa.m.UpSQL
	if a.rc.row.Direction == contract.DirectionDown {
		script = pa.m.DownSQL
	}
	segs, err := segments(script, t.ServerVersion(), pa.m.NoTransaction)
	if err != nil {
		return hooks.Permanent(err)
	}
	for first := true; ; first = false {
		var st ddlStep
		err := pa.ddlTx(ctx, t, pool, func(tx pgx.Tx, progress ddlStep) error {
			if st = progress; st.done {
				return nil
			}
			if first && st.cp.Next > 0 {
				a.log.Info("resuming ddl after its last committed segment", "segment", st.cp.Next, "segments", len(segs))
			}
			if st.cp.Next < len(segs) && !segs[st.cp.Next].inTx {
				st.outside = true // run below, on a connection of its own
				return nil
			}
			return pa.ddlSegment(ctx, t, tx, segs, &st.cp)
		})
		if err == nil && st.outside {
			st.cp, err = pa.execOutsideTx(ctx, t, pool, segs, st.cp.Next)
		}
		a.res.rows = st.cp.Rows
		if err != nil {
			return err
		}
		if st.done && first {
			a.log.Info("ddl already committed by an earlier attempt; not running it again")
		}
		if st.done || st.cp.Next >= len(segs) {
			a.res.message = fmt.Sprintf("%s %s: %d statement(s)", pastVerb(a.rc.row.Direction), pa.m.ID(), countStatements(segs))
			return nil
		}
	}
}

// ddlStep is what one step of runDDL found under the target's lock.
type ddlStep struct {
	cp      ddlCheckpoint
	done    bool // the ddl phase has completed
	outside bool // the next segment runs outside a transaction
}

// ddlProgress reads the ddl phase's checkpoint; call it holding the target's lock.
func (pa *phaseAttempt) ddlProgress(ctx context.Context, t *target.Target, q target.Querier) (ddlStep, error) {
	rows, err := t.Ledger(ctx, q, pa.rc.row.ID, pa.m.Version, contract.PhaseDDL)
	if err != nil {
		return ddlStep{}, err
	}
	return progressOf(rows)
}

// progressOf is the ddl phase's checkpoint in its ledger rows.
func progressOf(rows []target.LedgerRow) (ddlStep, error) {
	var st ddlStep
	for _, r := range rows {
		if len(r.Checkpoint) > 0 {
			if err := json.Unmarshal(r.Checkpoint, &st.cp); err != nil {
				return st, fmt.Errorf("ddl checkpoint: %w", err)
			}
		}
		st.done = st.done || r.Status == target.StatusCompleted
	}
	return st, nil
}

// ddlSegment runs the transactional segment at cp.Next in tx (or, past the last segment, only
// records completion) and advances cp in the ledger; the last one also writes the tracking row.
func (pa *phaseAttempt) ddlSegment(ctx context.Context, t *target.Target, tx pgx.Tx, segs []segment, cp *ddlCheckpoint) error {
	start := time.Now()
	if cp.Next < len(segs) {
		n, err := execStatements(ctx, tx, segs[cp.Next].stmts)
		cp.Rows += n
		if err != nil {
			return err
		}
		cp.Next++
	}
	cp.MS += time.Since(start).Milliseconds()
	if cp.Next >= len(segs) {
		return pa.finishDDL(ctx, t, tx, *cp)
	}
	return t.WriteLedger(ctx, tx, pa.ddlLedger(target.StatusRunning, *cp))
}

// ddlTx runs fn in a target transaction that holds the target's lock, with the ddl phase's
// progress read under it (in the lock's round trip).
func (pa *phaseAttempt) ddlTx(ctx context.Context, t *target.Target, pool *pgxpool.Pool, fn func(pgx.Tx, ddlStep) error) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, err := t.LockLedger(ctx, tx, pa.rc.row.ID, pa.m.Version, contract.PhaseDDL)
		if err != nil {
			return err
		}
		st, err := progressOf(rows)
		if err != nil {
			return err
		}
		if err := fn(tx, st); err != nil {
			return err
		}
		return pa.fault(ctx, fault.PhaseBeforeCommit)
	})
}

// finishDDL writes the tracking row (or deletes it, for down) and the completed ledger row. An
// applied migration is incomplete until its last phase commits: complete now only when no
// later phase has work to do.
func (pa *phaseAttempt) finishDDL(ctx context.Context, t *target.Target, tx pgx.Tx, cp ddlCheckpoint) error {
	a := pa.attempt
	if a.rc.row.Direction == contract.DirectionDown {
		if err := t.DeleteApplied(ctx, tx, pa.m.Version); err != nil {
			return err
		}
	} else {
		by := a.rc.req.RequestedBy
		if by == "" {
			by = "confiture-worker"
		}
		return t.RecordApplied(ctx, tx, target.Applied{
			Version: pa.m.Version, Name: pa.m.Name, Checksum: pa.m.Checksum, ExecutionTimeMS: cp.MS,
			AppliedBy: by, RunID: a.rc.row.ID, Phase: contract.PhaseDDL,
			Complete: completesAt(pa.m, firstPhase(a.rc.row.Direction, pa.entry)) == contract.PhaseDDL,
		}, pa.ddlLedger(target.StatusCompleted, cp))
	}
	return t.WriteLedger(ctx, tx, pa.ddlLedger(target.StatusCompleted, cp))
}

func (pa *phaseAttempt) ddlLedger(status string, cp ddlCheckpoint) target.LedgerRow {
	b, _ := json.Marshal(cp)
	return target.LedgerRow{
		Run: pa.rc.row.ID, Version: pa.m.Version, Phase: contract.PhaseDDL, Hook: ddlLedgerHook, Status: status,
		Attempt: pa.n, RowsAffected: cp.Rows, DurationMS: cp.MS, Checkpoint: b, Origin: pa.entry.Origin,
	}
}

// execOutsideTx runs segment i, a statement that cannot run in a transaction block, on a
// connection of its own holding the target's lock as a session lock, then records the
// checkpoint (and, for the last segment, the tracking row) before letting the lock go. It
// re-reads the checkpoint under the lock and does nothing if segment i is done already.
//
// Before it runs the statement it records that it started it, and after an error from the
// server that the statement failed. A statement started before whose outcome was lost (the
// worker died, the connection broke, or the queue transaction after it failed) may have run,
// or left something half done; for index builds the retry looks: a concurrent build that
// succeeded is not built again (it would fail: the index exists), and a concurrent drop that
// succeeded is not repeated; for other statements, an error saying the object already exists
// (or no longer does) is taken as the earlier start's doing. A statement that failed is run
// again as it is, and fails again the same way if nothing changed. Either way, an INVALID
// index of the name a concurrent build of ours started is what that build left: it is dropped
// and built anew (IF NOT EXISTS would accept it).
func (pa *phaseAttempt) execOutsideTx(ctx context.Context, t *target.Target, pool *pgxpool.Pool, segs []segment, i int) (ddlCheckpoint, error) {
	a := pa.attempt
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return ddlCheckpoint{}, err
	}
	defer conn.Release()
	if err := t.SessionLock(ctx, conn.Conn()); err != nil {
		return ddlCheckpoint{}, err
	}
	defer t.SessionUnlock(ctx, conn.Conn())
	st, err := pa.ddlProgress(ctx, t, conn)
	if err != nil || st.done || st.cp.Next != i {
		return st.cp, err // another execution got there first
	}
	s := segs[i].stmts[0]
	cp := st.cp
	started := cp.Started == i+1
	unknown := started && !cp.StartedFailed // it may have done its work
	skip, err := pa.beforeNonTx(ctx, conn.Conn(), s, started, unknown)
	if err != nil {
		return cp, err
	}
	start := time.Now()
	if !skip {
		cp.Started, cp.StartedFailed = i+1, false
		if err := t.WriteLedger(ctx, conn, pa.ddlLedger(target.StatusRunning, cp)); err != nil {
			return st.cp, err
		}
		a.log.Info("running statement outside a transaction", "line", s.Line, "reason", s.Reason)
		tag, err := conn.Exec(ctx, s.SQL)
		var pgErr *pgconn.PgError
		switch {
		case err != nil && unknown && alreadyDone(err):
			a.log.Warn("statement started by an earlier attempt was done already; not repeating it", "line", s.Line, "error", err.Error())
		case err != nil && errors.As(err, &pgErr):
			// The server said no: a later attempt must not take the statement for done.
			cp.StartedFailed = true
			rctx, cancel := recordCtx(ctx)
			if werr := t.WriteLedger(rctx, conn, pa.ddlLedger(target.StatusRunning, cp)); werr != nil {
				a.log.Warn("could not record that the statement failed", "line", s.Line, "error", werr.Error())
			}
			cancel()
			return cp, fmt.Errorf("statement at line %d (%s): %w", s.Line, s.Summary(), err)
		case err != nil:
			return cp, fmt.Errorf("statement at line %d (%s): %w", s.Line, s.Summary(), err)
		default:
			cp.Rows += tag.RowsAffected()
		}
	}
	if err := pa.fault(ctx, fault.NonTxStatementDone); err != nil {
		return cp, err
	}
	cp.Next, cp.Started, cp.StartedFailed = cp.Next+1, 0, false
	cp.MS += time.Since(start).Milliseconds()
	// The statement has committed: record that even if the job's time has just run out.
	rctx, cancel := recordCtx(ctx)
	defer cancel()
	if cp.Next < len(segs) {
		return cp, t.WriteLedger(rctx, conn, pa.ddlLedger(target.StatusRunning, cp))
	}
	return cp, pgx.BeginFunc(rctx, conn, func(tx pgx.Tx) error { return pa.finishDDL(rctx, t, tx, cp) })
}

// beforeNonTx looks, before a statement that cannot run in a transaction block runs, at what an
// earlier start of it left (started; unknown when its outcome was lost) and at an index it
// builds: it reports whether the statement is done already, and drops an INVALID index that a
// failed concurrent build left behind so that the statement builds it anew.
func (pa *phaseAttempt) beforeNonTx(ctx context.Context, conn *pgx.Conn, s sqlscript.Statement, started, unknown bool) (skip bool, err error) {
	idx, ok := sqlscript.ConcurrentIndex(s.SQL)
	if !ok || idx.Name == "" {
		return false, nil
	}
	if !idx.Create {
		if !unknown {
			return false, nil
		}
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, idx.Name).Scan(&exists); err != nil {
			return false, fmt.Errorf("statement at line %d: look up index %s: %w", s.Line, idx.Name, err)
		}
		if !exists {
			pa.log.Info("index dropped by an earlier attempt; not dropping it again", "index", idx.Name)
		}
		return !exists, nil
	}
	var nsp string
	var valid bool
	err = conn.QueryRow(ctx, `SELECT n.nspname, i.indisvalid FROM pg_class c
		JOIN pg_index i ON i.indexrelid = c.oid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = $2 AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass($1))`,
		idx.Table, sqlscript.Ident(idx.Name)).Scan(&nsp, &valid)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("statement at line %d: look up index %s: %w", s.Line, idx.Name, err)
	case valid && unknown:
		pa.log.Info("index built by an earlier attempt; not building it again", "index", idx.Name)
		return true, nil
	case !valid && (started || idx.IfNotExists):
		pa.log.Warn("dropping the INVALID index a failed concurrent build left, to build it anew", "index", idx.Name)
		name := pgx.Identifier{nsp, sqlscript.Ident(idx.Name)}.Sanitize()
		if _, err := conn.Exec(ctx, `DROP INDEX CONCURRENTLY IF EXISTS `+name); err != nil {
			return false, fmt.Errorf("statement at line %d: drop invalid index %s: %w", s.Line, name, err)
		}
	}
	return false, nil
}

// alreadyDone reports whether a statement's error says that what it does is done already: the
// object it creates exists, or the one it drops is gone.
func alreadyDone(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "42P07", "42710", "42704": // duplicate_table, duplicate_object, undefined_object
		return true
	}
	return false
}

func execStatements(ctx context.Context, tx pgx.Tx, stmts []sqlscript.Statement) (int64, error) {
	var rows int64
	for _, s := range stmts {
		// A migration's statements have no parameters and run once: the simple protocol takes
		// one round trip each, and leaves no prepared statement behind in the connection.
		tag, err := tx.Exec(ctx, s.SQL, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			return rows, fmt.Errorf("statement at line %d (%s): %w", s.Line, s.Summary(), err)
		}
		rows += tag.RowsAffected()
	}
	return rows, nil
}

func countStatements(segs []segment) int {
	n := 0
	for _, s := range segs {
		n += len(s.stmts)
	}
	return n
}
