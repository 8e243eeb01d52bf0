package migrations

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

const exampleHooks = `# hooks for 002_add_email
before_validation:
  - name: users_exist
    hook: assert
    params:
      sql: select count(*) >= 0 from users
      message: users table must exist
after_ddl:
  - name: backfill_email
    hook: sql
    priority: 10
    params:
      sql: |
        update users set email = lower(name) || '@example.com' where email is null;
  - name: check_backfill
    hook: assert
    depends_on: [backfill_email]
    params:
      sql: select count(*) = 0 from users where email is null
`

// writeDir writes files (name -> content) into a fresh directory and returns it.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
	return dir
}

// loadErr loads dir, which must fail, and returns the *LoadError.
func loadErr(t *testing.T, dir string) *LoadError {
	t.Helper()
	ms, err := Load(dir)
	require.Error(t, err)
	require.Nil(t, ms)
	var le *LoadError
	require.True(t, errors.As(err, &le), "error is %T, want *LoadError", err)
	require.Equal(t, dir, le.Dir)
	require.NotEmpty(t, le.Problems)
	return le
}

// requireProblem asserts that le holds a problem of file at line whose message contains want,
// and that Error() shows it as "file:line: message".
func requireProblem(t *testing.T, le *LoadError, file string, line int, want string) {
	t.Helper()
	for _, p := range le.Problems {
		if p.File == file && p.Line == line && strings.Contains(p.Message, want) {
			loc := file
			if loc == "" {
				loc = le.Dir
			}
			if line > 0 {
				loc = fmt.Sprintf("%s:%d", loc, line)
			}
			require.Contains(t, le.Error(), loc+": "+p.Message)
			return
		}
	}
	require.Failf(t, "problem not found", "want %s:%d: ...%s...\ngot:\n%s", file, line, want, le.Error())
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestLoad(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"010_add_index.up.sql":      "create index users_email on users (email);\n",
		"010_add_index.hooks.yml":   thirdHooks,
		"002_add_email.up.sql":      "alter table users add column email text;\n",
		"002_add_email.down.sql":    "alter table users drop column email;\n",
		"002_add_email.hooks.yaml":  exampleHooks,
		"001_create_users.up.sql":   "create table users (id bigint primary key, name text not null);\n",
		"001_create_users.down.sql": "drop table users;\n",
		// Ignored: other extensions, dotfiles, subdirectories.
		"README.md":                 "# migrations\n",
		"notes.txt":                 "not sql",
		".003_hidden.up.sql":        "select 1;",
		".editor.yaml":              "- not: hooks",
		"archive/000_old.up.sql":    "select 1;",
		"archive/bad name.sql":      "select 1;",
		"002_add_email.hooks.json":  "{}",
		"001_create_users.up.sql~":  "backup",
		"001_create_users.sql.orig": "backup",
	}
	dir := writeDir(t, files)

	ms, err := Load(dir)
	require.NoError(t, err)
	require.Len(t, ms, 3)

	var versions []string
	for _, m := range ms {
		versions = append(versions, m.Version)
		id := m.ID()
		require.Equal(t, files[id+".up.sql"], m.UpSQL, id)
		require.Equal(t, files[id+".down.sql"], m.DownSQL, id)
		require.Equal(t, sha256Hex(files[id+".up.sql"]), m.Checksum, id)
	}
	require.Equal(t, []string{"001", "002", "010"}, versions)
	require.Equal(t, "create_users", ms[0].Name)
	require.Equal(t, "add_email", ms[1].Name)
	require.Equal(t, "add_index", ms[2].Name)
	require.Nil(t, ms[0].Hooks)

	require.Equal(t, []contract.HookSpec{
		{
			Phase: contract.PhaseBeforeValidation, Name: "users_exist", Hook: "assert",
			Params: map[string]any{"sql": "select count(*) >= 0 from users", "message": "users table must exist"},
		},
		{
			Phase: contract.PhaseAfterDDL, Name: "backfill_email", Hook: "sql", Priority: 10,
			Params: map[string]any{"sql": "update users set email = lower(name) || '@example.com' where email is null;\n"},
		},
		{
			Phase: contract.PhaseAfterDDL, Name: "check_backfill", Hook: "assert",
			DependsOn: []string{"backfill_email"},
			Params:    map[string]any{"sql": "select count(*) = 0 from users where email is null"},
		},
	}, ms[1].Hooks)

	require.Equal(t, []contract.HookSpec{
		{Phase: contract.PhaseCleanup, Name: "analyze", Hook: "analyze", Priority: -5, Params: map[string]any{"table": "users"}},
		{
			Phase: contract.PhaseBeforeDDL, Name: "lock_timeout", Hook: "sql",
			Params: map[string]any{
				"sql":       "set lock_timeout = '5s'",
				"int":       int64(42),
				"negative":  int64(-7),
				"hex":       int64(31),
				"huge":      uint64(18446744073709551615),
				"float":     1.5,
				"bool":      true,
				"null":      nil,
				"list":      []any{int64(1), "two", 3.5, false, nil},
				"nested":    map[string]any{"a": map[string]any{"b": []any{}}},
				"quoted":    "123",
				"as_string": "0x10",
				"as_int":    int64(8),
				"as_float":  2.0,
				"folded":    "one line\n",
				"empty_map": map[string]any{},
				"merged":    map[string]any{"retries": int64(3), "timeout": "1m"},
				"aliased":   map[string]any{"retries": int64(3), "timeout": "30s"},
				"5":         "numeric key",
			},
		},
		{
			Phase: contract.PhaseBeforeDDL, Name: "second", Hook: "sql", DependsOn: []string{"lock_timeout"},
			Params: map[string]any{"sql": "select 1"},
		},
		{Phase: contract.PhaseOnError, Name: "notify", Hook: "notify"},
	}, ms[2].Hooks)

	// Params survive the request's JSON encoding.
	b, err := json.Marshal(ms)
	require.NoError(t, err)
	var back []contract.Migration
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, ms[2].Hooks[1].Params["nested"], back[2].Hooks[1].Params["nested"])
	require.NoError(t, contract.CheckRequest(&contract.Request{Migrations: ms}))
}

// thirdHooks covers the rest of the syntax: phases out of order, default names, depends_on as a
// single string, the parameter types, anchors, aliases, merge keys and standard tags.
const thirdHooks = `cleanup:
  - hook: analyze          # name defaults to the hook type
    priority: -5
    params: {table: users}
before_ddl:
  - name: lock_timeout
    hook: sql
    params:
      sql: set lock_timeout = '5s'
      int: 42
      negative: -7
      hex: 0x1F
      huge: 18446744073709551615
      float: 1.5
      bool: true
      "null": ~
      list: [1, two, 3.5, false, null]
      nested: {a: {b: []}}
      quoted: "123"
      as_string: !!str 0x10
      as_int: !!int "8"
      as_float: !!float 2
      folded: >
        one line
      empty_map: {}
      merged:
        <<: &defaults {retries: 3, timeout: 30s}
        timeout: 1m
      aliased: *defaults
      5: numeric key
  - name: second
    hook: sql
    depends_on: lock_timeout
    params: {sql: select 1}
after_validation:
on_error:
  - hook: notify
`

func TestLoadProblems(t *testing.T) {
	t.Parallel()
	withHooks := func(yaml string) map[string]string {
		return map[string]string{"001_a.up.sql": "select 1;\n", "001_a.hooks.yaml": yaml}
	}
	type want struct {
		file string
		line int
		msg  string
	}
	tests := []struct {
		name  string
		files map[string]string
		want  []want
	}{
		{"no migrations", map[string]string{"README.md": "hi"}, []want{{"", 0, "no migrations"}}},
		{"bad file name", map[string]string{"001_a.up.sql": "select 1;", "001-b.up.sql": "select 1;"},
			[]want{{"001-b.up.sql", 0, "not a migration file name; expected <version>_<name>.up.sql"}}},
		{"bare .sql", map[string]string{"001_a.up.sql": "select 1;", "002_b.sql": "select 1;"},
			[]want{{"002_b.sql", 0, "rename it to 002_b.up.sql"}}},
		{"upper-case suffix", map[string]string{"001_a.up.sql": "select 1;", "002_b.UP.SQL": "select 1;"},
			[]want{{"002_b.UP.SQL", 0, "lower case"}}},
		{"name too odd", map[string]string{"001_a.up.sql": "select 1;", "002_-b.hooks.yml": ""},
			[]want{{"002_-b.hooks.yml", 0, "not a migration file name"}}},
		{"duplicate version", map[string]string{"001_a.up.sql": "select 1;", "001_b.up.sql": "select 2;"},
			[]want{{"001_b.up.sql", 0, "version 001 is used by 001_a.up.sql and 001_b.up.sql"}}},
		{"orphan down", map[string]string{"001_a.up.sql": "select 1;", "002_b.down.sql": "select 1;"},
			[]want{{"002_b.down.sql", 0, "has no matching 002_b.up.sql"}}},
		{"orphan hooks with a misspelt name", map[string]string{"001_a.up.sql": "select 1;", "001_aa.hooks.yaml": ""},
			[]want{{"001_aa.hooks.yaml", 0, "has no matching 001_aa.up.sql (001_a.up.sql has the same version"}}},
		{"two hooks files", map[string]string{"001_a.up.sql": "select 1;", "001_a.hooks.yaml": "", "001_a.hooks.yml": ""},
			[]want{{"001_a.hooks.yml", 0, "001_a.hooks.yaml also exists"}}},
		{"empty up", map[string]string{"001_a.up.sql": ""}, []want{{"001_a.up.sql", 0, "is empty"}}},
		{"comment-only up", map[string]string{"001_a.up.sql": "\ufeff  -- nothing yet\n/* still /* nothing */ here */\n ;\n\t-- end"},
			[]want{{"001_a.up.sql", 0, "is empty"}}},
		{"invalid UTF-8", map[string]string{"001_a.up.sql": "select 1;\nselect '\xff';\n"},
			[]want{{"001_a.up.sql", 2, "not valid UTF-8"}}},
		{"NUL byte", map[string]string{"001_a.up.sql": "select 1;\n\n\x00"},
			[]want{{"001_a.up.sql", 3, "NUL byte"}}},
		{"invalid YAML", withHooks("after_ddl:\n  - hook: sql\n    params: [\n"),
			[]want{{"001_a.hooks.yaml", 3, "invalid YAML: sequence end token ']' not found"}}},
		{"duplicate YAML key", withHooks("after_ddl: []\nafter_ddl: []\n"),
			[]want{{"001_a.hooks.yaml", 2, "invalid YAML: mapping key \"after_ddl\" already defined"}}},
		{"hooks file not UTF-8", withHooks("after_ddl:\n  - hook: \xfe\n"),
			[]want{{"001_a.hooks.yaml", 2, "not valid UTF-8"}}},
		{"two YAML documents", withHooks("after_ddl: []\n---\ncleanup: []\n"),
			[]want{{"001_a.hooks.yaml", 3, "one YAML document"}}},
		{"top level is a list", withHooks("# hooks\n- hook: sql\n"),
			[]want{{"001_a.hooks.yaml", 2, "the top level must be a mapping of phase -> list of hooks"}}},
		{"top level is a string", withHooks("sql\n"),
			[]want{{"001_a.hooks.yaml", 1, "found a string"}}},
		{"phase is not a list", withHooks("after_ddl:\n  hook: sql\n"),
			[]want{{"001_a.hooks.yaml", 2, "after_ddl must be a list of hooks (start each hook with \"- \"), found a mapping"}}},
		{"unknown phase", withHooks("before_validation: []\nafter_dll:\n  - hook: sql\n"),
			[]want{{"001_a.hooks.yaml", 2, "unknown phase \"after_dll\"; valid phases: before_validation, before_ddl, after_ddl, after_validation, cleanup, on_error (did you mean after_ddl?)"}}},
		{"ddl phase", withHooks("\n\nddl:\n  - hook: sql\n"),
			[]want{{"001_a.hooks.yaml", 3, "ddl is the migration's own SQL; hooks go in before_ddl/after_ddl"}}},
		{"entry is a string", withHooks("after_ddl:\n  - hook: sql\n  - assert\n"),
			[]want{{"001_a.hooks.yaml", 3, "a hook entry must be a mapping, found the string \"assert\"; to declare a hook of that type write \"- hook: assert\""}}},
		{"entry is a list", withHooks("after_ddl:\n  - [sql]\n"),
			[]want{{"001_a.hooks.yaml", 2, "a hook entry must be a mapping with at least a \"hook\" key, found a list"}}},
		{"missing hook", withHooks("after_ddl:\n  - hook: sql\n  - name: x\n    params: {}\n"),
			[]want{{"001_a.hooks.yaml", 3, "hook entry has no \"hook\" key"}}},
		{"hook not a string", withHooks("after_ddl:\n  - hook: 12\n"),
			[]want{{"001_a.hooks.yaml", 2, "hook must be a string, found the integer 12 (quote it"}}},
		{"hook type malformed", withHooks("after_ddl:\n  - hook: Bad Hook\n"),
			[]want{{"001_a.hooks.yaml", 2, "hook \"Bad Hook\" is not a hook type"}}},
		{"name malformed", withHooks("after_ddl:\n  - hook: sql\n    name: -x\n"),
			[]want{{"001_a.hooks.yaml", 3, "name \"-x\" is not a hook name"}}},
		{"unknown key with hint", withHooks("after_ddl:\n  - name: a\n    hook: sql\n  - name: b\n    hook: sql\n    depend_on: [a]\n"),
			[]want{{"001_a.hooks.yaml", 6, "unknown key \"depend_on\" in a hook entry; valid keys: name, hook, params, priority, depends_on (did you mean depends_on?)"}}},
		{"unknown key without hint", withHooks("after_ddl:\n  - hook: sql\n    timeout: 5s\n"),
			[]want{{"001_a.hooks.yaml", 3, "unknown key \"timeout\" in a hook entry; valid keys: name, hook, params, priority, depends_on"}}},
		{"params not a mapping", withHooks("after_ddl:\n  - hook: sql\n    params:\n      - select 1\n"),
			[]want{{"001_a.hooks.yaml", 4, "params must be a mapping of parameter names to values, found a list"}}},
		{"params not JSON", withHooks("after_ddl:\n  - hook: sql\n    params:\n      ratio: .inf\n"),
			[]want{{"001_a.hooks.yaml", 4, "\".inf\" is not a number JSON can carry"}}},
		{"params too deep for a request", withHooks("after_ddl:\n  - hook: sql\n    params:\n      a: " + strings.Repeat("[", 32) + strings.Repeat("]", 32) + "\n"),
			[]want{{"001_a.hooks.yaml", 4, "params nest more than 32 levels deep, the most a request allows"}}},
		{"params with a custom tag", withHooks("after_ddl:\n  - hook: sql\n    params:\n      url: !env DATABASE_URL\n"),
			[]want{{"001_a.hooks.yaml", 4, "unsupported YAML tag \"!env\""}}},
		{"params with a bad !!int", withHooks("after_ddl:\n  - hook: sql\n    params:\n      n: !!int ten\n"),
			[]want{{"001_a.hooks.yaml", 4, "the string \"ten\" is not a valid !!int"}}},
		{"unknown alias", withHooks("after_ddl:\n  - hook: sql\n    params: *nothing\n"),
			[]want{{"001_a.hooks.yaml", 3, "alias *nothing refers to no anchor &nothing defined before it"}}},
		{"recursive alias", withHooks("after_ddl:\n  - hook: sql\n    params: &p\n      self: *p\n"),
			[]want{{"001_a.hooks.yaml", 4, "alias *p is inside its own anchor"}}},
		{"priority not an integer", withHooks("after_ddl:\n  - hook: sql\n    priority: high\n"),
			[]want{{"001_a.hooks.yaml", 3, "priority must be an integer, found the string \"high\""}}},
		{"priority a float", withHooks("after_ddl:\n  - hook: sql\n    priority: 1.5\n"),
			[]want{{"001_a.hooks.yaml", 3, "priority must be an integer, found the number 1.5"}}},
		{"priority out of range", withHooks("after_ddl:\n  - hook: sql\n    priority: 1000001\n"),
			[]want{{"001_a.hooks.yaml", 3, "priority 1000001 is out of range"}}},
		{"priority beyond 64 bits", withHooks("after_ddl:\n  - hook: sql\n    priority: -99999999999999999999\n"),
			[]want{{"001_a.hooks.yaml", 3, "priority -99999999999999999999 is out of range"}}},
		{"name null", withHooks("after_ddl:\n  - hook: sql\n    name:\n"),
			[]want{{"001_a.hooks.yaml", 3, "name must be a string, found null"}}},
		{"depends_on a mapping", withHooks("after_ddl:\n  - hook: sql\n    depends_on: {a: 1}\n"),
			[]want{{"001_a.hooks.yaml", 3, "depends_on must be a list of hook names, found a mapping"}}},
		{"depends_on not strings", withHooks("after_ddl:\n  - name: a\n    hook: sql\n  - hook: sql\n    depends_on:\n      - a\n      - [b]\n"),
			[]want{{"001_a.hooks.yaml", 7, "depends_on entry must be a string, found a list"}}},
		{"depends_on twice", withHooks("after_ddl:\n  - name: a\n    hook: sql\n  - hook: sql\n    depends_on: [a,\n      a]\n"),
			[]want{{"001_a.hooks.yaml", 6, "depends_on lists \"a\" twice"}}},
		{"duplicate names", withHooks("after_ddl:\n  - name: x\n    hook: sql\n  - hook: assert\n    name: x\n"),
			[]want{{"001_a.hooks.yaml", 5, "duplicate hook name \"x\" in after_ddl (first declared at line 2)"}}},
		{"duplicate default names", withHooks("after_ddl:\n  - hook: sql\n  - hook: sql\n"),
			[]want{{"001_a.hooks.yaml", 3, "duplicate hook name \"sql\" in after_ddl (first declared at line 2); a hook's name defaults to its hook type, so set \"name\" to tell them apart"}}},
		{"depends_on unknown", withHooks("after_ddl:\n  - name: backfill\n    hook: sql\n  - hook: assert\n    depends_on: [backfil]\n"),
			[]want{{"001_a.hooks.yaml", 5, "hook \"assert\" depends on \"backfil\", which is not a hook of after_ddl in this migration (did you mean backfill?)"}}},
		{"depends_on another phase", withHooks("before_ddl:\n  - name: prep\n    hook: sql\nafter_ddl:\n  - hook: assert\n    depends_on: prep\n"),
			[]want{{"001_a.hooks.yaml", 6, "which is not a hook of after_ddl in this migration (it is declared in before_ddl; depends_on only links hooks of the same phase)"}}},
		{"depends_on itself", withHooks("after_ddl:\n  - hook: sql\n    depends_on: [sql]\n"),
			[]want{{"001_a.hooks.yaml", 3, "hook \"sql\" depends on itself"}}},
		{"depends_on cycle", withHooks("after_ddl:\n  - name: a\n    hook: sql\n    depends_on: [b]\n  - name: b\n    hook: sql\n    depends_on: [a]\n"),
			[]want{{"001_a.hooks.yaml", 7, "depends_on forms a cycle: \"a\" -> \"b\" -> \"a\""}}},
		{"too many hooks", withHooks("after_ddl:\n" + strings.Repeat("  - hook: sql\n", 201)),
			[]want{{"001_a.hooks.yaml", 202, "more than 200 hooks in one migration"}}},
		{"alias bomb", withHooks(aliasBomb),
			[]want{{"001_a.hooks.yaml", 12, "too many YAML nodes"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			le := loadErr(t, writeDir(t, tc.files))
			for _, w := range tc.want {
				requireProblem(t, le, w.file, w.line, w.msg)
			}
		})
	}
}

// aliasBomb expands to 10^9 nodes if nothing stops it.
const aliasBomb = `a0: &a0 [x, x, x, x, x, x, x, x, x, x]
a1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]
a2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]
a3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]
a4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]
a5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]
a6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]
a7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]
a8: &a8 [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]
after_ddl:
  - hook: sql
    params: {bomb: *a8}
`

func TestLoadDirectoryProblems(t *testing.T) {
	t.Parallel()
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "nope")
		le := loadErr(t, dir)
		requireProblem(t, le, "", 0, "no such directory")
		require.Equal(t, dir+": no such directory", le.Error())
	})
	t.Run("not a directory", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(writeDir(t, map[string]string{"f": "x"}), "f")
		requireProblem(t, loadErr(t, dir), "", 0, "not a directory")
	})
	t.Run("unreadable file", func(t *testing.T) {
		t.Parallel()
		dir := writeDir(t, map[string]string{"001_a.up.sql": "select 1;"})
		require.NoError(t, os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "002_b.up.sql")))
		requireProblem(t, loadErr(t, dir), "002_b.up.sql", 0, "cannot read: no such file or directory")
	})
	t.Run("symlinks are followed", func(t *testing.T) {
		t.Parallel()
		dir := writeDir(t, map[string]string{"shared/x.sql": "select 1;", "sub/001_b.up.sql": "select 2;"})
		require.NoError(t, os.Symlink(filepath.Join(dir, "shared", "x.sql"), filepath.Join(dir, "001_a.up.sql")))
		require.NoError(t, os.Symlink(filepath.Join(dir, "sub"), filepath.Join(dir, "002_dir.up.sql")))
		ms, err := Load(dir)
		require.NoError(t, err)
		require.Len(t, ms, 1)
		require.Equal(t, "select 1;", ms[0].UpSQL)
	})
}

// TestLoadEditorQuirks checks that a byte order mark and CRLF line ends, which some editors
// write, are accepted; the SQL keeps its bytes, so the checksum is that of the file.
func TestLoadEditorQuirks(t *testing.T) {
	t.Parallel()
	up := "\ufeffcreate table t (id int);\r\n"
	dir := writeDir(t, map[string]string{
		"001_a.up.sql":     up,
		"001_a.hooks.yaml": "\ufeff" + strings.ReplaceAll(exampleHooks, "\n", "\r\n"),
	})
	ms, err := Load(dir)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	require.Equal(t, up, ms[0].UpSQL)
	require.Equal(t, sha256Hex(up), ms[0].Checksum)
	require.Len(t, ms[0].Hooks, 3)
	require.Equal(t, "update users set email = lower(name) || '@example.com' where email is null;\n", ms[0].Hooks[1].Params["sql"])
}

// TestLoadCollectsAllProblems checks that problems of several files come together, sorted by
// file and line, one a line.
func TestLoadCollectsAllProblems(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{
		"001_a.up.sql":      "-- todo\n",
		"002_b.up.sql":      "select 1;",
		"002_b.hooks.yaml":  "after_ddl:\n  - hook: sql\n    priority: x\n  - name: y\n  - hook: sql\nddl: []\n",
		"003_c.down.sql":    "select 1;",
		"bad.sql":           "select 1;",
		"004_d.up.sql":      "select 4;",
		"004_d.hooks.yml":   "cleanup: [",
		"005_e.up.sql":      "select 5;",
		"005_e.hooks.yaml":  "",
		"006_f.up.sql":      "select 6;",
		"006_f.hooks.yaml":  "# nothing yet\n",
		"007_g.up.sql":      "select 7;",
		"007_g.hooks.yaml":  "cleanup:\n",
		"README.md":         "ignored",
		"sub/whatever.yaml": "ignored",
	})
	le := loadErr(t, dir)
	got := make([]string, 0, len(le.Problems))
	for _, p := range le.Problems {
		got = append(got, fmt.Sprintf("%s:%d", p.File, p.Line))
	}
	require.Equal(t, []string{
		"001_a.up.sql:0",
		"002_b.hooks.yaml:3", // priority
		"002_b.hooks.yaml:4", // no hook key
		"002_b.hooks.yaml:5", // duplicate default name
		"002_b.hooks.yaml:6", // ddl
		"003_c.down.sql:0",
		"004_d.hooks.yml:1",
		"bad.sql:0",
	}, got, le.Error())
	require.Len(t, strings.Split(le.Error(), "\n"), len(le.Problems))
	require.True(t, strings.HasPrefix(le.Error(), "001_a.up.sql: is empty"), le.Error())
}

func FuzzParseHooks(f *testing.F) {
	for _, seed := range []string{
		exampleHooks,
		thirdHooks,
		aliasBomb,
		"",
		"# only a comment\n",
		"after_ddl: [\n",
		"after_ddl:\n  - hook: sql\n   params: x\n",
		"- a\n- b\n",
		"ddl:\n  - hook: sql\n",
		"after_ddl:\n  - hook: sql\n    depends_on: [sql]\n",
		"a: &a [*a]\n",
		"after_ddl:\n  - &h {hook: sql, params: {<<: [*h, {x: 1}]}}\n",
		"after_ddl: !!seq\n  - !!map {hook: !!str 1, name: !!str x, priority: !!int '3'}\n",
		"%TAG !! tag:example.com,2000:\n---\nafter_ddl: [{hook: !!str x}]\n",
		"? [a]\n: b\n",
		"after_ddl:\n  - hook: sql\n    params: {a: .nan, b: -.inf, c: 0o17, d: 1e400}\n",
		"---\n---\n...\n",
		"after_ddl:\n  - hook: sql\n    params: |\n      text\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		hooks, problems := parseHooks("x.hooks.yaml", data)
		for _, p := range problems {
			require.Equal(t, "x.hooks.yaml", p.File)
			require.GreaterOrEqual(t, p.Line, 0)
			require.NotEmpty(t, p.Message)
		}
		if len(problems) > 0 {
			return
		}
		require.LessOrEqual(t, len(hooks), contract.MaxHooksPerMigration)
		encoded, err := json.Marshal(hooks)
		require.NoError(t, err)
		// Whatever aliases expand to, the hooks are bounded: by the text and node budgets
		// (encoding/json writes '<' as \u003c, 6 bytes; a node costs a few more).
		require.LessOrEqual(t, len(encoded), 6*maxYAMLText+32*maxYAMLNodes)
		m := contract.Migration{Version: "1", Name: "x", UpSQL: "select 1", Checksum: contract.Checksum("select 1"), Hooks: hooks}
		require.NoError(t, contract.CheckRequest(&contract.Request{Migrations: []contract.Migration{m}}))
		for _, h := range hooks {
			require.NotEqual(t, contract.PhaseDDL, h.Phase)
			require.True(t, contract.IsPhase(h.Phase), h.Phase)
			require.Regexp(t, hookTypeRE, h.Hook)
			require.Regexp(t, hookNameRE, h.Name)
			require.GreaterOrEqual(t, h.Priority, minPriority)
			require.LessOrEqual(t, h.Priority, maxPriority)
		}
	})
}
