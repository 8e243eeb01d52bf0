package toolrun

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Pinned versions of the tools. Changing one builds the new version beside the old one in the
// cache.
const (
	GooseVersion   = "v3.30.1"
	MigrateVersion = "v4.20.1"
	DbmateVersion  = "2.36.0"
)

// installTimeout bounds the first build of a tool on a machine. go install of goose, which pulls
// the drivers of a dozen databases, took about 110 s here on 2 cores with an empty module cache.
const installTimeout = 15 * time.Minute

// A tool is a program installed once per machine into the cache and at most once per process.
type tool struct {
	name, version string
	// fetch puts the program, named name, in dir.
	fetch func(ctx context.Context, dir string) error

	once sync.Once
	path string
	err  error
}

var (
	gooseTool = &tool{name: "goose", version: GooseVersion, fetch: func(ctx context.Context, dir string) error {
		return goInstall(ctx, dir, "github.com/pressly/goose/v3/cmd/goose@"+GooseVersion)
	}}
	migrateTool = &tool{name: "migrate", version: MigrateVersion, fetch: func(ctx context.Context, dir string) error {
		return goInstall(ctx, dir, "github.com/golang-migrate/migrate/v4/cmd/migrate@"+MigrateVersion, "-tags", "postgres")
	}}
	dbmateTool = &tool{name: "dbmate", version: DbmateVersion, fetch: fetchDbmate}
)

// binary returns the path of the tool's program, installing it on first use. The first caller
// in a process installs it (or finds it in the cache); the others wait for that and share its
// result, error included.
func (t *tool) binary() (string, error) {
	t.once.Do(func() { t.path, t.err = t.install() })
	return t.path, t.err
}

// install finds the program in the cache, or fetches it there: into a temporary directory
// first, then renamed into place, so that a process never sees half a program and two
// processes installing at once each rename a whole one.
func (t *tool) install() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("toolrun: install %s: %w", t.name, err)
	}
	dir := filepath.Join(cache, "confiture-toolrun", t.name+"-"+t.version)
	bin := filepath.Join(dir, t.name)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("toolrun: install %s: %w", t.name, err)
	}
	tmp, err := os.MkdirTemp(dir, ".install-*")
	if err != nil {
		return "", fmt.Errorf("toolrun: install %s: %w", t.name, err)
	}
	defer os.RemoveAll(tmp)
	// Not the caller's context: the install is shared by every test of the process, and a short
	// test deadline must not fail all of them.
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	if err := t.fetch(ctx, tmp); err != nil {
		return "", fmt.Errorf("toolrun: install %s %s: %w", t.name, t.version, err)
	}
	if err := os.Rename(filepath.Join(tmp, t.name), bin); err != nil {
		return "", fmt.Errorf("toolrun: install %s %s: %w", t.name, t.version, err)
	}
	return bin, nil
}

// goInstall builds pkg (path@version) from the Go module proxy into gobin, outside this module
// so that go.mod is left alone.
func goInstall(ctx context.Context, gobin, pkg string, flags ...string) error {
	cmd := exec.CommandContext(ctx, "go", append(append([]string{"install"}, flags...), pkg)...)
	cmd.Dir = gobin
	// -mod=mod overrides a -mod=vendor in the caller's GOFLAGS, which go install pkg@version
	// refuses.
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go install %s: %w\n%s", pkg, err, out)
	}
	return nil
}

// dbmateNpmPackage is the npm package holding dbmate's prebuilt program for this platform:
// dbmate is not on the Go module proxy, and its npm package "dbmate" only picks one of these.
func dbmateNpmPackage() (string, error) {
	arch := map[string]string{"amd64": "x64", "arm64": "arm64", "386": "ia32", "arm": "arm"}[runtime.GOARCH]
	osName := map[string]string{"linux": "linux", "darwin": "darwin"}[runtime.GOOS]
	if arch == "" || osName == "" {
		return "", fmt.Errorf("no dbmate npm package for %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	return "@dbmate/" + osName + "-" + arch + "@" + DbmateVersion, nil
}

// fetchDbmate downloads dbmate's npm tarball with npm (which checks it against the registry's
// integrity hash) and takes the program out of it.
func fetchDbmate(ctx context.Context, dir string) error {
	pkg, err := dbmateNpmPackage()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "npm", "pack", "--silent", pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm pack %s: %w\n%s", pkg, err, out)
	}
	tarballs, err := filepath.Glob(filepath.Join(dir, "*.tgz"))
	if err != nil || len(tarballs) != 1 {
		return fmt.Errorf("npm pack %s: expected one tarball in %s, found %v (%v)", pkg, dir, tarballs, err)
	}
	return extractFile(tarballs[0], "package/bin/dbmate", filepath.Join(dir, "dbmate"))
}

// extractFile copies the file named name out of the gzipped tarball into dst, executable.
func extractFile(tarball, name, dst string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", tarball, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: no %s in it", tarball, name)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", tarball, err)
		}
		if h.Name != name || h.Typeflag != tar.TypeReg {
			continue
		}
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return fmt.Errorf("%s: %w", tarball, err)
		}
		return out.Close()
	}
}

// toolEnv is the environment the tools run in: the caller's, without the variables through
// which goose and dbmate would take a database, a directory or a table other than the ones
// given on their command line.
func toolEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GOOSE_") || strings.HasPrefix(k, "DBMATE_") || k == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	return env
}
