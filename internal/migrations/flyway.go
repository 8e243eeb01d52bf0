package migrations

import (
	"bytes"
	"cmp"
	"hash/crc32"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// Flyway's rules, as flyway-core has them: names in
// org/flywaydb/core/internal/resource/ResourceNameParser.java (a prefix, a version, the "__"
// separator, a description, ".sql"; prefixes matched longest first, case-sensitive), versions in
// org/flywaydb/core/api/MigrationVersion.java ('_' read as '.', numbers compared one by one,
// trailing zeros dropped), callbacks' names in org/flywaydb/core/api/callback/Event.java, and a
// script's configuration in org/flywaydb/core/internal/sqlscript/SqlScriptMetadata.java.

var (
	flywayVersionRE = regexp.MustCompile(`^[0-9]+([._][0-9]+)*$`)
	// flywayHooksVersionRE is the stem of a hooks file named after a version: V1_2, V1.2.
	flywayHooksVersionRE = regexp.MustCompile(`^V([0-9]+(?:[._][0-9]+)*)$`)
	// flywayStemVersionRE reads the version of a versioned migration's stem.
	flywayStemVersionRE = regexp.MustCompile(`^V([0-9]+(?:[._][0-9]+)*)__`)
	// flywayPlaceholderRE is a placeholder with Flyway's default prefix and suffix.
	flywayPlaceholderRE = regexp.MustCompile(`\$\{[^}\n]*\}`)
)

// flywayEvents are the names of Flyway's callbacks, longest first, as Flyway matches them.
var flywayEvents = func() []string {
	events := []string{
		"beforeClean", "afterClean", "afterCleanError",
		"beforeMigrate", "beforeEachMigrate", "beforeEachMigrateStatement",
		"afterEachMigrateStatement", "afterEachMigrateStatementError", "afterEachMigrate",
		"afterEachMigrateError", "beforeRepeatables", "afterVersioned", "afterMigrateApplied",
		"afterMigrate", "afterMigrateError",
		"beforeUndo", "beforeEachUndo", "beforeEachUndoStatement", "afterEachUndoStatement",
		"afterEachUndoStatementError", "afterEachUndo", "afterEachUndoError", "afterUndo",
		"afterUndoError",
		"beforeValidate", "afterValidate", "afterValidateError",
		"beforeBaseline", "afterBaseline", "afterBaselineError",
		"beforeRepair", "afterRepair", "afterRepairError",
		"beforeInfo", "afterInfo", "afterInfoError",
		"afterMigrateOperationFinish", "afterInfoOperationFinish",
		"createSchema", "beforeConnect",
	}
	slices.SortStableFunc(events, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	return events
}()

// flywayVersion writes a Flyway version as Flyway's history table records it: '_' as '.'.
func flywayVersion(v string) string { return strings.ReplaceAll(v, "_", ".") }

var flywayNaming = naming{
	upSuffix: ".sql",
	expected: "Flyway's files named V<version>__<description>.sql",
	hooksVersion: func(stem string) (string, bool) {
		m := flywayHooksVersionRE.FindStringSubmatch(stem)
		if m == nil {
			return "", false
		}
		return flywayVersion(m[1]), true
	},
	stemVersion: func(stem string) (string, bool) {
		m := flywayStemVersionRE.FindStringSubmatch(stem)
		if m == nil {
			return "", false
		}
		return flywayVersion(m[1]), true
	},
}

// flywayScript is a versioned (V) or undo (U) migration's file.
type flywayScript struct {
	file    string
	undo    bool
	version string // as Flyway records it
	name    string // the description, '_' as ' ', as Flyway records it
	config  scriptConfig
}

// readFlyway reads the files of a Flyway directory and its subdirectories. A U file is the down
// SQL of the V file of its version.
func (l *loader) readFlyway(files []string) ([]*parsed, []string) {
	slices.Sort(files)
	var hooks, configs []string
	var scripts []*flywayScript
	all := map[string]bool{}
	for _, file := range files {
		all[file] = true
		base := path.Base(file)
		if _, ok := hooksStem(file); ok {
			hooks = append(hooks, file)
			continue
		}
		switch {
		case strings.HasSuffix(base, ".sql.conf"):
			configs = append(configs, file)
			continue
		case hasSuffixFold(base, ".yaml", ".yml"):
			l.add(file, 0, "%s", notHooksMessage(".sql"))
			continue
		case !hasSuffixFold(base, ".sql"): // .go, another tool's
			continue
		}
		sc, msg := parseFlywayName(base)
		if msg != "" {
			l.add(file, 0, "%s", msg)
			continue
		}
		sc.file = file
		scripts = append(scripts, sc)
	}

	byFile := map[string]*flywayScript{}
	for _, sc := range scripts {
		byFile[sc.file] = sc
	}
	for _, c := range configs {
		script := strings.TrimSuffix(c, ".conf")
		switch sc := byFile[script]; {
		case sc != nil:
			sc.config = l.readScriptConfig(c)
		case !all[script]:
			l.add(c, 0, "configures %s, which is not in the directory: rename it after its script, or remove it", path.Base(script))
		}
		// else the script is a file with a problem of its own
	}

	var ps []*parsed
	for _, sc := range scripts {
		if !sc.undo {
			ps = append(ps, &parsed{
				file: sc.file, stem: strings.TrimSuffix(sc.file, ".sql"), version: sc.version, name: sc.name,
				noTx: sc.config.noTx,
			})
		}
	}
	undos := map[*parsed]*flywayScript{}
	byVersion := firstByVersion(ps)
	for _, sc := range scripts {
		if !sc.undo {
			continue
		}
		switch p := byVersion[contract.VersionKey(sc.version)]; {
		case p == nil:
			l.add(sc.file, 0, "is the undo migration of version %s, but no V%s__<description>.sql has that version: an undo migration needs the versioned migration it undoes", sc.version, sc.version)
		case undos[p] != nil:
			l.add(sc.file, 0, "%s is also the undo migration of version %s; keep one", undos[p].file, sc.version)
		default:
			undos[p] = sc
		}
	}
	for _, p := range ps {
		p.up = l.readSQL(p.file, true)
		sum := FlywayChecksum([]byte(p.up))
		p.flywaySum = &sum
		if !byFile[p.file].config.literal {
			l.checkPlaceholders(p.file, p.up)
		}
		if u := undos[p]; u != nil {
			p.downFile = u.file
			p.down = l.readSQL(u.file, false)
			if !u.config.literal {
				l.checkPlaceholders(u.file, p.down)
			}
			// The worker has one setting for both directions of a migration.
			p.noTx = p.noTx || u.config.noTx
		}
	}
	return ps, hooks
}

// FlywayChecksum is the checksum Flyway records for a SQL migration with these contents: the
// CRC-32 of its lines read as Java's BufferedReader.readLine reads them (split at "\r\n", "\r"
// or "\n", the terminators left out), a leading byte-order mark dropped, each line re-encoded in
// UTF-8, as a signed 32-bit integer (ChecksumCalculator.calculateChecksumForResource). So line
// endings do not change it. The contents must be UTF-8, Flyway's default encoding.
func FlywayChecksum(contents []byte) int32 {
	contents = bytes.TrimPrefix(contents, []byte("\uFEFF"))
	h := crc32.NewIEEE()
	for len(contents) > 0 {
		i := bytes.IndexAny(contents, "\r\n")
		if i < 0 {
			h.Write(contents)
			break
		}
		h.Write(contents[:i])
		contents = contents[i+1:]
	}
	return int32(h.Sum32())
}

// parseFlywayName reads the name of an SQL file in a Flyway directory: a V or U script, or why
// the worker does not take it.
func parseFlywayName(base string) (*flywayScript, string) {
	const patterns = "expected V<version>__<description>.sql (a versioned migration) or U<version>__<description>.sql (its undo), the version numbers separated by '.' or '_'"
	stem, ok := strings.CutSuffix(base, ".sql")
	if !ok {
		return nil, "fits no Flyway pattern; " + patterns + " (the suffix must be lower case)"
	}
	for _, ev := range flywayEvents {
		if strings.HasPrefix(stem, ev) {
			return nil, "is a Flyway callback (" + ev + "): the worker does not run Flyway's callbacks; declare a hook in the hooks file of a migration instead (a before_ddl or after_ddl hook of type sql, for example)"
		}
	}
	switch {
	case strings.HasPrefix(stem, "R__"):
		return nil, "is a Flyway repeatable migration, which the worker does not support: it applies each migration once, in version order, and a repeatable migration has no version (Flyway reapplies it whenever it changes); make it a versioned migration V<version>__<description>.sql"
	case !strings.HasPrefix(stem, "V") && !strings.HasPrefix(stem, "U"):
		return nil, "fits no Flyway pattern; " + patterns
	}
	prefix := stem[:1]
	version, desc, sep := strings.Cut(stem[1:], "__")
	switch {
	case version == "":
		return nil, "has no version: Flyway names a migration " + prefix + "<version>__<description>.sql, for example " + prefix + "1_2__add_users.sql"
	case !flywayVersionRE.MatchString(version):
		hint := ""
		if !sep {
			hint = " (is the \"__\" between the version and the description missing?)"
		}
		return nil, "version " + quote(version) + " does not parse: Flyway's versions are numbers separated by '.' or '_', as in " + prefix + "1_2__add_users.sql" + hint
	case desc == "":
		return nil, "has no description after its version: the worker needs a name for each migration; rename it to " + prefix + version + "__<description>.sql (Flyway records the version, so its history stays valid)"
	}
	return &flywayScript{undo: prefix == "U", version: flywayVersion(version), name: strings.ReplaceAll(desc, "_", " ")}, ""
}

// maxPlaceholderProblems bounds the placeholders reported a file: past a few, one problem says
// there are more, and the rest of the file is not searched (a hostile file of "${}" would
// otherwise make a million problems, and searching it all took seconds under the race
// detector).
const maxPlaceholderProblems = 20

// checkPlaceholders reports Flyway's placeholders in a script: Flyway replaces ${name} with the
// value configured for it (and fails when there is none), which the worker cannot know.
func (l *loader) checkPlaceholders(file, sql string) {
	locs := flywayPlaceholderRE.FindAllStringIndex(sql, maxPlaceholderProblems+1)
	line, from := 1, 0
	for i, loc := range locs {
		line += strings.Count(sql[from:loc[0]], "\n")
		from = loc[0]
		if i == maxPlaceholderProblems {
			l.add(file, line, "and more Flyway placeholders from here on, which the worker does not replace either")
			return
		}
		placeholder := sql[loc[0]:loc[1]]
		what := "a Flyway placeholder"
		if strings.HasPrefix(placeholder, "${flyway:") {
			what = "one of Flyway's built-in placeholders" // the worker has no Flyway configuration to take their values from
		}
		l.add(file, line, "%s is %s, which the worker does not replace: write its value into the file (or, if the text is meant as it is, set placeholderReplacement=false in %s.conf)",
			clipText(placeholder, 80), what, path.Base(file))
	}
}

// scriptConfig is what a script's configuration file (V1__x.sql.conf) says.
type scriptConfig struct {
	noTx    bool // executeInTransaction=false
	literal bool // placeholderReplacement=false
}

// maxScriptConfigBytes bounds a script's configuration file, a few lines.
const maxScriptConfigBytes = 64 << 10

var scriptConfigKeys = []string{"executeInTransaction", "placeholderReplacement", "encoding"}

// readScriptConfig reads a script's configuration, a Java properties file ("key=value",
// "key: value", comments starting with '#' or '!'), as Flyway does: an unknown key is an error.
func (l *loader) readScriptConfig(file string) scriptConfig {
	var c scriptConfig
	data, ok := l.read(file, maxScriptConfigBytes)
	if !ok {
		return c
	}
	if i := invalidUTF8(data); i >= 0 {
		l.add(file, lineAt(data, i), "is not valid UTF-8")
		return c
	}
	boolean := func(no int, key, value string) (bool, bool) {
		switch {
		case strings.EqualFold(value, "true"):
			return true, true
		case strings.EqualFold(value, "false"):
			return false, true
		}
		l.add(file, no, "%s must be true or false, found %s", key, quote(value))
		return false, false
	}
	eachLine(data, func(no, _, _ int, text string) bool {
		line := strings.TrimLeft(text, " \t\f")
		if line == "" || line[0] == '#' || line[0] == '!' {
			return true
		}
		key, value := splitProperty(line)
		switch key {
		case "executeInTransaction":
			if b, ok := boolean(no, key, value); ok {
				c.noTx = !b
			}
		case "placeholderReplacement":
			if b, ok := boolean(no, key, value); ok {
				c.literal = !b
			}
		case "encoding":
			if !strings.EqualFold(value, "UTF-8") && !strings.EqualFold(value, "UTF8") {
				l.add(file, no, "encoding %s: the worker reads SQL files as UTF-8; convert the script to UTF-8, and set encoding=UTF-8 or remove the line", quote(value))
			}
		case "shouldExecute":
			l.add(file, no, "shouldExecute (Flyway Teams) is not supported: the worker runs every migration of a request; remove the line")
		default:
			l.add(file, no, "unknown key %s; the keys of a script's configuration are %s%s", quote(key), strings.Join(scriptConfigKeys, ", "), didYouMean(key, scriptConfigKeys))
		}
		return true
	})
	return c
}

// splitProperty splits a Java properties line into its key and value: the key ends at the
// first '=', ':' or blank, which blanks may surround.
func splitProperty(line string) (string, string) {
	i := strings.IndexAny(line, "=: \t\f")
	if i < 0 {
		return line, ""
	}
	key, rest := line[:i], strings.TrimLeft(line[i:], " \t\f")
	if rest != "" && (rest[0] == '=' || rest[0] == ':') {
		rest = rest[1:]
	}
	return key, strings.TrimSpace(rest)
}
