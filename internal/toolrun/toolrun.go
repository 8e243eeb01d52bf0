package toolrun

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ToolError is a tool's failure: what was run, with passwords hidden, and everything the tool
// printed.
type ToolError struct {
	// Tool is "goose", "migrate", "dbmate", "flyway" or "pg_dump".
	Tool string
	// Args are the tool's arguments, passwords in connection strings hidden.
	Args []string
	// Output is the tool's combined standard output and standard error.
	Output []byte
	// Err is why it failed: the process's exit error, or for the Flyway stand-in its own error.
	Err error
}

func (e *ToolError) Error() string {
	return fmt.Sprintf("toolrun: %s %s: %v\n%s", e.Tool, strings.Join(e.Args, " "), e.Err, e.Output)
}

func (e *ToolError) Unwrap() error { return e.Err }

// Goose runs goose (GooseVersion) on the migrations in dir against the PostgreSQL database
// dsn, "up" unless args give another command ("down-to", "0"; "status"), and returns what it
// printed. goose records versions in goose_db_version.
func Goose(ctx context.Context, dir, dsn string, args ...string) ([]byte, error) {
	if len(args) == 0 {
		args = []string{"up"}
	}
	return runTool(ctx, gooseTool, dsn, append([]string{"-dir", dir, "postgres", dsn}, args...)...)
}

// Migrate runs golang-migrate's CLI (MigrateVersion, built with its postgres driver) on the
// migrations in dir against dsn, "up" unless args give another command ("down", "-all";
// "version"), and returns what it printed. dsn must be a URL; sslmode=disable is added when it
// names no sslmode, since golang-migrate's driver otherwise insists on TLS. golang-migrate
// records only the current version, and whether it is dirty, in schema_migrations.
func Migrate(ctx context.Context, dir, dsn string, args ...string) ([]byte, error) {
	if len(args) == 0 {
		args = []string{"up"}
	}
	dsn = withSSLModeDisable(dsn)
	return runTool(ctx, migrateTool, dsn, append([]string{"-path", dir, "-database", dsn}, args...)...)
}

// Dbmate runs dbmate (DbmateVersion) on the migrations in dir against dsn, "up" unless args
// give another command ("rollback", "status"), without writing a schema file, and returns what
// it printed. sslmode=disable is added to a URL that names no sslmode, as for Migrate. dbmate
// records versions in schema_migrations (one varchar column).
func Dbmate(ctx context.Context, dir, dsn string, args ...string) ([]byte, error) {
	if len(args) == 0 {
		args = []string{"up"}
	}
	dsn = withSSLModeDisable(dsn)
	return runTool(ctx, dbmateTool, dsn, append([]string{"--url", dsn, "--migrations-dir", dir, "--no-dump-schema"}, args...)...)
}

// Apply brings dsn up to date with the migrations in dir through format's tool: Goose, Migrate,
// Dbmate or Flyway with their default command.
func Apply(ctx context.Context, format, dir, dsn string) ([]byte, error) {
	switch format {
	case "goose":
		return Goose(ctx, dir, dsn)
	case "golang-migrate":
		return Migrate(ctx, dir, dsn)
	case "dbmate":
		return Dbmate(ctx, dir, dsn)
	case "flyway":
		return Flyway(ctx, dir, dsn)
	}
	return nil, fmt.Errorf("toolrun: unknown format %q (known: %s)", format, strings.Join(Formats, ", "))
}

// HistoryVersions returns the versions format's tool records as applied in dsn, in the order
// the tool applied them: goose's goose_db_version (without goose's own version 0), dbmate's
// schema_migrations (in version order: dbmate keeps no other), Flyway's flyway_schema_history
// (successful rows). golang-migrate keeps only its current version, so for it the answer is
// that one version, or an error when it is marked dirty. The tables are looked up in the
// connection's search_path, where the tools create them by default.
func HistoryVersions(ctx context.Context, format, dsn string) ([]string, error) {
	var q string
	switch format {
	case "goose":
		q = `SELECT version_id::text FROM goose_db_version WHERE version_id <> 0 AND is_applied ORDER BY id`
	case "golang-migrate":
		q = `SELECT version::text || CASE WHEN dirty THEN ' dirty' ELSE '' END FROM schema_migrations`
	case "dbmate":
		q = `SELECT version FROM schema_migrations ORDER BY version`
	case "flyway":
		q = `SELECT version FROM flyway_schema_history WHERE success AND type = 'SQL' ORDER BY installed_rank`
	default:
		return nil, fmt.Errorf("toolrun: unknown format %q (known: %s)", format, strings.Join(Formats, ", "))
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("toolrun: %s history: %w", format, err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("toolrun: %s history: %w", format, err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("toolrun: %s history: %w", format, err)
	}
	for _, v := range versions {
		if n, ok := strings.CutSuffix(v, " dirty"); ok {
			return nil, fmt.Errorf("toolrun: golang-migrate history: version %s is dirty (a migration failed half-way)", n)
		}
	}
	return versions, nil
}

// runTool runs t with args and returns its combined output; dsn is hidden in errors.
func runTool(ctx context.Context, t *tool, dsn string, args ...string) ([]byte, error) {
	bin, err := t.binary()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	// The cache directory holds nothing but programs: goose and dbmate read a .env file from
	// their working directory.
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = toolEnv()
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, &ToolError{Tool: t.name, Args: redactArgs(args, dsn), Output: out, Err: err}
	}
	return out, nil
}

// withSSLModeDisable adds sslmode=disable to a URL that names no sslmode.
func withSSLModeDisable(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return dsn
	}
	q := u.Query()
	if q.Has("sslmode") {
		return dsn
	}
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return u.String()
}

// redactArgs returns args with dsn's password hidden.
func redactArgs(args []string, dsn string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if a == dsn {
			out[i] = redact(dsn)
		}
	}
	return out
}

func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	if strings.Contains(dsn, "password") {
		return "(connection string hidden: it holds a password)"
	}
	return dsn
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
