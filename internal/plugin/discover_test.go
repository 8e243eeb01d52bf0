package plugin

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/hooks"
)

func names(defs []hooks.Definition) []string {
	out := make([]string, 0, len(defs))
	for _, d := range defs {
		out = append(out, d.Name)
	}
	return out
}

func TestDiscoverFromTwoDirectories(t *testing.T) {
	t.Parallel()
	a, b := t.TempDir(), t.TempDir()
	writeScript(t, a, "tool.sh", okResult)
	writeScript(t, b, "other.sh", okResult)
	// Files sorted by name within a directory: a.hook.json before b.hook.yaml.
	writeFile(t, a, "b.hook.yaml", `
name: beta
version: "2.1"
description: the second one
phases: [after_ddl, on_error]
command: tool.sh
args: [--fast, "two words"]
timeout: 90s
transactional: true
env: [HOME_REGION]
params_schema:
  type: object
  additionalProperties: false
  properties:
    table: {type: string}
example: {table: users}
`, 0o644)
	writeFile(t, a, "a.hook.json", `{"name": "alpha", "command": "./tool.sh"}`, 0o644)
	writeFile(t, a, "README.md", "not a manifest", 0o644)
	writeFile(t, a, "c.hook.yaml.orig", "not: [a manifest", 0o644)
	require.NoError(t, os.Mkdir(filepath.Join(a, "sub"), 0o755))
	writeFile(t, filepath.Join(a, "sub"), "nested.hook.yaml", "name: nested\ncommand: ../tool.sh\n", 0o644)
	writeFile(t, b, "gamma.hook.yaml", "name: gamma\ncommand: "+filepath.Join(b, "other.sh")+"\n", 0o644)

	missing := filepath.Join(t.TempDir(), "does-not-exist")
	defs, failures := Discover([]string{a, "", missing, b, a}, nil)
	require.Empty(t, failures)
	require.Equal(t, []string{"alpha", "beta", "gamma"}, names(defs))
	require.Equal(t, filepath.Join(a, "a.hook.json"), defs[0].Source)
	require.Equal(t, filepath.Join(a, "b.hook.yaml"), defs[1].Source)
	require.Equal(t, filepath.Join(b, "gamma.hook.yaml"), defs[2].Source)

	beta := defs[1]
	require.Equal(t, "2.1", beta.Version)
	require.Equal(t, "the second one", beta.Description)
	require.Equal(t, []string{"after_ddl", "on_error"}, beta.Phases)
	require.True(t, beta.Transactional)
	require.JSONEq(t, `{"type":"object","additionalProperties":false,"properties":{"table":{"type":"string"}}}`, string(beta.ParamsSchema))
	require.Equal(t, map[string]any{"table": "users"}, beta.Example)
	require.NotNil(t, beta.New)
	h, err := beta.New(map[string]any{"table": "users"})
	require.NoError(t, err)
	bp := h.(*hook).plugin
	require.Equal(t, filepath.Join(a, "tool.sh"), bp.command)
	require.Equal(t, []string{"--fast", "two words"}, bp.manifest.Args)
	require.Equal(t, 90*time.Second, bp.timeout)

	alpha := defs[0]
	require.Empty(t, alpha.Phases)
	require.False(t, alpha.Transactional)
	require.Empty(t, alpha.ParamsSchema)
	ap, err := load(alpha.Source)
	require.NoError(t, err)
	require.Equal(t, DefaultTimeout, ap.timeout)

	// The definitions register as they are.
	reg := hooks.NewRegistry()
	require.NoError(t, hooks.RegisterBuiltins(reg))
	for _, d := range defs {
		require.NoError(t, reg.Register(d))
	}
}

func TestDiscoverLoadFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeScript(t, dir, "ok.sh", okResult)
	writeFile(t, dir, "not-exec.sh", "#!/bin/sh\n"+okResult, 0o644)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "adir"), 0o755))

	cases := []struct {
		file, content string
		name          string // in the failure, when known
		reason        string // a substring of the failure's reason
	}{
		{"bad-yaml.hook.yaml", "name: x\ncommand: [unclosed\n", "", "malformed YAML"},
		{"bad-json.hook.json", `{"name": "x", "command": }`, "", "malformed JSON"},
		{"two-json.hook.json", `{"name": "x", "command": "ok.sh"} {}`, "", "more than one value"},
		{"empty.hook.yaml", "\n# nothing\n", "", "manifest is empty"},
		{"list.hook.yaml", "- name: x\n", "", "mapping of keys to values"},
		{"unknown-key.hook.yaml", "name: typo\ncommand: ok.sh\ncomand: ok.sh\n", "typo", `unknown key "comand"`},
		{"bad-type.hook.yaml", "name: numver\ncommand: ok.sh\nversion: 1.0\n", "numver", "version must be a string (quote numbers in YAML)"},
		{"bad-name.hook.yaml", "name: Bad_Name\ncommand: ok.sh\n", "Bad_Name", "not a valid hook name"},
		{"no-name.hook.yaml", "command: ok.sh\n", "", "name is missing"},
		{"no-command.hook.yaml", "name: nocommand\n", "nocommand", "command is missing"},
		{"missing-command.hook.yaml", "name: missing\ncommand: ./nope.sh\n", "missing", "nope.sh does not exist"},
		{"not-exec.hook.yaml", "name: notexec\ncommand: not-exec.sh\n", "notexec", "is not executable"},
		{"dir-command.hook.yaml", "name: dircommand\ncommand: adir\n", "dircommand", "is a directory"},
		{"bad-timeout.hook.yaml", "name: badtimeout\ncommand: ok.sh\ntimeout: soon\n", "badtimeout", `timeout "soon" is not a duration`},
		{"zero-timeout.hook.yaml", "name: zerotimeout\ncommand: ok.sh\ntimeout: 0s\n", "zerotimeout", "must be positive"},
		{"long-timeout.hook.yaml", "name: longtimeout\ncommand: ok.sh\ntimeout: 25h\n", "longtimeout", "longer than the maximum of 24h"},
		{"ddl-phase.hook.yaml", "name: ddlphase\ncommand: ok.sh\nphases: [ddl]\n", "ddlphase", `"ddl" is not a hook phase`},
		{"bad-phase.hook.yaml", "name: badphase\ncommand: ok.sh\nphases: [after_dll]\n", "badphase", `"after_dll" is not a hook phase`},
		{"bad-env.hook.yaml", "name: badenv\ncommand: ok.sh\nenv: [\"A=B\"]\n", "badenv", "not an environment variable name"},
		{"bad-schema.hook.yaml", "name: badschema\ncommand: ok.sh\nparams_schema: {type: 12}\n", "badschema", "params_schema does not compile"},
		{"remote-schema.hook.yaml", "name: remoteschema\ncommand: ok.sh\nparams_schema: {$ref: \"file:///etc/passwd\"}\n", "remoteschema", "params_schema does not compile"},
		{"bool-schema.hook.json", `{"name": "boolschema", "command": "ok.sh", "params_schema": true}`, "boolschema", "params_schema does not compile: it must be a JSON Schema object"},
		{"bad-example.hook.yaml", "name: badexample\ncommand: ok.sh\nparams_schema: {type: object, properties: {n: {type: integer}}}\nexample: {n: many}\n", "badexample", "example does not satisfy params_schema"},
		{"good.hook.yaml", "name: good\ncommand: ok.sh\n", "", ""},
		{"good2.hook.json", `{"name": "good2", "command": "ok.sh", "phases": ["before_ddl"]}`, "", ""},
	}
	for _, c := range cases {
		writeFile(t, dir, c.file, c.content, 0o644)
	}

	defs, failures := Discover([]string{dir}, nil)
	require.Equal(t, []string{"good", "good2"}, names(defs))
	bySource := map[string]hooks.LoadFailure{}
	for _, f := range failures {
		bySource[f.Source] = f
	}
	require.Len(t, bySource, len(failures), "one failure per manifest")
	for _, c := range cases {
		path := filepath.Join(dir, c.file)
		f, failed := bySource[path]
		if c.reason == "" {
			require.False(t, failed, "%s should load: %+v", c.file, f)
			continue
		}
		require.True(t, failed, "%s should fail to load", c.file)
		require.Equal(t, c.name, f.Name, c.file)
		require.Contains(t, f.Reason, c.reason, c.file)
		require.NotContains(t, f.Reason, "\n", c.file)
		require.Less(t, len(f.Reason), 700, c.file)
	}
	require.Len(t, failures, len(cases)-2)
}

func TestDiscoverDuplicateNamesAcrossDirectories(t *testing.T) {
	t.Parallel()
	a, b := t.TempDir(), t.TempDir()
	writeScript(t, a, "a.sh", okResult)
	writeScript(t, b, "b.sh", okResult)
	writeFile(t, a, "dup.hook.yaml", "name: dup\ncommand: a.sh\n", 0o644)
	writeFile(t, b, "another.hook.json", `{"name": "dup", "command": "b.sh"}`, 0o644)
	writeFile(t, b, "same-dir.hook.yaml", "name: only\ncommand: b.sh\n", 0o644)
	writeFile(t, b, "same-dir2.hook.yaml", "name: only\ncommand: b.sh\n", 0o644)

	defs, failures := Discover([]string{a, b}, nil)
	require.Equal(t, []string{"dup", "only"}, names(defs))
	require.Equal(t, filepath.Join(a, "dup.hook.yaml"), defs[0].Source)
	require.Equal(t, filepath.Join(b, "same-dir.hook.yaml"), defs[1].Source)
	require.Equal(t, []hooks.LoadFailure{
		{Name: "dup", Source: filepath.Join(b, "another.hook.json"), Reason: `hook "dup" is already defined by ` + filepath.Join(a, "dup.hook.yaml")},
		{Name: "only", Source: filepath.Join(b, "same-dir2.hook.yaml"), Reason: `hook "only" is already defined by ` + filepath.Join(b, "same-dir.hook.yaml")},
	}, failures)

	// A clash with a hook of another source is the registry's to report.
	reg := hooks.NewRegistry()
	require.NoError(t, hooks.RegisterBuiltins(reg))
	writeFile(t, b, "sql.hook.yaml", "name: sql\ncommand: b.sh\n", 0o644)
	defs, _ = Discover([]string{b}, nil)
	var clash error
	for _, d := range defs {
		if err := reg.Register(d); err != nil {
			clash = err
		}
	}
	require.ErrorIs(t, clash, hooks.ErrDuplicateHook)
	require.ErrorContains(t, clash, filepath.Join(b, "sql.hook.yaml"))
}

func TestDiscoverUnreadableDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := writeFile(t, dir, "plugins", "a file, not a directory", 0o644)
	writeScript(t, dir, "ok.sh", okResult)
	writeFile(t, dir, "ok.hook.yaml", "name: ok\ncommand: ok.sh\n", 0o644)
	defs, failures := Discover([]string{file, dir}, nil)
	require.Equal(t, []string{"ok"}, names(defs))
	require.Len(t, failures, 1)
	require.Equal(t, file, failures[0].Source)
	require.Contains(t, failures[0].Reason, "cannot read plugin directory")
}

func TestDiscoverWarnsAboutDeniedEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeScript(t, dir, "ok.sh", okResult)
	writeFile(t, dir, "greedy.hook.yaml", "name: greedy\ncommand: ok.sh\nenv: [DATABASE_URL, CONFITURE_NATS_URL, SLACK_TOKEN]\n", 0o644)
	logger, buf := newLogger()
	defs, failures := Discover([]string{dir}, logger)
	require.Empty(t, failures)
	require.Equal(t, []string{"greedy"}, names(defs))
	require.Contains(t, buf.String(), "plugin_env_denied")
	require.Contains(t, buf.String(), "variables=DATABASE_URL,CONFITURE_NATS_URL")
	p, err := load(defs[0].Source)
	require.NoError(t, err)
	require.Equal(t, []string{"SLACK_TOKEN"}, p.env)
}

func TestLoadReturnsManifestError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeFile(t, dir, "x.hook.yaml", "name: x\ncommand: ./missing\n", 0o644)
	_, err := Load(path)
	var me *ManifestError
	require.ErrorAs(t, err, &me)
	require.Equal(t, hooks.LoadFailure{Name: "x", Source: path, Reason: me.Reason}, me.LoadFailure())
	require.Contains(t, err.Error(), path)

	writeScript(t, dir, "missing", okResult)
	def, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, "x", def.Name)
	require.Equal(t, path, def.Source)
	var raw json.RawMessage
	require.Equal(t, raw, def.ParamsSchema)
}
