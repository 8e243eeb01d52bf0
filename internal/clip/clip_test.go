package clip

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestString(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		s, suffix string
		n         int
		want      string
	}{
		{"short", "...", 10, "short"},
		{"exactly10!", "...", 10, "exactly10!"},
		{"a longer sentence", "...", 10, "a longe..."},
		{"a longer sentence", "", 5, "a lon"},
		{"héhéhé", "", 2, "h"},     // é is two bytes: not split
		{"éééé", "...", 6, "é..."}, // 3 bytes left: the second é would be split
		{"aééé", "...", 5, "a..."}, // 2 bytes left would split the first é
		{"anything", "... (truncated)", 4, "... (truncated)"},
	} {
		got := String(c.s, c.n, c.suffix)
		require.Equal(t, c.want, got, "String(%q, %d, %q)", c.s, c.n, c.suffix)
		require.True(t, utf8.ValidString(got))
	}
}
