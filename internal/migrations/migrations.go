// Package migrations loads a migrations directory from disk into contract.Migration values.
//
// It reads a directory in one of five formats (Format), in place, so that a project that used
// another tool moves to the worker without renaming a file:
//
//   - confiture, its own: <version>_<name>.up.sql (required) and <version>_<name>.down.sql
//     (optional), where version is 1 to 32 digits and name is 1 to 128 letters, digits, '_' or
//     '-', starting with a letter or digit.
//   - golang-migrate: <version>_<title>.up.sql and .down.sql, whatever the title.
//   - goose: <version>_<name>.sql holding "-- +goose Up" and "-- +goose Down" sections.
//   - dbmate: <version><name>.sql holding "-- migrate:up" and "-- migrate:down" blocks.
//   - flyway: V<version>__<description>.sql, with its undo U<version>__<description>.sql, in
//     the directory and its subdirectories.
//
// Each rule is the tool's own, read from its source (the files name which). A migration of any
// format may have hooks: <stem>.hooks.yaml (or .yml), where stem is the name of its file without
// .up.sql (confiture, golang-migrate) or .sql (the others), or <version>.hooks.yaml with the
// version written as in the file names (Flyway's V1_2 or V1.2).
//
// The format is the one the caller names, or the one a confiture.yaml file in the directory names
// ("format: goose"), or else the one its files show (see LoadFormat). Dotfiles, dot-directories,
// subdirectories (but Flyway's, which it scans as Flyway does), and files that end in neither
// .sql, .yaml nor .yml are ignored, so a README can sit next to the migrations; so are .go and
// .sql.conf files, but goose's Go migrations (reported) and Flyway's script configurations.
//
// Loading checks everything it can before a request is built, and reports every problem it
// finds at once, each with its file and, where one applies, its line: see LoadError.
package migrations

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// Limits taken from schemas/request.v1.json, checked here so that a directory that loads is a
// directory that the worker accepts.
const (
	maxSQLChars = 1 << 20 // up_sql and down_sql: at most 1,048,576 characters
	// maxSQLBytes bounds what is read of an SQL file: maxSQLChars characters of up to 4 bytes.
	maxSQLBytes = 4 * maxSQLChars
	// maxNameChars is the longest name a request may carry.
	maxNameChars = 200
)

// Format is a layout of a migrations directory: how its files are named and what they hold.
type Format string

// The formats Load reads.
const (
	FormatConfiture     Format = "confiture"
	FormatGolangMigrate Format = "golang-migrate"
	FormatGoose         Format = "goose"
	FormatDbmate        Format = "dbmate"
	FormatFlyway        Format = "flyway"
)

// Formats lists the formats Load reads.
var Formats = []Format{FormatConfiture, FormatGolangMigrate, FormatGoose, FormatDbmate, FormatFlyway}

// ErrUnknownFormat is the error of LoadFormat asked for a format it does not read.
var ErrUnknownFormat = errors.New("unknown migrations format")

// Problem is one thing wrong with a migrations directory.
type Problem struct {
	// File is the file at fault, relative to the directory ('/' between the names of Flyway's
	// subdirectories); empty when the problem is the directory itself.
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

// Load reads the migrations in dir, in the format that a confiture.yaml in it names or else the
// one its files show: LoadFormat(dir, "").
func Load(dir string) ([]contract.Migration, error) {
	ms, _, err := LoadFormat(dir, "")
	return ms, err
}

// LoadFormat reads the migrations in dir as format f. When f is "", the format is the one named
// by dir's confiture.yaml ("format: goose", its only key), or else the one its files (not those
// of its subdirectories) show:
//
//   - <version>_<title>.up.sql and .down.sql: confiture when every such name fits its rule,
//     golang-migrate otherwise;
//   - V<version>__, U<version>__ and R__ files, and Flyway's callbacks (beforeMigrate.sql, ...):
//     flyway;
//   - <version>_<name>.sql files holding a "-- +goose" annotation, and goose's Go migrations
//     (<version>_<name>.go): goose;
//   - <version><name>.sql files holding "-- migrate:up": dbmate;
//   - nothing of the above: confiture.
//
// Files that show two formats are a problem (of each file of the less used ones). A format
// asked for that differs from confiture.yaml's is a problem too.
//
// It returns the migrations sorted by version (contract.CompareVersions), and the format read
// ("" when it could not be told). Checksum is contract.Checksum of UpSQL, UpSQL and DownSQL are
// the SQL as the file holds it (the whole file, or its section), and Hooks lists the hooks file's
// declarations in the order they appear in the file. On a problem it returns a *LoadError listing
// every problem found, and no migration; for an unknown f, an error wrapping ErrUnknownFormat.
func LoadFormat(dir string, f Format) ([]contract.Migration, Format, error) {
	if f != "" && !slices.Contains(Formats, f) {
		return nil, "", fmt.Errorf("%w %q: the formats are %s", ErrUnknownFormat, string(f), strings.Join(formatNames(), ", "))
	}
	l := &loader{dir: dir, reads: map[string]readResult{}}
	ms, used := l.load(f)
	if len(l.problems) > 0 {
		slices.SortStableFunc(l.problems, func(a, b Problem) int {
			return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
		})
		return nil, used, &LoadError{Dir: dir, Problems: l.problems}
	}
	return ms, used, nil
}

// formatNames are the names of Formats.
func formatNames() []string {
	names := make([]string, len(Formats))
	for i, f := range Formats {
		names[i] = string(f)
	}
	return names
}

type loader struct {
	dir      string
	problems []Problem
	// reads holds what read returned for each file, so that a file read to detect the format
	// is not read, nor its problems reported, twice.
	reads map[string]readResult
}

type readResult struct {
	data []byte
	ok   bool
}

// parsed is one migration as its format reads it, before the checks every format shares.
type parsed struct {
	file string // the file that defines it (its up file), relative to the directory
	// stem is file without its format's suffix: the hooks file <stem>.hooks.yaml is its.
	stem     string
	version  string
	name     string
	up, down string
	downFile string // the file down comes from: golang-migrate's .down.sql, Flyway's U file
	noTx     bool
	hooks    string // its hooks file, once attachHooks found it
	// flywaySum is the checksum Flyway records for the migration (FlywayChecksum), for a
	// Flyway script.
	flywaySum *int32
}

// naming is what the checks every format shares need to know of its file names.
type naming struct {
	// upSuffix follows a migration's stem in the name of the file that defines it.
	upSuffix string
	// expected says how the format names its migrations, for "no migrations".
	expected string
	// hooksVersion returns the version that the stem of a "<version>.hooks.yaml" file spells,
	// when it is one.
	hooksVersion func(stem string) (string, bool)
	// stemVersion returns the version a migration's stem starts with, when it does, for hints.
	stemVersion func(stem string) (string, bool)
}

func (l *loader) add(file string, line int, format string, args ...any) {
	l.problems = append(l.problems, Problem{File: file, Line: line, Message: fmt.Sprintf(format, args...)})
}

func (l *loader) load(asked Format) ([]contract.Migration, Format) {
	info, err := os.Stat(l.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		l.add("", 0, "no such directory")
		return nil, asked
	case err != nil:
		l.add("", 0, "cannot read directory: %v", pathErr(err))
		return nil, asked
	case !info.IsDir():
		l.add("", 0, "not a directory")
		return nil, asked
	}
	files, dirs, ok := l.scan("")
	if !ok {
		return nil, asked
	}
	files, cfg := l.dirConfig(files)

	format, guessed := asked, false
	switch {
	case asked != "" && cfg.format != "" && cfg.format != asked:
		l.add(cfg.file, cfg.line, "%s says %s; asked for %s: name one format, or the same in both", cfg.file, cfg.format, asked)
	case asked == "" && cfg.format != "":
		format = cfg.format
	case asked == "":
		format, guessed = l.detect(files)
		if format == "" {
			return nil, "" // files of two formats: each is a problem already
		}
	}

	var ps []*parsed
	var hooks []string
	var n naming
	switch format {
	case FormatConfiture:
		ps, hooks = l.readConfiture(files, guessed)
		n = confitureNaming
		if guessed {
			n.expected += guessedHint(dirs)
		}
	case FormatGolangMigrate:
		ps, hooks = l.readGolangMigrate(files)
		n = golangMigrateNaming
	case FormatGoose:
		ps, hooks = l.readGoose(files)
		n = gooseNaming
	case FormatDbmate:
		ps, hooks = l.readDbmate(files)
		n = dbmateNaming
	case FormatFlyway:
		ps, hooks = l.readFlyway(append(files, l.walk(dirs)...))
		n = flywayNaming
	}
	return l.assemble(ps, hooks, n), format
}

// guessedHint completes "no migrations" when nothing told the format.
func guessedHint(dirs []string) string {
	hint := ", or golang-migrate's, goose's, dbmate's or Flyway's migrations"
	if len(dirs) > 0 {
		hint += " (Flyway's may sit in subdirectories, but then a confiture.yaml holding \"format: flyway\" has to say so)"
	}
	return hint
}

// assemble runs the checks every format shares (versions, names, duplicates, hooks files) and
// returns the migrations sorted by version.
func (l *loader) assemble(ps []*parsed, hooksFiles []string, n naming) []contract.Migration {
	if len(ps) == 0 {
		l.add("", 0, "no migrations: expected %s", n.expected)
	}
	for _, p := range ps {
		switch {
		case len(p.version) > contract.MaxVersionLen:
			l.add(p.file, 0, "version %s is %d characters long; a request allows at most %d: renumber the file", clipText(p.version, 80), len(p.version), contract.MaxVersionLen)
		case !contract.ValidVersion(p.version):
			l.add(p.file, 0, "version %s is not a version: numbers separated by dots", quote(p.version))
		}
		if msg := nameProblem(p.name); msg != "" {
			l.add(p.file, 0, "%s", msg)
		}
	}
	l.checkDuplicates(ps)
	l.attachHooks(ps, hooksFiles, n)

	ms := make([]contract.Migration, 0, len(ps))
	for _, p := range ps {
		m := contract.Migration{
			Version: p.version, Name: p.name, UpSQL: p.up, DownSQL: p.down,
			Checksum: contract.Checksum(p.up), NoTransaction: p.noTx, File: p.file, FlywayChecksum: p.flywaySum,
		}
		if p.hooks != "" {
			if data, ok := l.read(p.hooks, maxHooksFileBytes); ok {
				hooks, problems := parseHooks(p.hooks, data)
				m.Hooks = hooks
				l.problems = append(l.problems, problems...)
			}
		}
		ms = append(ms, m)
	}
	slices.SortStableFunc(ms, func(a, b contract.Migration) int { return contract.CompareVersions(a.Version, b.Version) })
	return ms
}

// nameProblem says what is wrong with a migration's name, read from its file's name, or "".
func nameProblem(name string) string {
	const rule = "a request takes 1 to 200 characters, without control characters or '/'; rename the file"
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return "the migration's name is empty: " + rule
	case n > maxNameChars:
		return fmt.Sprintf("the migration's name is %d characters long: %s", n, rule)
	case strings.ContainsFunc(name, func(r rune) bool { return r == '/' || unicode.IsControl(r) }):
		return fmt.Sprintf("the migration's name %s holds a control character or '/': %s", quote(name), rule)
	}
	return ""
}

// firstByVersion maps each version (contract.VersionKey) to its first migration: where the
// down SQL of another file goes. (Two migrations of one version are a problem of their own.)
func firstByVersion(ps []*parsed) map[string]*parsed {
	m := make(map[string]*parsed, len(ps))
	for _, p := range ps {
		if k := contract.VersionKey(p.version); m[k] == nil {
			m[k] = p
		}
	}
	return m
}

// checkDuplicates reports the migrations that share a version (contract.SameVersion: 001 and 1,
// 1.0 and 1), at each file but the first.
func (l *loader) checkDuplicates(ps []*parsed) {
	byKey := map[string][]*parsed{}
	var keys []string
	for _, p := range ps {
		if !contract.ValidVersion(p.version) {
			continue
		}
		k := contract.VersionKey(p.version)
		if byKey[k] == nil {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], p)
	}
	for _, k := range keys {
		same := byKey[k]
		if len(same) < 2 {
			continue
		}
		slices.SortFunc(same, func(a, b *parsed) int { return strings.Compare(a.file, b.file) })
		var files, spellings []string
		for _, p := range same {
			files = append(files, p.file)
			if !slices.Contains(spellings, p.version) {
				spellings = append(spellings, p.version)
			}
		}
		version, note := same[0].version, ""
		if len(spellings) > 1 {
			version = k
			note = fmt.Sprintf(" (%s are one version: versions compare as numbers)", strings.Join(spellings, " and "))
		}
		for _, p := range same[1:] {
			l.add(p.file, 0, "version %s is used by %s%s: each migration needs a version of its own", version, strings.Join(files, " and "), note)
		}
	}
}

// attachHooks finds the migration of each hooks file: the one whose stem it has, or else, for a
// "<version>.hooks.yaml", the one of that version.
func (l *loader) attachHooks(ps []*parsed, hooksFiles []string, n naming) {
	byStem := map[string]*parsed{}
	for _, p := range ps {
		byStem[p.stem] = p
	}
	byVersion := firstByVersion(ps)
	slices.Sort(hooksFiles)
	for _, hf := range hooksFiles {
		stem, _ := hooksStem(hf)
		p := byStem[stem]
		version, isVersion := n.hooksVersion(path.Base(stem))
		if p == nil && isVersion {
			if p = byVersion[contract.VersionKey(version)]; p == nil {
				l.add(hf, 0, "is the hooks file of version %s, but no migration has that version: rename it after a migration's file or version", version)
				continue
			}
		}
		switch {
		case p == nil:
			hint := ""
			if v, ok := n.stemVersion(path.Base(stem)); ok {
				hint = sameVersionHint(ps, v)
			}
			l.add(hf, 0, "has no matching %s%s%s", stem, n.upSuffix, hint)
		case p.hooks != "":
			if s, _ := hooksStem(p.hooks); s == stem {
				l.add(hf, 0, "%s also exists; keep one hooks file per migration", p.hooks)
			} else {
				l.add(hf, 0, "%s also declares the hooks of %s; keep one hooks file per migration", p.hooks, p.file)
			}
		default:
			p.hooks = hf
		}
	}
}

// sameVersionHint names the migrations of version v, when a file's name did not match theirs.
func sameVersionHint(ps []*parsed, v string) string {
	var same []string
	for _, p := range ps {
		if contract.ValidVersion(p.version) && contract.ValidVersion(v) && contract.SameVersion(p.version, v) {
			same = append(same, p.file)
		}
	}
	if len(same) == 0 {
		return ""
	}
	slices.Sort(same)
	return fmt.Sprintf(" (%s has the same version: is the name misspelt?)", strings.Join(same, ", "))
}

// hooksStem returns a hooks file's name without .hooks.yaml or .hooks.yml, and whether it has
// either suffix.
func hooksStem(name string) (string, bool) {
	for _, suffix := range []string{".hooks.yaml", ".hooks.yml"} {
		if stem, ok := strings.CutSuffix(name, suffix); ok && stem != "" && !strings.HasSuffix(stem, "/") {
			return stem, true
		}
	}
	return "", false
}

// notHooksMessage is the problem of a YAML file that is neither a hooks file nor confiture.yaml.
func notHooksMessage(upSuffix string) string {
	return fmt.Sprintf("not a hooks file name; expected <stem>.hooks.yaml, where <stem>%s is the migration's file, or <version>.hooks.yaml", upSuffix)
}

// scan lists the candidate files and the subdirectories of the directory rel (relative to the
// directory loaded; "" for itself), with '/' separators, sorted. Symbolic links to files are
// followed, those to directories are not (a loop would never end).
func (l *loader) scan(rel string) (files, dirs []string, ok bool) {
	entries, err := os.ReadDir(filepath.Join(l.dir, filepath.FromSlash(rel)))
	if err != nil {
		l.add(rel, 0, "cannot read directory: %v", pathErr(err))
		return nil, nil, false
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		file := path.Join(rel, name)
		if e.IsDir() {
			dirs = append(dirs, file)
			continue
		}
		if !isCandidate(name) {
			continue
		}
		if !e.Type().IsRegular() { // a symlink, or something that cannot be read as a file
			info, err := os.Stat(filepath.Join(l.dir, filepath.FromSlash(file)))
			if err != nil {
				l.add(file, 0, "cannot read: %v", pathErr(err))
				continue
			}
			if info.IsDir() {
				continue
			}
			if !info.Mode().IsRegular() {
				l.add(file, 0, "not a regular file")
				continue
			}
		}
		files = append(files, file)
	}
	return files, dirs, true
}

// walk lists the candidate files of dirs and of their subdirectories, as Flyway scans them.
func (l *loader) walk(dirs []string) []string {
	var all []string
	for len(dirs) > 0 {
		d := dirs[0]
		dirs = dirs[1:]
		files, sub, _ := l.scan(d)
		all = append(all, files...)
		dirs = append(dirs, sub...)
	}
	slices.Sort(all)
	return all
}

// readSQL reads an SQL file that is one migration's SQL, whole, and checks what the request
// schema and PostgreSQL require of it.
func (l *loader) readSQL(file string, up bool) string {
	data, ok := l.readText(file)
	if !ok {
		return ""
	}
	if utf8.Valid(data) {
		l.checkSize(file, 0, "", data)
	}
	if up && sqlIsEmpty(data) {
		l.add(file, 0, "is empty: it holds no SQL statement, only whitespace or comments")
	}
	return string(data)
}

// sections is what a file of a sectioned format (goose, dbmate) holds.
type sections struct {
	up, down         []byte
	upLine, downLine int // the lines of the markers; 0 when absent
	noTx             bool
	ok               bool // false after a problem that leaves the sections unknown
}

type reportFunc func(line int, format string, args ...any)

// readSectioned reads the SQL file of p, a goose or dbmate migration, with parse.
func (l *loader) readSectioned(p *parsed, upWhat, downWhat string, parse func([]byte, reportFunc) sections) {
	data, ok := l.readText(p.file)
	if !ok {
		return
	}
	s := parse(data, func(line int, format string, args ...any) { l.add(p.file, line, format, args...) })
	if !s.ok {
		return
	}
	l.checkSize(p.file, s.upLine, "the "+upWhat, s.up)
	if sqlIsEmpty(s.up) {
		l.add(p.file, s.upLine, "the %s holds no SQL statement, only whitespace or comments", upWhat)
	}
	p.up = string(s.up)
	if !sqlIsEmpty(s.down) {
		l.checkSize(p.file, s.downLine, "the "+downWhat, s.down)
		p.down = string(s.down)
	}
	p.noTx = s.noTx
}

// readText reads an SQL file and checks that it is text PostgreSQL takes: UTF-8 without NUL
// bytes. ok is false when it could not be read; problems of its bytes leave it true.
func (l *loader) readText(file string) ([]byte, bool) {
	data, ok := l.read(file, maxSQLBytes)
	if !ok {
		return nil, false
	}
	if i := invalidUTF8(data); i >= 0 {
		l.add(file, lineAt(data, i), "is not valid UTF-8")
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		l.add(file, lineAt(data, i), "contains a NUL byte, which PostgreSQL does not accept")
	}
	return data, true
}

// checkSize reports SQL of more characters than a request takes: a file's (what is "") or its
// section's, which starts at line.
func (l *loader) checkSize(file string, line int, what string, sql []byte) {
	if n := utf8.RuneCount(sql); n > maxSQLChars {
		if what == "" {
			l.add(file, line, "holds %d characters; at most %d are allowed", n, maxSQLChars)
		} else {
			l.add(file, line, "%s holds %d characters; at most %d are allowed", what, n, maxSQLChars)
		}
	}
}

// read reads a file of at most max bytes, once: a second read returns what the first did.
func (l *loader) read(file string, max int64) ([]byte, bool) {
	if r, done := l.reads[file]; done {
		return r.data, r.ok
	}
	data, ok := l.readFile(file, max)
	l.reads[file] = readResult{data: data, ok: ok}
	return data, ok
}

func (l *loader) readFile(file string, max int64) ([]byte, bool) {
	f, err := os.Open(filepath.Join(l.dir, filepath.FromSlash(file)))
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

// isCandidate reports whether a file may be part of a migrations directory: its name ends in
// .sql, .yaml or .yml, in any case, so that "001_x.UP.SQL" is reported rather than silently
// ignored; or in .go (goose's Go migrations, which are reported) or .sql.conf (Flyway's script
// configuration).
func isCandidate(name string) bool {
	lower := strings.ToLower(name)
	for _, suffix := range []string{".sql", ".yaml", ".yml", ".go", ".sql.conf"} {
		if strings.HasSuffix(lower, suffix) {
			return true
		}
	}
	return false
}

// hasSuffixFold reports whether name ends in one of suffixes, in any case.
func hasSuffixFold(name string, suffixes ...string) bool {
	lower := strings.ToLower(name)
	for _, s := range suffixes {
		if strings.HasSuffix(lower, s) {
			return true
		}
	}
	return false
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

// eachLine calls fn for each line of data with its 1-based number, the offsets of its start
// and of the next line's, and its text without the line end ("\n" or "\r\n") nor, on the first
// line, a byte order mark. It stops when fn returns false.
func eachLine(data []byte, fn func(no, start, next int, text string) bool) {
	for no, start := 1, 0; start < len(data); no++ {
		end := bytes.IndexByte(data[start:], '\n')
		next := len(data)
		if end < 0 {
			end = len(data)
		} else {
			end += start
			next = end + 1
		}
		text := strings.TrimSuffix(string(data[start:end]), "\r")
		if no == 1 {
			text = strings.TrimPrefix(text, "\ufeff")
		}
		if !fn(no, start, next, text) {
			return
		}
		start = next
	}
}

// clipText shortens s to max characters for a message.
func clipText(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	return string([]rune(s)[:max]) + "..."
}

// pathErr drops the path from a *fs.PathError: problems already name their file.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
