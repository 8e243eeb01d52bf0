package toolrun

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// Formats are the migration formats the fixtures come in, one per tool.
var Formats = []string{"goose", "golang-migrate", "dbmate", "flyway"}

// Fixture returns the absolute path of format's fixture directory: the same small billing
// application (accounts, users, orders, invoices, payments, a partitioned audit log, views,
// functions and triggers) in that tool's own syntax, every format ending in the same schema.
// It panics on a format not in Formats.
func Fixture(format string) string { return fixtureDir(format, "") }

// FixtureNext returns the absolute path of a copy of format's fixture with one more migration
// (an invoices.notes column and an index), for adopting a database the tool migrated and then
// taking it one step further. It panics on a format not in Formats.
func FixtureNext(format string) string { return fixtureDir(format, "-next") }

func fixtureDir(format, suffix string) string {
	if !slices.Contains(Formats, format) {
		panic(fmt.Sprintf("toolrun: unknown format %q (known: %s)", format, strings.Join(Formats, ", ")))
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("toolrun: no caller information to find testdata with")
	}
	return filepath.Join(filepath.Dir(file), "testdata", format+suffix)
}
