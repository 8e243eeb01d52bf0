// Package migrations loads a migrations directory from disk into contract.Migration values.
//
// A migration is made of <version>_<name>.up.sql (required), <version>_<name>.down.sql
// (optional) and <version>_<name>.hooks.yaml or .hooks.yml (optional), where version is 1 to 32
// digits and name is 1 to 128 letters, digits, '_' or '-', starting with a letter or digit.
// Dotfiles, subdirectories and files that end in neither .sql, .yaml nor .yml are ignored, so a
// README can sit next to the migrations.
//
// Load checks everything it can before a request is built, and reports every problem it finds at
// once, each with its file and, where one applies, its line: see LoadError.
package migrations

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// Limits taken from schemas/request.v1.json, checked here so that a directory that loads is a
// directory that the worker accepts.
const (
	maxSQLChars = 1 << 20 // up_sql and down_sql: at most 1,048,576 characters
	// maxSQLBytes bounds what is read of an SQL file: maxSQLChars characters of up to 4 bytes.
	maxSQLBytes = 4 * maxSQLChars
)

var (
	fileNameRE = regexp.MustCompile(`^([0-9]{1,32})_([A-Za-z0-9][A-Za-z0-9_-]{0,127})\.(up\.sql|down\.sql|hooks\.yaml|hooks\.yml)$`)
	// bareSQLRE matches "<version>_<name>.sql", a likely up.sql missing its ".up".
	bareSQLRE = regexp.MustCompile(`^([0-9]{1,32}_[A-Za-z0-9][A-Za-z0-9_-]{0,127})\.sql$`)
)

// Problem is one thing wrong with a migrations directory.
type Problem struct {
	// File is the file at fault, relative to the directory; empty when the problem is the
	// directory itself.
	File string
	// Line is the 1-based line at fault, or 0 when no single line is.
	Line int
	// Message says what is wrong, and where it can, how to fix it.
	Message string
}

// LoadError is the error of Load: every problem found in the directory, sorted by file and line.
type LoadError struct {
	Dir      string
	Problems []Problem
}

// Error renders one problem a line, as "file:line: message" ("file: message" when Line is 0,
// "dir: message" when the problem is the directory itself).
func (e *LoadError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		loc := p.File
		if loc == "" {
			loc = e.Dir
		}
		b.WriteString(loc)
		if p.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
		b.WriteString(p.Message)
	}
	return b.String()
}

// Load reads the migrations in dir, sorted by version (versions compare as strings). Checksum is
// the hex SHA-256 of the up.sql file's bytes, UpSQL and DownSQL are the files' contents, and
// Hooks lists the hooks file's declarations in the order they appear in the file.
//
// It returns a *LoadError listing every problem found, or the migrations and nil.
func Load(dir string) ([]contract.Migration, error) {
	l := &loader{dir: dir}
	ms := l.load()
	if len(l.problems) > 0 {
		slices.SortStableFunc(l.problems, func(a, b Problem) int {
			return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
		})
		return nil, &LoadError{Dir: dir, Problems: l.problems}
	}
	return ms, nil
}

type loader struct {
	dir      string
	problems []Problem
}

// files of one migration, by role; empty when absent.
type migrationFiles struct {
	version, name   string
	up, down, hooks string
}

func (l *loader) add(file string, line int, format string, args ...any) {
	l.problems = append(l.problems, Problem{File: file, Line: line, Message: fmt.Sprintf(format, args...)})
}

func (l *loader) load() []contract.Migration {
	info, err := os.Stat(l.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		l.add("", 0, "no such directory")
		return nil
	case err != nil:
		l.add("", 0, "cannot read directory: %v", pathErr(err))
		return nil
	case !info.IsDir():
		l.add("", 0, "not a directory")
		return nil
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		l.add("", 0, "cannot read directory: %v", pathErr(err))
		return nil
	}

	groups := map[string]*migrationFiles{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !isCandidate(name) || e.IsDir() {
			continue
		}
		if !e.Type().IsRegular() { // a symlink, or something that cannot be read as a file
			info, err := os.Stat(filepath.Join(l.dir, name))
			if err != nil {
				l.add(name, 0, "cannot read: %v", pathErr(err))
				continue
			}
			if info.IsDir() {
				continue
			}
			if !info.Mode().IsRegular() {
				l.add(name, 0, "not a regular file")
				continue
			}
		}
		m := fileNameRE.FindStringSubmatch(name)
		if m == nil {
			l.add(name, 0, "%s", badNameMessage(name))
			continue
		}
		id := m[1] + "_" + m[2]
		g := groups[id]
		if g == nil {
			g = &migrationFiles{version: m[1], name: m[2]}
			groups[id] = g
		}
		switch m[3] {
		case "up.sql":
			g.up = name
		case "down.sql":
			g.down = name
		default:
			if g.hooks != "" { // entries are sorted, so this is the .yml next to a .yaml
				l.add(name, 0, "%s also exists; keep one hooks file per migration", g.hooks)
				continue
			}
			g.hooks = name
		}
	}

	upsByVersion := map[string][]string{}
	for _, g := range groups {
		if g.up != "" {
			upsByVersion[g.version] = append(upsByVersion[g.version], g.up)
		}
	}
	var ms []contract.Migration
	for _, id := range slices.Sorted(maps.Keys(groups)) {
		g := groups[id]
		if g.up == "" {
			l.orphans(g, upsByVersion[g.version])
			continue
		}
		if ups := upsByVersion[g.version]; len(ups) > 1 && ups[0] != g.up {
			slices.Sort(ups)
			l.add(g.up, 0, "version %s is used by %s: each migration needs a version of its own", g.version, strings.Join(ups, " and "))
		}
		ms = append(ms, l.migration(g))
	}
	if len(upsByVersion) == 0 {
		l.add("", 0, "no migrations: expected files named <version>_<name>.up.sql")
	}
	slices.SortStableFunc(ms, func(a, b contract.Migration) int { return strings.Compare(a.Version, b.Version) })
	return ms
}

// orphans reports the down.sql and hooks files of a migration that has no up.sql.
func (l *loader) orphans(g *migrationFiles, sameVersion []string) {
	hint := ""
	if len(sameVersion) > 0 {
		hint = fmt.Sprintf(" (%s has the same version: is the name misspelt?)", strings.Join(sameVersion, ", "))
	}
	for _, f := range []string{g.down, g.hooks} {
		if f != "" {
			l.add(f, 0, "has no matching %s_%s.up.sql%s", g.version, g.name, hint)
		}
	}
}

func (l *loader) migration(g *migrationFiles) contract.Migration {
	m := contract.Migration{Version: g.version, Name: g.name}
	m.UpSQL = l.readSQL(g.up, true)
	m.Checksum = contract.Checksum(m.UpSQL)
	if g.down != "" {
		m.DownSQL = l.readSQL(g.down, false)
	}
	if g.hooks != "" {
		if data, ok := l.read(g.hooks, maxHooksFileBytes); ok {
			hooks, problems := parseHooks(g.hooks, data)
			m.Hooks = hooks
			l.problems = append(l.problems, problems...)
		}
	}
	return m
}

// readSQL reads an SQL file and checks what the request schema and PostgreSQL require of it.
func (l *loader) readSQL(file string, up bool) string {
	data, ok := l.read(file, maxSQLBytes)
	if !ok {
		return ""
	}
	if i := invalidUTF8(data); i >= 0 {
		l.add(file, lineAt(data, i), "is not valid UTF-8")
	} else if n := utf8.RuneCount(data); n > maxSQLChars {
		l.add(file, 0, "holds %d characters; at most %d are allowed", n, maxSQLChars)
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		l.add(file, lineAt(data, i), "contains a NUL byte, which PostgreSQL does not accept")
	}
	if up && sqlIsEmpty(data) {
		l.add(file, 0, "is empty: it holds no SQL statement, only whitespace or comments")
	}
	return string(data)
}

// read reads a file of at most max bytes.
func (l *loader) read(file string, max int64) ([]byte, bool) {
	f, err := os.Open(filepath.Join(l.dir, file))
	if err != nil {
		l.add(file, 0, "cannot read: %v", pathErr(err))
		return nil, false
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		l.add(file, 0, "cannot read: %v", pathErr(err))
		return nil, false
	}
	if int64(len(data)) > max {
		l.add(file, 0, "is larger than %d bytes", max)
		return nil, false
	}
	return data, true
}

// isCandidate reports whether a file name ends in .sql, .yaml or .yml, in any case, so that
// "001_x.UP.SQL" is reported rather than silently ignored.
func isCandidate(name string) bool {
	lower := strings.ToLower(name)
	return strings.HasSuffix(lower, ".sql") || strings.HasSuffix(lower, ".yaml") || strings.HasSuffix(lower, ".yml")
}

func badNameMessage(name string) string {
	msg := "not a migration file name; expected <version>_<name>.up.sql, <version>_<name>.down.sql " +
		"or <version>_<name>.hooks.yaml, where version is 1 to 32 digits and name is 1 to 128 " +
		"letters, digits, '_' or '-' starting with a letter or digit"
	switch {
	case bareSQLRE.MatchString(name):
		msg += fmt.Sprintf(" (rename it to %s.up.sql?)", strings.TrimSuffix(name, ".sql"))
	case fileNameRE.MatchString(strings.ToLower(name)):
		msg += " (the suffix must be lower case)"
	}
	return msg
}

// sqlIsEmpty reports whether data holds nothing but whitespace, semicolons and comments.
// It stops at the first other character, so string literals need no special care.
func sqlIsEmpty(data []byte) bool {
	s := strings.TrimPrefix(string(data), "\ufeff")
	for i := 0; i < len(s); {
		switch {
		case strings.IndexByte(" \t\n\r\f\v;", s[i]) >= 0:
			i++
		case strings.HasPrefix(s[i:], "--"):
			end := strings.IndexByte(s[i:], '\n')
			if end < 0 {
				return true
			}
			i += end + 1
		case strings.HasPrefix(s[i:], "/*"): // block comments nest in PostgreSQL
			depth := 0
			for i < len(s) {
				if strings.HasPrefix(s[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(s[i:], "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		default:
			return false
		}
	}
	return true
}

// invalidUTF8 returns the offset of the first byte of data that is not valid UTF-8, or -1.
func invalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

// lineAt returns the 1-based line of offset i in data.
func lineAt(data []byte, i int) int { return bytes.Count(data[:i], []byte{'\n'}) + 1 }

// pathErr drops the path from a *fs.PathError: problems already name their file.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
