// Package clip shortens text for messages and events without splitting a character.
package clip

import "unicode/utf8"

// String returns s when it holds at most n bytes; otherwise s cut on a rune boundary and
// followed by suffix, at most n bytes in all (the suffix alone when n is smaller than it).
func String(s string, n int, suffix string) string {
	if len(s) <= n {
		return s
	}
	cut := max(n-len(suffix), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + suffix
}
