package migrations

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

func TestLoadDbmate(t *testing.T) {
	t.Parallel()
	const dir = "testdata/dbmate"
	ms := loadAs(t, dir, "", FormatDbmate)
	require.Equal(t, [][2]string{
		{"20240101120000", "create_users"}, {"20240102090000", "add_index"}, {"20240103000000", "seed"},
	}, versionsAndNames(ms))

	// The blocks as dbmate runs them: each from its directive line on.
	up := "-- migrate:up\nCREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);\n\n"
	require.Equal(t, up, ms[0].UpSQL)
	require.Equal(t, contract.Checksum(up), ms[0].Checksum)
	require.Equal(t, "-- migrate:down\nDROP TABLE users;\n", ms[0].DownSQL)
	require.False(t, ms[0].NoTransaction)

	// transaction:false.
	require.True(t, ms[1].NoTransaction)
	require.Equal(t, "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY users_name ON users (name);\n\n", ms[1].UpSQL)

	// Comments before the up block are not part of it; an empty down block is no down SQL.
	require.Equal(t, "-- migrate:up\nINSERT INTO users (id, name) VALUES (1, 'root');\n", ms[2].UpSQL)
	require.Empty(t, ms[2].DownSQL)

	// Hooks by the file's stem and by version.
	require.Equal(t, "sql", ms[0].Hooks[0].Hook)
	require.Equal(t, "analyze", ms[1].Hooks[0].Hook)
	require.Nil(t, ms[2].Hooks)
}

// transaction:false on either block makes the migration run outside a transaction both ways:
// the worker has one setting a migration. Other options are ignored, as dbmate ignores them.
func TestLoadDbmateTransactionOption(t *testing.T) {
	t.Parallel()
	for sql, noTx := range map[string]bool{
		"-- migrate:up\nselect 1;\n-- migrate:down transaction:false\nselect 2;\n":                           true,
		"-- migrate:up foo:bar transaction:false\nselect 1;\n-- migrate:down\n":                              true,
		"--migrate:up\ttransaction:false\nselect 1;\n-- migrate:down\n":                                      true,
		"-- migrate:up transaction:true\nselect 1;\n-- migrate:down\n":                                       false,
		"-- migrate:up transaction:False\nselect 1;\n-- migrate:down\n":                                      false, // dbmate compares with "false"
		"-- migrate:up transaction=false\nselect 1;\n-- migrate:down\n":                                      false, // not key:value
		"\ufeff-- migrate:up\r\nselect 1;\r\n-- migrate:down transaction:false\r\n":                          true,
		"-- migrate:up transaction:false\nselect 1;\n-- migrate:down transaction:true\n":                     true,
		"-- migrate:up\n-- transaction:false is an option of a directive only\nselect 1;\n-- migrate:down\n": false,
	} {
		ms := loadAs(t, writeDir(t, map[string]string{"1_a.sql": sql}), FormatDbmate, FormatDbmate)
		require.Equal(t, noTx, ms[0].NoTransaction, "%q", sql)
	}
}

func TestLoadDbmateProblems(t *testing.T) {
	t.Parallel()
	dbmate := func(name, sql string) map[string]string {
		return map[string]string{"20240101000000_first.sql": "-- migrate:up\nselect 1;\n-- migrate:down\n", name: sql}
	}
	runProblemCases(t, []problemCase{
		{"no up block, in a dbmate directory", "", dbmate("20240102000000_b.sql", "select 1;\n"),
			[]wantProblem{{"20240102000000_b.sql", 0, "has no '-- migrate:up' block: dbmate requires one"}}},
		{"up directive not at the start of its line", "", dbmate("20240102000000_b.sql", " -- migrate:up\nselect 1;\n-- migrate:down\n"),
			[]wantProblem{{"20240102000000_b.sql", 0, "has no '-- migrate:up' block"}}},
		{"SQL before up", "", dbmate("20240102000000_b.sql", "-- fine\n\nset x = 1;\n-- migrate:up\nselect 1;\n-- migrate:down\n"),
			[]wantProblem{{"20240102000000_b.sql", 3, "SQL before '-- migrate:up' (line 4): dbmate does not support statements before it"}}},
		{"no down block", "", dbmate("20240102000000_b.sql", "\n-- migrate:up\nselect 1;\n"),
			[]wantProblem{{"20240102000000_b.sql", 2, "the '-- migrate:up' block has no '-- migrate:down' after it: dbmate requires one"}}},
		{"down before up", "", dbmate("20240102000000_b.sql", "-- migrate:down\n-- migrate:up\nselect 1;\n"),
			[]wantProblem{{"20240102000000_b.sql", 1, "'-- migrate:down' comes before '-- migrate:up' (line 2)"}}},
		{"two down blocks", "", dbmate("20240102000000_b.sql", "-- migrate:up\nselect 1;\n-- migrate:down\nselect 2;\n-- migrate:down\n"),
			[]wantProblem{{"20240102000000_b.sql", 5, "a second '-- migrate:down' (the first is at line 3)"}}},
		{"two up/down pairs", "", dbmate("20240102000000_b.sql", "-- migrate:up\nselect 1;\n-- migrate:down\n-- migrate:up transaction:false\nselect 2;\n-- migrate:down\n"),
			[]wantProblem{{"20240102000000_b.sql", 4, "a second '-- migrate:up' (the first is at line 1): dbmate runs each up/down pair in turn"}}},
		{"empty up block", "", dbmate("20240102000000_b.sql", "-- migrate:up\n-- todo\n-- migrate:down\nselect 1;\n"),
			[]wantProblem{{"20240102000000_b.sql", 1, "the '-- migrate:up' block holds no SQL statement, only whitespace or comments"}}},
		{"no name", "", dbmate("20240102000000.sql", "-- migrate:up\nselect 1;\n-- migrate:down\n"),
			[]wantProblem{{"20240102000000.sql", 0, "has no name after its version: the worker shows a migration as <version>_<name>; rename it to 20240102000000_<name>.sql"}}},
		{"not a migration's name", FormatDbmate, dbmate("schema.sql", "create table t ();\n"),
			[]wantProblem{{"schema.sql", 0, "not a dbmate migration file name; expected <version>_<name>.sql"}}},
		{"one version twice", "", dbmate("020240101000000_again.sql", "-- migrate:up\nselect 1;\n-- migrate:down\n"),
			[]wantProblem{{"20240101000000_first.sql", 0, "version 20240101000000 is used by 020240101000000_again.sql and 20240101000000_first.sql (020240101000000 and 20240101000000 are one version"}}},
		{"NUL byte", "", dbmate("20240102000000_b.sql", "-- migrate:up\nselect 1;\n\x00-- migrate:down\n"),
			[]wantProblem{{"20240102000000_b.sql", 3, "NUL byte"}}},
		{"hooks of a misspelt file", "", dbmate("20240101000000_frist.hooks.yml", ""),
			[]wantProblem{{"20240101000000_frist.hooks.yml", 0, "has no matching 20240101000000_frist.sql (20240101000000_first.sql has the same version: is the name misspelt?)"}}},
		{"hooks twice by version", "", map[string]string{"20240101000000_first.sql": "-- migrate:up\nselect 1;\n-- migrate:down\n", "20240101000000.hooks.yaml": "", "020240101000000.hooks.yml": ""},
			[]wantProblem{{"20240101000000.hooks.yaml", 0, "020240101000000.hooks.yml also declares the hooks of 20240101000000_first.sql; keep one hooks file per migration"}}},
	})
}
