// Package dryrun executes migrations for real inside one transaction on a target, measures
// every statement and hook, reports what it saw, and rolls everything back.
//
// Run opens one transaction, sets lock_timeout (Options.LockTimeout) and, when RunInfo.Schema
// is set, the search_path. For each migration in the order given, and each phase in the
// direction's order (up: before_validation, before_ddl, ddl, after_ddl, after_validation,
// cleanup; down: before_ddl, ddl, cleanup), it takes a savepoint per phase and per statement
// or hook. The ddl phase runs the up (or down) SQL statement by statement, split and
// classified for the server's server_version_num; hook phases run the planned hooks through
// hooks.Executor inside the same transaction. At the end the transaction is rolled back,
// always: nothing a dry-run does is ever committed, and the tracking table and hook ledger are
// never written.
//
// Per statement and hook it measures wall time, rows affected, the relation locks acquired
// (pg_locks of the session, before and after), table rewrites (pg_class.relfilenode changed),
// relations and functions created or dropped, and the size and estimated rows of each table
// locked. A statement that hits lock_timeout (SQLSTATE 55P03) is reported with the session
// that holds the lock.
//
// What is not executed, and reported instead: statements that cannot run in a transaction
// block (CREATE INDEX CONCURRENTLY, VACUUM, ...), and hooks whose Definition is not
// Transactional (external plugins). A batched hook (hooks.Batched: a backfill) is sampled: its
// Run executes its first batches in the dry-run's transaction and reports their rate and the
// duration extrapolated to the whole table (warning backfill_estimate). Transaction control statements
// (BEGIN, COMMIT, ...) are refused and fail the migration. SAVEPOINT, RELEASE and ROLLBACK TO
// in a migration body run as written, without a savepoint of the dry-run around them (one
// would be released with theirs).
//
// A failing statement or hook fails its migration; later phases and migrations are not run.
// The on_error phase is never run by a dry-run. Run returns an error only when the dry-run
// itself could not be carried out (no connection, a catalog query failed); failures of the
// migrations are in the report.
//
// The report is a contract.DryRunReport (schemas/dryrun-report.v1.json). The package knows
// nothing of River or NATS: the caller publishes the report as the data of the dryrun.report
// event.
package dryrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/sqlscript"
	"github.com/confiture-io/confiture-worker/internal/units"
)

// Default values of Options.
const (
	DefaultLockTimeout = 2 * time.Second
	DefaultLargeTable  = 100 << 20
	DefaultBlockTime   = time.Second
)

// Options tune a dry-run.
type Options struct {
	// LockTimeout is set with SET LOCAL lock_timeout, so a statement that would wait for a lock
	// fails and reports who holds it. Defaults to DefaultLockTimeout (2 s); -1 means no timeout.
	LockTimeout time.Duration
	// LargeTable is the size in bytes (pg_total_relation_size) above which ACCESS EXCLUSIVE
	// on a table is a warning. Defaults to DefaultLargeTable (100 MiB).
	LargeTable int64
	// BlockTime and BlockTableSize: a step whose locks would keep reads or writes waiting for
	// longer than BlockTime on a table larger than BlockTableSize bytes (in a real run: until
	// its transaction commits) is a blocks_application warning. BlockTime defaults to
	// DefaultBlockTime (1 s); BlockTableSize to 0, any table that existed before the dry-run.
	BlockTime      time.Duration
	BlockTableSize int64
	// Logger receives dry_run_start, dry_run_completed and dry_run_failed, per migration. It
	// should carry the run's attributes. Defaults to discarding.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.LockTimeout == 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.LargeTable <= 0 {
		o.LargeTable = DefaultLargeTable
	}
	if o.BlockTime <= 0 {
		o.BlockTime = DefaultBlockTime
	}
	if o.BlockTableSize < 0 {
		o.BlockTableSize = 0
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// RunInfo says which run the dry-run belongs to; it fills the report and the hooks' context.
type RunInfo struct {
	Run       string
	RequestID string
	Target    string
	// Direction is contract.DirectionUp (the default) or contract.DirectionDown. For down, the
	// caller passes the migrations in the order they are undone (reverse version order).
	Direction string
	// Schema, when set, becomes the transaction's search_path and the hooks' TargetSchema.
	Schema string
	// TargetDSN is passed on to hooks.Context; it is a secret and never reported.
	TargetDSN string
	// Prepare, when set, runs first in the dry-run's transaction, before anything is
	// measured: the worker creates the target's tracking schema there when it is missing, as
	// a real run would, so that a dry-run on a fresh target leaves nothing behind.
	Prepare func(ctx context.Context, tx pgx.Tx) error
}

// Beginner starts the dry-run's transaction: *pgx.Conn, *pgxpool.Pool and pgx.Tx all are.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// ErrInvalidDirection is returned for a direction other than up or down.
var ErrInvalidDirection = errors.New("dryrun: invalid direction")

var (
	upPhases = []string{
		contract.PhaseBeforeValidation, contract.PhaseBeforeDDL, contract.PhaseDDL,
		contract.PhaseAfterDDL, contract.PhaseAfterValidation, contract.PhaseCleanup,
	}
	downPhases = []string{contract.PhaseBeforeDDL, contract.PhaseDDL, contract.PhaseCleanup}
)

// phasesFor mirrors jobs.PhasesFor; jobs imports this package, so it cannot be imported here.
func phasesFor(direction string) []string {
	if direction == contract.DirectionDown {
		return downPhases
	}
	return upPhases
}

// Run dry-runs migrations on the database db and returns the report. See the package doc.
func Run(ctx context.Context, db Beginner, registry *hooks.Registry, info RunInfo, migrations []contract.Migration, opts Options) (*contract.DryRunReport, error) {
	opts = opts.withDefaults()
	if info.Direction == "" {
		info.Direction = contract.DirectionUp
	}
	if info.Direction != contract.DirectionUp && info.Direction != contract.DirectionDown {
		return nil, fmt.Errorf("%w: %q", ErrInvalidDirection, info.Direction)
	}
	start := time.Now()
	rep := &contract.DryRunReport{
		Schema: contract.DryRunReportSchemaV2,
		Run:    info.Run, RequestID: info.RequestID, Target: info.Target, Direction: info.Direction,
		Migrations: []contract.DryRunMigrationReport{}, Warnings: []contract.DryRunWarning{},
		Thresholds: &contract.DryRunThresholds{
			LargeTableBytes: opts.LargeTable, BlockTableBytes: opts.BlockTableSize, BlockMS: ms(opts.BlockTime),
		},
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("dryrun: begin: %w", err)
	}
	defer func() {
		// Roll back even when ctx is done; a broken connection rolls back on its own.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	r := &runner{tx: tx, registry: registry, info: info, opts: opts, rep: rep, start: start, created: map[string]bool{}, lockTxn: map[lockKey]int{}}
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	rep.Success = true
	for _, m := range migrations {
		ok, err := r.migration(ctx, m)
		if err != nil {
			return nil, err
		}
		if !ok {
			rep.Success = false
			break
		}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := tx.Rollback(rctx); err != nil {
		return nil, fmt.Errorf("dryrun: rollback: %w", err)
	}
	rep.DurationMS = ms(time.Since(start))
	return rep, nil
}

type runner struct {
	tx         pgx.Tx
	registry   *hooks.Registry
	info       RunInfo
	opts       Options
	rep        *contract.DryRunReport
	versionNum int
	stats      *hooks.Stats
	// catalog is the catalog part of the snapshot taken after the last step that succeeded:
	// nothing the dry-run does between two steps changes the catalog, so the next step reads
	// only the locks before it (those do change: the full-scan warning reads its table). This
	// halves the catalog reads; the price is that a relation another session creates between
	// two steps is counted as the next step's, as one it creates during a step already is.
	catalog *snapshot
	// start is when the dry-run began: steps' StartMS count from it.
	start time.Time
	// txns numbers the transactions of a real run (Transaction in the report).
	txns int
	// created holds the tables the dry-run created: no application uses them yet, so what
	// their locks block is not reported.
	created map[string]bool
	// steps are the executed steps of the phase being run, finished at its end.
	steps []step
	// lockTxn is the real-run transaction that first took each lock the dry-run holds.
	lockTxn map[lockKey]int
	// sampled names the hooks of the current migration that did only part of their work (a
	// backfill's first batches): a later failure may come from what they did not do.
	sampled []string
}

// step is an executed statement or hook of the current phase, whose hold time is known only
// at the end of its transaction.
type step struct {
	hook    bool // index into the phase's Hooks, else its Statements
	idx     int
	txn     int
	started time.Time
	dur     time.Duration
	blocks  []contract.DryRunBlock
	base    contract.DryRunWarning
	// aeLarge are its access_exclusive_large_table warnings, which say how long it holds the lock.
	aeLarge []contract.DryRunWarning
	// own says the step runs in a transaction of its own (an emulated statement, a batch).
	own bool
}

// newTxn numbers a new transaction of a real run.
func (r *runner) newTxn() int { r.txns++; return r.txns }

func (r *runner) setup(ctx context.Context) error {
	if r.info.Prepare != nil {
		if err := r.info.Prepare(ctx, r.tx); err != nil {
			return fmt.Errorf("dryrun: prepare: %w", err)
		}
	}
	if r.opts.LockTimeout > 0 {
		if _, err := r.tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", r.opts.LockTimeout.Milliseconds())); err != nil {
			return fmt.Errorf("dryrun: set lock_timeout: %w", err)
		}
	}
	if r.info.Schema != "" {
		if _, err := r.tx.Exec(ctx, "SET LOCAL search_path TO "+pgx.Identifier{r.info.Schema}.Sanitize()); err != nil {
			return fmt.Errorf("dryrun: set search_path: %w", err)
		}
	}
	if err := r.tx.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&r.versionNum); err != nil {
		return fmt.Errorf("dryrun: server version: %w", err)
	}
	r.stats = hooks.NewStats(nil)
	return nil
}

func (r *runner) warn(w contract.DryRunWarning) { r.rep.Warnings = append(r.rep.Warnings, w) }

// migration dry-runs one migration. ok is false when the migration failed; err is set when the
// dry-run itself cannot go on.
func (r *runner) migration(ctx context.Context, m contract.Migration) (ok bool, err error) {
	id := m.ID()
	log := r.opts.Logger
	log.InfoContext(ctx, hooks.MsgDryRunStart, "migration", id, "version", m.Version)
	start := time.Now()
	mr := contract.DryRunMigrationReport{Version: m.Version, Name: m.Name, Phases: []contract.DryRunPhaseReport{}}
	defer func() {
		mr.DurationMS = ms(time.Since(start))
		mr.Success = ok && err == nil
		if err != nil && mr.Error == "" {
			mr.Error = err.Error()
		}
		r.rep.Migrations = append(r.rep.Migrations, mr)
		if !mr.Success {
			log.ErrorContext(ctx, hooks.MsgDryRunFailed, "migration", id, "version", m.Version, "error", mr.Error)
		}
		log.InfoContext(ctx, hooks.MsgDryRunCompleted, "migration", id, "version", m.Version,
			"execution_time_ms", time.Since(start).Milliseconds(), "success", mr.Success)
	}()

	r.sampled = nil
	plans, perr := r.registry.PlanAll(m.Hooks)
	if perr != nil {
		mr.Error = perr.Error()
		return false, nil
	}
	for _, phase := range phasesFor(r.info.Direction) {
		pstart := time.Now()
		pr := contract.DryRunPhaseReport{Phase: phase, StartMS: ms(pstart.Sub(r.start))}
		r.steps = r.steps[:0]
		sp, err := r.tx.Begin(ctx)
		if err != nil {
			return false, fmt.Errorf("dryrun: savepoint: %w", err)
		}
		var failure string
		if phase == contract.PhaseDDL {
			failure, err = r.ddl(ctx, sp, m, &pr)
		} else {
			failure, err = r.hooks(ctx, sp, m, phase, plans[phase], &pr)
		}
		if err != nil {
			return false, err
		}
		pr.DurationMS = ms(time.Since(pstart))
		r.finishPhase(&pr)
		mr.Phases = append(mr.Phases, pr)
		if failure != "" {
			_ = sp.Rollback(ctx)
			mr.Error = fmt.Sprintf("%s: %s", phase, failure)
			return false, nil
		}
		if err := sp.Commit(ctx); err != nil {
			mr.Error = fmt.Sprintf("%s: release savepoint: %v", phase, err)
			return false, nil
		}
	}
	return true, nil
}

// finishPhase fills in, for each executed step of the phase, when it started, its transaction
// in a real run, how long its locks would be held (until its transaction's last step ends) and
// what they block, and records the warnings that depend on the hold time.
func (r *runner) finishPhase(pr *contract.DryRunPhaseReport) {
	ends := map[int]time.Time{}
	last := map[int]contract.DryRunWarning{}
	for _, st := range r.steps {
		if end := st.started.Add(st.dur); end.After(ends[st.txn]) {
			ends[st.txn], last[st.txn] = end, st.base
		}
	}
	for _, st := range r.steps {
		held := ms(ends[st.txn].Sub(st.started))
		start := ms(st.started.Sub(r.start))
		if st.hook {
			h := &pr.Hooks[st.idx]
			h.StartMS, h.Transaction, h.HeldMS, h.Blocks = start, st.txn, held, st.blocks
		} else {
			s := &pr.Statements[st.idx]
			s.StartMS, s.Transaction, s.HeldMS, s.Blocks = start, st.txn, held, st.blocks
		}
		until := "it ends (it runs in a transaction of its own)"
		switch {
		case st.own:
		case pr.Phase == contract.PhaseDDL && last[st.txn].Line != st.base.Line:
			until = fmt.Sprintf("its transaction commits after line %d", last[st.txn].Line)
		default:
			until = "the " + pr.Phase + " phase commits"
		}
		for _, w := range st.aeLarge {
			w.Message += fmt.Sprintf(", held about %s in a real run (until %s)", units.Millis(held), until)
			r.warn(w)
		}
		for _, b := range st.blocks {
			if w, ok := r.blockWarning(st.base, b, held, until); ok {
				r.warn(w)
			}
		}
	}
}

// measured is what measure found around one statement or hook.
type measured struct {
	change
	tables  []contract.DryRunTableStat
	before  *snapshot
	started time.Time
}

// measure runs fn inside a savepoint of tx (unless bare) between two snapshots. fnErr is the
// failure of fn, err a failure of the dry-run itself.
func (r *runner) measure(ctx context.Context, tx pgx.Tx, sql string, bare bool, fn func(pgx.Tx) error) (m measured, dur time.Duration, fnErr, err error) {
	before, err := readSnapshot(ctx, tx, r.catalog)
	if err != nil {
		return m, 0, nil, err
	}
	r.catalog = nil // set again when the step succeeds
	m.before = before
	run := tx
	if !bare {
		if run, err = tx.Begin(ctx); err != nil {
			return m, 0, nil, fmt.Errorf("dryrun: savepoint: %w", err)
		}
	}
	m.started = time.Now()
	fnErr = fn(run)
	dur = time.Since(m.started)
	if fnErr != nil {
		if !bare {
			_ = run.Rollback(ctx)
		}
		return m, dur, fnErr, nil
	}
	after, err := takeSnapshot(ctx, run)
	if err != nil {
		return m, dur, nil, err
	}
	m.change = diff(before, after, sql)
	if m.tables, err = tableStats(ctx, run, m.tableIDs); err != nil {
		return m, dur, nil, err
	}
	if !bare {
		if err := run.Commit(ctx); err != nil {
			return m, dur, fmt.Errorf("release savepoint: %w", err), nil
		}
	}
	r.catalog = after
	return m, dur, nil, nil
}

// lockWarnings returns the warnings about the locks and rewrites of one measured step.
func (r *runner) lockWarnings(base contract.DryRunWarning, m measured) []contract.DryRunWarning {
	var holds []contract.DryRunWarning
	for _, t := range m.tables {
		if t.Bytes <= r.opts.LargeTable {
			continue
		}
		for oid, modes := range m.lockOIDs {
			if rel, ok := m.before.relations[oid]; !ok || rel.name != t.Name {
				continue
			}
			for _, mode := range modes {
				if mode == "AccessExclusiveLock" {
					w := base
					w.Severity, w.Code = contract.DryRunSeverityWarning, contract.DryRunCodeAccessExclusiveLarge
					w.Message = fmt.Sprintf("ACCESS EXCLUSIVE lock on %s (%s, about %d rows): reads and writes wait",
						t.Name, units.Bytes(t.Bytes), t.EstimatedRows)
					holds = append(holds, w)
				}
			}
		}
	}
	for _, name := range m.rewrites {
		w := base
		w.Severity, w.Code = contract.DryRunSeverityWarning, contract.DryRunCodeTableRewrite
		w.Message = fmt.Sprintf("table %s is rewritten (its storage replaced) under an exclusive lock", name)
		r.warn(w)
	}
	return holds
}

// record adds an executed step to the phase, computing what its locks block now (the tables
// created so far, its own included, are left out).
func (r *runner) record(st step, locks []contract.DryRunLock, m measured, sql string) {
	for _, n := range m.createdTables {
		r.created[n] = true
	}
	again := r.takenAgain(st.txn, m, sql)
	st.blocks = blocks(append(append([]contract.DryRunLock(nil), locks...), again...), m.tables, r.created)
	for i := range st.blocks {
		for _, l := range again {
			if st.blocks[i].Table == l.Relation && st.blocks[i].Mode == l.Mode {
				st.blocks[i].Inferred = true
			}
		}
	}
	for oid, modes := range m.lockOIDs {
		for _, mode := range modes {
			if k := (lockKey{oid, mode}); r.lockTxn[k] == 0 {
				r.lockTxn[k] = st.txn
			}
		}
	}
	r.steps = append(r.steps, st)
}

// takenAgain infers the locks a statement took again in a transaction of a real run although
// the dry-run already held them from an earlier one: PostgreSQL lists a held lock once, so
// such a request leaves no trace in pg_locks. It looks at the tables the statement names and
// took no new lock on, where the dry-run holds modes first taken in an earlier transaction:
// an INSERT, UPDATE, DELETE or MERGE took ROW EXCLUSIVE, a SELECT ... FOR UPDATE/SHARE ROW
// SHARE, a SELECT ACCESS SHARE, when held; anything else (DDL) the strongest of them.
func (r *runner) takenAgain(txn int, m measured, sql string) []contract.DryRunLock {
	if sql == "" || m.before == nil {
		return nil
	}
	var out []contract.DryRunLock
	for oid, modes := range m.held {
		if len(m.lockOIDs[oid]) > 0 {
			continue // it took a new lock there: what it took shows
		}
		rel, ok := m.before.relations[oid]
		if !ok || r.created[rel.name] {
			continue
		}
		var earlier []string
		for _, mode := range modes {
			if t := r.lockTxn[lockKey{oid, mode}]; t != 0 && t != txn {
				earlier = append(earlier, mode)
			}
		}
		if mode := requested(sql, earlier); mode != "" {
			out = append(out, contract.DryRunLock{Relation: rel.name, Mode: mode})
		}
	}
	return out
}

// requested is the mode a statement asks for among held, by its kind (see takenAgain); "" when
// its kind's mode is not among them.
func requested(sql string, held []string) string {
	if len(held) == 0 {
		return ""
	}
	tk := sqlscript.Tokens(sql)
	verb := ""
	if len(tk) > 0 {
		verb = strings.ToLower(tk[0].Text)
	}
	want := ""
	switch verb {
	case "insert", "update", "delete", "merge", "copy":
		want = "RowExclusiveLock"
	case "select", "with", "table", "values":
		want = "AccessShareLock"
		for _, t := range tk {
			if w := strings.ToLower(t.Text); t.Word && (w == "for") {
				want = "RowShareLock"
			}
		}
	default:
		strongest := held[0]
		for _, m := range held[1:] {
			if stronger(m, strongest) {
				strongest = m
			}
		}
		return strongest
	}
	if slices.Contains(held, want) {
		return want
	}
	return ""
}

func (r *runner) ddl(ctx context.Context, tx pgx.Tx, m contract.Migration, pr *contract.DryRunPhaseReport) (failure string, err error) {
	script := m.UpSQL
	if r.info.Direction == contract.DirectionDown {
		script = m.DownSQL
		if strings.TrimSpace(script) == "" {
			return "migration has no down SQL", nil
		}
	}
	stmts, serr := sqlscript.SplitFor(script, r.versionNum)
	if serr != nil {
		return serr.Error(), nil
	}
	stmts, _ = sqlscript.Unwrap(stmts) // as a real run does
	id := m.ID()
	r.enumWarnings(id, m.NoTransaction, stmts)
	// txn is the transaction of the run of transactional statements being read, 0 before one:
	// a real run commits it before a statement that cannot run in a transaction block.
	txn := 0
	for _, s := range stmts {
		sr := contract.DryRunStatementReport{Line: s.Line, SQL: s.Summary()}
		base := contract.DryRunWarning{Migration: id, Phase: contract.PhaseDDL, Line: s.Line}
		run := s.SQL
		var real docLock
		switch s.Class {
		case sqlscript.NonTransactional:
			txn = 0
			// Its locks in a real run are the documented ones.
			if real, err = nonTxLock(ctx, tx, s.SQL); err != nil {
				return "", err
			}
			if emulated, ok := emulation(s.SQL); ok {
				run, sr.Emulated, sr.EmulatedAs = emulated, true, sqlscript.Statement{SQL: emulated}.Summary()
				for _, rel := range real.relations {
					sr.RealLocks = append(sr.RealLocks, contract.DryRunLock{Relation: rel, Mode: real.mode})
				}
				break
			}
			why := s.Reason
			if !strings.Contains(why, "inside a transaction block") {
				why += "; cannot run inside a transaction block"
			}
			sr.Skipped = why + "; not executed"
			w := base
			w.Severity, w.Code = contract.DryRunSeverityWarning, contract.DryRunCodeNotTransactional
			w.Message = fmt.Sprintf("line %d: %s: not executed by the dry-run (%s)", s.Line, s.Summary(), s.Reason)
			// Its locks cannot be measured: say what the documentation says it takes.
			if lock := real.String(); lock != "" {
				sr.Skipped += "; per the PostgreSQL documentation it would take " + lock
				w.Message += "; it would take " + lock
			}
			r.warn(w)
			pr.Statements = append(pr.Statements, sr)
			continue
		case sqlscript.TxControl:
			sr.Error = "transaction control is not allowed in a migration: " + s.Reason
			w := base
			w.Severity, w.Code = contract.DryRunSeverityError, contract.DryRunCodeTxControl
			w.Message = fmt.Sprintf("line %d: %s: refused (%s)", s.Line, s.Summary(), s.Reason)
			r.warn(w)
			pr.Statements = append(pr.Statements, sr)
			return fmt.Sprintf("line %d: %s", s.Line, sr.Error), nil
		}
		var rows int64
		mm, dur, fnErr, err := r.measure(ctx, tx, run, isSavepointControl(run), func(t pgx.Tx) error {
			tag, err := t.Exec(ctx, run)
			rows = tag.RowsAffected()
			return err
		})
		if err != nil {
			return "", err
		}
		sr.DurationMS = ms(dur)
		if fnErr != nil {
			sr.Error = fnErr.Error()
			if isLockTimeout(fnErr) {
				if msg, berr := findBlocker(ctx, tx, run, mm.before); berr == nil && msg != "" {
					sr.Error += ": " + msg
					w := base
					w.Severity, w.Code, w.Message = contract.DryRunSeverityError, contract.DryRunCodeLockTimeout, fmt.Sprintf("line %d: %s", s.Line, msg)
					r.warn(w)
				}
			}
			pr.Statements = append(pr.Statements, sr)
			return fmt.Sprintf("line %d: %s", s.Line, sr.Error), nil
		}
		sr.Executed, sr.Rows = true, rows
		sr.Locks, sr.Rewrites, sr.Created, sr.Dropped, sr.Tables = mm.locks, mm.rewrites, mm.created, mm.dropped, mm.tables
		st := step{idx: len(pr.Statements), started: mm.started, dur: dur, base: base}
		if sr.Emulated {
			// What the real statement blocks, for as long as it runs, in a transaction of its own.
			st.txn, st.own = r.newTxn(), true
			w := base
			w.Severity, w.Code = contract.DryRunSeverityInfo, contract.DryRunCodeEmulated
			w.Message = fmt.Sprintf("line %d: %s ran as %s (it cannot run in a transaction block); in a real run it takes %s instead of the emulation's locks, and its time is an estimate",
				s.Line, s.Summary(), sr.EmulatedAs, orNone(real.String()))
			r.warn(w)
			r.record(st, sr.RealLocks, mm, "")
		} else {
			if txn == 0 {
				txn = r.newTxn()
			}
			st.txn, st.aeLarge = txn, r.lockWarnings(base, mm)
			if err := r.scanWarning(ctx, tx, base, s, mm); err != nil {
				return "", err
			}
			r.record(st, mm.locks, mm, run)
		}
		pr.Statements = append(pr.Statements, sr)
	}
	return "", nil
}

func orNone(lock string) string {
	if lock == "" {
		return "no lock on a table"
	}
	return lock
}

func (r *runner) hooks(ctx context.Context, tx pgx.Tx, m contract.Migration, phase string, planned []hooks.Planned, pr *contract.DryRunPhaseReport) (failure string, err error) {
	ex := &hooks.Executor{} // its per-phase records would count one hook per call: discarded
	info := hooks.PhaseInfo{
		TargetDSN: r.info.TargetDSN, TargetSchema: r.info.Schema, Run: r.info.Run,
		RequestID: r.info.RequestID, Target: r.info.Target, Migration: m.ID(),
		Version: m.Version, Phase: phase, Attempt: 1,
	}
	txn := 0 // the phase's transaction in a real run, numbered when its first hook runs
	for _, p := range planned {
		hr := contract.DryRunHookReport{Name: p.Spec.Name, Hook: p.Spec.Hook}
		base := contract.DryRunWarning{Migration: m.ID(), Phase: phase, Hook: p.Spec.Name}
		_, batched := p.Hook.(hooks.Batched)
		if !p.Def.Transactional && !batched {
			why := "the hook does not run inside the migration transaction, so it cannot be rolled back"
			if p.Def.Description != "" {
				why += "; it would: " + p.Def.Description
			}
			hr.Skipped = "not executed: " + why
			w := base
			w.Severity, w.Code = contract.DryRunSeverityInfo, contract.DryRunCodeHookNotExecuted
			w.Message = fmt.Sprintf("hook %s (%s) not executed: %s", p.Spec.Name, p.Spec.Hook, why)
			r.warn(w)
			pr.Hooks = append(pr.Hooks, hr)
			continue
		}
		var outcomes []hooks.Outcome
		mm, dur, fnErr, err := r.measure(ctx, tx, "", false, func(t pgx.Tx) error {
			var err error
			outcomes, err = ex.Run(ctx, info, t, r.stats, []hooks.Planned{p}, hooks.RunOptions{})
			return err
		})
		if err != nil {
			return "", err
		}
		hr.DurationMS = ms(dur)
		if len(outcomes) == 1 {
			hr.Rows = outcomes[0].Result.RowsAffected
		}
		if fnErr != nil {
			hr.Error = fnErr.Error()
			if isLockTimeout(fnErr) {
				if msg, berr := findBlocker(ctx, tx, "", nil); berr == nil && msg != "" {
					hr.Error += ": " + msg
				}
			}
			if len(r.sampled) > 0 {
				hr.Error += fmt.Sprintf(" (the dry-run ran only a sample of %s: what it did not reach may be why)", strings.Join(r.sampled, ", "))
			}
			pr.Hooks = append(pr.Hooks, hr)
			return hr.Error, nil
		}
		hr.Executed = true
		if len(outcomes) == 1 {
			hr.Message, hr.Sampled = outcomes[0].Result.Message, outcomes[0].Result.Sampled
		}
		if hr.Sampled {
			r.sampled = append(r.sampled, "hook "+p.Spec.Name)
		}
		if batched {
			w := base
			w.Severity, w.Code = contract.DryRunSeverityInfo, contract.DryRunCodeBackfillEstimate
			w.Message = fmt.Sprintf("hook %s (%s) %s", p.Spec.Name, p.Spec.Hook, hr.Message)
			r.warn(w)
		}
		hr.Locks, hr.Rewrites, hr.Created, hr.Dropped, hr.Tables = mm.locks, mm.rewrites, mm.created, mm.dropped, mm.tables
		st := step{hook: true, idx: len(pr.Hooks), started: mm.started, dur: dur, base: base, aeLarge: r.lockWarnings(base, mm)}
		switch {
		case batched: // each batch commits on its own
			st.txn, st.own = r.newTxn(), true
		case txn == 0:
			txn = r.newTxn()
			fallthrough
		default:
			st.txn = txn
		}
		r.record(st, mm.locks, mm, "")
		pr.Hooks = append(pr.Hooks, hr)
	}
	return "", nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
