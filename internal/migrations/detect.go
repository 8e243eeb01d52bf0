package migrations

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// maxConfigBytes bounds confiture.yaml, a line or two.
const maxConfigBytes = 64 << 10

// configNames are the names of the file that names a directory's format.
var configNames = []string{"confiture.yaml", "confiture.yml"}

// dirConfig is what a directory's confiture.yaml says.
type dirConfig struct {
	file   string // its name; "" when the directory has none
	line   int    // the line of its format
	format Format // "" when it has none, or a problem
}

// dirConfig reads the directory's confiture.yaml, if it has one, and returns the other files.
func (l *loader) dirConfig(files []string) ([]string, dirConfig) {
	var c dirConfig
	rest := files[:0:0]
	for _, f := range files {
		if !slices.Contains(configNames, f) {
			rest = append(rest, f)
			continue
		}
		if c.file != "" { // files are sorted: this is the .yml next to a .yaml
			l.add(f, 0, "%s also exists; keep one", c.file)
			continue
		}
		c.file = f
	}
	if c.file == "" {
		return rest, c
	}
	data, ok := l.read(c.file, maxConfigBytes)
	if !ok {
		return rest, c
	}
	format, line, problems := parseDirConfig(c.file, data)
	l.problems = append(l.problems, problems...)
	c.format, c.line = format, line
	return rest, c
}

// parseDirConfig reads confiture.yaml: a mapping whose one key is format.
func parseDirConfig(file string, data []byte) (Format, int, []Problem) {
	const want = "a mapping whose one key is format, for example \"format: goose\""
	p := newHooksParser(file)
	body := p.document(data, file)
	if body == nil {
		if len(p.problems) == 0 {
			p.addLine(0, "is empty: it holds %s", want)
		}
		return "", 0, p.problems
	}
	top := p.resolve(body)
	if top == nil {
		return "", 0, p.problems
	}
	m, isMap := top.(ast.MapNode)
	if !isMap {
		p.add(body, "must be %s; found %s", want, describe(top))
		return "", 0, p.problems
	}
	var format Format
	line, found := 0, false
	names := formatNames()
	for _, pr := range p.pairs(m, 0) {
		if pr.key != "format" {
			p.add(pr.keyNode, "unknown key %s; confiture.yaml holds one key, format%s", quote(pr.key), didYouMean(pr.key, []string{"format"}))
			continue
		}
		found = true
		s, ok := p.str(pr.value, "format")
		if !ok {
			continue
		}
		if !slices.Contains(Formats, Format(s)) {
			p.add(pr.value, "format %s is not one the worker reads: %s%s", quote(s), strings.Join(names, ", "), didYouMean(s, names))
			continue
		}
		format, line = Format(s), nodeLine(pr.value)
	}
	if !found && len(p.problems) == 0 {
		p.addLine(0, "has no format key: it holds %s", want)
	}
	if len(p.problems) > 0 {
		return "", 0, p.problems
	}
	return format, line, nil
}

// signal is a file that shows its directory's format.
type signal struct {
	format Format
	file   string
	// evidence says where the file shows it ("line 1: -- migrate:up"); "" when its name does.
	evidence string
}

var (
	// flywayNameRE matches the names of Flyway's versioned, undo and repeatable migrations.
	flywayNameRE = regexp.MustCompile(`^(?:[VU][0-9]|[VU].*__|R__).*\.sql$`)
	// numberedSQLRE matches the names of goose's and dbmate's migrations, and others.
	numberedSQLRE = regexp.MustCompile(`(?i)^[0-9].*\.sql$`)
	// dbmateUpLineRE is a line that dbmateUpRE finds.
	dbmateUpLineRE = regexp.MustCompile(`^--\s*migrate:up(\s|$)`)
)

// detect tells the format of a directory from its files (not those of its subdirectories), as
// LoadFormat says. guessed is true when no file showed one: the format is then confiture. When
// files show two formats, it reports each file of the less used ones and returns "".
func (l *loader) detect(files []string) (format Format, guessed bool) {
	var signals []signal
	var upDown []string
	strict := true
	for _, name := range files {
		switch {
		case golangMigrateRE.MatchString(name):
			upDown = append(upDown, name)
			strict = strict && fileNameRE.MatchString(name)
		case flywayNameRE.MatchString(name) || isFlywayCallback(name):
			signals = append(signals, signal{format: FormatFlyway, file: name})
		case strings.HasSuffix(name, ".go"):
			if isGooseGo(name) {
				signals = append(signals, signal{format: FormatGoose, file: name})
			}
		case numberedSQLRE.MatchString(name):
			if s, ok := l.marker(name); ok {
				signals = append(signals, s)
			}
		}
	}
	family := FormatConfiture
	if !strict {
		family = FormatGolangMigrate
	}
	for _, name := range upDown {
		signals = append(signals, signal{format: family, file: name})
	}
	if len(signals) == 0 {
		return FormatConfiture, true
	}

	count := map[Format]int{}
	for _, s := range signals {
		count[s.format]++
	}
	main := Format("")
	for _, f := range Formats { // the most used; the first of Formats among equals
		if count[f] > count[main] {
			main = f
		}
	}
	if len(count) == 1 {
		return main, false
	}
	slices.SortFunc(signals, func(a, b signal) int { return strings.Compare(a.file, b.file) })
	ref := signals[slices.IndexFunc(signals, func(s signal) bool { return s.format == main })]
	for _, s := range signals {
		if s.format != main {
			l.add(s.file, 0, "mixed formats: this file is %s's%s but %s is %s's%s; keep one format per directory, or name the format in confiture.yaml (format: <format>) or with --format",
				s.format, s.evidenceNote(), ref.file, ref.format, ref.evidenceNote())
		}
	}
	return "", false
}

func (s signal) evidenceNote() string {
	if s.evidence == "" {
		return ""
	}
	return " (" + s.evidence + ")"
}

// isFlywayCallback reports whether name is that of a Flyway callback's SQL file.
func isFlywayCallback(name string) bool {
	stem, ok := strings.CutSuffix(name, ".sql")
	return ok && slices.ContainsFunc(flywayEvents, func(ev string) bool { return strings.HasPrefix(stem, ev) })
}

// marker reads an SQL file whose name starts with a digit for the first line that shows goose's
// or dbmate's format: a goose annotation, or dbmate's "-- migrate:up".
func (l *loader) marker(file string) (signal, bool) {
	data, ok := l.read(file, maxSQLBytes)
	if !ok {
		return signal{}, false
	}
	var s signal
	eachLine(data, func(no, _, _ int, text string) bool {
		switch {
		case isGooseAnnotationLine(text):
			s.format = FormatGoose
		case dbmateUpLineRE.MatchString(text):
			s.format = FormatDbmate
		default:
			return true
		}
		s.file, s.evidence = file, fmt.Sprintf("line %d: %s", no, clipText(strings.TrimSpace(text), 60))
		return false
	})
	return s, s.format != ""
}
