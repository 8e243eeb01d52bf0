package migrations

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

var (
	fileNameRE = regexp.MustCompile(`^([0-9]{1,32})_([A-Za-z0-9][A-Za-z0-9_-]{0,127})\.(up\.sql|down\.sql|hooks\.yaml|hooks\.yml)$`)
	// bareSQLRE matches "<version>_<name>.sql", a likely up.sql missing its ".up".
	bareSQLRE = regexp.MustCompile(`^([0-9]{1,32}_[A-Za-z0-9][A-Za-z0-9_-]{0,127})\.sql$`)
	// versionHooksRE matches "<version>.hooks.yaml", the hooks of the migration of that version.
	versionHooksRE = regexp.MustCompile(`^[0-9]{1,32}\.hooks\.(yaml|yml)$`)

	// golangMigrateRE is golang-migrate's file name (source.Regex in
	// github.com/golang-migrate/migrate/v4@v4.20.1, source/parse.go), for SQL files:
	// version, title, direction.
	golangMigrateRE = regexp.MustCompile(`^([0-9]+)_(.*)\.(up|down)\.sql$`)

	digitsRE        = regexp.MustCompile(`^[0-9]+$`)
	leadingDigitsRE = regexp.MustCompile(`^([0-9]+)`)
)

// digitsVersion reads the stem of a "<version>.hooks.yaml" of the formats whose versions are a
// number.
func digitsVersion(stem string) (string, bool) { return stem, digitsRE.MatchString(stem) }

// leadingVersion reads the number a stem starts with.
func leadingVersion(stem string) (string, bool) {
	m := leadingDigitsRE.FindString(stem)
	return m, m != ""
}

var confitureNaming = naming{
	upSuffix:     ".up.sql",
	expected:     "files named <version>_<name>.up.sql",
	hooksVersion: digitsVersion,
	stemVersion:  leadingVersion,
}

var golangMigrateNaming = naming{
	upSuffix:     ".up.sql",
	expected:     "golang-migrate's files named <version>_<title>.up.sql",
	hooksVersion: digitsVersion,
	stemVersion:  leadingVersion,
}

// readConfiture reads the files of a directory in the worker's own format. guessed says that
// nothing told the format, so that the problem of a bare <version>_<name>.sql mentions the
// markers of goose and dbmate.
func (l *loader) readConfiture(files []string, guessed bool) ([]*parsed, []string) {
	type group struct{ version, name, up, down string }
	groups := map[string]*group{}
	var hooks []string
	for _, name := range files {
		if !hasSuffixFold(name, ".sql", ".yaml", ".yml") { // .go, .sql.conf: another tool's
			continue
		}
		if versionHooksRE.MatchString(name) {
			hooks = append(hooks, name)
			continue
		}
		m := fileNameRE.FindStringSubmatch(name)
		if m == nil {
			l.add(name, 0, "%s", badNameMessage(name, guessed))
			continue
		}
		id := m[1] + "_" + m[2]
		g := groups[id]
		if g == nil {
			g = &group{version: m[1], name: m[2]}
			groups[id] = g
		}
		switch m[3] {
		case "up.sql":
			g.up = name
		case "down.sql":
			g.down = name
		default:
			hooks = append(hooks, name)
		}
	}

	var ps []*parsed
	for _, id := range slices.Sorted(maps.Keys(groups)) {
		if g := groups[id]; g.up != "" {
			ps = append(ps, &parsed{file: g.up, stem: id, version: g.version, name: g.name})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(groups)) {
		if g := groups[id]; g.up == "" && g.down != "" {
			l.add(g.down, 0, "has no matching %s_%s.up.sql%s", g.version, g.name, sameVersionHint(ps, g.version))
		}
	}
	for _, p := range ps {
		p.up = l.readSQL(p.file, true)
		if down := groups[p.stem].down; down != "" {
			p.down = l.readSQL(down, false)
		}
	}
	return ps, hooks
}

func badNameMessage(name string, guessed bool) string {
	msg := "not a migration file name; expected <version>_<name>.up.sql, <version>_<name>.down.sql " +
		"or <version>_<name>.hooks.yaml (or <version>.hooks.yaml), where version is 1 to 32 digits and name is 1 to 128 " +
		"letters, digits, '_' or '-' starting with a letter or digit"
	switch {
	case bareSQLRE.MatchString(name):
		msg += fmt.Sprintf(" (rename it to %s.up.sql?)", strings.TrimSuffix(name, ".sql"))
		if guessed {
			msg += "; or, if it is a goose migration, it needs a '-- +goose Up' line before its SQL, " +
				"and if it is a dbmate migration, a '-- migrate:up' line"
		}
	case fileNameRE.MatchString(strings.ToLower(name)):
		msg += " (the suffix must be lower case)"
	}
	return msg
}

// readGolangMigrate reads the files of a golang-migrate directory: <version>_<title>.up.sql and
// .down.sql, the title any text. The SQL is left as the files hold it (golang-migrate runs a
// file as one multi-statement script; a file that wraps itself in BEGIN and COMMIT is the
// worker's to run, not a problem here).
func (l *loader) readGolangMigrate(files []string) ([]*parsed, []string) {
	type down struct{ file, version, title string }
	var ps []*parsed
	var downs []down
	var hooks []string
	for _, name := range files {
		m := l.sqlFile(name, golangMigrateRE, ".up.sql", &hooks,
			"not a golang-migrate migration file name; expected <version>_<title>.up.sql or <version>_<title>.down.sql, where version is digits")
		if m == nil {
			continue
		}
		// golang-migrate parses the version as a uint64 (source.Parse) and skips a file whose
		// version does not fit.
		if _, err := strconv.ParseUint(m[1], 10, 64); err != nil {
			l.add(name, 0, "version %s is beyond golang-migrate's versions (at most %d), which skips such a file; renumber it", clipText(m[1], 80), uint64(math.MaxUint64))
			continue
		}
		if m[3] == "down" {
			downs = append(downs, down{file: name, version: m[1], title: m[2]})
			continue
		}
		ps = append(ps, &parsed{file: name, stem: strings.TrimSuffix(name, ".up.sql"), version: m[1], name: m[2]})
	}
	// golang-migrate pairs an up and a down file by version alone: their titles may differ.
	byVersion := firstByVersion(ps)
	for _, d := range downs {
		switch p := byVersion[contract.VersionKey(d.version)]; {
		case p == nil:
			l.add(d.file, 0, "has no matching %s_%s.up.sql: a down file needs the up file of its version", d.version, d.title)
		case p.downFile != "":
			l.add(d.file, 0, "%s is also the down file of version %s; keep one", p.downFile, d.version)
		default:
			p.downFile = d.file
		}
	}
	for _, p := range ps {
		p.up = l.readSQL(p.file, true)
		if p.downFile != "" {
			p.down = l.readSQL(p.downFile, false)
		}
	}
	return ps, hooks
}
