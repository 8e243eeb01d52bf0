package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
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
}

// segment is a run of statements that execute together: consecutive transactional statements
// in one transaction, or a single statement that cannot run in a transaction block.
type segment struct {
	stmts []sqlscript.Statement
	inTx  bool
}

// segments splits a migration body into segments, refusing transaction control.
func segments(script string, serverVersion int) ([]segment, error) {
	stmts, err := sqlscript.SplitFor(script, serverVersion)
	if err != nil {
		return nil, err
	}
	var segs []segment
	for _, s := range stmts {
		switch s.Class {
		case sqlscript.TxControl:
			return nil, fmt.Errorf("line %d: %s: the worker runs each migration in a transaction it manages; remove transaction control from the migration", s.Line, s.Summary())
		case sqlscript.NonTransactional:
			segs = append(segs, segment{stmts: []sqlscript.Statement{s}})
		default:
			if n := len(segs); n > 0 && segs[n-1].inTx {
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
func (p *Pipeline) runDDL(ctx context.Context, t *target.Target, rc *runContext, m *contract.Migration, attempt int, log *slog.Logger) (*phaseResult, error) {
	res := &phaseResult{}
	pool, err := t.Pool(ctx)
	if err != nil {
		return res, err
	}
	script := m.UpSQL
	if rc.row.Direction == contract.DirectionDown {
		script = m.DownSQL
	}
	segs, err := segments(script, t.ServerVersion())
	if err != nil {
		return res, hooks.Permanent(err)
	}
	began := time.Now()
	for first := true; ; first = false {
		var st ddlStep
		err := p.ddlTx(ctx, t, pool, func(tx pgx.Tx) error {
			var err error
			if st, err = p.ddlProgress(ctx, t, tx, rc, m); err != nil || st.done {
				return err
			}
			if first && st.cp.Next > 0 {
				log.Info("resuming ddl after its last committed segment", "segment", st.cp.Next, "segments", len(segs))
			}
			if st.cp.Next < len(segs) && !segs[st.cp.Next].inTx {
				st.outside = true // run below, on a connection of its own
				return nil
			}
			return p.ddlSegment(ctx, t, tx, rc, m, attempt, segs, &st.cp)
		})
		if err == nil && st.outside {
			st.cp, err = p.execOutsideTx(ctx, t, pool, rc, m, attempt, segs, st.cp.Next, log)
		}
		if err != nil {
			res.duration, res.rows = time.Since(began), st.cp.Rows
			return res, err
		}
		if st.done && first {
			log.Info("ddl already committed by an earlier attempt; not running it again")
		}
		if st.done || st.cp.Next >= len(segs) {
			// This attempt's time; the tracking row records the time over all attempts.
			res.duration, res.rows = time.Since(began), st.cp.Rows
			res.message = fmt.Sprintf("%s %s: %d statement(s)", pastVerb(rc.row.Direction), m.ID(), countStatements(segs))
			return res, nil
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
func (p *Pipeline) ddlProgress(ctx context.Context, t *target.Target, q target.Querier, rc *runContext, m *contract.Migration) (ddlStep, error) {
	var st ddlStep
	rows, err := t.Ledger(ctx, q, rc.row.ID, m.Version, contract.PhaseDDL)
	if err != nil {
		return st, err
	}
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
func (p *Pipeline) ddlSegment(ctx context.Context, t *target.Target, tx pgx.Tx, rc *runContext, m *contract.Migration, attempt int, segs []segment, cp *ddlCheckpoint) error {
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
		return p.finishDDL(ctx, t, tx, rc, m, attempt, *cp)
	}
	return t.WriteLedger(ctx, tx, ddlLedger(rc, m, attempt, target.StatusRunning, *cp))
}

func (p *Pipeline) ddlTx(ctx context.Context, t *target.Target, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := t.Lock(ctx, tx); err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		fault.At(fault.PhaseBeforeCommit)
		return nil
	})
}

// finishDDL writes the tracking row (or deletes it, for down) and the completed ledger row.
func (p *Pipeline) finishDDL(ctx context.Context, t *target.Target, tx pgx.Tx, rc *runContext, m *contract.Migration, attempt int, cp ddlCheckpoint) error {
	if rc.row.Direction == contract.DirectionDown {
		if err := t.DeleteApplied(ctx, tx, m.Version); err != nil {
			return err
		}
	} else {
		by := rc.req.RequestedBy
		if by == "" {
			by = "confiture-worker"
		}
		if err := t.RecordApplied(ctx, tx, target.Applied{
			Version: m.Version, Name: m.Name, Checksum: m.Checksum, ExecutionTimeMS: cp.MS,
			AppliedBy: by, RunID: rc.row.ID,
		}); err != nil {
			return err
		}
	}
	return t.WriteLedger(ctx, tx, ddlLedger(rc, m, attempt, target.StatusCompleted, cp))
}

func ddlLedger(rc *runContext, m *contract.Migration, attempt int, status string, cp ddlCheckpoint) target.LedgerRow {
	b, _ := json.Marshal(cp)
	return target.LedgerRow{
		Run: rc.row.ID, Version: m.Version, Phase: contract.PhaseDDL, Hook: ddlLedgerHook, Status: status,
		Attempt: attempt, RowsAffected: cp.Rows, DurationMS: cp.MS, Checkpoint: b,
	}
}

// execOutsideTx runs segment i, a statement that cannot run in a transaction block, on a
// connection of its own holding the target's lock as a session lock, then records the
// checkpoint (and, for the last segment, the tracking row) before letting the lock go. It
// re-reads the checkpoint under the lock and does nothing if segment i is done already.
func (p *Pipeline) execOutsideTx(ctx context.Context, t *target.Target, pool *pgxpool.Pool, rc *runContext, m *contract.Migration, attempt int, segs []segment, i int, log *slog.Logger) (ddlCheckpoint, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return ddlCheckpoint{}, err
	}
	defer conn.Release()
	if err := t.SessionLock(ctx, conn.Conn()); err != nil {
		return ddlCheckpoint{}, err
	}
	defer t.SessionUnlock(context.WithoutCancel(ctx), conn.Conn())
	st, err := p.ddlProgress(ctx, t, conn, rc, m)
	if err != nil || st.done || st.cp.Next != i {
		return st.cp, err // another execution got there first
	}
	s := segs[i].stmts[0]
	log.Info("running statement outside a transaction", "line", s.Line, "reason", s.Reason)
	start := time.Now()
	tag, err := conn.Exec(ctx, s.SQL)
	if err != nil {
		return st.cp, fmt.Errorf("statement at line %d (%s): %w", s.Line, s.Summary(), err)
	}
	cp := st.cp
	cp.Rows += tag.RowsAffected()
	cp.Next++
	cp.MS += time.Since(start).Milliseconds()
	// The statement has committed: record that even if the job's time has just run out.
	rctx, cancel := recordCtx(ctx)
	defer cancel()
	if cp.Next < len(segs) {
		return cp, t.WriteLedger(rctx, conn, ddlLedger(rc, m, attempt, target.StatusRunning, cp))
	}
	return cp, pgx.BeginFunc(rctx, conn, func(tx pgx.Tx) error { return p.finishDDL(rctx, t, tx, rc, m, attempt, cp) })
}

func execStatements(ctx context.Context, tx pgx.Tx, stmts []sqlscript.Statement) (int64, error) {
	var rows int64
	for _, s := range stmts {
		tag, err := tx.Exec(ctx, s.SQL)
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
