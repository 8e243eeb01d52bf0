package dryrun_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/dryrun"
	"github.com/confiture-io/confiture-worker/internal/hooks"
)

// operations are what another session tries on the table while the dry-run holds its lock,
// one per operation a report's blocks can list. Each runs in a transaction that is rolled back.
var operations = map[string]string{
	contract.DryRunBlocksReads:       `SELECT count(*) FROM accounts`,
	contract.DryRunBlocksWrites:      `UPDATE accounts SET balance = balance + 1 WHERE id = 1`,
	contract.DryRunBlocksRowLocks:    `SELECT id FROM accounts WHERE id = 1 FOR UPDATE`,
	contract.DryRunBlocksMaintenance: `ANALYZE accounts`,
	contract.DryRunBlocksDDL:         `ALTER TABLE accounts ADD COLUMN other_session int`,
}

// TestBlockingMatrix checks what the report says each lock mode blocks against PostgreSQL
// itself: for every table lock mode, a dry-run takes it on a table (LOCK TABLE in the
// migration) and pauses in its after_ddl hook, holding it; meanwhile a second session tries
// each operation on the same table under a short lock_timeout. An operation that times out
// was blocked; one that completes was not (lock_timeout counts only the wait for a lock, so a
// busy machine cannot make an unblocked operation time out). The report's blocks for the
// LOCK TABLE statement must list exactly the operations that timed out.
func TestBlockingMatrix(t *testing.T) {
	t.Parallel()
	for _, mode := range dryrun.LockModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			b := setup(t, `CREATE TABLE accounts (id int PRIMARY KEY, balance int);
				INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 100) g;`)
			holding, release := make(chan struct{}), make(chan struct{})
			require.NoError(t, b.registry.Register(hooks.Definition{
				Name: "hold", Source: "blocking_test", Transactional: true,
				New: func(map[string]any) (hooks.Hook, error) {
					return hooks.HookFunc(func(ctx context.Context, _ *hooks.Context) (hooks.Result, error) {
						close(holding)
						select {
						case <-release:
							return hooks.Result{}, nil
						case <-ctx.Done():
							return hooks.Result{}, ctx.Err()
						}
					}), nil
				},
			}))
			sqlMode := strings.ToUpper(strings.Join(splitCamel(strings.TrimSuffix(mode, "Lock")), " "))
			m := mig("0001", fmt.Sprintf("LOCK TABLE accounts IN %s MODE", sqlMode),
				contract.HookSpec{Name: "hold", Hook: "hold", Phase: contract.PhaseAfterDDL})

			type result struct {
				rep *contract.DryRunReport
				err error
			}
			done := make(chan result, 1)
			go func() {
				info := dryrun.RunInfo{Run: contract.RunID("default", "matrix"), Target: "default"}
				rep, err := dryrun.Run(context.Background(), b.conn, b.registry, info, []contract.Migration{m}, dryrun.Options{})
				done <- result{rep, err}
			}()
			select {
			case <-holding:
			case r := <-done:
				t.Fatalf("the dry-run ended before its hook held the lock: %+v %v", r.rep, r.err)
			}

			ctx := context.Background()
			other, err := pgx.Connect(ctx, b.dsn)
			require.NoError(t, err)
			defer other.Close(ctx)
			var blocked []string
			for _, op := range contract.DryRunBlocked {
				if tryUnderLockTimeout(t, other, operations[op]) {
					blocked = append(blocked, op)
				}
			}
			close(release)
			r := <-done
			require.NoError(t, r.err)
			require.True(t, r.rep.Success, "%+v", r.rep)

			st := findStmt(t, r.rep, "LOCK TABLE accounts")
			require.Len(t, st.Blocks, 1, "%+v", st)
			require.Equal(t, "accounts", st.Blocks[0].Table)
			require.Equal(t, mode, st.Blocks[0].Mode)
			require.Equal(t, blocked, nilIfEmpty(st.Blocks[0].Blocks),
				"%s: a second session was blocked in %v, the report says %v", mode, blocked, st.Blocks[0].Blocks)
			require.Positive(t, st.Blocks[0].Bytes)
		})
	}
}

// tryUnderLockTimeout runs sql in a transaction of conn that is rolled back, and reports
// whether it was blocked: it failed with lock_timeout (55P03).
func tryUnderLockTimeout(t *testing.T, conn *pgx.Conn, sql string) bool {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // the test's own transaction, always rolled back
	_, err = tx.Exec(ctx, `SET LOCAL lock_timeout = '50ms'`)
	require.NoError(t, err)
	start := time.Now()
	_, err = tx.Exec(ctx, sql)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
		return true
	}
	require.NoError(t, err, "%s (after %s)", sql, time.Since(start))
	return false
}

// splitCamel splits "ShareRowExclusive" into its words.
func splitCamel(s string) []string {
	var words []string
	start := 0
	for i := 1; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			words = append(words, s[start:i])
			start = i
		}
	}
	return append(words, s[start:])
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// TestTransactionsAndHoldTimes checks which statements the report says share a transaction of
// a real run, how long each holds its locks, and the blocks_application warning.
func TestTransactionsAndHoldTimes(t *testing.T) {
	t.Parallel()
	b := setup(t, baseSchema)
	m := mig("0001", `ALTER TABLE users ADD COLUMN x int;
SELECT pg_sleep(0.05);
CREATE INDEX CONCURRENTLY users_x ON users (x);
CREATE TABLE fresh (id int);
ALTER TABLE fresh ADD COLUMN y int;`,
		contract.HookSpec{Name: "count", Hook: "sql", Phase: contract.PhaseAfterDDL, Params: map[string]any{"sql": "UPDATE users SET n = n"}},
		contract.HookSpec{Name: "again", Hook: "sql", Phase: contract.PhaseAfterDDL, Params: map[string]any{"sql": "SELECT 1"}})
	rep := b.run(t, dryrun.Options{BlockTime: 10 * time.Millisecond}, m)
	require.True(t, rep.Success, "%+v", rep)
	require.Equal(t, &contract.DryRunThresholds{LargeTableBytes: dryrun.DefaultLargeTable, BlockMS: 10}, rep.Thresholds)

	add, sleep := findStmt(t, rep, "ALTER TABLE users ADD COLUMN x"), findStmt(t, rep, "SELECT pg_sleep")
	cic, create := findStmt(t, rep, "CREATE INDEX CONCURRENTLY"), findStmt(t, rep, "CREATE TABLE fresh")
	alter := findStmt(t, rep, "ALTER TABLE fresh")
	// Lines 1-2 commit together; the emulated index build runs alone; lines 4-5 come after.
	require.Equal(t, add.Transaction, sleep.Transaction)
	require.NotZero(t, add.Transaction)
	require.Equal(t, add.Transaction+1, cic.Transaction)
	require.Equal(t, cic.Transaction+1, create.Transaction)
	require.Equal(t, create.Transaction, alter.Transaction)
	// ADD COLUMN's ACCESS EXCLUSIVE is held through the sleep, to its transaction's end.
	require.GreaterOrEqual(t, add.HeldMS, 50.0)
	require.GreaterOrEqual(t, add.HeldMS, add.DurationMS+sleep.DurationMS)
	require.Less(t, add.StartMS, sleep.StartMS)
	require.Equal(t, []contract.DryRunBlock{{Table: "users", Mode: "AccessExclusiveLock", Blocks: contract.DryRunBlocked,
		Bytes: add.Tables[0].Bytes, EstimatedRows: add.Tables[0].EstimatedRows}}, add.Blocks)
	// The index build is emulated: what it blocks is what CREATE INDEX CONCURRENTLY blocks,
	// for as long as it runs.
	require.True(t, cic.Emulated)
	require.Equal(t, "CREATE INDEX users_x ON users (x)", cic.EmulatedAs)
	require.Equal(t, []contract.DryRunLock{{Relation: "users", Mode: "ShareUpdateExclusiveLock"}}, cic.RealLocks)
	require.Contains(t, cic.Locks, contract.DryRunLock{Relation: "users", Mode: "ShareLock"})
	require.Equal(t, cic.DurationMS, cic.HeldMS)
	require.Equal(t, []string{contract.DryRunBlocksMaintenance, contract.DryRunBlocksDDL}, cic.Blocks[0].Blocks)
	// A table the migration creates blocks no application.
	require.Equal(t, []contract.DryRunBlock{{Table: "fresh", Mode: "AccessExclusiveLock", Blocks: []string{},
		Bytes: create.Tables[0].Bytes, New: true}}, create.Blocks)
	// ALTER TABLE takes no new lock: CREATE TABLE's, in the same transaction, is held until
	// it commits, which its hold time covers.
	require.Empty(t, alter.Blocks)
	require.GreaterOrEqual(t, create.HeldMS, create.DurationMS+alter.DurationMS)

	// The two hooks of after_ddl share the phase's transaction; the UPDATE's lock blocks no
	// application.
	var hs []contract.DryRunHookReport
	for _, p := range rep.Migrations[0].Phases {
		if p.Phase == contract.PhaseAfterDDL {
			hs = p.Hooks
			require.Positive(t, p.StartMS)
		}
	}
	require.Len(t, hs, 2)
	require.Equal(t, hs[0].Transaction, hs[1].Transaction)
	require.Equal(t, alter.Transaction+1, hs[0].Transaction)
	require.GreaterOrEqual(t, hs[0].HeldMS, hs[0].DurationMS+hs[1].DurationMS)
	require.Equal(t, []string{contract.DryRunBlocksDDL}, hs[0].Blocks[0].Blocks)

	var warned []contract.DryRunWarning
	for _, w := range rep.Warnings {
		if w.Code == contract.DryRunCodeBlocksApplication {
			warned = append(warned, w)
		}
	}
	require.Len(t, warned, 1, "%+v", rep.Warnings)
	require.Equal(t, 1, warned[0].Line)
	require.Contains(t, warned[0].Message, "reads and writes on users")
	require.Contains(t, warned[0].Message, "AccessExclusiveLock held until its transaction commits after line 2")
	require.NotNil(t, hasWarning(rep, contract.DryRunCodeEmulated))

	// Not above the size threshold, not long enough: no warning.
	rep = b.run(t, dryrun.Options{BlockTime: 10 * time.Millisecond, BlockTableSize: 1 << 30}, m)
	require.Nil(t, hasWarning(rep, contract.DryRunCodeBlocksApplication))
	rep = b.run(t, dryrun.Options{BlockTime: time.Hour}, m)
	require.Nil(t, hasWarning(rep, contract.DryRunCodeBlocksApplication))
}

// A lock the dry-run already holds from an earlier transaction of a real run is not listed
// again by PostgreSQL when a later statement requests it: the report infers it, so the second
// of two migrations that alter a table still says it blocks reads and writes there.
func TestLockTakenAgainInALaterTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t, baseSchema)
	rep := b.run(t, dryrun.Options{},
		mig("0001", "ALTER TABLE users ADD COLUMN a int;\nALTER TABLE users ADD COLUMN b int;"),
		mig("0002", "ALTER TABLE users ADD COLUMN c int;\nSELECT count(*) FROM users;"))
	require.True(t, rep.Success, "%+v", rep)
	first, second := findStmt(t, rep, "ALTER TABLE users ADD COLUMN a"), findStmt(t, rep, "ALTER TABLE users ADD COLUMN b")
	third := findStmt(t, rep, "ALTER TABLE users ADD COLUMN c")
	require.Len(t, first.Blocks, 1)
	require.False(t, first.Blocks[0].Inferred, "seen in pg_locks")
	// In the same transaction as the first: covered by the first's hold, nothing to infer.
	require.Empty(t, second.Blocks)
	// In a later transaction: inferred.
	require.Len(t, third.Blocks, 1, "%+v", third)
	require.Equal(t, "users", third.Blocks[0].Table)
	require.Equal(t, "AccessExclusiveLock", third.Blocks[0].Mode)
	require.True(t, third.Blocks[0].Inferred)
	require.Equal(t, contract.DryRunBlocked, third.Blocks[0].Blocks)
	// A SELECT requests ACCESS SHARE, which the dry-run does not hold: it shows as taken, not inferred.
	sel := findStmt(t, rep, "SELECT count(*) FROM users")
	require.Len(t, sel.Blocks, 1, "%+v", sel)
	require.False(t, sel.Blocks[0].Inferred)
	require.Equal(t, "AccessShareLock", sel.Blocks[0].Mode)
}
