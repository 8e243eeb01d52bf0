package plugin

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Manifests built to cost exponential or quadratic work ("billion laughs" through aliases, in
// a flow or block collection; absurd flow nesting) are refused at once, with little memory,
// before anything reaches the registry.
func TestManifestBombsAreRefusedQuickly(t *testing.T) {
	laughs := func(flow bool) string {
		var b strings.Builder
		b.WriteString("name: bomb\ncommand: ./run.sh\nexample:\n")
		for i := range 9 {
			ref := "x"
			if i > 0 {
				ref = "*l" + string(rune('0'+i-1))
			}
			items := strings.TrimSuffix(strings.Repeat(ref+", ", 10), ", ")
			if flow {
				b.WriteString("  l" + string(rune('0'+i)) + ": &l" + string(rune('0'+i)) + " [" + items + "]\n")
			} else {
				b.WriteString("  l" + string(rune('0'+i)) + ": &l" + string(rune('0'+i)) + "\n" + strings.Repeat("    - "+ref+"\n", 10))
			}
		}
		return b.String()
	}
	for _, tc := range []struct{ name, yaml, msg string }{
		{"billion laughs, flow", laughs(true), "YAML aliases (*name) are not allowed in a manifest"},
		{"billion laughs, block", laughs(false), "YAML aliases (*name) are not allowed in a manifest"},
		{"merge keys", "name: bomb\ncommand: ./run.sh\nexample:\n  a: &a {x: 1}\n  b: {<<: *a}\n", "YAML aliases"},
		{"absurd nesting", "name: bomb\ncommand: ./run.sh\nexample: " + strings.Repeat("[", maxManifest-64) + "\n", "manifest nests more than 1000 levels deep"},
		{"deep nesting", "name: bomb\ncommand: ./run.sh\nexample: {a: " + strings.Repeat("[", 999) + strings.Repeat("]", 999) + "}\n", ""},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		m, _, err := parseManifest("/plugins/bomb.hook.yaml", []byte(tc.yaml))
		elapsed := time.Since(start)
		runtime.ReadMemStats(&after)
		if tc.msg != "" {
			require.ErrorContains(t, err, tc.msg, tc.name)
			require.Nil(t, m)
		}
		allocated := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d bytes refused in %s, %d bytes allocated (%v)", tc.name, len(tc.yaml), elapsed, allocated, err)
		require.Less(t, elapsed, 5*time.Second, tc.name)
		require.Less(t, allocated, uint64(128<<20), tc.name)
	}
}

// FuzzParseManifest: no manifest, YAML or JSON, panics the worker at start-up or costs it more
// than its size warrants; a manifest that parses re-encodes to at most 8 times its size, and
// checking it (command, timeout, params schema, example) never panics either. The seeds in
// testdata/fuzz/FuzzParseManifest include examples/plugins/notify.hook.yaml.
func FuzzParseManifest(f *testing.F) {
	dir := f.TempDir()
	require.NoError(f, os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\n"+okResult+"\n"), 0o755))
	for _, seed := range []struct {
		data string
		json bool
	}{
		{"name: x\ncommand: ./run.sh\n", false},
		{`{"name":"x","command":"./run.sh","params_schema":{"type":"object"},"example":{}}`, true},
		{"name: x\ncommand: ./run.sh\nparams_schema: {type: object, properties: {a: {type: string}}}\nexample: {a: b}\ntimeout: 90s\nphases: [after_ddl]\nenv: [HOME]\n", false},
		{"a: &a [x]\nb: *a\n", false},
		{"", false},
		{"null", true},
		{"[1, 2]", false},
	} {
		f.Add([]byte(seed.data), seed.json)
	}
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		path := filepath.Join(dir, "fuzz"+YAMLSuffix)
		if isJSON {
			path = filepath.Join(dir, "fuzz"+JSONSuffix)
		}
		m, name, err := parseManifest(path, data)
		if err != nil {
			require.Nil(t, m)
			require.NotEmpty(t, err.Error())
			_ = name
			return
		}
		require.NotNil(t, m)
		encoded, err := json.Marshal(m)
		require.NoError(t, err)
		require.LessOrEqual(t, len(encoded), 8*len(data)+256, "decoded manifest of %d bytes", len(data))
		p, err := check(path, m)
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		def := p.definition()
		require.Equal(t, m.Name, def.Name)
		require.NotNil(t, def.New)
		_, _ = def.New(m.Example)
	})
}
