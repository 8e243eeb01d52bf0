package submitcmd

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFailOnUsage(t *testing.T) {
	t.Parallel()
	dir := validDir(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{dir, "--dry-run", "--wait", "--fail-on", "info"}, `--fail-on must be warning, error or none, got "info"`},
		{[]string{dir, "--wait", "--fail-on", "warning"}, "--fail-on applies to the report of a dry-run that submit follows"},
		{[]string{dir, "--dry-run", "--fail-on", "none"}, "--fail-on applies to the report of a dry-run that submit follows"},
	} {
		r := submit(t, tc.args...)
		require.Equal(t, ExitUsage, r.code, r)
		require.Contains(t, r.stderr, tc.want, r)
	}
}
