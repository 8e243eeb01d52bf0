// Package suggest finds what a mistyped name was meant to be, for the "did you mean" of an
// error: a hooks file's key, a hook type.
package suggest

import (
	"math"
	"strings"
)

// Nearest returns the candidate closest to typed, ignoring case, when it is close enough to be
// a typo (at most two edits, and fewer than half the candidate's length), or "". A tie goes to
// the first candidate.
func Nearest(typed string, candidates []string) string {
	best, bestDist := "", math.MaxInt
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(typed), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" || bestDist > 2 || 2*bestDist >= len(best) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes; long inputs are cut, as
// no typo of a short name is long.
func editDistance(a, b string) int {
	const max = 64
	if len(a) > max {
		a = a[:max]
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
