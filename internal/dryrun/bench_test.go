package dryrun_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/dryrun"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/sqlscript"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// Sizes of BenchmarkDryRunVsApply; the environment can change them.
var (
	benchRounds = benchEnvInt("DRYRUN_BENCH_ROUNDS", 6)
	benchRows   = benchEnvInt("DRYRUN_BENCH_ROWS", 200_000)
	// benchExtra adds that many small tables (with a primary key each) to the schema, to see
	// how the dry-run's per-statement catalog snapshots grow with the size of the catalog.
	benchExtra = benchEnvInt("DRYRUN_BENCH_EXTRA_TABLES", 0)
)

// benchTarget is the ratio dry-run / apply the dry-run must stay under (issue 5).
const benchTarget = 1.2

func benchEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// benchSchema is a small application: accounts (benchRows rows), their payments (a quarter as
// many) and plans (20), and extra empty tables. Autovacuum is off on its tables, so that it
// does not run during one measurement and not the other; the schema is vacuumed and analyzed
// before.
func benchSchema(rows, extra int) []string {
	var qs []string
	if extra > 0 {
		qs = append(qs, fmt.Sprintf(`DO $$ BEGIN FOR i IN 1..%d LOOP
			EXECUTE format('CREATE TABLE extra_%%s (id int PRIMARY KEY, v text)', i); END LOOP; END $$`, extra))
	}
	return append(qs,
		`CREATE TABLE plans (id int PRIMARY KEY, name text NOT NULL, price numeric NOT NULL)`,
		`INSERT INTO plans SELECT g, 'plan ' || g, g * 10 FROM generate_series(1, 20) g`,
		`CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, plan_id int NOT NULL REFERENCES plans,
			status text NOT NULL, balance numeric(12,2) NOT NULL, created_at timestamptz NOT NULL)`,
		fmt.Sprintf(`INSERT INTO accounts SELECT g, 'user' || g || '@example.com', 1 + g %% 20,
			(ARRAY['active', 'trial', 'closed'])[1 + g %% 3], g %% 1000 + 0.5, now() - g * interval '1 minute'
			FROM generate_series(1, %d) g`, rows),
		`CREATE INDEX accounts_email ON accounts (email)`,
		`CREATE TABLE payments (id bigint PRIMARY KEY, account_id bigint NOT NULL, amount numeric(12,2) NOT NULL, paid_at timestamptz NOT NULL)`,
		fmt.Sprintf(`INSERT INTO payments SELECT g, 1 + (g * 7) %% %d, 1 + g %% 200, now() - g * interval '1 minute'
			FROM generate_series(1, %d) g`, rows, rows/4),
		`ALTER TABLE plans SET (autovacuum_enabled = off)`,
		`ALTER TABLE accounts SET (autovacuum_enabled = off)`,
		`ALTER TABLE payments SET (autovacuum_enabled = off)`,
		`VACUUM ANALYZE`,
		`CHECKPOINT`,
	)
}

// benchMigrations are four migrations of the kind a team ships: columns, an index, a backfill
// in an after_ddl hook with an assertion, constraints added NOT VALID then validated, and a
// new table filled from an existing one.
func benchMigrations() []contract.Migration {
	return []contract.Migration{
		mig("0001", `ALTER TABLE accounts ADD COLUMN last_login timestamptz;
			CREATE INDEX accounts_status ON accounts (status);`),
		mig("0002", `ALTER TABLE accounts ADD COLUMN tier text;`,
			contract.HookSpec{Phase: contract.PhaseAfterDDL, Name: "backfill_tier", Hook: "sql",
				Params: map[string]any{"sql": "UPDATE accounts SET tier = CASE WHEN balance >= 500 THEN 'gold' ELSE 'basic' END"}},
			contract.HookSpec{Phase: contract.PhaseAfterValidation, Name: "tier_set", Hook: "assert",
				Params: map[string]any{"sql": "SELECT count(*) = 0 FROM accounts WHERE tier IS NULL", "message": "tier not backfilled"}}),
		mig("0003", `ALTER TABLE payments ADD CONSTRAINT payments_amount_pos CHECK (amount > 0) NOT VALID;
			ALTER TABLE payments VALIDATE CONSTRAINT payments_amount_pos;
			ALTER TABLE payments ADD CONSTRAINT payments_account_fk FOREIGN KEY (account_id) REFERENCES accounts NOT VALID;
			ALTER TABLE payments VALIDATE CONSTRAINT payments_account_fk;`),
		mig("0004", `CREATE TABLE account_stats (account_id bigint PRIMARY KEY REFERENCES accounts, payments int NOT NULL, total numeric NOT NULL);
			INSERT INTO account_stats SELECT account_id, count(*), sum(amount) FROM payments GROUP BY account_id;`),
	}
}

// benchDB creates a database with benchSchema and returns a connection to it and a function
// that drops it (the benchmark makes two per round; they are large).
func benchDB(b *testing.B, rows, extra int) (*pgx.Conn, func()) {
	b.Helper()
	ctx := context.Background()
	dsn := testdb.New(b)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	for _, q := range benchSchema(rows, extra) {
		if _, err := conn.Exec(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	return conn, func() {
		_ = conn.Close(ctx)
		u, _ := url.Parse(dsn)
		admin, err := pgx.Connect(ctx, testdb.AdminURL())
		if err != nil {
			return
		}
		defer admin.Close(ctx)
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+strings.TrimPrefix(u.Path, "/")+" WITH (FORCE)")
	}
}

// stepsTime is the time the report gives to the statements and hooks themselves.
func stepsTime(rep *contract.DryRunReport) time.Duration {
	var ms float64
	for _, m := range rep.Migrations {
		for _, p := range m.Phases {
			for _, s := range p.Statements {
				ms += s.DurationMS
			}
			for _, h := range p.Hooks {
				ms += h.DurationMS
			}
		}
	}
	return time.Duration(ms * float64(time.Millisecond))
}

var benchUpPhases = []string{
	contract.PhaseBeforeValidation, contract.PhaseBeforeDDL, contract.PhaseDDL,
	contract.PhaseAfterDDL, contract.PhaseAfterValidation, contract.PhaseCleanup,
}

// apply applies the migrations for real the way the worker's phases do, without the queue:
// per migration, one committed transaction per phase that has work: the ddl phase runs the
// body statement by statement, a hook phase runs its hooks through hooks.Executor. It leaves
// out what the worker adds around that (River jobs, events, the tracking row and hook
// ledger), so it is the floor of a real apply.
func apply(ctx context.Context, conn *pgx.Conn, reg *hooks.Registry, ms []contract.Migration) error {
	for _, m := range ms {
		plans, err := reg.PlanAll(m.Hooks)
		if err != nil {
			return err
		}
		for _, phase := range benchUpPhases {
			var fn func(pgx.Tx) error
			switch {
			case phase == contract.PhaseDDL:
				stmts, err := sqlscript.Split(m.UpSQL)
				if err != nil {
					return err
				}
				fn = func(tx pgx.Tx) error {
					for _, s := range stmts {
						if _, err := tx.Exec(ctx, s.SQL); err != nil {
							return fmt.Errorf("%s line %d: %w", m.ID(), s.Line, err)
						}
					}
					return nil
				}
			case len(plans[phase]) > 0:
				info := hooks.PhaseInfo{Run: "bench", RequestID: "bench", Target: "default", Migration: m.ID(), Version: m.Version, Phase: phase, Attempt: 1}
				fn = func(tx pgx.Tx) error {
					_, err := (&hooks.Executor{}).Run(ctx, info, tx, hooks.NewStats(nil), plans[phase], hooks.RunOptions{})
					return err
				}
			default:
				continue
			}
			if err := pgx.BeginFunc(ctx, conn, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// BenchmarkDryRunVsApply measures the wall time of a dry-run of benchMigrations against a real
// apply of the same migrations on an identical fresh database: each round makes two databases
// with benchSchema, applies on one and dry-runs on the other, alternating which goes first,
// with a CHECKPOINT before each.
// It prints a table and reports the ratio dry-run / apply: the median of the rounds' ratios
// (each round's two measurements run back to back, so a burst of load on the machine moves one
// round, not the result), and the ratio of the totals. The target is at most benchTarget.
//
//	go test -run '^$' -bench DryRunVsApply -benchtime 1x ./internal/dryrun/
func BenchmarkDryRunVsApply(b *testing.B) {
	ctx := context.Background()
	reg := hooks.NewRegistry()
	if err := hooks.RegisterBuiltins(reg); err != nil {
		b.Fatal(err)
	}
	ms := benchMigrations()
	info := dryrun.RunInfo{Run: contract.RunID("default", "bench"), RequestID: "bench", Target: "default"}
	var applyT, dryT, stepT []time.Duration
	var version string
	for i := 0; i < b.N; i++ {
		for r := 0; r < benchRounds; r++ {
			b.StopTimer()
			applyConn, dropApply := benchDB(b, benchRows, benchExtra)
			dryConn, dropDry := benchDB(b, benchRows, benchExtra)
			if version == "" {
				_ = dryConn.QueryRow(ctx, "SHOW server_version").Scan(&version)
			}
			b.StartTimer()

			var a, d, steps time.Duration
			runApply := func() {
				start := time.Now()
				if err := apply(ctx, applyConn, reg, ms); err != nil {
					b.Fatalf("apply: %v", err)
				}
				a = time.Since(start)
			}
			runDry := func() {
				start := time.Now()
				rep, err := dryrun.Run(ctx, dryConn, reg, info, ms, dryrun.Options{})
				if err != nil {
					b.Fatalf("dry-run: %v", err)
				}
				d = time.Since(start)
				if !rep.Success || len(rep.Migrations) != len(ms) {
					b.Fatalf("dry-run failed: %+v", rep)
				}
				steps = stepsTime(rep)
			}
			// Each measurement starts with no dirty buffers left by the other: one that had to
			// write out the other's would pay for it.
			between := func() {
				b.StopTimer()
				if _, err := dryConn.Exec(ctx, "CHECKPOINT"); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			if r%2 == 0 {
				runApply()
				between()
				runDry()
			} else {
				runDry()
				between()
				runApply()
			}

			b.StopTimer()
			// The apply changed its database, the dry-run did not change its own.
			var applied, dried bool
			_ = applyConn.QueryRow(ctx, "SELECT to_regclass('account_stats') IS NOT NULL").Scan(&applied)
			_ = dryConn.QueryRow(ctx, "SELECT to_regclass('account_stats') IS NOT NULL").Scan(&dried)
			if !applied || dried {
				b.Fatalf("apply created account_stats: %v, dry-run left it: %v", applied, dried)
			}
			dropApply()
			dropDry()
			b.StartTimer()
			applyT, dryT, stepT = append(applyT, a), append(dryT, d), append(stepT, steps)
		}
	}
	b.StopTimer()

	msf := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	var sumA, sumD, sumS time.Duration
	var ratios []float64
	fmt.Printf("\ndry-run vs apply: %d migrations (ADD COLUMN + CREATE INDEX; ADD COLUMN + backfill UPDATE hook + assert;\n", len(ms))
	fmt.Printf("CHECK and FOREIGN KEY NOT VALID + VALIDATE; CREATE TABLE + INSERT ... SELECT) on accounts %d rows,\n", benchRows)
	fmt.Printf("payments %d, plans 20, %d extra tables; PostgreSQL %s, %d CPUs (%s/%s)\n", benchRows/4, benchExtra, version, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Printf("apply = plain pgx, one committed transaction per phase with work, hooks via hooks.Executor (no queue, tracking row or ledger)\n")
	fmt.Printf("dry-run = dryrun.Run (one transaction, savepoints and catalog snapshots per statement, rolled back)\n\n")
	fmt.Printf("%-6s %-8s %10s %11s %7s %17s %15s\n", "round", "first", "apply ms", "dry-run ms", "ratio", "dry-run steps ms", "machinery ms")
	for i := range applyT {
		first := "apply"
		if i%benchRounds%2 == 1 {
			first = "dry-run"
		}
		ratio := float64(dryT[i]) / float64(applyT[i])
		ratios = append(ratios, ratio)
		sumA, sumD, sumS = sumA+applyT[i], sumD+dryT[i], sumS+stepT[i]
		fmt.Printf("%-6d %-8s %10.1f %11.1f %7.3f %17.1f %15.1f\n", i+1, first, msf(applyT[i]), msf(dryT[i]), ratio, msf(stepT[i]), msf(dryT[i]-stepT[i]))
	}
	total := float64(sumD) / float64(sumA)
	slices.Sort(ratios)
	median := ratios[len(ratios)/2]
	if len(ratios)%2 == 0 {
		median = (ratios[len(ratios)/2-1] + ratios[len(ratios)/2]) / 2
	}
	n := float64(len(applyT))
	fmt.Printf("%-6s %-8s %10.1f %11.1f %7.3f %17.1f %15.1f\n", "total", "", msf(sumA), msf(sumD), total, msf(sumS), msf(sumD-sumS))
	fmt.Printf("ratio dry-run / apply: median of rounds %.3f (over all rounds %.3f); target <= %.1f: %s\n", median, total,
		benchTarget, map[bool]string{true: "met", false: "MISSED"}[median <= benchTarget])
	fmt.Printf("(dry-run steps: the statements and hooks as the report times them; machinery: the rest of the dry-run's\n")
	fmt.Printf("time: savepoints, catalog and lock snapshots, table sizes, warnings, rollback)\n\n")
	if median > benchTarget {
		b.Errorf("dry-run / apply = %.3f (median of %d rounds), above the target %.1f", median, len(ratios), benchTarget)
	}
	b.ReportMetric(median, "ratio")
	b.ReportMetric(total, "total-ratio")
	b.ReportMetric(msf(sumA)/n, "apply-ms")
	b.ReportMetric(msf(sumD)/n, "dryrun-ms")
}
