package contract

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCompareVersionsAsTheToolsDo(t *testing.T) {
	t.Parallel()
	// Flyway's documented order (1 < 1.1 < 1.3 < 2 ... < 2.0.1 ... < 10), numbers of goose and
	// golang-migrate of different lengths, timestamps.
	want := []string{"0", "1", "1.1", "1.2.9", "1.3", "1.10", "2", "2.0.1", "9", "10", "011", "12.0.1", "20240101000000", "20240101000001"}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, CompareVersions)
	require.Equal(t, want, got)

	for _, same := range [][2]string{{"001", "1"}, {"1.0", "1"}, {"1.0.0", "1.00"}, {"000", "0"}, {"0.0", "0"}} {
		require.True(t, SameVersion(same[0], same[1]), "%s and %s", same[0], same[1])
		require.Equal(t, VersionKey(same[0]), VersionKey(same[1]))
		require.NotZero(t, CompareVersions(same[0], same[1]), "a total order: %s and %s", same[0], same[1])
	}
	for _, diff := range [][2]string{{"1", "10"}, {"1.1", "1.01.1"}, {"1.0.1", "1"}, {"0.1", "0"}} {
		require.False(t, SameVersion(diff[0], diff[1]), "%s and %s", diff[0], diff[1])
	}
	require.Equal(t, "42", VersionKey("0042"))
	require.Equal(t, "1.2", VersionKey("1.2.0"))
	require.Equal(t, "0.1", VersionKey("00.01.0"))

	for v, ok := range map[string]bool{"1": true, "1.2.3": true, "0042": true, "1.": false, ".1": false, "1..2": false, "1_2": false, "": false, "v1": false} {
		require.Equal(t, ok, ValidVersion(v), v)
	}
}
