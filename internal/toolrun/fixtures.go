package toolrun

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Formats are the migration formats the fixtures come in, one per tool.
var Formats = []string{"goose", "golang-migrate", "dbmate", "flyway"}

// Fixture returns the absolute path of format's fixture directory: the same small billing
// application (accounts, users, orders, invoices, payments, a partitioned audit log, views,
// functions and triggers) in that tool's own syntax, every format ending in the same schema.
// It panics on a format not in Formats.
func Fixture(format string) string { return fixtureDir(format, "") }

// FixtureNext returns a copy of format's fixture, in a temporary directory of tb's, with one
// more migration (an invoices.notes column and an index, from testdata/<format>-next), for
// adopting a database the tool migrated and then taking it one step further. It panics on a
// format not in Formats.
func FixtureNext(tb testing.TB, format string) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, src := range []string{fixtureDir(format, ""), fixtureDir(format, "-next")} {
		if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
			tb.Fatalf("toolrun: copy %s: %v", src, err)
		}
	}
	return dir
}

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
