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
	var cp ddlCheckpoint
	rows, err := t.Ledger(ctx, pool, rc.row.ID, m.Version, contract.PhaseDDL)
	if err != nil {
		return res, err
	}
	for _, r := range rows {
		if r.Status == target.StatusCompleted {
			log.Info("ddl already committed by an earlier attempt; not running it again")
			res.duration, res.rows = time.Duration(r.DurationMS)*time.Millisecond, r.RowsAffected
			res.message = r.Message
			return res, nil
		}
		if len(r.Checkpoint) > 0 {
			if err := json.Unmarshal(r.Checkpoint, &cp); err != nil {
				return res, fmt.Errorf("ddl checkpoint: %w", err)
			}
		}
	}
	if cp.Next > 0 {
		log.Info("resuming ddl after its last committed segment", "segment", cp.Next, "segments", len(segs))
	}
	start := time.Now().Add(-time.Duration(cp.MS) * time.Millisecond)
	for i := cp.Next; i < len(segs); i++ {
		seg := segs[i]
		last := i == len(segs)-1
		if seg.inTx {
			err = p.ddlTx(ctx, t, pool, func(tx pgx.Tx) error {
				n, err := execStatements(ctx, tx, seg.stmts)
				cp.Rows += n
				if err != nil {
					return err
				}
				cp.Next, cp.MS = i+1, time.Since(start).Milliseconds()
				if last {
					return p.finishDDL(ctx, t, tx, rc, m, attempt, cp)
				}
				return t.WriteLedger(ctx, tx, ddlLedger(rc, m, attempt, target.StatusRunning, cp))
			})
		} else {
			log.Info("running statement outside a transaction", "line", seg.stmts[0].Line, "reason", seg.stmts[0].Reason)
			var n int64
			n, err = p.execOutsideTx(ctx, t, pool, seg.stmts[0])
			cp.Rows += n
			if err == nil {
				cp.Next, cp.MS = i+1, time.Since(start).Milliseconds()
				if last {
					err = p.ddlTx(ctx, t, pool, func(tx pgx.Tx) error { return p.finishDDL(ctx, t, tx, rc, m, attempt, cp) })
				} else {
					err = t.WriteLedger(ctx, pool, ddlLedger(rc, m, attempt, target.StatusRunning, cp))
				}
			}
		}
		if err != nil {
			res.duration, res.rows = time.Since(start), cp.Rows
			return res, err
		}
	}
	if len(segs) == 0 { // a body of comments only (down.sql may be); still record the step
		if err := p.ddlTx(ctx, t, pool, func(tx pgx.Tx) error { return p.finishDDL(ctx, t, tx, rc, m, attempt, cp) }); err != nil {
			return res, err
		}
	}
	res.duration, res.rows = time.Since(start), cp.Rows
	res.message = fmt.Sprintf("%s %s: %d statement(s)", pastVerb(rc.row.Direction), m.ID(), countStatements(segs))
	return res, nil
}

func (p *Pipeline) ddlTx(ctx context.Context, t *target.Target, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := t.Lock(ctx, tx); err != nil {
			return err
		}
		return fn(tx)
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

// execOutsideTx runs one statement that cannot run in a transaction block, holding the
// target's lock as a session lock around it.
func (p *Pipeline) execOutsideTx(ctx context.Context, t *target.Target, pool *pgxpool.Pool, s sqlscript.Statement) (int64, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	if err := t.SessionLock(ctx, conn.Conn()); err != nil {
		return 0, err
	}
	defer t.SessionUnlock(context.WithoutCancel(ctx), conn.Conn())
	tag, err := conn.Exec(ctx, s.SQL)
	if err != nil {
		return 0, fmt.Errorf("statement at line %d (%s): %w", s.Line, s.Summary(), err)
	}
	return tag.RowsAffected(), nil
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
