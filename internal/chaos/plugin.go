package chaos

import (
	"os"
	"path/filepath"
	"syscall"
)

// PluginName is the hook type of the campaign's external plugin.
const PluginName = "chaos_tally"

// pluginScript counts the plugin's idempotency key in the target, in one transaction: the key
// goes into plugin_keys, and the hook's counter is bumped only when the key was new. Running it
// again with the same key changes nothing; a counter of 2 means the key changed.
const pluginScript = `#!/bin/sh
req=$(cat)
PGCONNECT_TIMEOUT=5 psql -q -X -v ON_ERROR_STOP=1 -v req="$req" "$CONFITURE_TARGET_DSN" >&2 <<'SQL' || exit 1
BEGIN;
WITH r AS (SELECT :'req'::jsonb AS j),
k AS (INSERT INTO plugin_keys (key, name)
      SELECT j->>'idempotency_key', (j->>'version') || '.' || (j->>'phase') || '.' || (j->>'hook') FROM r
      ON CONFLICT (key) DO NOTHING RETURNING name)
INSERT INTO counters (name, n) SELECT name, 1 FROM k ON CONFLICT (name) DO UPDATE SET n = counters.n + 1;
COMMIT;
SQL
echo '{"schema":"confiture.plugin-result/v1","success":true,"rows_affected":1}'
`

const pluginManifest = `name: ` + PluginName + `
version: 1.0.0
description: counts its idempotency key in the target (chaos campaign)
command: ./` + PluginName + `.sh
timeout: 8s
`

// writePlugin writes the plugin's manifest and script into dir.
func writePlugin(dir string) error {
	// No fork may inherit the script's write descriptor, or exec fails with "text file busy"
	// (golang.org/issue/22315).
	syscall.ForkLock.Lock()
	err := os.WriteFile(filepath.Join(dir, PluginName+".sh"), []byte(pluginScript), 0o755)
	syscall.ForkLock.Unlock()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, PluginName+".hook.yaml"), []byte(pluginManifest), 0o644)
}
