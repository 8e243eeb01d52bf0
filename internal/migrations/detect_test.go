package migrations

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDetectFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  Format
	}{
		{"nothing but a README", map[string]string{"README.md": "x"}, ""},
		{"strict up files", map[string]string{"001_a.up.sql": "select 1;", "001_a.down.sql": "select 1;"}, FormatConfiture},
		{"a title only golang-migrate takes", map[string]string{"001_a.up.sql": "select 1;", "002_b.c.up.sql": "select 1;"}, FormatGolangMigrate},
		{"a goose annotation", map[string]string{"1_a.sql": "-- +goose Up\nselect 1;"}, FormatGoose},
		{"dbmate's up", map[string]string{"20240101000000_a.sql": "--migrate:up\nselect 1;\n-- migrate:down\n"}, FormatDbmate},
		{"Flyway names", map[string]string{"V1__a.sql": "select 1;"}, FormatFlyway},
		{"Flyway's undo", map[string]string{"V1__a.sql": "select 1;", "U1__a.sql": "select 1;"}, FormatFlyway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, tc.files)
			ms, got, err := LoadFormat(dir, "")
			if tc.want == "" {
				require.Error(t, err)
				require.Equal(t, FormatConfiture, got, "nothing tells: the worker's own")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.NotEmpty(t, ms)
		})
	}
	// Goose's Go migrations show the format even when nothing else loads.
	le := loadErrAs(t, writeDir(t, map[string]string{"1_a.go": "package m", "2_b.sql": "select 1;\n"}), "")
	requireProblem(t, le, "1_a.go", 0, "is a goose Go migration")
	requireProblem(t, le, "2_b.sql", 0, "has no '-- +goose Up' annotation")
	// So do Flyway's names, whatever the version's problem.
	le = loadErrAs(t, writeDir(t, map[string]string{"V1.a__x.sql": "select 1;"}), "")
	requireProblem(t, le, "V1.a__x.sql", 0, "version \"1.a\" does not parse")
}

func TestDetectMixedFormats(t *testing.T) {
	t.Parallel()
	runProblemCases(t, []problemCase{
		{"dbmate beside an up file", "", map[string]string{"001_a.up.sql": "select 1;", "002_b.sql": "-- migrate:up\nselect 1;\n-- migrate:down\n"},
			[]wantProblem{{"002_b.sql", 0, "mixed formats: this file is dbmate's (line 1: -- migrate:up) but 001_a.up.sql is confiture's; keep one format per directory, or name the format in confiture.yaml (format: <format>) or with --format"}}},
		{"the fewer files are the odd ones", "", map[string]string{
			"V1__a.sql": "select 1;", "V2__b.sql": "select 1;",
			"3_c.sql":         "-- an annotation further down\n-- +goose Up\nselect 1;\n",
			"0004_d.e.up.sql": "select 1;",
		}, []wantProblem{
			{"3_c.sql", 0, "mixed formats: this file is goose's (line 2: -- +goose Up) but V1__a.sql is flyway's"},
			{"0004_d.e.up.sql", 0, "mixed formats: this file is golang-migrate's but V1__a.sql is flyway's"},
		}},
		{"as many of each: the first of Formats wins", "", map[string]string{"1_a.sql": "-- +goose Up\nselect 1;\n", "V2__b.sql": "select 1;"},
			[]wantProblem{{"V2__b.sql", 0, "mixed formats: this file is flyway's but 1_a.sql is goose's (line 1: -- +goose Up)"}}},
	})
	// Nothing of a mixed directory is read: its files' own problems wait for its format.
	le := loadErrAs(t, writeDir(t, map[string]string{"001_a.up.sql": "", "V1__a.sql": "select 1;", "V2__b.sql": "select 1;"}), "")
	require.Len(t, le.Problems, 1, le.Error())
	_, got, _ := LoadFormat(writeDir(t, map[string]string{"001_a.up.sql": "select 1;", "V1__a.sql": "select 1;"}), "")
	require.Equal(t, Format(""), got)
}

// A bare <version>_<name>.sql is goose's or dbmate's problem in their directories; when nothing
// tells the format, the worker's own hint names their markers too.
func TestBareSQLFile(t *testing.T) {
	t.Parallel()
	runProblemCases(t, []problemCase{
		{"nothing tells", "", map[string]string{"002_b.sql": "select 1;"},
			[]wantProblem{
				{"002_b.sql", 0, "not a migration file name; expected <version>_<name>.up.sql, <version>_<name>.down.sql or <version>_<name>.hooks.yaml (or <version>.hooks.yaml), where version is 1 to 32 digits and name is 1 to 128 letters, digits, '_' or '-' starting with a letter or digit (rename it to 002_b.up.sql?); or, if it is a goose migration, it needs a '-- +goose Up' line before its SQL, and if it is a dbmate migration, a '-- migrate:up' line"},
				{"", 0, "no migrations: expected files named <version>_<name>.up.sql, or golang-migrate's, goose's, dbmate's or Flyway's migrations"},
			}},
		{"subdirectories: Flyway's maybe", "", map[string]string{"v1/V1__a.sql": "select 1;"},
			[]wantProblem{{"", 0, "(Flyway's may sit in subdirectories, but then a confiture.yaml holding \"format: flyway\" has to say so)"}}},
		{"in a goose directory", "", map[string]string{"001_a.sql": "-- +goose Up\nselect 1;\n", "002_b.sql": "select 1;"},
			[]wantProblem{{"002_b.sql", 0, "has no '-- +goose Up' annotation"}}},
		{"in a dbmate directory", "", map[string]string{"001_a.sql": "-- migrate:up\nselect 1;\n-- migrate:down\n", "002_b.sql": "select 1;"},
			[]wantProblem{{"002_b.sql", 0, "has no '-- migrate:up' block"}}},
	})
	// In a directory of the worker's own format, the hint is today's.
	le := loadErrAs(t, writeDir(t, map[string]string{"001_a.up.sql": "select 1;", "002_b.sql": "select 1;"}), "")
	require.True(t, strings.HasSuffix(le.Problems[0].Message, "(rename it to 002_b.up.sql?)"), le.Error())
}

func TestDirConfig(t *testing.T) {
	t.Parallel()
	// confiture.yaml names the format: these up files are read as dbmate's, whose markers they hold.
	dbmateUp := "-- migrate:up\nselect 1;\n-- migrate:down\n"
	dir := writeDir(t, map[string]string{"confiture.yaml": "# read as dbmate\nformat: dbmate\n", "001_a.up.sql": dbmateUp})
	ms := loadAs(t, dir, "", FormatDbmate)
	require.Equal(t, [][2]string{{"001", "a.up"}}, versionsAndNames(ms))
	// The same format asked for agrees.
	loadAs(t, dir, FormatDbmate, FormatDbmate)
	// confiture.yml, and a file that is not a migration of the worker's own format.
	loadAs(t, writeDir(t, map[string]string{"confiture.yml": "format: confiture", "001_a.up.sql": "select 1;"}), "", FormatConfiture)

	runProblemCases(t, []problemCase{
		{"asked for another format", FormatFlyway, map[string]string{"confiture.yaml": "\nformat: goose\n", "V1__a.sql": "select 1;"},
			[]wantProblem{{"confiture.yaml", 2, "confiture.yaml says goose; asked for flyway: name one format, or the same in both"}}},
		{"unknown format", "", map[string]string{"confiture.yaml": "format: gose\n", "1_a.sql": "-- +goose Up\nselect 1;\n"},
			[]wantProblem{{"confiture.yaml", 1, "format \"gose\" is not one the worker reads: confiture, golang-migrate, goose, dbmate, flyway (did you mean goose?)"}}},
		{"another key", "", map[string]string{"confiture.yaml": "format: goose\ndir: db/migrations\n", "1_a.sql": "-- +goose Up\nselect 1;\n"},
			[]wantProblem{{"confiture.yaml", 2, "unknown key \"dir\"; confiture.yaml holds one key, format"}}},
		{"a misspelt key", "", map[string]string{"confiture.yml": "fromat: goose\n", "1_a.sql": "-- +goose Up\nselect 1;\n"},
			[]wantProblem{{"confiture.yml", 1, "unknown key \"fromat\"; confiture.yaml holds one key, format (did you mean format?)"}}},
		{"no format key", "", map[string]string{"confiture.yaml": "{}\n", "001_a.up.sql": "select 1;"},
			[]wantProblem{{"confiture.yaml", 0, "has no format key: it holds a mapping whose one key is format"}}},
		{"format not a string", "", map[string]string{"confiture.yaml": "format: [goose]\n", "001_a.up.sql": "select 1;"},
			[]wantProblem{{"confiture.yaml", 1, "format must be a string, found a list"}}},
		{"not a mapping", "", map[string]string{"confiture.yaml": "- goose\n", "001_a.up.sql": "select 1;"},
			[]wantProblem{{"confiture.yaml", 1, "must be a mapping whose one key is format, for example \"format: goose\"; found a list"}}},
		{"empty", "", map[string]string{"confiture.yaml": "# nothing\n", "001_a.up.sql": "select 1;"},
			[]wantProblem{{"confiture.yaml", 0, "is empty: it holds a mapping whose one key is format"}}},
		{"invalid YAML", "", map[string]string{"confiture.yaml": "format: [goose\n", "001_a.up.sql": "select 1;"},
			[]wantProblem{{"confiture.yaml", 1, "invalid YAML"}}},
		{"two documents", "", map[string]string{"confiture.yaml": "format: goose\n---\nformat: flyway\n", "1_a.sql": "-- +goose Up\nselect 1;\n"},
			[]wantProblem{{"confiture.yaml", 3, "confiture.yaml holds one YAML document, this one holds 2"}}},
		{"both names", "", map[string]string{"confiture.yaml": "format: confiture\n", "confiture.yml": "format: confiture\n", "001_a.up.sql": "select 1;"},
			[]wantProblem{{"confiture.yml", 0, "confiture.yaml also exists; keep one"}}},
	})
}

func TestLoadFormatUnknown(t *testing.T) {
	t.Parallel()
	ms, got, err := LoadFormat(t.TempDir(), "sqitch")
	require.True(t, errors.Is(err, ErrUnknownFormat), "%v", err)
	require.EqualError(t, err, `unknown migrations format "sqitch": the formats are confiture, golang-migrate, goose, dbmate, flyway`)
	require.Nil(t, ms)
	require.Empty(t, got)
	require.Equal(t, []Format{"confiture", "golang-migrate", "goose", "dbmate", "flyway"}, Formats)
}

// The worker's own format takes hooks files named after a version too, compares versions as
// numbers, and takes two spellings of one version for one.
func TestLoadConfitureVersions(t *testing.T) {
	t.Parallel()
	hooks := "after_ddl:\n  - hook: analyze\n"
	dir := writeDir(t, map[string]string{
		"9_a.up.sql": "select 9;", "10_b.up.sql": "select 10;", "100_c.up.sql": "select 100;",
		"10.hooks.yaml": hooks, "0100.hooks.yml": hooks,
	})
	ms := loadAs(t, dir, "", FormatConfiture)
	require.Equal(t, [][2]string{{"9", "a"}, {"10", "b"}, {"100", "c"}}, versionsAndNames(ms))
	require.Nil(t, ms[0].Hooks)
	require.Len(t, ms[1].Hooks, 1)
	require.Len(t, ms[2].Hooks, 1)

	runProblemCases(t, []problemCase{
		{"one version twice", "", map[string]string{"001_a.up.sql": "select 1;", "1_b.up.sql": "select 1;"},
			[]wantProblem{{"1_b.up.sql", 0, "version 1 is used by 001_a.up.sql and 1_b.up.sql (001 and 1 are one version: versions compare as numbers): each migration needs a version of its own"}}},
		{"hooks by name and by version", "", map[string]string{"001_a.up.sql": "select 1;", "001_a.hooks.yaml": "", "1.hooks.yaml": ""},
			[]wantProblem{{"1.hooks.yaml", 0, "001_a.hooks.yaml also declares the hooks of 001_a.up.sql; keep one hooks file per migration"}}},
		{"hooks of no version", "", map[string]string{"001_a.up.sql": "select 1;", "2.hooks.yaml": ""},
			[]wantProblem{{"2.hooks.yaml", 0, "is the hooks file of version 2, but no migration has that version"}}},
		{"orphan down of another spelling", "", map[string]string{"001_a.up.sql": "select 1;", "1_a.down.sql": "select 1;"},
			[]wantProblem{{"1_a.down.sql", 0, "has no matching 1_a.up.sql (001_a.up.sql has the same version: is the name misspelt?)"}}},
		{"other tools' files are not the worker's", "", map[string]string{"001_a.up.sql": "", "helpers.go": "package m", "V1__x.sql.conf": ""},
			[]wantProblem{{"001_a.up.sql", 0, "is empty"}}},
	})
	le := loadErrAs(t, writeDir(t, map[string]string{"001_a.up.sql": "", "helpers.go": "package m", "V1__x.sql.conf": ""}), "")
	require.Len(t, le.Problems, 1, le.Error())
}
