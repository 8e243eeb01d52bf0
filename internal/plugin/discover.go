package plugin

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/confiture-io/confiture-worker/internal/hooks"
)

// Discover loads the plugin manifests (*.hook.yaml, *.hook.json) found directly in each of dirs:
// directories in the order given (a directory listed twice is scanned once; an empty entry or a
// missing directory is skipped), files sorted by name. Every manifest that loads becomes a
// definition whose Source is the manifest's absolute path. A manifest that does not load (see
// Load), or that names a hook an earlier manifest already defined, becomes a load failure
// instead, and the others still load; so does a directory that cannot be read.
//
// Discover does not know the built-in and compiled-in hooks: registering the definitions
// reports a clash with those. The caller logs and records the failures. logger (nil for none)
// receives warnings that do not stop a plugin from loading, such as a manifest that allows one of
// the worker's own secrets in its environment.
func Discover(dirs []string, logger *slog.Logger) (defs []hooks.Definition, failures []hooks.LoadFailure) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	seenDir := map[string]bool{}
	byName := map[string]string{} // hook name -> manifest path
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		dir = filepath.Clean(dir)
		if seenDir[dir] {
			continue
		}
		seenDir[dir] = true
		paths, err := manifests(dir)
		if err != nil {
			failures = append(failures, hooks.LoadFailure{Source: dir, Reason: fmt.Sprintf("cannot read plugin directory: %v", err)})
			continue
		}
		for _, path := range paths {
			p, err := load(path)
			if err != nil {
				var me *ManifestError
				if errors.As(err, &me) {
					failures = append(failures, me.LoadFailure())
				} else {
					failures = append(failures, hooks.LoadFailure{Source: path, Reason: err.Error()})
				}
				continue
			}
			name := p.manifest.Name
			if prev, dup := byName[name]; dup {
				failures = append(failures, hooks.LoadFailure{Name: name, Source: path,
					Reason: fmt.Sprintf("hook %q is already defined by %s", name, prev)})
				continue
			}
			byName[name] = path
			if len(p.denied) > 0 {
				logger.Warn("plugin_env_denied", "hook", name, "source", path, "variables", strings.Join(p.denied, ","),
					"reason", "the worker's own secrets are never passed to plugins")
			}
			logger.Debug("plugin_loaded", "hook", name, "source", path, "command", p.command, "timeout", p.timeout.String())
			defs = append(defs, p.definition())
		}
	}
	return defs, failures
}

// manifests lists the manifest files directly in dir, sorted; a missing dir has none.
func manifests(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, YAMLSuffix) && !strings.HasSuffix(name, JSONSuffix) {
			continue
		}
		path := filepath.Join(dir, name)
		if e.IsDir() {
			continue
		}
		out = append(out, path)
	}
	slices.Sort(out) // os.ReadDir sorts already; keep the promise explicit
	return out, nil
}
