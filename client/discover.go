package client

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/confiture-io/confiture-worker/internal/clip"
)

// Where a worker with an embedded NATS server says where it listens: while it runs, the URL of
// that server (without credentials) is in URLFile, in the worker's data directory. The server
// listens on 4222 unless the port is taken, and then on a free port; a client on the same
// machine that is given no URL looks there before it tries 4222.
const (
	// DefaultDataDir is the worker's data directory when none is configured, relative to the
	// directory it was started in.
	DefaultDataDir = ".confiture"
	// DataDirEnv names the worker's data directory, for the worker and for the clients that
	// look in it.
	DataDirEnv = "CONFITURE_DATA_DIR"
	// URLFile is the name of the file that holds the embedded server's URL.
	URLFile = "nats.url"
)

// URLPath is the path of the URL file in data directory dir.
func URLPath(dir string) string { return filepath.Join(dir, URLFile) }

// ReadURL returns the NATS URL a worker recorded in data directory dir, and the file's path;
// "" without error when there is no such file. A file that does not hold a nats:// (or tls://,
// ws://, wss://) URL is an error that names it.
func ReadURL(dir string) (url, path string, err error) {
	path = URLPath(dir)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", path, nil
	}
	if err != nil {
		return "", path, fmt.Errorf("read the worker's NATS URL file: %w", err)
	}
	url = strings.TrimSpace(string(b))
	for _, scheme := range []string{"nats://", "tls://", "ws://", "wss://"} {
		if strings.HasPrefix(url, scheme) && !strings.ContainsAny(url, " \n") {
			return url, path, nil
		}
	}
	return "", path, fmt.Errorf("%s does not hold a NATS URL (it holds %q): remove it, or pass --nats-url", path, clip.String(url, 80, "..."))
}
