package migrations

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

func TestLoadGoose(t *testing.T) {
	t.Parallel()
	const dir = "testdata/goose"
	ms := loadAs(t, dir, "", FormatGoose)
	// Versions without padding, in number order as goose has them.
	require.Equal(t, [][2]string{{"1", "create_users"}, {"2", "add_index"}, {"9", "add_email"}, {"10", "seed"}}, versionsAndNames(ms))

	// The Up section as the file holds it, between its annotation and Down's; the
	// StatementBegin/End lines stay in it, as the SQL comments they are.
	up := "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, updated_at timestamptz);\n\n" +
		"-- +goose StatementBegin\nCREATE FUNCTION touch() RETURNS trigger AS $$\nBEGIN\n  NEW.updated_at := now();\n" +
		"  RETURN NEW;\nEND;\n$$ LANGUAGE plpgsql;\n-- +goose StatementEnd\n\n"
	require.Equal(t, up, ms[0].UpSQL)
	require.Equal(t, contract.Checksum(up), ms[0].Checksum)
	require.Equal(t, "DROP FUNCTION touch();\nDROP TABLE users;\n", ms[0].DownSQL)
	require.False(t, ms[0].NoTransaction)

	// -- +goose NO TRANSACTION, before the Up annotation.
	require.True(t, ms[1].NoTransaction)
	require.Equal(t, "CREATE INDEX CONCURRENTLY users_name ON users (name);\n\n", ms[1].UpSQL)
	require.Equal(t, "DROP INDEX CONCURRENTLY users_name;\n", ms[1].DownSQL)

	// Annotations in any case (goose matches them so); a Down of comments only is no down SQL.
	require.Equal(t, "ALTER TABLE users ADD COLUMN email text;\n", ms[2].UpSQL)
	require.Empty(t, ms[2].DownSQL)
	// No Down section at all.
	require.Empty(t, ms[3].DownSQL)

	// Hooks by the file's stem (1_create_users.hooks.yaml) and by version (2.hooks.yaml); the
	// directory's embed.go is no migration, as for goose.
	require.Equal(t, "sql", ms[0].Hooks[0].Hook)
	require.Equal(t, "analyze", ms[1].Hooks[0].Hook)
	require.Nil(t, ms[2].Hooks)
}

func TestLoadGooseProblems(t *testing.T) {
	t.Parallel()
	goose := func(name, sql string) map[string]string {
		return map[string]string{"1_first.sql": "-- +goose Up\nselect 1;\n", name: sql}
	}
	runProblemCases(t, []problemCase{
		{"no Up annotation, in a goose directory", "", goose("2_b.sql", "select 1;\n"),
			[]wantProblem{{"2_b.sql", 0, "has no '-- +goose Up' annotation: goose requires one before the migration's SQL"}}},
		{"no Up annotation, only other ones", "", goose("2_b.sql", "-- +goose NO TRANSACTION\n\n"),
			[]wantProblem{{"2_b.sql", 0, "has no '-- +goose Up' annotation"}}},
		{"SQL before Up", "", goose("2_b.sql", "-- comments are fine\nselect 1;\n-- +goose Up\nselect 2;\n"),
			[]wantProblem{{"2_b.sql", 2, "SQL before the '-- +goose Up' annotation"}}},
		{"two Up annotations", "", goose("2_b.sql", "-- +goose Up\nselect 1;\n-- +goose Up\n"),
			[]wantProblem{{"2_b.sql", 3, "a second '-- +goose Up' annotation (the first is at line 1)"}}},
		{"Down before Up", "", goose("2_b.sql", "-- +goose Down\n-- +goose Up\nselect 1;\n"),
			[]wantProblem{{"2_b.sql", 1, "'-- +goose Down' before '-- +goose Up'"}}},
		{"two Down annotations", "", goose("2_b.sql", "-- +goose Up\nselect 1;\n-- +goose Down\n-- +goose Down\n"),
			[]wantProblem{{"2_b.sql", 4, "a second '-- +goose Down' annotation (the first is at line 3)"}}},
		{"StatementBegin not ended", "", goose("2_b.sql", "-- +goose Up\n-- +goose StatementBegin\nselect 1;\n"),
			[]wantProblem{{"2_b.sql", 2, "'-- +goose StatementBegin' has no '-- +goose StatementEnd' after it"}}},
		{"Down inside a StatementBegin block", "", goose("2_b.sql", "-- +goose Up\n-- +goose StatementBegin\nselect 1;\n-- +goose Down\n"),
			[]wantProblem{{"2_b.sql", 4, "'-- +goose Down' inside the StatementBegin block of line 2"}}},
		{"StatementEnd without Begin", "", goose("2_b.sql", "-- +goose Up\nselect 1;\n-- +goose StatementEnd\n"),
			[]wantProblem{{"2_b.sql", 3, "'-- +goose StatementEnd' without a '-- +goose StatementBegin' before it"}}},
		{"StatementBegin before Up", "", goose("2_b.sql", "-- +goose StatementBegin\n-- +goose Up\n"),
			[]wantProblem{{"2_b.sql", 1, "'-- +goose StatementBegin' before '-- +goose Up'"}}},
		{"no semicolon before Down", "", goose("2_b.sql", "-- +goose Up\nselect 1;\nselect\n  2 -- two;\n-- +goose Down\n"),
			[]wantProblem{{"2_b.sql", 3, "the statement that starts here has no ';' at the end of its last line before '-- +goose Down' (line 5)"}}},
		{"no semicolon at the end", "", goose("2_b.sql", "-- +goose Up\nselect 1;\n-- +goose Down\nselect 2\n"),
			[]wantProblem{{"2_b.sql", 4, "the statement that starts here has no ';' at the end of its last line: goose requires one"}}},
		{"unknown annotation", "", goose("2_b.sql", "-- +goose Up\n-- +goose StatementBgin\nselect 1;\n"),
			[]wantProblem{{"2_b.sql", 2, "unknown goose annotation \"StatementBgin\"; goose knows Up, Down, StatementBegin, StatementEnd, NO TRANSACTION, ENVSUB ON, ENVSUB OFF (and reads any comment holding '+goose' as an annotation) (did you mean StatementBegin?)"}}},
		{"a comment that mentions +goose", "", goose("2_b.sql", "-- +goose Up\n-- see the +goose docs\nselect 1;\n"),
			[]wantProblem{{"2_b.sql", 2, "unknown goose annotation \"see the  docs\""}}},
		{"annotation after whitespace", "", goose("2_b.sql", "  -- +goose Up\nselect 1;\n"),
			[]wantProblem{{"2_b.sql", 1, "starts with whitespace, which goose rejects"}}},
		{"+goose twice on a line", "", goose("2_b.sql", "-- +goose Up +goose Down\n"),
			[]wantProblem{{"2_b.sql", 1, "the line holds '+goose' twice"}}},
		{"empty annotation", "", goose("2_b.sql", "-- +goose\n"),
			[]wantProblem{{"2_b.sql", 1, "empty goose annotation"}}},
		{"ENVSUB ON, with the rest read on", "", goose("2_b.sql", "-- +goose Up\n-- +goose ENVSUB ON\nselect '${HOME}';\n-- +goose ENVSUB OFF\nselect 1\n"),
			[]wantProblem{
				{"2_b.sql", 2, "'-- +goose ENVSUB ON' asks for environment variables to be substituted, which the worker does not do (it runs elsewhere, without this machine's environment): write the values into the file and remove the annotation"},
				{"2_b.sql", 5, "has no ';'"},
			}},
		{"empty Up section", "", goose("2_b.sql", "-- nothing yet\n\n-- +goose Up\n-- todo\n-- +goose Down\nselect 1;\n"),
			[]wantProblem{{"2_b.sql", 3, "the '-- +goose Up' section holds no SQL statement, only whitespace or comments"}}},
		{"Go migration", "", goose("2_b.go", "package migrations\n"),
			[]wantProblem{{"2_b.go", 0, "is a goose Go migration: the worker runs SQL migrations only; rewrite it as 2_b.sql"}}},
		{"not a migration's name", FormatGoose, goose("seed.sql", "-- +goose Up\nselect 1;\n"),
			[]wantProblem{{"seed.sql", 0, "not a goose migration file name; expected <version>_<name>.sql"}}},
		{"version 0", FormatGoose, goose("0_init.sql", "-- +goose Up\nselect 1;\n"),
			[]wantProblem{{"0_init.sql", 0, "version 0 is zero: goose's versions start at 1; renumber the file"}}},
		{"version beyond int64", FormatGoose, goose("9223372036854775808_x.sql", "-- +goose Up\nselect 1;\n"),
			[]wantProblem{{"9223372036854775808_x.sql", 0, "is beyond goose's versions (at most 9223372036854775807)"}}},
		{"one version twice", "", goose("01_b.sql", "-- +goose Up\nselect 1;\n"),
			[]wantProblem{{"1_first.sql", 0, "version 1 is used by 01_b.sql and 1_first.sql (01 and 1 are one version: versions compare as numbers)"}}},
		{"not UTF-8", "", goose("2_b.sql", "-- +goose Up\nselect '\xff';\n"),
			[]wantProblem{{"2_b.sql", 2, "not valid UTF-8"}}},
		{"hooks of no file", "", goose("2_b.hooks.yaml", ""),
			[]wantProblem{{"2_b.hooks.yaml", 0, "has no matching 2_b.sql"}}},
		{"hooks of a misspelt file", "", goose("1_frist.hooks.yaml", ""),
			[]wantProblem{{"1_frist.hooks.yaml", 0, "has no matching 1_frist.sql (1_first.sql has the same version: is the name misspelt?)"}}},
		{"hooks by name and by version", "", map[string]string{"1_first.sql": "-- +goose Up\nselect 1;\n", "1_first.hooks.yaml": "", "001.hooks.yaml": ""},
			[]wantProblem{{"1_first.hooks.yaml", 0, "001.hooks.yaml also declares the hooks of 1_first.sql; keep one hooks file per migration"}}},
		{"hooks of no version", "", goose("2.hooks.yaml", ""),
			[]wantProblem{{"2.hooks.yaml", 0, "is the hooks file of version 2, but no migration has that version"}}},
	})
}

// A goose file's Up section ends where Down starts; a section of another size than a request
// takes is a problem at its annotation.
func TestLoadGooseSectionLimits(t *testing.T) {
	t.Parallel()
	down := "select '" + strings.Repeat("x", maxSQLChars) + "';\n"
	big := "-- +goose Up\nselect 1;\n-- +goose Down\n" + down
	le := loadErrAs(t, writeDir(t, map[string]string{"1_big.sql": big}), FormatGoose)
	requireProblem(t, le, "1_big.sql", 3, fmt.Sprintf("the '-- +goose Down' section holds %d characters; at most 1048576 are allowed", len(down)))
	require.Len(t, le.Problems, 1)
}
