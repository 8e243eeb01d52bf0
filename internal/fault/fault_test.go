package fault

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	ctx := context.Background()
	f, err := Parse("")
	require.NoError(t, err)
	require.Nil(t, f)
	require.NoError(t, f.At(ctx, PhaseBeforeCommit, Where{}), "no rules: nothing happens")

	f, err = Parse("phase.before_commit=sleep:300ms@2, outbox.after_publish=kill@3")
	require.NoError(t, err)
	took := func() time.Duration {
		start := time.Now()
		require.NoError(t, f.At(ctx, PhaseBeforeCommit, Where{}))
		return time.Since(start)
	}
	require.Less(t, took(), 300*time.Millisecond)
	require.GreaterOrEqual(t, took(), 300*time.Millisecond, "the second time it sleeps")
	require.Less(t, took(), 300*time.Millisecond)
	require.NoError(t, f.At(ctx, OutboxAfterPublish, Where{}))
	require.NoError(t, f.At(ctx, OutboxAfterPublish, Where{}))
	require.NoError(t, f.At(ctx, IntakeAfterCommit, Where{}), "no rule for this point")

	for _, bad := range []string{"nowhere=kill", "phase.before_commit", "phase.before_commit=explode",
		"phase.before_commit=kill@0", "phase.before_commit=kill@x", "phase.before_commit=sleep:soon"} {
		_, err := Parse(bad)
		require.ErrorContains(t, err, Env, bad)
	}
}
