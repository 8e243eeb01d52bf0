package toolrun

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
)

// HistoryTables are the tables in which the tools record what they applied: goose's, golang-
// migrate's and dbmate's (both schema_migrations) and Flyway's. SchemaDump leaves them out in
// every schema.
var HistoryTables = []string{"goose_db_version", "schema_migrations", "flyway_schema_history"}

// SchemaDump returns the schema of the database dsn as pg_dump --schema-only prints it (without
// owners, privileges, comments or tablespaces), leaving out what records migrations rather than
// being migrated: the tools' HistoryTables in any schema, our tracking schemas ("confiture" and
// "confiture_*") and River's tables ("river_*" in any schema; River's functions and types are
// left out only when River has a schema of its own among those). The text is normalised so
// that two databases with the same schema give the same string: no comment lines, no SET or
// set_config lines, no \restrict or \unrestrict lines (their keys are random), at most one
// blank line in a row. Lines are matched from their first column, so a function body's
// indented comments stay. An empty database gives "".
func SchemaDump(ctx context.Context, dsn string) (string, error) {
	args := []string{"--schema-only", "--no-owner", "--no-privileges", "--no-comments", "--no-tablespaces",
		"--exclude-schema=confiture", "--exclude-schema=confiture_*", "--exclude-table=*.river_*"}
	for _, t := range HistoryTables {
		args = append(args, "--exclude-table=*."+t)
	}
	cmd := exec.CommandContext(ctx, "pg_dump", append(args, "--dbname="+dsn)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", &ToolError{Tool: "pg_dump", Args: append(args, "--dbname="+redact(dsn)), Output: stderr.Bytes(), Err: err}
	}
	return normalizeDump(stdout.String()), nil
}

// normalizeDump drops from pg_dump's output what differs between two databases of the same
// schema, and what only sets up the session that restores it.
func normalizeDump(dump string) string {
	var out []string
	blank := true // so that leading blank lines go
	for _, line := range strings.Split(dump, "\n") {
		line = strings.TrimRight(line, " \t\r")
		switch {
		case strings.HasPrefix(line, "--"),
			strings.HasPrefix(line, "SET "),
			strings.HasPrefix(line, "SELECT pg_catalog.set_config("),
			strings.HasPrefix(line, `\restrict`),
			strings.HasPrefix(line, `\unrestrict`):
			continue
		case line == "":
			if blank {
				continue
			}
			blank = true
		default:
			blank = false
		}
		out = append(out, line)
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, "\n") + "\n"
}
