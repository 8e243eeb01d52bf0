package migrations

import (
	"math"
	"regexp"
	"strconv"
	"strings"
)

// goose's rules, as github.com/pressly/goose/v3@v3.30.1 has them: file names in migration.go
// (NumericComponent) and provider_collect.go, SQL files in internal/sqlparser/parser.go
// (ParseSQLMigration, extractAnnotation, endsWithSemicolon).

var (
	// gooseSQLRE is a goose SQL migration's name: the version is what comes before the first
	// '_', the name what follows it.
	gooseSQLRE = regexp.MustCompile(`^([0-9]+)_(.*)\.sql$`)
	// gooseGoRE is a goose Go migration's name.
	gooseGoRE = regexp.MustCompile(`^([0-9]+)_.*\.go$`)
)

var gooseNaming = naming{
	upSuffix:     ".sql",
	expected:     "goose's files named <version>_<name>.sql",
	hooksVersion: digitsVersion,
	stemVersion:  leadingVersion,
}

// gooseAnnotations are the annotations goose knows, matched in any case.
var gooseAnnotations = []string{"Up", "Down", "StatementBegin", "StatementEnd", "NO TRANSACTION", "ENVSUB ON", "ENVSUB OFF"}

// gooseVersionProblem says why goose would not take v as a version, or "".
func gooseVersionProblem(v string) string {
	n, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err != nil:
		return "version " + clipText(v, 80) + " is beyond goose's versions (at most " + strconv.FormatInt(math.MaxInt64, 10) + "); renumber the file"
	case n < 1:
		return "version " + v + " is zero: goose's versions start at 1; renumber the file"
	}
	return ""
}

// isGooseGo reports whether name is a goose Go migration's: goose ignores other .go files
// (helpers) and tests.
func isGooseGo(name string) bool {
	m := gooseGoRE.FindStringSubmatch(name)
	return m != nil && !strings.HasSuffix(name, "_test.go") && gooseVersionProblem(m[1]) == ""
}

// readGoose reads the files of a goose directory.
func (l *loader) readGoose(files []string) ([]*parsed, []string) {
	var ps []*parsed
	var hooks []string
	for _, name := range files {
		if isGooseGo(name) {
			l.add(name, 0, "is a goose Go migration: the worker runs SQL migrations only; rewrite it as %s.sql with '-- +goose Up' and '-- +goose Down' sections, or keep running it with goose",
				strings.TrimSuffix(name, ".go"))
			continue
		}
		m := l.sqlFile(name, gooseSQLRE, ".sql", &hooks,
			"not a goose migration file name; expected <version>_<name>.sql, where version is a number from 1")
		if m == nil {
			continue
		}
		if msg := gooseVersionProblem(m[1]); msg != "" {
			l.add(name, 0, "%s", msg)
			continue
		}
		p := &parsed{file: name, stem: strings.TrimSuffix(name, ".sql"), version: m[1], name: m[2]}
		l.readSectioned(p, "'-- +goose Up' section", "'-- +goose Down' section", parseGoose)
		ps = append(ps, p)
	}
	return ps, hooks
}

// The states of goose's parser.
const (
	gooseStart = iota
	gooseUp
	gooseUpBegin // in a StatementBegin block of the Up section
	gooseUpEnd   // on its StatementEnd line
	gooseDown
	gooseDownBegin
	gooseDownEnd
)

// parseGoose reads a goose SQL migration as goose's parser does, reporting what goose rejects at
// its line. Goose parses a file once a direction; the two passes go through the same states
// and differ only in the statements they keep, so one pass finds the problems of both. Up is the
// text between the "-- +goose Up" line and the "-- +goose Down" line (or the end), annotations
// inside it kept as the SQL comments they are; down is the text after "-- +goose Down". Unlike
// goose, it takes a byte order mark before the first line, as editors write one.
func parseGoose(data []byte, report reportFunc) sections {
	const noUp = "has no '-- +goose Up' annotation: goose requires one before the migration's SQL (and '-- +goose Down' before the SQL that reverts it)"
	var s sections
	state := gooseStart
	upStart, upEnd, downStart := 0, len(data), len(data)
	beginLine := 0
	// What goose's statement buffer holds: anything (buffered), text other than whitespace
	// (unfinished, since stmtLine).
	buffered, unfinished, stmtLine := false, false, 0
	reset := func() { buffered, unfinished, stmtLine = false, false, 0 }
	failed := false
	fail := func(line int, format string, args ...any) bool {
		report(line, format, args...)
		failed = true
		return false
	}
	eachLine(data, func(no, start, next int, text string) bool {
		trimmed := strings.TrimSpace(text)
		if state == gooseStart && trimmed == "" {
			return true
		}
		if strings.HasPrefix(trimmed, "--") && strings.Contains(text, "+goose") {
			a, msg := gooseAnnotation(text)
			if msg != "" {
				return fail(no, "%s", msg)
			}
			switch a {
			case "Up":
				if state != gooseStart {
					return fail(no, "a second '-- +goose Up' annotation (the first is at line %d): goose allows one", s.upLine)
				}
				state, s.upLine, upStart = gooseUp, no, next
				return true
			case "Down":
				switch state {
				case gooseUp, gooseUpEnd:
				case gooseStart:
					return fail(no, "'-- +goose Down' before '-- +goose Up': goose requires the Up section first")
				case gooseUpBegin:
					return fail(no, "'-- +goose Down' inside the StatementBegin block of line %d: end that block with '-- +goose StatementEnd' first", beginLine)
				default:
					return fail(no, "a second '-- +goose Down' annotation (the first is at line %d): goose allows one", s.downLine)
				}
				if unfinished {
					return fail(stmtLine, "the statement that starts here has no ';' at the end of its last line before '-- +goose Down' (line %d): goose requires one (or a StatementBegin/StatementEnd block around it)", no)
				}
				reset()
				state, s.downLine, upEnd, downStart = gooseDown, no, start, next
				return true
			case "StatementBegin":
				switch state {
				case gooseUp, gooseUpEnd:
					state = gooseUpBegin
				case gooseDown, gooseDownEnd:
					state = gooseDownBegin
				case gooseStart:
					return fail(no, "'-- +goose StatementBegin' before '-- +goose Up': goose requires it inside the Up or Down section")
				default:
					return fail(no, "'-- +goose StatementBegin' inside the StatementBegin block of line %d: end that block with '-- +goose StatementEnd' first", beginLine)
				}
				beginLine = no
				return true
			case "StatementEnd":
				switch state {
				case gooseUpBegin:
					state = gooseUpEnd
				case gooseDownBegin:
					state = gooseDownEnd
				default:
					return fail(no, "'-- +goose StatementEnd' without a '-- +goose StatementBegin' before it")
				}
				// goose goes on: this line ends the block's statement.
			case "NO TRANSACTION":
				s.noTx = true
				return true
			case "ENVSUB ON":
				// Not fatal to goose, but the worker cannot honour it: report and read on.
				report(no, "'-- +goose ENVSUB ON' asks for environment variables to be substituted, which the worker does not do (it runs elsewhere, without this machine's environment): write the values into the file and remove the annotation")
				return true
			case "ENVSUB OFF":
				return true
			}
		}
		if !buffered && (strings.HasPrefix(trimmed, "--") || text == "") {
			return true // comments and empty lines before a statement are not part of it
		}
		if state != gooseUpEnd && state != gooseDownEnd {
			buffered = true
			if !unfinished && trimmed != "" {
				unfinished, stmtLine = true, no
			}
		}
		switch state {
		case gooseStart:
			if !hasGooseUp(data) {
				return fail(0, noUp)
			}
			return fail(no, "SQL before the '-- +goose Up' annotation: goose rejects a file whose SQL does not follow it; move this below '-- +goose Up'")
		case gooseUp, gooseDown:
			if endsWithSemicolon(text) {
				reset()
			}
		case gooseUpEnd:
			reset()
			state = gooseUp
		case gooseDownEnd:
			reset()
			state = gooseDown
		}
		return true
	})
	switch {
	case failed:
		return s
	case state == gooseStart:
		report(0, noUp)
		return s
	case state == gooseUpBegin || state == gooseDownBegin:
		report(beginLine, "'-- +goose StatementBegin' has no '-- +goose StatementEnd' after it: goose requires one")
		return s
	case unfinished:
		report(stmtLine, "the statement that starts here has no ';' at the end of its last line: goose requires one (or a StatementBegin/StatementEnd block around it)")
		return s
	}
	s.up = data[upStart:upEnd]
	if s.downLine > 0 {
		s.down = data[downStart:]
	}
	s.ok = true
	return s
}

// hasGooseUp reports whether data has a line goose reads as "-- +goose Up".
func hasGooseUp(data []byte) bool {
	found := false
	eachLine(data, func(_, _, _ int, text string) bool {
		if isGooseAnnotationLine(text) {
			a, msg := gooseAnnotation(text)
			found = msg == "" && a == "Up"
		}
		return !found
	})
	return found
}

// isGooseAnnotationLine reports whether goose reads a line as an annotation.
func isGooseAnnotationLine(text string) bool {
	return strings.HasPrefix(strings.TrimSpace(text), "--") && strings.Contains(text, "+goose")
}

// gooseAnnotation reads an annotation line as goose's extractAnnotation does: the annotation
// (as gooseAnnotations spells it), or why goose rejects the line.
func gooseAnnotation(line string) (string, string) {
	if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
		return "", "the goose annotation " + quote(line) + " starts with whitespace, which goose rejects: start the line with '--'"
	}
	cmd := strings.ReplaceAll(line, "--", "")
	cmd = strings.Replace(cmd, "+goose", "", 1)
	if strings.Contains(cmd, "+goose") {
		return "", "the line holds '+goose' twice; goose reads a comment holding '+goose' as one annotation"
	}
	cmd = strings.TrimSpace(cmd)
	if cmd == "" {
		return "", "empty goose annotation: write '-- +goose Up', '-- +goose Down', '-- +goose StatementBegin', ..."
	}
	for _, a := range gooseAnnotations {
		if strings.EqualFold(a, cmd) {
			return a, ""
		}
	}
	return "", "unknown goose annotation " + quote(cmd) + "; goose knows " + strings.Join(gooseAnnotations, ", ") +
		" (and reads any comment holding '+goose' as an annotation)" + didYouMean(cmd, gooseAnnotations)
}

// endsWithSemicolon reports whether the last word of line before a "--" comment ends with ';',
// goose's test for the end of a statement.
func endsWithSemicolon(line string) bool {
	prev := ""
	for _, word := range strings.Fields(line) {
		if strings.HasPrefix(word, "--") {
			break
		}
		prev = word
	}
	return strings.HasSuffix(prev, ";")
}
