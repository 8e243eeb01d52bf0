package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// writeEvidence writes what a schedule with violations left behind into evidence.txt beside
// the worker logs, before its databases are dropped: the violations, the runs and their
// events, each target's tracking table, counters and hook ledger, and River's jobs.
func (e *schedule) writeEvidence(s *snapshot) {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d (reproduce: CHAOS_SEED=%d CHAOS_SCHEDULES=1 CHAOS_DURATION=%s)\n\nviolations:\n",
		e.plan.Seed, e.plan.Seed, e.plan.Window)
	for _, v := range e.res.Violations {
		fmt.Fprintf(&b, "  %s\n", v)
	}
	b.WriteString("\nruns (seq id target request status stopped_by_job):\n")
	for _, r := range s.Runs {
		fmt.Fprintf(&b, "  %d %s %s %s %s %d\n", r.Seq, r.ID, r.Target, r.RequestID, r.Status, r.StoppedBy)
	}
	for _, r := range s.Runs {
		fmt.Fprintf(&b, "\nevents of run %s (%s, %s):\n", r.ID, r.Target, r.RequestID)
		for _, o := range s.ByRun[r.ID] {
			ev := o.Event
			line := fmt.Sprintf("  %d %s %s", o.Seq, ev.Time.Format("15:04:05.000"), ev.Kind)
			if ev.Version != "" {
				line += " " + ev.Version + "/" + ev.Phase
			}
			if ev.Hook != "" {
				line += " hook=" + ev.Hook
			}
			if ev.Attempt > 0 {
				line += fmt.Sprintf(" attempt=%d", ev.Attempt)
			}
			if !o.Published {
				line += " (unpublished)"
			}
			if strings.HasPrefix(ev.Kind, "run.") || ev.Error != nil {
				line += " | " + ev.Message
				if ev.Error != nil {
					line += " | error " + ev.Error.Code + ": " + ev.Error.Message
				}
				if len(ev.Data) > 0 {
					line += " | data " + string(ev.Data)
				}
			}
			b.WriteString(line + "\n")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, te := range e.targets {
		st := s.Targets[te.plan.Name]
		fmt.Fprintf(&b, "\ntarget %s:\n  tracking:", te.plan.Name)
		var versions []string
		for v := range st.Tracking {
			versions = append(versions, v)
		}
		slices.Sort(versions)
		for _, v := range versions {
			fmt.Fprintf(&b, " %s(complete=%v)", st.Tracking[v], st.Tracking[v].Complete)
		}
		b.WriteString("\n  counters:")
		var names []string
		for n := range st.Counters {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(&b, " %s=%d", n, st.Counters[n])
		}
		if st.Big != nil {
			fmt.Fprintf(&b, "\n  big: %d rows, %d at 1, %d other", st.Big.Rows, st.Big.Ones, st.Big.Other)
		}
		fmt.Fprintf(&b, "\n  invalid indexes: %v\n", st.InvalidIndexes)
		dumpQuery(ctx, &b, te.pool, "  ledger (run version phase hook status attempt origin rows)",
			`SELECT concat_ws(' ', run_id, version, phase, hook, status, attempt, origin_run, rows_affected, left(error, 200))
			FROM confiture.hook_ledger ORDER BY seq`)
		dumpQuery(ctx, &b, te.pool, "  plugin keys", `SELECT concat_ws(' ', key, name) FROM plugin_keys`)
	}
	dumpQuery(ctx, &b, e.queue, "\nriver jobs (id kind state attempt args finalized last error)",
		`SELECT concat_ws(' ', id, kind, state, attempt || '/' || max_attempts, args::text, finalized_at,
			left(errors[array_length(errors, 1)]->>'error', 300))
		FROM confiture_river.river_job ORDER BY id`)
	path := filepath.Join(e.logDir, "evidence.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		e.t.Logf("write evidence: %v", err)
	}
}

// dumpQuery writes the one text column of each row of sql under title.
func dumpQuery(ctx context.Context, b *strings.Builder, pool *pgxpool.Pool, title, sql string) {
	fmt.Fprintf(b, "%s:\n", title)
	rows, err := pool.Query(ctx, sql)
	if err != nil {
		fmt.Fprintf(b, "    (%v)\n", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			fmt.Fprintf(b, "    (%v)\n", err)
			return
		}
		fmt.Fprintf(b, "    %s\n", s)
	}
	if err := rows.Err(); err != nil {
		fmt.Fprintf(b, "    (%v)\n", err)
	}
}
