package worker

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPluginPathFromTheEnvironment(t *testing.T) {
	t.Parallel()
	cfg := Config{PluginPaths: []string{"/from/file"}}
	env := map[string]string{"CONFITURE_PLUGIN_PATH": "/opt/a::/opt/b"}
	require.NoError(t, ApplyEnv(&cfg, func(k string) string { return env[k] }, nil))
	require.Equal(t, []string{"/opt/a", "/opt/b"}, cfg.PluginPaths)
}
