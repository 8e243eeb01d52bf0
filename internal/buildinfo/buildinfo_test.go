package buildinfo

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDescribe(t *testing.T) {
	t.Parallel()
	settings := []debug.BuildSetting{
		{Key: "vcs.revision", Value: "94cf9a8f12345678901234567890123456789012"},
		{Key: "vcs.time", Value: "2026-12-05T21:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	require.Equal(t, "v0.0.0-20261205210000-94cf9a8f1234+dirty (commit 94cf9a8f1234 2026-12-05T21:00:00Z, modified; go1.26.8)",
		describe(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: Module, Version: "v0.0.0-20261205210000-94cf9a8f1234+dirty"}, Settings: settings}))
	require.Equal(t, "(devel) (go1.26.8)", describe(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: Module}}),
		"a build without version control information says so")
	custom := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "example.com/ours", Version: "v1.2.0"},
		Deps: []*debug.Module{{Path: Module, Version: "v0.3.0", Replace: &debug.Module{Path: "../.."}}}}
	require.Equal(t, "v1.2.0 (confiture-worker v0.3.0 => ../..; go1.26.8)", describe(custom),
		"a custom worker names this project's version beside its own")
}

func TestStringDescribesThisBinary(t *testing.T) {
	t.Parallel()
	require.Contains(t, String(), "go1.")
}

func TestModuleIsThisProjects(t *testing.T) {
	t.Parallel()
	bi, ok := debug.ReadBuildInfo()
	require.True(t, ok)
	require.Equal(t, bi.Main.Path, Module, "the test binary's main module is this project's")
}
