package contract

import (
	"regexp"
	"strings"
)

// MaxVersionLen is the longest version a request may carry, in characters.
const MaxVersionLen = 64

// versionRE is a version: numbers separated by dots ("20240131120000", "0042", "1.2.10").
var versionRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*$`)

// ValidVersion reports whether v is a version a request may carry: 1 to MaxVersionLen
// characters, numbers separated by dots.
func ValidVersion(v string) bool { return len(v) <= MaxVersionLen && versionRE.MatchString(v) }

// CompareVersions orders two versions as goose, golang-migrate, dbmate and Flyway do: number
// by number, each compared as a number whatever its leading zeros, a missing trailing number
// counting as zero. So 9 < 10, 1.2 < 1.10 < 2, and 001, 1 and 1.0 are the same version
// (SameVersion); between such spellings, which a request may not hold together, the order is
// the strings'. It returns -1, 0 or +1.
func CompareVersions(a, b string) int {
	if c := compareNumbers(a, b); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

// SameVersion reports whether a and b spell the same version (CompareVersions without the
// tie-break): "001" and "1", "1.0" and "1".
func SameVersion(a, b string) bool { return compareNumbers(a, b) == 0 }

// VersionKey is the canonical spelling of a version, the same for every spelling of it:
// leading zeros and trailing zero numbers dropped ("0042" -> "42", "1.2.0" -> "1.2",
// "000" -> "0").
func VersionKey(v string) string {
	parts := strings.Split(v, ".")
	for i, p := range parts {
		if p = strings.TrimLeft(p, "0"); p == "" {
			p = "0"
		}
		parts[i] = p
	}
	for len(parts) > 1 && parts[len(parts)-1] == "0" {
		parts = parts[:len(parts)-1]
	}
	return strings.Join(parts, ".")
}

func compareNumbers(a, b string) int {
	for a != "" || b != "" {
		var x, y string
		x, a, _ = strings.Cut(a, ".")
		y, b, _ = strings.Cut(b, ".")
		x, y = strings.TrimLeft(x, "0"), strings.TrimLeft(y, "0")
		if len(x) != len(y) {
			if len(x) < len(y) {
				return -1
			}
			return 1
		}
		if c := strings.Compare(x, y); c != 0 {
			return c
		}
	}
	return 0
}
