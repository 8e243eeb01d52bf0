// Package adoption reads the history table of another migration tool (goose, golang-migrate,
// dbmate, Flyway) on a target, and checks it against a request's migrations, so that a run can
// take the target over: record in the worker's tracking table what that tool applied.
//
// It only reads. The tool's table is never changed, so the tool still works on the target if
// the worker is put aside.
package adoption

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// Querier is what reading a history table needs: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// DefaultTable is each tool's history table when it is not told otherwise.
var DefaultTable = map[string]string{
	contract.AdoptGoose:         "goose_db_version",
	contract.AdoptGolangMigrate: "schema_migrations",
	contract.AdoptDbmate:        "schema_migrations",
	contract.AdoptFlyway:        "flyway_schema_history",
}

// Entry is a version the tool has applied, with what its history says of it.
type Entry struct {
	Version string
	// AppliedAt is when the tool applied it; zero when its history does not say
	// (golang-migrate, dbmate).
	AppliedAt time.Time
	// ExecutionMS is how long it took, when the history says (Flyway).
	ExecutionMS int64
	// By is who applied it, when the history says (Flyway's installed_by).
	By string
	// FlywayChecksum is the checksum Flyway recorded for it, when it is Flyway's and has one.
	FlywayChecksum *int32
}

// History is what a tool's history table says is applied.
type History struct {
	Tool string
	// Table is the table read, schema-qualified.
	Table string
	// Applied are the versions the tool applied, each once, in version order. For
	// golang-migrate, whose table holds only the current version, it is that version alone:
	// Check counts every migration up to it as applied.
	Applied []Entry
	// Baseline is Flyway's baseline version, when the history has one: every migration up to
	// it counts as applied.
	Baseline string
	// upTo says that every migration up to the last applied version is applied
	// (golang-migrate).
	upTo bool
}

// MismatchError is a history the worker cannot take over: the tool's own state is not clean
// (a dirty or failed entry), or it disagrees with the request's migrations. Retrying cannot
// help.
type MismatchError struct{ Msg string }

func (e *MismatchError) Error() string { return e.Msg }

func mismatch(format string, args ...any) error {
	return &MismatchError{Msg: fmt.Sprintf(format, args...)}
}

// Read reads tool's history table, named table or, when table is empty, the tool's default
// (looked up in the session's search_path). exclude is the worker's own tracking table
// ("schema.table"), which a name such as schema_migrations must not resolve to. A missing
// table, or a dirty or failed entry, is a *MismatchError.
func Read(ctx context.Context, q Querier, tool, table, exclude string) (*History, error) {
	if _, ok := DefaultTable[tool]; !ok {
		return nil, fmt.Errorf("adopt: unknown tool %q", tool)
	}
	name := table
	if name == "" {
		name = DefaultTable[tool]
	}
	var schema, rel string
	err := q.QueryRow(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = to_regclass($1)`, name).Scan(&schema, &rel)
	if errors.Is(err, pgx.ErrNoRows) {
		var path string
		if err := q.QueryRow(ctx, `SELECT current_setting('search_path')`).Scan(&path); err != nil {
			return nil, err
		}
		return nil, mismatch("adopt %s: the target has no table %s (search_path %s): is this a database %s migrated? If its history table has another name, give it with adopt_table (submit --adopt-table)",
			tool, name, path, tool)
	}
	if err != nil {
		return nil, err
	}
	qualified := pgx.Identifier{schema, rel}.Sanitize()
	if schema+"."+rel == exclude {
		return nil, mismatch("adopt %s: %s is the worker's own tracking table, not %s's history: name %s's table with adopt_table", tool, qualified, tool, tool)
	}
	h := &History{Tool: tool, Table: schema + "." + rel}
	switch tool {
	case contract.AdoptGoose:
		err = h.readGoose(ctx, q, qualified)
	case contract.AdoptGolangMigrate:
		err = h.readGolangMigrate(ctx, q, qualified)
	case contract.AdoptDbmate:
		err = h.readDbmate(ctx, q, qualified)
	case contract.AdoptFlyway:
		err = h.readFlyway(ctx, q, qualified)
	}
	if err != nil {
		var pgErr interface{ SQLState() string }
		if errors.As(err, &pgErr) && (pgErr.SQLState() == "42703" || pgErr.SQLState() == "42804") {
			return nil, mismatch("adopt %s: %s is not %s's history table (%v)", tool, h.Table, tool, err)
		}
		return nil, err
	}
	slices.SortStableFunc(h.Applied, func(a, b Entry) int { return contract.CompareVersions(a.Version, b.Version) })
	return h, nil
}

// readGoose: goose_db_version has a row per migration applied (is_applied) or rolled back
// (is_applied false, in old versions of goose; new ones delete the row); the latest row of a
// version says its state. Version 0 is the row goose writes when it creates the table.
func (h *History) readGoose(ctx context.Context, q Querier, table string) error {
	rows, err := q.Query(ctx, `SELECT version_id::text, is_applied, tstamp FROM `+table+` ORDER BY id DESC`)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var version string
	var applied bool
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&version, &applied, &at}, func() error {
		if seen[version] || version == "0" {
			return nil
		}
		seen[version] = true
		if applied {
			h.Applied = append(h.Applied, Entry{Version: version, AppliedAt: at})
		}
		return nil
	})
	return err
}

// readGolangMigrate: schema_migrations holds one row, the current version and whether the
// migration to it failed half-way (dirty).
func (h *History) readGolangMigrate(ctx context.Context, q Querier, table string) error {
	var version string
	var dirty bool
	err := q.QueryRow(ctx, `SELECT version::text, dirty FROM `+table+` LIMIT 1`).Scan(&version, &dirty)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if dirty {
		// golang-migrate's own words (ErrDirty), and its way out.
		return mismatch("adopt golang-migrate: %s says: Dirty database version %s. Fix and force version. "+
			"A migration to version %s failed half-way: repair the database by hand, then record the version it is at with `migrate force VERSION`, and submit again",
			h.Table, version, version)
	}
	if version != "-1" { // golang-migrate's "no version" after migrating all the way down
		h.Applied = []Entry{{Version: version}}
		h.upTo = true
	}
	return nil
}

// readDbmate: schema_migrations has a row per applied version.
func (h *History) readDbmate(ctx context.Context, q Querier, table string) error {
	rows, err := q.Query(ctx, `SELECT version::text FROM `+table)
	if err != nil {
		return err
	}
	var version string
	_, err = pgx.ForEachRow(rows, []any{&version}, func() error {
		h.Applied = append(h.Applied, Entry{Version: version})
		return nil
	})
	return err
}

// readFlyway: flyway_schema_history has a row per thing Flyway did, in installed_rank order.
// A failed row stops the takeover, in Flyway's own words. A BASELINE row marks every version up
// to it applied; an undo (UNDO_SQL, ...) or a DELETE row (Flyway's repair of a missing
// migration) takes its version back out. Rows without a version (repeatable migrations,
// Flyway's schema creation marker) do not count.
func (h *History) readFlyway(ctx context.Context, q Querier, table string) error {
	rows, err := q.Query(ctx, `SELECT version, description, type, installed_by, installed_on, execution_time, success, checksum
		FROM `+table+` ORDER BY installed_rank`)
	if err != nil {
		return err
	}
	applied := map[string]Entry{}
	var order []string
	var version *string
	var desc, typ, by string
	var at time.Time
	var execMS int64
	var success bool
	var checksum *int32
	_, err = pgx.ForEachRow(rows, []any{&version, &desc, &typ, &by, &at, &execMS, &success, &checksum}, func() error {
		if !success {
			v := "(repeatable)"
			if version != nil {
				v = *version
			}
			return mismatch("adopt flyway: %s says: Detected failed migration to version %s (%s). Please remove any half-completed changes then run repair to fix the schema history. "+
				"Then submit again", h.Table, v, desc)
		}
		if version == nil || typ == "SCHEMA" {
			return nil
		}
		v := *version
		key := contract.VersionKey(v)
		switch {
		case typ == "BASELINE":
			h.Baseline = v
		case strings.HasPrefix(typ, "UNDO_") || typ == "DELETE":
			delete(applied, key)
		default:
			if _, ok := applied[key]; !ok {
				order = append(order, key)
			}
			applied[key] = Entry{Version: v, AppliedAt: at, ExecutionMS: execMS, By: by, FlywayChecksum: checksum}
		}
		return nil
	})
	for _, k := range order {
		if e, ok := applied[k]; ok {
			h.Applied = append(h.Applied, e)
		}
	}
	return err
}

// Record is a migration of the request the run records as applied by the tool.
type Record struct {
	Migration *contract.Migration
	Entry     Entry
}

// Check matches the history with the request's migrations (in any order) and returns those to
// record: every migration the tool applied, less those tracked already (the tracked set holds
// contract.VersionKey of the worker's tracking rows). It is a *MismatchError when the tool
// applied a version that no migration of the request holds, or when a migration older than
// the last version the tool applied was not applied by it (and is not tracked): taking over
// would then leave one behind or apply it out of order.
func (h *History) Check(migs []contract.Migration, tracked map[string]bool) ([]Record, error) {
	sorted := make([]*contract.Migration, len(migs))
	byKey := map[string]*contract.Migration{}
	for i := range migs {
		sorted[i] = &migs[i]
		byKey[contract.VersionKey(migs[i].Version)] = &migs[i]
	}
	slices.SortFunc(sorted, func(a, b *contract.Migration) int { return contract.CompareVersions(a.Version, b.Version) })

	applied := map[string]Entry{}
	var missing, changed []string
	for _, e := range h.Applied {
		key := contract.VersionKey(e.Version)
		m := byKey[key]
		if m == nil && !tracked[key] {
			missing = append(missing, e.Version)
		}
		if m != nil && !tracked[key] && e.FlywayChecksum != nil && m.FlywayChecksum != nil && *e.FlywayChecksum != *m.FlywayChecksum {
			changed = append(changed, fmt.Sprintf("%s (recorded %d, file %d)", fileOf(m), *e.FlywayChecksum, *m.FlywayChecksum))
		}
		applied[key] = e
	}
	if len(missing) > 0 {
		return nil, mismatch("adopt %s: %s records version(s) %s as applied, but the request has no migration with that version: add the file(s) to the migrations directory (the worker must know every migration it takes over)",
			h.Tool, h.Table, ClipList(missing))
	}
	if len(changed) > 0 {
		// Flyway's validate refuses the same ("Migration checksum mismatch").
		return nil, mismatch("adopt %s: migration(s) changed since Flyway applied them, their checksum no longer the one %s records: %s. Restore the file(s) as they were applied; or, if the change is meant, run flyway repair to record the new checksums; then submit again",
			h.Tool, h.Table, ClipList(changed))
	}
	last := h.Baseline
	if n := len(h.Applied); n > 0 && (last == "" || contract.CompareVersions(h.Applied[n-1].Version, last) > 0) {
		last = h.Applied[n-1].Version
	}
	var records []Record
	var behind []string
	for _, m := range sorted {
		key := contract.VersionKey(m.Version)
		e, ok := applied[key]
		upToLast := last != "" && contract.CompareVersions(m.Version, last) <= 0
		atOrBelowBaseline := h.Baseline != "" && contract.CompareVersions(m.Version, h.Baseline) <= 0
		switch {
		case tracked[key]:
		case ok:
			records = append(records, Record{Migration: m, Entry: e})
		case atOrBelowBaseline || (h.upTo && upToLast):
			records = append(records, Record{Migration: m})
		case upToLast:
			behind = append(behind, fileOf(m))
		}
	}
	if len(behind) > 0 {
		return nil, mismatch("adopt %s: migration(s) %s are older than version %s, the last that %s applied, but %s has no record of them: apply them with %s first, or remove them from the directory if they were never meant to run",
			h.Tool, ClipList(behind), last, h.Tool, h.Table, h.Tool)
	}
	return records, nil
}

// fileOf names a migration, and its file when the request says.
func fileOf(m *contract.Migration) string {
	if m.File == "" {
		return m.ID()
	}
	return m.ID() + " (" + m.File + ")"
}

// ClipList joins at most ten items, saying how many more there are.
func ClipList(items []string) string {
	if len(items) <= 10 {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:10], ", "), len(items)-10)
}
