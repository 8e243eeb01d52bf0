package hooks

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLazyStatsLoadOnceOnFirstUseAndKeepLaterWrites(t *testing.T) {
	t.Parallel()
	calls := 0
	s := NewLazyStats(func() (map[string]any, error) {
		calls++
		return map[string]any{"a": 1, "b": 2}, nil
	})
	s.Merge(nil) // an empty merge is not a use
	require.Zero(t, calls)
	s.Set("b", 3) // set before load: the stored value wins over the loaded one
	v, ok := s.Get("a")
	require.True(t, ok)
	require.Equal(t, 1, v)
	require.Equal(t, map[string]any{"a": 1, "b": 3}, s.Snapshot())
	require.Equal(t, 1, calls)
	require.NoError(t, s.Err())

	failing := NewLazyStats(func() (map[string]any, error) { return nil, errors.New("db down") })
	_, ok = failing.Get("a")
	require.False(t, ok)
	require.ErrorContains(t, failing.Err(), "db down")
}
