package toolrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// FlywayTable is the schema history table of the Flyway stand-in, Flyway's default.
const FlywayTable = "flyway_schema_history"

// Flyway runs the Flyway stand-in (see the package documentation) on the migrations under dir
// against dsn, as `flyway migrate` with Flyway's default configuration and
// postgresql.transactional.lock=false would, and returns a log in the manner of Flyway's. args
// may name the command, "migrate" (the default) or "validate", and give "-target=VERSION" to
// migrate no further than VERSION.
func Flyway(ctx context.Context, dir, dsn string, args ...string) ([]byte, error) {
	f := &flyway{dir: dir}
	command := "migrate"
	for _, a := range args {
		switch {
		case a == "migrate" || a == "validate":
			command = a
		case strings.HasPrefix(a, "-target="):
			v, err := parseFlywayVersion(strings.TrimPrefix(a, "-target="))
			if err != nil {
				return nil, fmt.Errorf("toolrun: flyway %s: %w", a, err)
			}
			f.target = &v
		default:
			return nil, fmt.Errorf("toolrun: flyway: %q: the stand-in knows migrate, validate and -target=VERSION", a)
		}
	}
	err := f.run(ctx, dsn, command)
	if err != nil {
		f.logf("ERROR: %v", err)
		return f.out.Bytes(), &ToolError{Tool: "flyway", Args: append([]string{"-url=" + redact(dsn), "-locations=filesystem:" + dir}, args...), Output: f.out.Bytes(), Err: err}
	}
	return f.out.Bytes(), nil
}

// flyway is one run of the stand-in.
type flyway struct {
	dir    string
	target *flywayVersion
	out    bytes.Buffer

	conn         *pgx.Conn
	schema       string // the default schema: the connection's current_schema()
	table        string // the history table, schema-qualified and quoted
	originalRole string // current_user when the run began
	originalPath string // search_path when the run began
}

// flywayApplied is a schema history row.
type flywayApplied struct {
	rank        int32
	version     *string
	description string
	typ         string
	script      string
	checksum    *int32
	success     bool
}

func (f *flyway) logf(format string, args ...any) {
	fmt.Fprintf(&f.out, format+"\n", args...)
}

func (f *flyway) run(ctx context.Context, dsn, command string) error {
	f.logf("Flyway Community Edition stand-in (confiture toolrun): PostgreSQL, postgresql.transactional.lock=false")
	migrations, skipped, err := flywayResolve(f.dir)
	if err != nil {
		return err
	}
	for _, s := range skipped {
		f.logf("WARNING: Skipping filesystem location resource: %s", s)
	}
	if f.conn, err = pgx.Connect(ctx, dsn); err != nil {
		return fmt.Errorf("Unable to obtain connection from database (%s): %w", redact(dsn), err)
	}
	defer f.conn.Close(context.WithoutCancel(ctx))
	var version string
	var schema *string
	if err := f.conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_schema(), current_user, current_setting('search_path')`).
		Scan(&version, &schema, &f.originalRole, &f.originalPath); err != nil {
		return err
	}
	if schema == nil {
		return errors.New("Unable to determine schema for the schema history table. Set a default schema for the connection or specify one using the defaultSchema property!")
	}
	f.schema = *schema
	f.table = quoteIdent(f.schema) + "." + quoteIdent(FlywayTable)
	f.logf("Database: %s (PostgreSQL %s)", redact(dsn), version)

	// Flyway's session-level advisory lock (postgresql.transactional.lock=false), with its
	// number, so that the stand-in and a real Flyway on the same table wait for each other.
	lock := flywayLockNumber(f.table)
	// It is held until the connection closes at the end of the run.
	if _, err := f.conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lock); err != nil {
		return fmt.Errorf("Unable to acquire PostgreSQL advisory lock: %w", err)
	}

	start := time.Now()
	var exists bool
	if err := f.conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, f.table).Scan(&exists); err != nil {
		return err
	}
	if !exists && command == "migrate" {
		if err := f.createTable(ctx); err != nil {
			return err
		}
	}
	var applied []flywayApplied
	if exists {
		if applied, err = f.readHistory(ctx); err != nil {
			return err
		}
	}
	if err := f.validate(migrations, applied, command == "migrate"); err != nil {
		return err
	}
	f.logf("Successfully validated %d migrations (execution time %s)", len(migrations)+len(applied)-countMatched(migrations, applied), flywayDuration(time.Since(start)))
	if command == "validate" {
		return nil
	}
	return f.migrate(ctx, migrations, applied)
}

// createTable creates the schema history table with Flyway's DDL for PostgreSQL
// (PostgreSQLDatabase.getRawCreateScript), after Flyway's check that the schema holds nothing
// yet: Flyway refuses to start a history beside existing objects unless told to baseline.
func (f *flyway) createTable(ctx context.Context) error {
	var empty bool
	if err := f.conn.QueryRow(ctx, flywaySchemaEmpty, f.schema).Scan(&empty); err != nil {
		return err
	}
	if !empty {
		return fmt.Errorf("Found non-empty schema(s) %s but no schema history table. Use baseline() or set baselineOnMigrate to true to initialize the schema history table.", quoteIdent(f.schema))
	}
	f.logf("Creating Schema History table %s ...", f.table)
	ddl := "CREATE TABLE " + f.table + " (\n" +
		`    "installed_rank" INT NOT NULL,` + "\n" +
		`    "version" VARCHAR(50),` + "\n" +
		`    "description" VARCHAR(200) NOT NULL,` + "\n" +
		`    "type" VARCHAR(20) NOT NULL,` + "\n" +
		`    "script" VARCHAR(1000) NOT NULL,` + "\n" +
		`    "checksum" INTEGER,` + "\n" +
		`    "installed_by" VARCHAR(100) NOT NULL,` + "\n" +
		`    "installed_on" TIMESTAMP NOT NULL DEFAULT now(),` + "\n" +
		`    "execution_time" INTEGER NOT NULL,` + "\n" +
		`    "success" BOOLEAN NOT NULL` + "\n" +
		");\n" +
		"ALTER TABLE " + f.table + ` ADD CONSTRAINT "` + FlywayTable + `_pk" PRIMARY KEY ("installed_rank");` + "\n" +
		`CREATE INDEX "` + FlywayTable + `_s_idx" ON ` + f.table + ` ("success");`
	return pgx.BeginFunc(ctx, f.conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, ddl)
		return err
	})
}

// flywaySchemaEmpty is PostgreSQLSchema.doEmpty: no table, view, sequence, type or routine of
// the schema's own (not an extension's).
const flywaySchemaEmpty = `SELECT NOT EXISTS (
    SELECT c.oid FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_catalog.pg_depend d ON d.objid = c.oid AND d.deptype = 'e'
    WHERE n.nspname = $1 AND d.objid IS NULL AND c.relkind IN ('r', 'v', 'S', 't')
  UNION ALL
    SELECT t.oid FROM pg_catalog.pg_type t
    JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
    LEFT JOIN pg_catalog.pg_depend d ON d.objid = t.oid AND d.deptype = 'e'
    WHERE n.nspname = $1 AND d.objid IS NULL AND t.typcategory NOT IN ('A', 'C')
  UNION ALL
    SELECT p.oid FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    LEFT JOIN pg_catalog.pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
    WHERE n.nspname = $1 AND d.objid IS NULL
)`

func (f *flyway) readHistory(ctx context.Context) ([]flywayApplied, error) {
	rows, err := f.conn.Query(ctx, `SELECT installed_rank, version, description, type, script, checksum, success FROM `+f.table+` ORDER BY installed_rank`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (flywayApplied, error) {
		var a flywayApplied
		err := row.Scan(&a.rank, &a.version, &a.description, &a.typ, &a.script, &a.checksum, &a.success)
		return a, err
	})
}

// validate is Flyway's validation of the resolved migrations against the history
// (MigrationInfoImpl.validate) with the default ignoreMigrationPatterns ("*:future"): a failed
// migration, an applied migration no longer on disk, a checksum, description or type that
// changed, and a migration on disk older than the latest applied one but never applied are
// errors. An applied migration newer than every one on disk is a future one: ignored, with
// Flyway's warning. Migrations newer than the latest applied one are pending: fine for migrate,
// an error for validate. Rows that Flyway writes for itself (a schema creation, a baseline and
// the migrations below it, a repair's deletion) are taken into account.
func (f *flyway) validate(migrations []flywayMigration, applied []flywayApplied, pendingAllowed bool) error {
	var errs []string
	resolved := map[string]flywayMigration{}
	for _, m := range migrations {
		resolved[strings.Join(m.version.parts, ".")] = m
	}
	var baseline, newestResolved *flywayVersion
	if len(migrations) > 0 {
		newestResolved = &migrations[len(migrations)-1].version
	}
	deleted := map[string]bool{}
	latest := flywayVersion{}
	seen := map[string]bool{}
	for _, a := range applied {
		if a.version == nil {
			continue
		}
		v, err := parseFlywayVersion(*a.version)
		if err != nil {
			return fmt.Errorf("schema history row %d: %w", a.rank, err)
		}
		key := strings.Join(v.parts, ".")
		switch a.typ {
		case "BASELINE":
			baseline = &v
		case "DELETE":
			deleted[key] = true
		}
		if a.typ != "SCHEMA" && a.success && (latest.parts == nil || v.compare(latest) > 0) {
			latest = v
		}
	}
	for _, a := range applied {
		if a.version == nil || a.typ == "SCHEMA" || a.typ == "BASELINE" || a.typ == "DELETE" {
			continue
		}
		v, _ := parseFlywayVersion(*a.version)
		key := strings.Join(v.parts, ".")
		if deleted[key] {
			continue
		}
		seen[key] = true
		m, ok := resolved[key]
		switch {
		case !ok && (newestResolved == nil || v.compare(*newestResolved) > 0):
			newest := "<< Empty Schema >>"
			if newestResolved != nil {
				newest = newestResolved.text
			}
			if a.success {
				f.logf("WARNING: Schema %s has a version (%s) that is newer than the latest available migration (%s) !", quoteIdent(f.schema), *a.version, newest)
			} else {
				f.logf("WARNING: Schema %s contains a failed future migration to version %s !", quoteIdent(f.schema), *a.version)
			}
		case !a.success:
			errs = append(errs, fmt.Sprintf("Detected failed migration to version %s (%s). Please remove any half-completed changes then run repair to fix the schema history.", *a.version, a.description))
		case !ok:
			errs = append(errs, fmt.Sprintf("Detected applied migration not resolved locally: %s. If you removed this migration intentionally, run repair to mark the migration as deleted.", *a.version))
		case a.typ != "SQL":
			errs = append(errs, fmt.Sprintf("Migration type mismatch for migration version %s\n-> Applied to database : %s\n-> Resolved locally    : SQL. Either revert the changes to the migration, or run repair to update the schema history.", *a.version, a.typ))
		case a.checksum == nil || *a.checksum != m.checksum:
			got := "null"
			if a.checksum != nil {
				got = fmt.Sprint(*a.checksum)
			}
			errs = append(errs, fmt.Sprintf("Migration checksum mismatch for migration version %s\n-> Applied to database : %s\n-> Resolved locally    : %d. Either revert the changes to the migration, or run repair to update the schema history.", *a.version, got, m.checksum))
		case a.description != abbreviateFlyway(m.description, 200, false):
			errs = append(errs, fmt.Sprintf("Migration description mismatch for migration version %s\n-> Applied to database : %s\n-> Resolved locally    : %s. Either revert the changes to the migration, or run repair to update the schema history.", *a.version, a.description, m.description))
		}
	}
	for _, m := range migrations {
		key := strings.Join(m.version.parts, ".")
		switch {
		case seen[key], baseline != nil && m.version.compare(*baseline) <= 0:
		case latest.parts != nil && m.version.compare(latest) < 0:
			errs = append(errs, fmt.Sprintf("Detected resolved migration not applied to database: %s. To ignore this migration, set -ignoreMigrationPatterns='*:ignored'. To allow executing this migration, set -outOfOrder=true.", m.version))
		case !pendingAllowed:
			errs = append(errs, fmt.Sprintf("Detected resolved migration not applied to database: %s. To fix this error, either run migrate, or set -ignoreMigrationPatterns='*:pending'.", m.version))
		}
	}
	if len(errs) > 0 {
		return errors.New("Validate failed: Migrations have failed validation\n" + strings.Join(errs, "\n"))
	}
	return nil
}

// countMatched counts the resolved migrations that have a history row, so that the validation
// count is Flyway's: migrations on disk and in the history, each counted once.
func countMatched(migrations []flywayMigration, applied []flywayApplied) int {
	rows := map[string]bool{}
	for _, a := range applied {
		if a.version != nil {
			if v, err := parseFlywayVersion(*a.version); err == nil {
				rows[strings.Join(v.parts, ".")] = true
			}
		}
	}
	n := 0
	for _, m := range migrations {
		if rows[strings.Join(m.version.parts, ".")] {
			n++
		}
	}
	return n
}

// migrate applies the pending migrations (above the latest applied version, up to the target)
// one by one, as Flyway does with group=false.
func (f *flyway) migrate(ctx context.Context, migrations []flywayMigration, applied []flywayApplied) error {
	var current *flywayVersion
	for _, a := range applied {
		if a.version == nil || !a.success || a.typ == "SCHEMA" || a.typ == "DELETE" {
			continue
		}
		if v, err := parseFlywayVersion(*a.version); err == nil && (current == nil || v.compare(*current) > 0) {
			current = &v
		}
	}
	shown := "<< Empty Schema >>"
	if current != nil {
		shown = current.text
	}
	f.logf("Current version of schema %s: %s", quoteIdent(f.schema), shown)
	start := time.Now()
	n := 0
	for _, m := range migrations {
		if current != nil && m.version.compare(*current) <= 0 {
			continue
		}
		if f.target != nil && m.version.compare(*f.target) > 0 {
			break
		}
		if err := f.apply(ctx, m); err != nil {
			return err
		}
		current = &m.version
		n++
	}
	if n == 0 {
		f.logf("Schema %s is up to date. No migration necessary.", quoteIdent(f.schema))
		return nil
	}
	plural := "s"
	if n == 1 {
		plural = ""
	}
	f.logf("Successfully applied %d migration%s to schema %s, now at version v%s (execution time %s)",
		n, plural, quoteIdent(f.schema), current.text, flywayDuration(time.Since(start)))
	return nil
}

// apply runs one migration: in a transaction with its history row, unless its script
// configuration says executeInTransaction=false or Flyway finds one of its statements cannot
// run in a transaction; then statement by statement, and its history row, success or failure,
// after. A failure inside a transaction rolls back the migration and its row together.
func (f *flyway) apply(ctx context.Context, m flywayMigration) error {
	raw, err := os.ReadFile(m.path)
	if err != nil {
		return err
	}
	sql := string(bytes.TrimPrefix(raw, utf8BOM))
	if m.config.placeholderReplacement == nil || *m.config.placeholderReplacement {
		var database string
		if err := f.conn.QueryRow(ctx, `SELECT current_database()`).Scan(&database); err != nil {
			return err
		}
		wd, _ := os.Getwd()
		sql, err = replaceFlywayPlaceholders(sql, map[string]string{
			"flyway:defaultSchema": f.schema, "flyway:user": f.originalRole, "flyway:database": database,
			"flyway:timestamp": time.Now().Format("2006-01-02 15:04:05"), "flyway:filename": m.script[strings.LastIndex(m.script, "/")+1:],
			"flyway:workingDirectory": wd, "flyway:table": FlywayTable, "flyway:environment": "default",
		})
		if err != nil {
			return err
		}
	}
	stmts, err := parseFlywayScript(sql)
	if err != nil {
		return fmt.Errorf("Unable to parse statement in %s at %w", m.path, err)
	}
	inTx := true
	if m.config.executeInTransaction != nil {
		inTx = *m.config.executeInTransaction
	} else {
		var tx, nonTx bool
		for _, s := range stmts {
			tx, nonTx = tx || !s.nonTransactional, nonTx || s.nonTransactional
			if tx && nonTx {
				mark := ""
				if s.nonTransactional {
					mark = " [non-transactional]"
				}
				return fmt.Errorf("Detected both transactional and non-transactional statements within the same migration (even though mixed is false). Offending statement found at line %d: %s%s",
					s.line, s.sql, mark)
			}
		}
		inTx = !nonTx
	}
	what := fmt.Sprintf("schema %s to version %q", quoteIdent(f.schema), m.version.text+descriptionSuffix(m.description))
	if !inTx {
		what += " [non-transactional]"
	}
	// Flyway's Connection.restoreOriginalState and changeCurrentSchemaTo: whatever a previous
	// migration did to the session's role or search_path does not reach this one.
	if _, err := f.conn.Exec(ctx, `SELECT set_config('role', $1, false), set_config('search_path', $2, false)`, f.originalRole, f.searchPath()); err != nil {
		return err
	}
	f.logf("Migrating %s", what)
	start := time.Now()
	if inTx {
		err = pgx.BeginFunc(ctx, f.conn, func(tx pgx.Tx) error {
			if err := f.execAll(ctx, tx, m, stmts); err != nil {
				return err
			}
			return f.record(ctx, tx, m, time.Since(start), true)
		})
		if err != nil {
			f.logf("Migration of %s failed! Changes successfully rolled back.", what)
		}
		return err
	}
	if err := f.execAll(ctx, f.conn, m, stmts); err != nil {
		f.logf("Migration of %s failed! Please restore backups and roll back database and code!", what)
		if rerr := f.record(ctx, f.conn, m, time.Since(start), false); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return f.record(ctx, f.conn, m, time.Since(start), true)
}

// searchPath is the search_path Flyway sets for a migration: the default schema first, then
// the connection's own, unless that already starts with it.
func (f *flyway) searchPath() string {
	if f.originalPath == f.schema || strings.HasPrefix(f.originalPath, f.schema+",") || f.originalPath == "" {
		return f.originalPath
	}
	return quoteIdent(f.schema) + ", " + f.originalPath
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// execAll runs the statements in order; the error of one reads as Flyway's.
func (f *flyway) execAll(ctx context.Context, db execer, m flywayMigration, stmts []flywayStatement) error {
	for _, s := range stmts {
		if _, err := db.Exec(ctx, s.sql); err != nil {
			return &FlywayMigrationError{Script: m.script, Path: m.path, Line: s.line, Statement: s.sql, Err: err}
		}
	}
	return nil
}

// record inserts the migration's history row (JdbcTableSchemaHistory.doAddAppliedMigration).
func (f *flyway) record(ctx context.Context, db execer, m flywayMigration, took time.Duration, success bool) error {
	_, err := db.Exec(ctx, `INSERT INTO `+f.table+` (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
		VALUES ((SELECT coalesce(max(installed_rank), 0) + 1 FROM `+f.table+`), $1, $2, 'SQL', $3, $4, $5, $6, $7)`,
		m.version.text, abbreviateFlyway(m.description, 200, false), abbreviateFlyway(m.script, 1000, true), m.checksum,
		f.originalRole, int32(took.Milliseconds()), success)
	if err != nil {
		return fmt.Errorf("Unable to insert row for version '%s' in Schema History table %s: %w", m.version, f.table, err)
	}
	return nil
}

// FlywayMigrationError is a statement of a migration that failed, reported as Flyway reports
// it.
type FlywayMigrationError struct {
	Script    string // the migration's path relative to the location
	Path      string
	Line      int
	Statement string
	Err       error
}

func (e *FlywayMigrationError) Error() string {
	state, message := "", e.Err.Error()
	if pe := (*pgconn.PgError)(nil); errors.As(e.Err, &pe) {
		state, message = pe.Code, pe.Severity+": "+pe.Message
	}
	head := "Migration " + e.Script + " failed"
	return fmt.Sprintf("%s\n%s\nSQL State  : %s\nError Code : 0\nMessage    : %s\nLocation   : %s (%s)\nLine       : %d\nStatement  : %s",
		head, strings.Repeat("-", len(head)), state, message, e.Script, e.Path, e.Line, e.Statement)
}

func (e *FlywayMigrationError) Unwrap() error { return e.Err }

func descriptionSuffix(d string) string {
	if d == "" {
		return ""
	}
	return " - " + d
}

// abbreviateFlyway shortens s to n characters as Flyway's AbbreviationUtils does: a description
// keeps its start and ends in "...", a script keeps its end and starts with "...".
func abbreviateFlyway(s string, n int, keepEnd bool) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if keepEnd {
		return "..." + string(r[len(r)-(n-3):])
	}
	return string(r[:n-3]) + "..."
}

// flywayLockNumber is the advisory lock Flyway takes on PostgreSQL for a history table:
// PostgreSQLAdvisoryLockTemplate's "Flyway" magic number plus the Java hash of the quoted,
// schema-qualified table name.
func flywayLockNumber(table string) int64 {
	const magic = 0x46<<40 + 0x6C<<32 + 0x79<<24 + 0x77<<16 + 0x61<<8 + 0x79
	return magic + int64(javaStringHash(table))
}

// javaStringHash is Java's String.hashCode.
func javaStringHash(s string) int32 {
	var h int32
	for _, u := range utf16Units(s) {
		h = 31*h + int32(u)
	}
	return h
}

func utf16Units(s string) []uint16 {
	var units []uint16
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			units = append(units, uint16(0xD800+(r>>10)), uint16(0xDC00+(r&0x3FF)))
			continue
		}
		units = append(units, uint16(r))
	}
	return units
}

// flywayDuration formats a duration as Flyway's TimeFormat does: mm:ss.SSSs.
func flywayDuration(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d.%03ds", int(d.Minutes()), int(d.Seconds())%60, d.Milliseconds()%1000)
}
