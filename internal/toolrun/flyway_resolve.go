package toolrun

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/confiture-io/confiture-worker/internal/migrations"
)

// flywayMigration is a versioned SQL migration found on disk, as Flyway resolves it.
type flywayMigration struct {
	version     flywayVersion
	description string // the name's description, '_' read as ' '
	script      string // path relative to the location, '/'-separated: the history's script
	path        string
	checksum    int32
	config      flywayScriptConfig
}

// flywayScriptConfig is a V…sql.conf file's settings; nil means not set.
type flywayScriptConfig struct {
	executeInTransaction   *bool
	placeholderReplacement *bool
}

// flywayVersion is a MigrationVersion: numbers separated by dots ('_' in a file name reads as
// '.'), compared number by number as big integers, a missing number counting as zero, so
// 1 = 1.0 = 001 and 1.2 < 1.10 < 2.
type flywayVersion struct {
	text  string   // as Flyway displays and records it: the name's version with '_' as '.'
	parts []string // the numbers without leading zeros, trailing zero numbers dropped
}

func parseFlywayVersion(s string) (flywayVersion, error) {
	text := strings.ReplaceAll(s, "_", ".")
	var parts []string
	for _, p := range strings.Split(text, ".") {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return flywayVersion{}, fmt.Errorf("Invalid version containing non-numeric characters. Only 0..9 and . are allowed. Invalid version: %s", text)
		}
		if p = strings.TrimLeft(p, "0"); p == "" {
			p = "0"
		}
		parts = append(parts, p)
	}
	for len(parts) > 1 && parts[len(parts)-1] == "0" {
		parts = parts[:len(parts)-1]
	}
	return flywayVersion{text: text, parts: parts}, nil
}

// compare returns -1, 0 or +1 as v is below, equal to or above w.
func (v flywayVersion) compare(w flywayVersion) int {
	for i := range max(len(v.parts), len(w.parts)) {
		a, b := "0", "0"
		if i < len(v.parts) {
			a = v.parts[i]
		}
		if i < len(w.parts) {
			b = w.parts[i]
		}
		if len(a) != len(b) {
			if len(a) < len(b) {
				return -1
			}
			return 1
		}
		if c := strings.Compare(a, b); c != 0 {
			return c
		}
	}
	return 0
}

func (v flywayVersion) String() string { return v.text }

// FlywayChecksum is the checksum Flyway records for a SQL migration with these contents: the
// loader's (migrations.FlywayChecksum), which the stand-in records and adoption compares.
var FlywayChecksum = migrations.FlywayChecksum

var utf8BOM = []byte("\uFEFF")

// flywayCallbacks are the events Flyway Community runs SQL callbacks for (a file named
// beforeMigrate.sql or afterEachMigrate__anything.sql). The stand-in runs none, so it refuses a
// location that has one rather than silently skip it.
var flywayCallbacks = []string{
	"beforeMigrate", "beforeRepeatables", "beforeEachMigrate", "beforeEachMigrateStatement",
	"afterEachMigrateStatement", "afterEachMigrateStatementError", "afterEachMigrate",
	"afterEachMigrateError", "afterMigrate", "afterMigrateApplied", "afterVersioned",
	"afterMigrateError", "beforeClean", "afterClean", "afterCleanError", "beforeInfo", "afterInfo",
	"afterInfoError", "beforeValidate", "afterValidate", "afterValidateError", "beforeBaseline",
	"afterBaseline", "afterBaselineError", "beforeRepair", "afterRepair", "afterRepairError",
	"createSchema", "beforeConnect", "afterConnect",
}

// flywayResolve finds the versioned SQL migrations under dir, recursively, as Flyway's
// filesystem location does with the default prefix "V", separator "__" and suffix ".sql",
// sorted by version. Other files are ignored: undo migrations (U…, Flyway Teams), notes. A name
// that starts with V and ends with .sql but does not parse is skipped, as Flyway does unless
// validateMigrationNaming is set; each is reported in skipped. Repeatable migrations (R__…)
// and SQL callbacks are refused: the stand-in does not reproduce them.
func flywayResolve(dir string) (migrations []flywayMigration, skipped []string, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		name := d.Name()
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		base, isSQL := strings.CutSuffix(name, ".sql")
		switch {
		case !isSQL:
			return nil
		case strings.HasPrefix(name, "R__"):
			return fmt.Errorf("%s: a repeatable migration; the Flyway stand-in applies versioned migrations only", rel)
		case slices.ContainsFunc(flywayCallbacks, func(cb string) bool { return base == cb || strings.HasPrefix(base, cb+"__") }):
			return fmt.Errorf("%s: a SQL callback; the Flyway stand-in runs none", rel)
		case !strings.HasPrefix(name, "V"):
			return nil
		}
		versionText, description, ok := strings.Cut(strings.TrimPrefix(base, "V"), "__")
		if !ok {
			skipped = append(skipped, rel+" (no \"__\" between version and description)")
			return nil
		}
		version, verr := parseFlywayVersion(versionText)
		if verr != nil {
			skipped = append(skipped, rel+" ("+verr.Error()+")")
			return nil
		}
		contents, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !utf8.Valid(contents) {
			return fmt.Errorf("%s: not UTF-8; the Flyway stand-in reads UTF-8 only (Flyway's default encoding)", rel)
		}
		m := flywayMigration{version: version, description: strings.ReplaceAll(description, "_", " "),
			script: rel, path: path, checksum: FlywayChecksum(contents)}
		if m.config, err = readFlywayScriptConfig(path + ".conf"); err != nil {
			return fmt.Errorf("%s.conf: %w", rel, err)
		}
		migrations = append(migrations, m)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.SortStableFunc(migrations, func(a, b flywayMigration) int { return a.version.compare(b.version) })
	for i := 1; i < len(migrations); i++ {
		if a, b := migrations[i-1], migrations[i]; a.version.compare(b.version) == 0 {
			return nil, nil, fmt.Errorf("Found more than one migration with version %s\nOffenders:\n-> %s (SQL)\n-> %s (SQL)", b.version, a.path, b.path)
		}
	}
	return migrations, skipped, nil
}

// readFlywayScriptConfig reads a script configuration file (key=value lines, # comments); a
// missing file is an empty configuration. Keys the stand-in does not reproduce are refused.
func readFlywayScriptConfig(path string) (flywayScriptConfig, error) {
	var c flywayScriptConfig
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	sc := bufio.NewScanner(bytes.NewReader(bytes.TrimPrefix(data, utf8BOM)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return c, fmt.Errorf("not a key=value line: %q", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		var b bool
		switch strings.ToLower(v) {
		case "true":
			b = true
		case "false":
		default:
			if k != "encoding" {
				return c, fmt.Errorf("%s: %q is not true or false", k, v)
			}
		}
		switch k {
		case "executeInTransaction":
			c.executeInTransaction = &b
		case "placeholderReplacement":
			c.placeholderReplacement = &b
		case "encoding":
			if !strings.EqualFold(strings.ReplaceAll(v, "-", ""), "utf8") {
				return c, fmt.Errorf("encoding %s: the Flyway stand-in reads UTF-8 only", v)
			}
		default:
			return c, fmt.Errorf("%s: a script setting the Flyway stand-in does not reproduce", k)
		}
	}
	return c, sc.Err()
}

// replaceFlywayPlaceholders replaces ${name} with its value, as Flyway does in a script's text
// (comments and strings included) before parsing it; a name without a value is an error, as in
// Flyway. Only Flyway's built-in placeholders (flyway:defaultSchema and the like) have values
// here: the stand-in takes no configuration.
func replaceFlywayPlaceholders(sql string, values map[string]string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(sql, "${")
		if i < 0 {
			b.WriteString(sql)
			return b.String(), nil
		}
		j := strings.Index(sql[i+2:], "}")
		if j < 0 {
			b.WriteString(sql)
			return b.String(), nil
		}
		name := sql[i+2 : i+2+j]
		v, ok := values[name]
		if !ok {
			return "", fmt.Errorf("No value provided for placeholder: ${%s}.  Check your configuration!", name)
		}
		b.WriteString(sql[:i])
		b.WriteString(v)
		sql = sql[i+2+j+1:]
	}
}
