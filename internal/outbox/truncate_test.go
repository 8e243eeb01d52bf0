package outbox

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestTruncateKeepsShortTextAndCutsLongTextOnARuneBoundary(t *testing.T) {
	t.Parallel()
	require.Equal(t, "short", Truncate("short", 100))
	long := strings.Repeat("é", 100) // 200 bytes
	got := Truncate(long, 51)
	require.LessOrEqual(t, len(got), 51)
	require.True(t, utf8.ValidString(got))
	require.True(t, strings.HasSuffix(got, "(truncated)"))
}
