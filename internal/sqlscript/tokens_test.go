package sqlscript

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTokens(t *testing.T) {
	got := Tokens("VACUUM /* a /* nested */ comment */ (FULL 'off', \"Odd\"\"Name\") -- done\n public.t, $$x$$;")
	var texts []string
	var words []string
	for _, tk := range got {
		texts = append(texts, tk.Text)
		if tk.Word {
			words = append(words, tk.Text)
		}
	}
	require.Equal(t, []string{"VACUUM", "(", "FULL", "'off'", ",", `"Odd""Name"`, ")", "public", ".", "t", ",", "$$x$$", ";"}, texts)
	require.Equal(t, []string{"VACUUM", "FULL", `"Odd""Name"`, "public", "t"}, words)
	require.Empty(t, Tokens("  -- only a comment\n"))
}
