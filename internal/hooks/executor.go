package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Log record names of the SPEC's logging contract. Observers filter on them: never rename one.
const (
	MsgExecutingHooks = "executing_hooks" // {phase, hook_count, migration}
	MsgHookStart      = "hook_start"      // debug {hook, phase, migration}
	MsgHookCompleted  = "hook_completed"  // {hook, phase, duration_ms, rows_affected, migration}
	MsgHookFailed     = "hook_failed"     // error {hook, phase, duration_ms, error, migration, stack}
	MsgPhaseCompleted = "phase_completed" // {phase, hooks_executed, migration}
	// Reserved for the dry-run (internal/dryrun).
	MsgDryRunStart     = "dry_run_start"     // {migration, version}
	MsgDryRunCompleted = "dry_run_completed" // {migration, version, execution_time_ms, success}
	MsgDryRunFailed    = "dry_run_failed"    // {migration, version, error}
)

// PhaseInfo says where a phase runs; it fills the Context of each hook.
type PhaseInfo struct {
	// TargetDSN and TargetSchema are passed on to Context; TargetDSN is a secret.
	TargetDSN    string
	TargetSchema string
	Run          string
	RequestID    string
	Target       string
	Migration    string
	Version      string
	Phase        string
	Attempt      int
	// Origin is passed on to Context; "" is Run.
	Origin string
}

// Outcome is what happened to one hook.
type Outcome struct {
	Name     string
	Hook     string
	Started  time.Time
	Duration time.Duration
	Result   Result
	// Err is nil on success, else a *HookError.
	Err error
}

// HookError is the failure of one hook: its error, its panic, or its failure result.
type HookError struct {
	Hook  string
	Phase string
	// Panic is set when the hook panicked; Stack then holds the goroutine stack.
	Panic bool
	Stack string
	// Failure is set when the hook returned a Result with Failed set.
	Failure bool
	Err     error
}

func (e *HookError) Error() string {
	switch {
	case e.Panic:
		return fmt.Sprintf("hook %q in %s panicked: %v", e.Hook, e.Phase, e.Err)
	case e.Failure:
		return fmt.Sprintf("hook %q in %s failed: %v", e.Hook, e.Phase, e.Err)
	default:
		return fmt.Sprintf("hook %q in %s: %v", e.Hook, e.Phase, e.Err)
	}
}

func (e *HookError) Unwrap() error { return e.Err }

// Executor runs the planned hooks of one phase.
type Executor struct {
	// Logger receives the SPEC's log records (executing_hooks, hook_start, hook_completed,
	// hook_failed, phase_completed). It should already carry the run's attributes.
	Logger *slog.Logger
}

// RunOptions change how Run treats failures.
type RunOptions struct {
	// ContinueOnError runs every hook even when one fails, each inside a savepoint so a failed
	// hook's statements are undone without aborting the transaction (used for on_error).
	ContinueOnError bool
	// Segment says the hooks are one part of a phase whose other parts run elsewhere (a phase
	// that holds a batched or external hook): the phase's own records, executing_hooks and
	// phase_completed, are then the caller's.
	Segment bool
}

// Run executes planned in order inside tx. Without ContinueOnError it stops at the first failure
// and returns it (the caller rolls tx back). With it, every hook runs and the first failure is
// returned after all of them. Outcomes are returned for every hook that ran.
func (e *Executor) Run(ctx context.Context, info PhaseInfo, tx pgx.Tx, stats *Stats, planned []Planned, opts RunOptions) ([]Outcome, error) {
	log := e.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !opts.Segment {
		log.InfoContext(ctx, MsgExecutingHooks, "phase", info.Phase, "hook_count", len(planned), "migration", info.Migration)
	}
	origin := info.Origin
	if origin == "" {
		origin = info.Run
	}
	outcomes := make([]Outcome, 0, len(planned))
	var first error
	for _, p := range planned {
		hc := &Context{
			Run: info.Run, RequestID: info.RequestID, Target: info.Target,
			Migration: info.Migration, Version: info.Version, Phase: info.Phase,
			Hook: p.Spec.Name, Attempt: info.Attempt, Origin: origin, Tx: tx, Stats: stats,
			TargetDSN: info.TargetDSN, TargetSchema: info.TargetSchema,
			Logger: log.With("hook", p.Spec.Name),
		}
		log.DebugContext(ctx, MsgHookStart, "hook", p.Spec.Name, "phase", info.Phase, "migration", info.Migration)
		o := e.runOne(ctx, hc, p, opts.ContinueOnError)
		if o.Err == nil {
			if err := stats.Err(); err != nil {
				o.Err = &HookError{Hook: p.Spec.Name, Phase: info.Phase, Err: err}
			}
		}
		outcomes = append(outcomes, o)
		if o.Err != nil {
			var he *HookError
			errors.As(o.Err, &he)
			log.ErrorContext(ctx, MsgHookFailed, "hook", p.Spec.Name, "phase", info.Phase,
				"duration_ms", o.Duration.Milliseconds(), "error", o.Err.Error(),
				"migration", info.Migration, "stack", he.Stack)
			if first == nil {
				first = o.Err
			}
			if !opts.ContinueOnError {
				return outcomes, first
			}
			continue
		}
		stats.Merge(o.Result.Stats)
		log.InfoContext(ctx, MsgHookCompleted, "hook", p.Spec.Name, "phase", info.Phase,
			"duration_ms", o.Duration.Milliseconds(), "rows_affected", o.Result.RowsAffected,
			"migration", info.Migration)
	}
	if first == nil && !opts.Segment {
		log.InfoContext(ctx, MsgPhaseCompleted, "phase", info.Phase, "hooks_executed", len(outcomes), "migration", info.Migration)
	}
	return outcomes, first
}

// runOne runs a single hook, turning an error, a panic and a failure result into a *HookError.
func (e *Executor) runOne(ctx context.Context, hc *Context, p Planned, savepoint bool) (o Outcome) {
	o = Outcome{Name: p.Spec.Name, Hook: p.Spec.Hook, Started: time.Now()}
	fail := func(he *HookError) {
		he.Hook, he.Phase = p.Spec.Name, hc.Phase
		o.Err = he
	}
	tx := hc.Tx
	if savepoint && tx != nil {
		sp, err := hc.Tx.Begin(ctx)
		if err != nil {
			fail(&HookError{Err: fmt.Errorf("savepoint: %w", err)})
			o.Duration = time.Since(o.Started)
			return o
		}
		hc.Tx = sp
		defer func() {
			if o.Err != nil {
				_ = sp.Rollback(ctx)
			} else if err := sp.Commit(ctx); err != nil {
				fail(&HookError{Err: fmt.Errorf("release savepoint: %w", err)})
			}
			hc.Tx = tx
		}()
	}
	defer func() {
		o.Duration = time.Since(o.Started)
		if r := recover(); r != nil {
			err, ok := r.(error)
			if !ok {
				err = fmt.Errorf("%v", r)
			}
			fail(&HookError{Panic: true, Stack: string(debug.Stack()), Err: err})
		}
	}()
	res, err := p.Hook.Run(ctx, hc)
	o.Result = res
	switch {
	case err != nil:
		fail(&HookError{Err: err})
	case res.Failed:
		msg := res.Message
		if msg == "" {
			msg = "returned a failure result"
		}
		fail(&HookError{Failure: true, Err: errors.New(msg)})
	}
	return o
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that Retryable reports false: the phase fails at once instead of being
// retried.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// Retryable reports whether the phase that failed with err may succeed if tried again.
// Errors marked Permanent are not; PostgreSQL errors are judged by their SQLSTATE class
// (connection, serialization, lock, resource and operator-intervention errors are retryable;
// syntax, data, constraint and raised exceptions are not); any other error is retryable.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var pe *permanentError
	if errors.As(err, &pe) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return retryableSQLState(pgErr.Code)
	}
	return true
}

func retryableSQLState(code string) bool {
	if len(code) != 5 {
		return true
	}
	switch code[:2] {
	case "08", // connection exception
		"40", // transaction rollback: serialization failure, deadlock
		"53", // insufficient resources
		"57", // operator intervention: query canceled, admin shutdown
		"58": // system error
		return true
	}
	return code == "55P03" || code == "55006" // lock_not_available, object_in_use
}
