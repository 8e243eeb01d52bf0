package fault

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSet(t *testing.T) {
	require.NoError(t, Set(""))
	require.False(t, active.Load())
	At(PhaseBeforeCommit) // no rules: nothing happens

	require.NoError(t, Set("phase.before_commit=sleep:1ms@2, outbox.after_publish=kill@3"))
	require.True(t, active.Load())
	require.Equal(t, int64(2), rules[PhaseBeforeCommit].nth)
	require.Equal(t, int64(3), rules[OutboxAfterPublish].nth)
	require.True(t, rules[OutboxAfterPublish].kill)
	At(PhaseBeforeCommit)
	At(PhaseBeforeCommit) // the second time: sleeps 1ms
	At(PhaseBeforeCommit)
	require.Equal(t, int64(3), rules[PhaseBeforeCommit].seen.Load())

	for _, bad := range []string{"nowhere=kill", "phase.before_commit", "phase.before_commit=explode",
		"phase.before_commit=kill@0", "phase.before_commit=kill@x", "phase.before_commit=sleep:soon"} {
		require.Error(t, Set(bad), bad)
	}
	require.NoError(t, Set(""))
}
