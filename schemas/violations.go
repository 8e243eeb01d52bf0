package schemas

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/confiture-io/confiture-worker/internal/clip"
)

// Limits of a violation report.
const (
	maxViolations    = 8
	maxViolationLine = 160
	maxReportBytes   = 1000
)

// Violations renders what err, from validating a document against a schema, found wrong: the
// leaves of its violation tree as "<JSON pointer>: <reason>", in document order, de-duplicated
// and bounded (8 of them, about 1000 bytes, "and N more"). A reason never echoes the offending
// value, which may be a secret. note, when set, may add to a violation's reason (the request
// names the limit a size violation hits). An error that is not a validation error is clipped.
func Violations(err error, note func(loc []string, k jsonschema.ErrorKind) string) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return clip.String(err.Error(), 300, "...")
	}
	type violation struct {
		loc  []string
		line string
	}
	seen := map[string]bool{}
	var vs []violation
	var walk func(e *jsonschema.ValidationError, depth int)
	walk = func(e *jsonschema.ValidationError, depth int) {
		if e == nil || depth > 64 {
			return
		}
		if len(e.Causes) == 0 {
			line := pointer(e.InstanceLocation) + ": " + reason(e.ErrorKind)
			if note != nil {
				line += note(e.InstanceLocation, e.ErrorKind)
			}
			if line = clip.String(line, maxViolationLine, "..."); !seen[line] {
				seen[line] = true
				vs = append(vs, violation{loc: e.InstanceLocation, line: line})
			}
			return
		}
		for _, c := range e.Causes {
			walk(c, depth+1)
		}
	}
	walk(ve, 0)
	if len(vs) == 0 {
		return "does not match the schema"
	}
	// Document order: by location, array indexes numerically, then by reason.
	slices.SortFunc(vs, func(a, b violation) int {
		return cmp.Or(compareLocations(a.loc, b.loc), strings.Compare(a.line, b.line))
	})
	var b strings.Builder
	n := 0
	for _, v := range vs {
		if n == maxViolations || b.Len()+len(v.line)+2 > maxReportBytes {
			break
		}
		if n > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v.line)
		n++
	}
	if rest := len(vs) - n; rest > 0 {
		fmt.Fprintf(&b, "; and %d more", rest)
	}
	return b.String()
}

// compareLocations orders instance locations token by token, numbers numerically, a parent
// before its children.
func compareLocations(a, b []string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] == b[i] {
			continue
		}
		x, errX := strconv.Atoi(a[i])
		y, errY := strconv.Atoi(b[i])
		if errX == nil && errY == nil {
			return cmp.Compare(x, y)
		}
		return strings.Compare(a[i], b[i])
	}
	return cmp.Compare(len(a), len(b))
}

// printer renders the library's own messages for the violations reason does not rephrase.
var printer = message.NewPrinter(language.English)

// reason describes one schema violation without echoing the offending value.
func reason(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case nil:
		return "invalid"
	case *kind.Pattern:
		return fmt.Sprintf("does not match pattern %q", k.Want)
	case *kind.Format:
		return fmt.Sprintf("is not a valid %s", k.Want)
	case *kind.Type:
		return fmt.Sprintf("must be %s, got %s", strings.Join(k.Want, " or "), k.Got)
	case *kind.Required:
		return "missing " + plural(len(k.Missing), "property", "properties") + " " + quoteList(k.Missing)
	case *kind.AdditionalProperties:
		return "unknown " + plural(len(k.Properties), "property", "properties") + " " + quoteList(k.Properties)
	case *kind.MinLength:
		if k.Want == 1 {
			return "must not be empty"
		}
		return fmt.Sprintf("must be at least %d characters long, got %d", k.Want, k.Got)
	case *kind.MaxLength:
		return fmt.Sprintf("must be at most %d characters long, got %d", k.Want, k.Got)
	case *kind.MinItems:
		return fmt.Sprintf("must have at least %d %s, got %d", k.Want, plural(k.Want, "item", "items"), k.Got)
	case *kind.MaxItems:
		return fmt.Sprintf("must have at most %d %s, got %d", k.Want, plural(k.Want, "item", "items"), k.Got)
	case *kind.UniqueItems:
		return fmt.Sprintf("items %d and %d are equal", k.Duplicates[0], k.Duplicates[1])
	default:
		return k.LocalizedString(printer)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// quoteList quotes property names, at most five of them and each shortened to 40 characters.
func quoteList(names []string) string {
	q := make([]string, 0, len(names))
	for i, n := range names {
		if i == 5 {
			q = append(q, fmt.Sprintf("and %d more", len(names)-i))
			break
		}
		if utf8.RuneCountInString(n) > 40 {
			q = append(q, strconv.Quote(string([]rune(n)[:40]))+"...")
			continue
		}
		q = append(q, strconv.Quote(n))
	}
	return strings.Join(q, ", ")
}

// pointer renders an instance location as a JSON pointer, "(root)" for the document itself.
func pointer(tokens []string) string {
	if len(tokens) == 0 {
		return "(root)"
	}
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		t = strings.ReplaceAll(t, "~", "~0")
		b.WriteString(strings.ReplaceAll(t, "/", "~1"))
	}
	return b.String()
}
