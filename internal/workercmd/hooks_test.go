package workercmd

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/hooks"
)

func runWithHooks(t *testing.T, defs []hooks.Definition, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = MainWithHooks(args, &out, &errb, defs)
	return code, out.String(), errb.String()
}

func noopHook(map[string]any) (hooks.Hook, error) {
	return hooks.HookFunc(func(context.Context, *hooks.Context) (hooks.Result, error) { return hooks.Result{}, nil }), nil
}

// compiledHooks are what a custom worker passes in: one good hook, one that clashes with a
// built-in, and one whose parameter schema does not compile.
var compiledHooks = []hooks.Definition{
	{
		Name: "row_count_at_least", Description: "fail unless a table holds at least min rows",
		Source: "example.com/custom-worker/rowcount", Version: "1.0.0", Transactional: true,
		Phases:       []string{"after_ddl", "after_validation"},
		ParamsSchema: json.RawMessage(`{"type": "object", "required": ["table"], "properties": {"table": {"type": "string"}}}`),
		Example:      map[string]any{"table": "products", "min": 100, "note": "one line\nand another"},
		New:          noopHook,
	},
	{Name: "sql", Description: "a second sql", Source: "example.com/dup", Transactional: true, New: noopHook},
	{Name: "broken", Source: "example.com/broken", ParamsSchema: json.RawMessage(`{"type": 12}`), New: noopHook},
}

func TestHooksListShowsCompiledHooksAndLoadFailures(t *testing.T) {
	t.Parallel()
	code, out, errOut := runWithHooks(t, compiledHooks, "hooks", "list")
	require.Equal(t, ExitFailed, code, "a hook that failed to load fails the listing: %s", errOut)
	require.Equal(t, "worker: 2 hooks failed to load\n", errOut)
	table, reasons, ok := strings.Cut(out, "\n\nFailed to load:\n")
	require.True(t, ok, out)
	lines := strings.Split(table, "\n")
	rows := map[string][][]string{}
	for _, l := range joinContinued(lines[1:]) {
		f := strings.Fields(l)
		rows[f[0]] = append(rows[f[0]], f)
	}
	for _, l := range lines {
		require.LessOrEqual(t, utf8.RuneCountInString(l), listWidth, "hooks list fits 100 columns: %q", l)
	}
	require.Equal(t, [][]string{{"row_count_at_least", "…/custom-worker/rowcount", "1.0.0",
		"after_ddl,after_validation", "yes", "ok", "fail", "unless", "a", "table", "holds", "at", "least", "min", "rows"}},
		rows["row_count_at_least"], out)
	// sql: the built-in loaded, the clash is a failed row naming both sources.
	require.Len(t, rows["sql"], 2, out)
	require.Equal(t, hooks.SourceBuiltin, rows["sql"][0][1])
	require.Equal(t, []string{"sql", "example.com/dup", "-", "-", "-", "failed", "(1)"}, rows["sql"][1], out)
	require.Equal(t, []string{"broken", "example.com/broken", "-", "-", "-", "failed", "(2)"}, rows["broken"][0], out)
	// The reasons follow the table, numbered and wrapped, so no row is widened by one.
	require.Contains(t, reasons, "(1) sql, from example.com/dup:\n")
	require.Contains(t, oneLine(reasons), `"sql" from example.com/dup is already registered by built-in`)
	require.Contains(t, reasons, "(2) broken, from example.com/broken:\n")
	require.Contains(t, reasons, "parameter schema")
	status := strings.Index(lines[0], "STATUS")
	require.LessOrEqual(t, strings.Index(lines[0], "DESCRIPTION")-status, len("failed (2)")+2, "the STATUS column is no wider than its words: %q", lines[0])
	for _, l := range strings.Split(reasons, "\n") {
		require.LessOrEqual(t, len(l), 6+reasonWidth, "a reason wraps: %q", l)
	}

	code, out, errOut = runWithHooks(t, compiledHooks, "hooks", "list", "--json")
	require.Equal(t, ExitFailed, code, errOut)
	var list struct {
		Hooks []struct {
			Name          string   `json:"name"`
			Source        string   `json:"source"`
			Version       string   `json:"version"`
			Phases        []string `json:"phases"`
			Transactional bool     `json:"transactional"`
		} `json:"hooks"`
		LoadErrors []hooks.LoadFailure `json:"load_errors"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	var names []string
	for _, h := range list.Hooks {
		names = append(names, h.Name)
	}
	require.Equal(t, []string{"assert", "backfill", "row_count_at_least", "sql"}, names, "sorted by name")
	require.Equal(t, "1.0.0", list.Hooks[2].Version)
	require.Equal(t, []string{"after_ddl", "after_validation"}, list.Hooks[2].Phases)
	require.True(t, list.Hooks[2].Transactional)
	require.Len(t, list.LoadErrors, 2, out)
	require.Equal(t, "sql", list.LoadErrors[0].Name)
	require.Equal(t, "example.com/dup", list.LoadErrors[0].Source)
	require.Contains(t, list.LoadErrors[0].Reason, "already registered by built-in")
	require.Equal(t, "broken", list.LoadErrors[1].Name)
}

func TestHooksDescribe(t *testing.T) {
	t.Parallel()
	code, out, errOut := runMain(t, "hooks", "describe", "sql")
	require.Equal(t, ExitOK, code, errOut)
	require.Empty(t, errOut)
	for _, s := range []string{
		"Name:          sql\n",
		"Source:        built-in\n",
		"Version:       -\n",
		"Phases:        before_validation, before_ddl, after_ddl, after_validation, cleanup, on_error\n",
		"Transactional: yes",
		"\nParameters:\n  {\n    \"type\": \"object\",\n",
		`"required": [`,
		"\nExample (<version>_<name>.hooks.yaml):\nafter_ddl:\n  - name: sql\n    hook: sql\n    params:\n      sql: ",
	} {
		require.Contains(t, out, s, out)
	}

	// A compiled-in hook restricted to some phases: its snippet uses one of them, and a
	// multi-line example value stays readable.
	code, out, errOut = runWithHooks(t, compiledHooks, "hooks", "describe", "row_count_at_least")
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, "Source:        example.com/custom-worker/rowcount\n")
	require.Contains(t, out, "Version:       1.0.0\n")
	require.Contains(t, out, "after_ddl:\n  - name: row_count_at_least\n    hook: row_count_at_least\n    params:\n      min: 100\n      note: |-\n        one line\n        and another\n      table: products\n")

	// A name that loaded and also failed to load from elsewhere: the loaded one, and a note.
	code, out, errOut = runWithHooks(t, compiledHooks, "hooks", "describe", "sql")
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, "Source:        built-in\n")
	require.Contains(t, out, `another hook named "sql", from example.com/dup, failed to load`)
}

func TestHooksDescribeWithoutSchema(t *testing.T) {
	t.Parallel()
	defs := []hooks.Definition{{Name: "bare", Source: "example.com/bare", New: noopHook}}
	code, out, errOut := runWithHooks(t, defs, "hooks", "describe", "bare")
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, "\nParameters:\n  no parameter schema\n")
	require.Contains(t, out, "Transactional: no (commits its own work: it must be idempotent)\n")
	require.Contains(t, out, "after_ddl:\n  - name: bare\n    hook: bare\n")
	require.NotContains(t, out, "params:")
}

func TestHooksDescribeUnknownAndFailed(t *testing.T) {
	t.Parallel()
	code, out, errOut := runMain(t, "hooks", "describe", "nope")
	require.Equal(t, ExitUsage, code, errOut)
	require.Empty(t, out)
	require.Equal(t, "worker: unknown hook \"nope\"; known hooks: assert, backfill, sql\n", errOut)
	code, _, errOut = runMain(t, "hooks", "describe", "asert")
	require.Equal(t, ExitUsage, code, errOut)
	require.Equal(t, "worker: unknown hook \"asert\"; did you mean \"assert\"? known hooks: assert, backfill, sql\n", errOut)

	code, out, errOut = runWithHooks(t, compiledHooks, "hooks", "describe", "broken")
	require.Equal(t, ExitFailed, code, errOut)
	require.Empty(t, out)
	require.Contains(t, errOut, `hook "broken" failed to load from example.com/broken: `)
	require.Contains(t, errOut, "parameter schema")

	for _, args := range [][]string{{"hooks", "describe"}, {"hooks", "describe", "sql", "assert"}} {
		code, _, errOut = runMain(t, args...)
		require.Equal(t, ExitUsage, code, "%v: %s", args, errOut)
	}
}

// joinContinued joins each line of the hooks table that goes on with a description (it starts
// with a blank) to the row it continues.
func joinContinued(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, " ") && len(out) > 0 {
			out[len(out)-1] += " " + strings.TrimSpace(l)
			continue
		}
		out = append(out, l)
	}
	return out
}
