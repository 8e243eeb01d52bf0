package migrations

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoadFlyway(t *testing.T) {
	t.Parallel()
	const dir = "testdata/flyway"
	ms := loadAs(t, dir, "", FormatFlyway)
	// Versions as flyway_schema_history records them ('_' as '.'), in Flyway's order
	// V1 < V1.1 < V1_2 < V2 < V10, V2 from a subdirectory; names are the descriptions with '_'
	// as ' ', as Flyway records them.
	require.Equal(t, [][2]string{
		{"1", "create users"}, {"1.1", "add email"}, {"1.2", "add email index"}, {"2", "orders"}, {"10", "seed"},
	}, versionsAndNames(ms))

	require.Equal(t, fileText(t, dir+"/V1__create_users.sql"), ms[0].UpSQL)
	// U files are the down SQL of the V file of their version.
	require.Equal(t, fileText(t, dir+"/U1__create_users.sql"), ms[0].DownSQL)
	require.Equal(t, fileText(t, dir+"/U1_2__add_email_index.sql"), ms[2].DownSQL)
	require.Empty(t, ms[1].DownSQL)
	require.Equal(t, fileText(t, dir+"/v2/V2__orders.sql"), ms[3].UpSQL)
	// Each names its file, relative to the directory, for messages, and carries the checksum
	// Flyway records for it, for an adoption to compare.
	require.Equal(t, FlywayChecksum([]byte(ms[0].UpSQL)), *ms[0].FlywayChecksum)
	require.Equal(t, "V1__create_users.sql", ms[0].File)
	require.Equal(t, "v2/V2__orders.sql", ms[3].File)

	// V1_2__add_email_index.sql.conf says executeInTransaction=false.
	for i, m := range ms {
		require.Equal(t, i == 2, m.NoTransaction, m.ID())
	}

	// Hooks by version (V1_2.hooks.yaml) and by stem, beside the file in its subdirectory
	// (v2/V2__orders.hooks.yaml); flyway.conf is not the directory's business.
	require.Equal(t, map[string]any{"table": "users"}, ms[2].Hooks[0].Params)
	require.Equal(t, map[string]any{"table": "orders"}, ms[3].Hooks[0].Params)
	require.Nil(t, ms[0].Hooks)
}

func TestLoadFlywayScriptConfig(t *testing.T) {
	t.Parallel()
	for conf, noTx := range map[string]bool{
		"executeInTransaction=false\n":                               true,
		"# a comment\n! another\n\n  executeInTransaction : FALSE\n": true,
		"executeInTransaction false\r\nencoding=UTF-8\r\n":           true,
		"executeInTransaction=true\nencoding=utf8\n":                 false,
		"placeholderReplacement=false\n":                             false,
	} {
		dir := writeDir(t, map[string]string{"V1__a.sql": "select 1;\n", "V1__a.sql.conf": conf, "U1__a.sql": "select 2;\n"})
		ms := loadAs(t, dir, FormatFlyway, FormatFlyway)
		require.Equal(t, noTx, ms[0].NoTransaction, "%q", conf)
	}
	// An undo script's executeInTransaction=false makes the migration run outside a transaction
	// both ways: the worker has one setting a migration.
	dir := writeDir(t, map[string]string{"V1__a.sql": "select 1;\n", "U1__a.sql": "select 2;\n", "U1__a.sql.conf": "executeInTransaction=false\n"})
	require.True(t, loadAs(t, dir, "", FormatFlyway)[0].NoTransaction)

	// placeholderReplacement=false: Flyway leaves ${...} as it is, so may the worker.
	dir = writeDir(t, map[string]string{"V1__a.sql": "select '${literal}';\n", "V1__a.sql.conf": "placeholderReplacement=false\n"})
	require.Equal(t, "select '${literal}';\n", loadAs(t, dir, "", FormatFlyway)[0].UpSQL)
}

func TestLoadFlywayProblems(t *testing.T) {
	t.Parallel()
	flyway := func(files map[string]string) map[string]string {
		files["V1__first.sql"] = "select 1;\n"
		return files
	}
	runProblemCases(t, []problemCase{
		{"version that does not parse", "", flyway(map[string]string{"V1.a__x.sql": "select 1;"}),
			[]wantProblem{{"V1.a__x.sql", 0, "version \"1.a\" does not parse: Flyway's versions are numbers separated by '.' or '_', as in V1_2__add_users.sql"}}},
		{"no version", "", flyway(map[string]string{"V__x.sql": "select 1;"}),
			[]wantProblem{{"V__x.sql", 0, "has no version: Flyway names a migration V<version>__<description>.sql"}}},
		{"no separator", "", flyway(map[string]string{"V2_x.sql": "select 1;"}),
			[]wantProblem{{"V2_x.sql", 0, "version \"2_x\" does not parse: Flyway's versions are numbers separated by '.' or '_', as in V1_2__add_users.sql (is the \"__\" between the version and the description missing?)"}}},
		{"doubled dot", "", flyway(map[string]string{"V2..1__x.sql": "select 1;"}),
			[]wantProblem{{"V2..1__x.sql", 0, "version \"2..1\" does not parse"}}},
		{"no description", "", flyway(map[string]string{"V2.sql": "select 1;"}),
			[]wantProblem{{"V2.sql", 0, "has no description after its version: the worker needs a name for each migration; rename it to V2__<description>.sql"}}},
		{"repeatable migration", "", flyway(map[string]string{"R__views.sql": "create view v as select 1;"}),
			[]wantProblem{{"R__views.sql", 0, "is a Flyway repeatable migration, which the worker does not support"}}},
		{"callbacks", "", flyway(map[string]string{"beforeMigrate.sql": "", "afterEachMigrate__log.sql": "", "sub/afterMigrateError.sql": ""}),
			[]wantProblem{
				{"beforeMigrate.sql", 0, "is a Flyway callback (beforeMigrate): the worker does not run Flyway's callbacks; declare a hook in the hooks file of a migration instead"},
				{"afterEachMigrate__log.sql", 0, "is a Flyway callback (afterEachMigrate)"},
				{"sub/afterMigrateError.sql", 0, "is a Flyway callback (afterMigrateError)"},
			}},
		{"callbacks alone tell the format", "", map[string]string{"afterMigrate.sql": "select 1;"},
			[]wantProblem{{"afterMigrate.sql", 0, "is a Flyway callback (afterMigrate)"}, {"", 0, "no migrations: expected Flyway's files named V<version>__<description>.sql"}}},
		{"undo without its migration", "", flyway(map[string]string{"sub/U3__x.sql": "select 1;"}),
			[]wantProblem{{"sub/U3__x.sql", 0, "is the undo migration of version 3, but no V3__<description>.sql has that version"}}},
		{"two undo migrations", "", flyway(map[string]string{"U1__a.sql": "", "U1.0__b.sql": ""}),
			[]wantProblem{{"U1__a.sql", 0, "U1.0__b.sql is also the undo migration of version 1; keep one"}}},
		{"one version twice", "", flyway(map[string]string{"sub/V1.0__again.sql": "select 1;"}),
			[]wantProblem{{"sub/V1.0__again.sql", 0, "version 1 is used by V1__first.sql and sub/V1.0__again.sql (1 and 1.0 are one version: versions compare as numbers)"}}},
		{"placeholders", "", flyway(map[string]string{"V2__x.sql": "select 1;\nselect '${who}';\n", "U1__first.sql": "\ndrop ${flyway:defaultSchema}.t;"}),
			[]wantProblem{
				{"V2__x.sql", 2, "${who} is a Flyway placeholder, which the worker does not replace: write its value into the file (or, if the text is meant as it is, set placeholderReplacement=false in V2__x.sql.conf)"},
				{"U1__first.sql", 2, "${flyway:defaultSchema} is one of Flyway's built-in placeholders, which the worker does not replace"},
			}},
		{"script configuration", "", flyway(map[string]string{"V1__first.sql.conf": "executeInTransaction=maybe\nshouldExecute=true\nexecuteInTransation=false\nencoding=ISO-8859-1\nplaceholderReplacement\n"}),
			[]wantProblem{
				{"V1__first.sql.conf", 1, "executeInTransaction must be true or false, found \"maybe\""},
				{"V1__first.sql.conf", 2, "shouldExecute (Flyway Teams) is not supported"},
				{"V1__first.sql.conf", 3, "unknown key \"executeInTransation\"; the keys of a script's configuration are executeInTransaction, placeholderReplacement, encoding (did you mean executeInTransaction?)"},
				{"V1__first.sql.conf", 4, "encoding \"ISO-8859-1\": the worker reads SQL files as UTF-8"},
				{"V1__first.sql.conf", 5, "placeholderReplacement must be true or false, found \"\""},
			}},
		{"configuration of no script", "", flyway(map[string]string{"sub/V9__x.sql.conf": "executeInTransaction=false\n"}),
			[]wantProblem{{"sub/V9__x.sql.conf", 0, "configures V9__x.sql, which is not in the directory"}}},
		{"SQL that fits no pattern", "", flyway(map[string]string{"notes.sql": "", "V2__x.SQL": "", "sub/seed.sql": ""}),
			[]wantProblem{
				{"notes.sql", 0, "fits no Flyway pattern; expected V<version>__<description>.sql (a versioned migration) or U<version>__<description>.sql (its undo)"},
				{"V2__x.SQL", 0, "(the suffix must be lower case)"},
				{"sub/seed.sql", 0, "fits no Flyway pattern"},
			}},
		{"empty migration", "", flyway(map[string]string{"sub/V2__x.sql": "-- later\n"}),
			[]wantProblem{{"sub/V2__x.sql", 0, "is empty"}}},
		{"description too long", "", flyway(map[string]string{"V2__" + longName + ".sql": "select 1;"}),
			[]wantProblem{{"V2__" + longName + ".sql", 0, "the migration's name is 201 characters long"}}},
		{"hooks of no version", "", flyway(map[string]string{"V1_1.hooks.yaml": ""}),
			[]wantProblem{{"V1_1.hooks.yaml", 0, "is the hooks file of version 1.1, but no migration has that version"}}},
		{"hooks of a misspelt file", "", flyway(map[string]string{"V1__frist.hooks.yaml": ""}),
			[]wantProblem{{"V1__frist.hooks.yaml", 0, "has no matching V1__frist.sql (V1__first.sql has the same version: is the name misspelt?)"}}},
		{"hooks beside another directory's file", "", flyway(map[string]string{"sub/V1__first.hooks.yaml": ""}),
			[]wantProblem{{"sub/V1__first.hooks.yaml", 0, "has no matching sub/V1__first.sql (V1__first.sql has the same version"}}},
		{"hooks by version, two spellings", "", flyway(map[string]string{"V1.hooks.yaml": "", "V1_0.hooks.yaml": ""}),
			[]wantProblem{{"V1_0.hooks.yaml", 0, "V1.hooks.yaml also declares the hooks of V1__first.sql"}}},
		{"YAML that is no hooks file", "", flyway(map[string]string{"sub/flyway.yaml": ""}),
			[]wantProblem{{"sub/flyway.yaml", 0, "not a hooks file name"}}},
	})
}

var longName = strings.Repeat("x", 201)
