package worker

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// writePlugin writes a manifest and its script into dir.
func writePlugin(t *testing.T, dir, name, manifest, script string) {
	t.Helper()
	// No fork may inherit the script's write descriptor, or exec fails with "text file busy"
	// (golang.org/issue/22315).
	syscall.ForkLock.Lock()
	err := os.WriteFile(filepath.Join(dir, name+".sh"), []byte(script), 0o755)
	syscall.ForkLock.Unlock()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".hook.yaml"), []byte(manifest), 0o644))
}

// TestPluginsLoadFailAndRunThroughThePipeline: a broken manifest is skipped (the worker starts,
// and a request that uses it is rejected naming it); a plugin that fails triggers on_error; a
// plugin that succeeds completes its phase.
func TestPluginsLoadFailAndRunThroughThePipeline(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePlugin(t, dir, "stamp", "name: stamp\nversion: 1.2.0\ncommand: ./stamp.sh\ntimeout: 10s\n"+
		"params_schema:\n  type: object\n  additionalProperties: false\n  properties:\n    label: {type: string}\n",
		"#!/bin/sh\ncat >/dev/null\necho '{\"schema\":\"confiture.plugin-result/v1\",\"success\":true,\"rows_affected\":3,\"message\":\"stamped\"}'\n")
	writePlugin(t, dir, "explode", "name: explode\ncommand: ./explode.sh\ntimeout: 10s\n",
		"#!/bin/sh\ncat >/dev/null\necho 'kaboom on stderr' >&2\nexit 7\n")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken.hook.yaml"), []byte("name: broken\ncommand: [unterminated\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "missing.hook.yaml"), []byte("name: missing\ncommand: ./nowhere.sh\n"), 0o644))
	// A plugin may not take a built-in hook's name: it is skipped, the built-in stays.
	writePlugin(t, dir, "sql", "name: sql\ncommand: ./sql.sh\n", "#!/bin/sh\nexit 1\n")

	b := setup(t, func(c *Config) { c.PluginPaths = []string{dir}; c.MaxAttempts = 1 })
	_, err := b.db.Exec(t.Context(), auditTable)
	require.NoError(t, err)

	evs := b.run(t, request("up", mig("001", "stamped", "SELECT 1;", "", hook("after_ddl", "stamp_it", "stamp", nil))))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
	done := ofKind(evs, contract.KindHookCompleted)
	require.Len(t, done, 1)
	require.EqualValues(t, 3, done[0].RowsAffected)

	failures := b.w.Registry().Failures()
	require.Len(t, failures, 3, "broken, missing and sql: %v", failures)
	def, ok := b.w.Registry().Lookup("sql")
	require.True(t, ok)
	require.Equal(t, "built-in", def.Source)

	// The plugin's parameter schema is checked at intake.
	evs = b.run(t, request("up", mig("002", "bad_param", "SELECT 1;", "", hook("after_ddl", "s", "stamp", map[string]any{"lable": "x"}))))
	require.Equal(t, contract.KindRunRejected, last(evs).Kind)
	require.Contains(t, last(evs).Error.Message, "lable")

	evs = b.run(t, request("up", mig("002", "uses_missing", "SELECT 1;", "", hook("after_ddl", "m", "missing", nil))))
	require.Equal(t, contract.KindRunRejected, last(evs).Kind)
	require.Equal(t, contract.CodeUnknownHook, last(evs).Error.Code)
	require.Contains(t, last(evs).Error.Message, "missing.hook.yaml", "the reason names the manifest")

	evs = b.run(t, request("up", mig("002", "explodes", "SELECT 1;", "",
		hook("after_ddl", "boom", "explode", nil), audit("on_error", "cleanup_after_boom"))))
	final := last(evs)
	require.Equal(t, contract.KindRunFailed, final.Kind, "events: %v", kinds(evs))
	require.Equal(t, "boom", final.Hook)
	require.Contains(t, final.Error.Message, "7", "the exit code")
	require.Equal(t, []string{"cleanup_after_boom"}, b.queryStrings(t, `SELECT what FROM audit`))
}
