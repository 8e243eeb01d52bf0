package migrations

import (
	"bytes"
	"regexp"
	"strings"
)

// dbmate's rules, as github.com/amacneil/dbmate has them: file names in pkg/dbmate/db.go
// (migrationFileRegexp), blocks and their options in pkg/dbmate/migration.go
// (parseMigrationContents and what it calls).

var (
	// dbmateFileRE is a dbmate migration's name: the version is its leading digits.
	dbmateFileRE = regexp.MustCompile(`^([0-9]+)(.*)\.sql$`)
	// dbmateUpRE and dbmateDownRE find the blocks' directives, at the start of a line.
	dbmateUpRE   = regexp.MustCompile(`(?m)^--\s*migrate:up(\s*$|\s+\S+)`)
	dbmateDownRE = regexp.MustCompile(`(?m)^--\s*migrate:down(\s*$|\s+\S+)`)
	// dbmateDirectiveRE is what precedes a directive's options.
	dbmateDirectiveRE = regexp.MustCompile(`^--\s*migrate:(up|down)`)
	// dbmateBlankRE and dbmateCommentRE are the lines dbmate allows before the up block.
	dbmateBlankRE   = regexp.MustCompile(`^\s*$`)
	dbmateCommentRE = regexp.MustCompile(`^\s*--`)
)

var dbmateNaming = naming{
	upSuffix:     ".sql",
	expected:     "dbmate's files named <version>_<name>.sql",
	hooksVersion: digitsVersion,
	stemVersion:  leadingVersion,
}

// sqlFile sorts one file of a directory whose migrations are .sql files named as re says: a
// hooks file goes to hooks; a YAML file that is not one, or an .sql file that re does not
// match, is a problem (wrong says how the format names its files); other files (.go,
// .sql.conf) are not the format's business. It returns re's submatches for a migration file,
// and nil for any other.
func (l *loader) sqlFile(name string, re *regexp.Regexp, upSuffix string, hooks *[]string, wrong string) []string {
	if _, ok := hooksStem(name); ok {
		*hooks = append(*hooks, name)
		return nil
	}
	switch {
	case hasSuffixFold(name, ".yaml", ".yml"):
		l.add(name, 0, "%s", notHooksMessage(upSuffix))
		return nil
	case !hasSuffixFold(name, ".sql"):
		return nil
	}
	m := re.FindStringSubmatch(name)
	if m == nil {
		hint := ""
		if re.MatchString(strings.ToLower(name)) {
			hint = " (the suffix must be lower case)"
		}
		l.add(name, 0, "%s%s", wrong, hint)
	}
	return m
}

// readDbmate reads the files of a dbmate directory. The name of a migration is what follows its
// version in the file name, without ".sql" and the '_' that dbmate new puts there.
func (l *loader) readDbmate(files []string) ([]*parsed, []string) {
	var ps []*parsed
	var hooks []string
	for _, name := range files {
		m := l.sqlFile(name, dbmateFileRE, ".sql", &hooks,
			"not a dbmate migration file name; expected <version>_<name>.sql, where version is digits (dbmate new writes a timestamp)")
		if m == nil {
			continue
		}
		p := &parsed{file: name, stem: strings.TrimSuffix(name, ".sql"), version: m[1], name: strings.TrimPrefix(m[2], "_")}
		if p.name == "" {
			l.add(name, 0, "has no name after its version: the worker shows a migration as <version>_<name>; rename it to %s_<name>.sql (dbmate records the version only, so its history stays valid)", m[1])
		}
		l.readSectioned(p, "'-- migrate:up' block", "'-- migrate:down' block", parseDbmate)
		ps = append(ps, p)
	}
	return ps, hooks
}

// parseDbmate reads a dbmate migration as dbmate does: an up block from "-- migrate:up" to
// "-- migrate:down", a down block from there to the end, each with its directive line (dbmate
// runs it, a comment), options on the directive's line. "transaction:false" on either sets
// noTx: the worker has one setting for both directions of a migration, so a migration that
// dbmate runs outside a transaction one way runs outside one both ways.
//
// dbmate lately runs a file of several up/down pairs one pair after another, each pair in a
// transaction of its own; the worker runs a migration's up SQL as one piece, so such a file is a
// problem to split.
func parseDbmate(data []byte, report reportFunc) sections {
	var s sections
	// A byte order mark hides a directive on the first line from dbmate's "^--"; the worker reads
	// such a file all the same, as the other formats' (the mark is not part of any block).
	text := string(bytes.TrimPrefix(data, []byte("\ufeff")))
	bom := len(data) - len(text)
	line := func(offset int) int { return lineAt(data, bom+offset) }

	ups := dbmateUpRE.FindAllStringIndex(text, -1)
	downs := dbmateDownRE.FindAllStringIndex(text, -1)
	if len(ups) == 0 {
		report(0, "has no '-- migrate:up' block: dbmate requires one; start the migration's SQL with a line '-- migrate:up' (and the SQL that reverts it with '-- migrate:down')")
		return s
	}
	up := ups[0][0]
	s.upLine = line(up)
	for i, ln := range strings.Split(text[:up], "\n") {
		if !dbmateBlankRE.MatchString(ln) && !dbmateCommentRE.MatchString(ln) {
			report(i+1, "SQL before '-- migrate:up' (line %d): dbmate does not support statements before it; move this below it", s.upLine)
			return s
		}
	}
	if len(ups) > 1 {
		report(line(ups[1][0]), "a second '-- migrate:up' (the first is at line %d): dbmate runs each up/down pair in turn, each in a transaction of its own, but the worker runs a migration's SQL as one up and one down block; split the file into one migration per pair", s.upLine)
		return s
	}
	if len(downs) == 0 {
		report(s.upLine, "the '-- migrate:up' block has no '-- migrate:down' after it: dbmate requires one; add a line '-- migrate:down' after the up SQL (nothing needs to follow it)")
		return s
	}
	down := downs[0][0]
	if down < up {
		report(line(down), "'-- migrate:down' comes before '-- migrate:up' (line %d): dbmate requires the up block first", s.upLine)
		return s
	}
	s.downLine = line(down)
	if len(downs) > 1 {
		report(line(downs[1][0]), "a second '-- migrate:down' (the first is at line %d): dbmate allows one after each '-- migrate:up'", s.downLine)
		return s
	}
	s.up, s.down = []byte(text[up:down]), []byte(text[down:])
	s.noTx = dbmateNoTransaction(text[up:down]) || dbmateNoTransaction(text[down:])
	s.ok = true
	return s
}

// dbmateNoTransaction reads the options on a block's directive line as dbmate's
// parseMigrationOptions does ("transaction:false foo:bar"; a pair that is not key:value is
// skipped, unknown keys are ignored) and reports whether they say transaction:false.
func dbmateNoTransaction(block string) bool {
	first, _, _ := strings.Cut(block, "\n")
	opts := strings.TrimSpace(dbmateDirectiveRE.ReplaceAllString(first, ""))
	noTx := false
	for _, pair := range strings.Fields(opts) {
		kv := strings.Split(pair, ":")
		if len(kv) == 2 && kv[0] == "transaction" {
			noTx = kv[1] == "false"
		}
	}
	return noTx
}
