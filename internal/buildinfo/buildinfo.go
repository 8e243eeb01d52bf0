// Package buildinfo says which build of the worker or of submit is running, from what the Go
// toolchain recorded in the binary: the module's version, the commit and its time, whether the
// tree had uncommitted changes, and the Go version. Both binaries print it for --version.
package buildinfo

import (
	"fmt"
	"reflect"
	"runtime/debug"
	"strings"
)

// Module is this project's module path (read from this package's own path, so that no source
// file but go.mod spells it out as a string).
var Module = strings.TrimSuffix(reflect.TypeFor[marker]().PkgPath(), "/internal/buildinfo")

type marker struct{}

// String describes the running binary's build: its main module's version, then the commit it
// was built from (with its time, and "modified" when the tree had uncommitted changes), the
// version of this project's module when the binary is another module's (a custom worker), and
// the Go version.
func String() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build information in the binary)"
	}
	return describe(bi)
}

func describe(bi *debug.BuildInfo) string {
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var details []string
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		commit := "commit " + rev[:min(len(rev), 12)]
		if t := settings["vcs.time"]; t != "" {
			commit += " " + t
		}
		if settings["vcs.modified"] == "true" {
			commit += ", modified"
		}
		details = append(details, commit)
	}
	if bi.Main.Path != Module {
		for _, d := range bi.Deps {
			if d.Path == Module {
				v := d.Version
				if d.Replace != nil {
					v += " => " + d.Replace.Path
					if d.Replace.Version != "" {
						v += " " + d.Replace.Version
					}
				}
				details = append(details, "confiture-worker "+v)
			}
		}
	}
	details = append(details, bi.GoVersion)
	return fmt.Sprintf("%s (%s)", version, strings.Join(details, "; "))
}
