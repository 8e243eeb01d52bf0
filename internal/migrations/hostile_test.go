package migrations

import (
	"bytes"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/stretchr/testify/require"
)

// textBomb is a few nodes, but half a gigabyte of text once its aliases are expanded: a
// 500 KB string, referred to a thousand times.
var textBomb = "after_ddl:\n  - hook: sql\n    params:\n      s: &s \"" + strings.Repeat("x", 500_000) + "\"\n" +
	"      l1: &l1 [*s, *s, *s, *s, *s, *s, *s, *s, *s, *s]\n" +
	"      l2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]\n" +
	"      l3: &l3 [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]\n"

// mergeBomb doubles a mapping at each level through merge keys and aliases.
var mergeBomb = func() string {
	var b strings.Builder
	b.WriteString("after_ddl:\n  - hook: sql\n    params:\n      m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}\n")
	for i := 1; i <= 20; i++ {
		prev := "*m" + strconv.Itoa(i-1)
		b.WriteString("      m" + strconv.Itoa(i) + ": &m" + strconv.Itoa(i) + " {x: " + prev + ", y: " + prev + ", <<: [" + prev + "]}\n")
	}
	return b.String()
}()

// YAML alias bombs ("billion laughs"), expanding to billions of nodes or gigabytes of text,
// and absurd nesting are refused at once, with little memory: what aliases expand to counts
// against the file's node and text budgets.
func TestHooksFileBombsAreRefusedQuickly(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, msg string
	}{
		{"billion laughs", aliasBomb, "too many YAML nodes (more than 100000, counting what aliases expand to)"},
		{"text bomb", textBomb, "too much text (more than 1048576 bytes of strings, counting what aliases expand to)"},
		{"merge bomb", mergeBomb, "too many YAML nodes"},
		{"deep nesting", "after_ddl:\n  - hook: sql\n    params: {a: " + strings.Repeat("[", 900) + strings.Repeat("]", 900) + "}\n", "nested more than 64 levels deep"},
		{"absurd nesting", "after_ddl:\n  - hook: sql\n    params: {a: " + strings.Repeat("[", 1<<20-64) + "\n", "nested more than 1000 levels deep ('[' and '{' without their closing bracket)"},
		{"dash nesting", "after_ddl:\n  - hook: sql\n    params:\n      a:\n        " + strings.Repeat("- ", 1<<19-64) + "x\n", "nested more than 256 levels deep (\"- \" repeated on one line)"},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		hooks, problems := parseHooks("001_a.hooks.yaml", []byte(tc.yaml))
		elapsed := time.Since(start)
		runtime.ReadMemStats(&after)
		require.NotEmpty(t, problems, tc.name)
		var msgs []string
		for _, p := range problems {
			msgs = append(msgs, p.Message)
		}
		require.Contains(t, strings.Join(msgs, "\n"), tc.msg, tc.name)
		_ = hooks
		allocated := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d bytes of YAML refused in %s, %d bytes allocated", tc.name, len(tc.yaml), elapsed, allocated)
		require.Less(t, elapsed, 5*time.Second, tc.name)
		require.Less(t, allocated, uint64(256<<20), tc.name)
	}
}

// The library's own decoder (yaml.Unmarshal, yaml.NodeToValue) reads these differently, which is
// why hooksfile.go decodes the node tree itself. When a case fails on the library's side, the
// library has changed: see whether it can now do that part.
func TestHooksFileYAMLUnlikeTheLibrary(t *testing.T) {
	t.Parallel()
	type problem string
	for _, tc := range []struct {
		name, yaml string
		library    any
		ours       any // the decoded value, or the problem reported
	}{
		{"own key over merged", "{a: 1, <<: {a: 2}}", map[string]any{"a": uint64(2)}, map[string]any{"a": int64(1)}},
		{"first merged over later", "{<<: [{a: 1}, {a: 2}]}", map[string]any{"a": uint64(2)}, map[string]any{"a": int64(1)}},
		{"!!str keeps the text", "!!str 0x10", "16", "0x10"},
		{"bad !!int", "!!int ten", 0, problem(`the string "ten" is not a valid !!int`)},
		{"unknown tag", "!env HOME", "HOME", problem(`unsupported YAML tag "!env"`)},
		{"recursive alias", "&r [*r]", []any{nil}, problem("alias *r is inside its own anchor")},
		{".inf", ".inf", math.Inf(1), problem(`".inf" is not a number JSON can carry`)},
	} {
		var lib map[string]any
		require.NoError(t, yaml.Unmarshal([]byte("v: "+tc.yaml+"\n"), &lib), tc.name)
		require.Equal(t, tc.library, lib["v"], tc.name)

		hooks, problems := parseHooks("x.hooks.yaml", []byte("after_ddl:\n  - hook: sql\n    params:\n      v: "+tc.yaml+"\n"))
		if want, isProblem := tc.ours.(problem); isProblem {
			require.Len(t, problems, 1, tc.name)
			require.Contains(t, problems[0].Message, string(want), tc.name)
			require.Equal(t, 4, problems[0].Line, tc.name)
			continue
		}
		require.Empty(t, problems, tc.name)
		require.Equal(t, tc.ours, hooks[0].Params["v"], tc.name)
	}
}

// An alias stands for the last anchor of its name before it, even when the name is used again.
func TestHooksFileAliasesFollowDocumentOrder(t *testing.T) {
	t.Parallel()
	hooks, problems := parseHooks("x.hooks.yaml", []byte("after_ddl:\n  - hook: sql\n    params:\n"+
		"      a: &x 1\n      b: *x\n      c: &x [2]\n      d: [*x, &x 3, *x]\n      e: {? &k k : *k}\n"))
	require.Empty(t, problems)
	require.Equal(t, map[string]any{"a": int64(1), "b": int64(1), "c": []any{int64(2)}, "d": []any{[]any{int64(2)}, int64(3), int64(3)}, "e": map[string]any{"k": "k"}}, hooks[0].Params)
}

// A Flyway script full of placeholders costs a moment and a few problems, not one a
// placeholder counted from the file's start each time.
func TestFlywayPlaceholderFloodIsQuick(t *testing.T) {
	t.Parallel()
	const n = (maxSQLChars - 20) / 3 // a script a request takes
	sql := "select 1;\n" + strings.Repeat("${}", n) + "\n"
	dir := writeDir(t, map[string]string{"V1__flood.sql": sql})
	start := time.Now()
	le := loadErrAs(t, dir, FormatFlyway)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Len(t, le.Problems, maxPlaceholderProblems+1)
	requireProblem(t, le, "V1__flood.sql", 2, "${} is a Flyway placeholder")
	requireProblem(t, le, "V1__flood.sql", 2, "and more Flyway placeholders from here on")
}

// The section parsers take any bytes: their sections are parts of the file, their problems'
// lines lines of it.
func FuzzParseSections(f *testing.F) {
	for _, seed := range []string{
		"-- +goose Up\nselect 1;\n-- +goose Down\nselect 2;\n",
		"-- +goose Up\n-- +goose StatementBegin\nselect 1\n-- +goose StatementEnd\n",
		"-- +goose NO TRANSACTION\n-- +goose Up\r\nselect 1;\r\n",
		"\ufeff-- migrate:up transaction:false\nselect 1;\n-- migrate:down\n",
		"-- migrate:down\n-- migrate:up\n-- migrate:up\n",
		"select 1;\n-- +goose Up\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte{'\n'}) + 1
		for _, parse := range []func([]byte, reportFunc) sections{parseGoose, parseDbmate} {
			problems := 0
			s := parse(data, func(line int, format string, args ...any) {
				problems++
				require.GreaterOrEqual(t, line, 0)
				require.LessOrEqual(t, line, lines)
				require.NotEmpty(t, fmt.Sprintf(format, args...))
			})
			if !s.ok {
				require.NotZero(t, problems, "a parse that fails says why")
				continue
			}
			require.True(t, bytes.Contains(data, s.up), "up is part of the file")
			require.True(t, bytes.Contains(data, s.down), "down is part of the file")
			require.Positive(t, s.upLine)
			require.LessOrEqual(t, s.upLine, lines)
		}
	})
}
