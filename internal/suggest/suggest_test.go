package suggest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNearest(t *testing.T) {
	t.Parallel()
	candidates := []string{"assert", "backfill", "row_count_at_least", "sql", "before_ddl", "after_ddl"}
	for typed, want := range map[string]string{
		"sqll": "sql", "SQL": "sql", "sq": "sql", "asert": "assert", "backfil": "backfill",
		"back_fill": "backfill", "row_count_at_lest": "row_count_at_least", "befor_ddl": "before_ddl",
		"fill": "", "s": "", "nope": "", "assertions": "", "": "",
	} {
		require.Equal(t, want, Nearest(typed, candidates), typed)
	}
	require.Empty(t, Nearest("sql", nil))
}
