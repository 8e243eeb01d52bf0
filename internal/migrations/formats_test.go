package migrations

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// loadAs loads dir as format f ("" to detect it), which must succeed, and checks that it reads
// the format want and that a request takes the migrations.
func loadAs(t *testing.T, dir string, f, want Format) []contract.Migration {
	t.Helper()
	ms, got, err := LoadFormat(dir, f)
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.NoError(t, contract.CheckRequest(&contract.Request{Migrations: ms}))
	return ms
}

// loadErrAs loads dir as format f, which must fail, and returns the *LoadError.
func loadErrAs(t *testing.T, dir string, f Format) *LoadError {
	t.Helper()
	ms, _, err := LoadFormat(dir, f)
	require.Error(t, err)
	require.Nil(t, ms)
	var le *LoadError
	require.True(t, errors.As(err, &le), "error is %T, want *LoadError", err)
	require.NotEmpty(t, le.Problems)
	return le
}

// problemCase is a directory that must not load, as format (detected when ""), with problems
// it must report among others.
type problemCase struct {
	name   string
	format Format
	files  map[string]string
	want   []wantProblem
}

type wantProblem struct {
	file string
	line int
	msg  string
}

func runProblemCases(t *testing.T, cases []problemCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			le := loadErrAs(t, writeDir(t, tc.files), tc.format)
			for _, w := range tc.want {
				requireProblem(t, le, w.file, w.line, w.msg)
			}
		})
	}
}

func fileText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(path))
	require.NoError(t, err)
	return string(b)
}

// versionsAndNames lists "version name" of each migration, in order.
func versionsAndNames(ms []contract.Migration) [][2]string {
	var out [][2]string
	for _, m := range ms {
		out = append(out, [2]string{m.Version, m.Name})
	}
	return out
}

func TestLoadGolangMigrate(t *testing.T) {
	t.Parallel()
	const dir = "testdata/golang-migrate"
	ms := loadAs(t, dir, "", FormatGolangMigrate)
	require.Equal(t, [][2]string{{"0001", "init"}, {"0002", "1.7.0_schema"}, {"0010", "add_index"}}, versionsAndNames(ms))

	// The SQL as the files hold it: golang-migrate's BEGIN; ... COMMIT; is the worker's to run.
	up := fileText(t, dir+"/0001_init.up.sql")
	require.Equal(t, up, ms[0].UpSQL)
	require.Equal(t, contract.Checksum(up), ms[0].Checksum)
	require.Equal(t, fileText(t, dir+"/0001_init.down.sql"), ms[0].DownSQL)
	require.Equal(t, fileText(t, dir+"/0002_1.7.0_schema.down.sql"), ms[1].DownSQL)
	require.Empty(t, ms[2].DownSQL)
	for _, m := range ms {
		require.False(t, m.NoTransaction, m.ID())
	}

	// Hooks by version (0002.hooks.yaml) and by the file's stem (0010_add_index.hooks.yml).
	require.Nil(t, ms[0].Hooks)
	require.Equal(t, []contract.HookSpec{{Phase: contract.PhaseAfterDDL, Name: "analyze", Hook: "analyze", Params: map[string]any{"table": "users"}}}, ms[1].Hooks)
	require.Equal(t, "sql", ms[2].Hooks[0].Hook)

	// Asked for, it reads the same.
	require.Equal(t, ms, loadAs(t, dir, FormatGolangMigrate, FormatGolangMigrate))
}

func TestLoadGolangMigrateProblems(t *testing.T) {
	t.Parallel()
	gm := func(files map[string]string) map[string]string {
		files["0001_a b.up.sql"] = "select 1;" // a title only golang-migrate takes
		return files
	}
	runProblemCases(t, []problemCase{
		{"down without up", "", gm(map[string]string{"0002_x.down.sql": "select 1;"}),
			[]wantProblem{{"0002_x.down.sql", 0, "has no matching 0002_x.up.sql"}}},
		{"two downs", FormatGolangMigrate, map[string]string{"0001_a.up.sql": "select 1;", "0001_a.down.sql": "select 1;", "1_b.down.sql": "select 1;"},
			[]wantProblem{{"1_b.down.sql", 0, "0001_a.down.sql is also the down file of version 1; keep one"}}},
		{"version beyond uint64", "", gm(map[string]string{"99999999999999999999_x.up.sql": "select 1;"}),
			[]wantProblem{{"99999999999999999999_x.up.sql", 0, "version 99999999999999999999 is beyond golang-migrate's versions (at most 18446744073709551615)"}}},
		{"version longer than a request's", "", gm(map[string]string{"0000000000000000000000000000000000000000000000000000000000000000002_x.up.sql": "select 1;"}),
			[]wantProblem{{"0000000000000000000000000000000000000000000000000000000000000000002_x.up.sql", 0, "is 67 characters long; a request allows at most 64"}}},
		{"not a migration's name", "", gm(map[string]string{"init.sql": "select 1;", "0002_x.UP.SQL": "select 1;"}),
			[]wantProblem{
				{"init.sql", 0, "not a golang-migrate migration file name; expected <version>_<title>.up.sql or <version>_<title>.down.sql"},
				{"0002_x.UP.SQL", 0, "(the suffix must be lower case)"},
			}},
		{"title with a control character", "", gm(map[string]string{"0002_a\tb.up.sql": "select 1;"}),
			[]wantProblem{{"0002_a\tb.up.sql", 0, "the migration's name \"a\\tb\" holds a control character or '/'"}}},
		{"empty title", "", gm(map[string]string{"0002_.up.sql": "select 1;"}),
			[]wantProblem{{"0002_.up.sql", 0, "the migration's name is empty"}}},
		{"title too long", "", gm(map[string]string{"0002_" + strings.Repeat("x", 201) + ".up.sql": "select 1;"}),
			[]wantProblem{{"0002_" + strings.Repeat("x", 201) + ".up.sql", 0, "the migration's name is 201 characters long"}}},
		{"one version twice", "", gm(map[string]string{"1_b.up.sql": "select 2;"}),
			[]wantProblem{{"1_b.up.sql", 0, "version 1 is used by 0001_a b.up.sql and 1_b.up.sql (0001 and 1 are one version: versions compare as numbers)"}}},
		{"empty up", "", gm(map[string]string{"0002_x.up.sql": "-- later\n"}),
			[]wantProblem{{"0002_x.up.sql", 0, "is empty"}}},
		{"not UTF-8, NUL", "", gm(map[string]string{"0002_x.up.sql": "select 1;\n'\xff'", "0002_x.down.sql": "\n\n\x00"}),
			[]wantProblem{{"0002_x.up.sql", 2, "not valid UTF-8"}, {"0002_x.down.sql", 3, "NUL byte"}}},
		{"YAML that is no hooks file", "", gm(map[string]string{"notes.yaml": "a: b"}),
			[]wantProblem{{"notes.yaml", 0, "not a hooks file name; expected <stem>.hooks.yaml, where <stem>.up.sql is the migration's file, or <version>.hooks.yaml"}}},
		{"hooks of no version", "", gm(map[string]string{"0003.hooks.yaml": ""}),
			[]wantProblem{{"0003.hooks.yaml", 0, "is the hooks file of version 0003, but no migration has that version"}}},
		{"hooks of no file", "", gm(map[string]string{"0001_ab.hooks.yaml": ""}),
			[]wantProblem{{"0001_ab.hooks.yaml", 0, "has no matching 0001_ab.up.sql (0001_a b.up.sql has the same version: is the name misspelt?)"}}},
		{"hooks by name and by version", "", gm(map[string]string{"0001_a b.hooks.yaml": "", "1.hooks.yml": ""}),
			[]wantProblem{{"1.hooks.yml", 0, "0001_a b.hooks.yaml also declares the hooks of 0001_a b.up.sql; keep one hooks file per migration"}}},
		{"hooks file with a problem", "", gm(map[string]string{"0001.hooks.yaml": "after_ddl:\n  - hook: sql\n    priority: x\n"}),
			[]wantProblem{{"0001.hooks.yaml", 3, "priority must be an integer"}}},
	})
}
