package logging

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"gopkg.in/natefinch/lumberjack.v2"
)

var errClosed = errors.New("logging closed")

// fileWriter is the file sink's writer: a lumberjack.Logger that stays closed once Close has
// run (lumberjack itself reopens its file on the next write).
type fileWriter struct {
	mu     sync.Mutex
	lj     *lumberjack.Logger
	closed bool
}

func newFileWriter(c FileConfig) (*fileWriter, error) {
	// lumberjack opens the file on the first write; open it now so that a path that cannot be
	// written stops the start-up instead of losing every record.
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o755); err != nil {
		return nil, fmt.Errorf("%w: log.file.path: %v", ErrInvalidConfig, err)
	}
	f, err := os.OpenFile(c.Path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: log.file.path: %v", ErrInvalidConfig, err)
	}
	_ = f.Close()
	backups := c.MaxBackups
	if backups < 0 {
		backups = 0 // lumberjack's "keep all"
	}
	return &fileWriter{lj: &lumberjack.Logger{
		Filename:   c.Path,
		MaxSize:    c.MaxSizeMB,
		MaxBackups: backups,
		MaxAge:     c.MaxAgeDays,
		Compress:   c.Compress,
	}}, nil
}

func (w *fileWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, errClosed
	}
	return w.lj.Write(p)
}

func (w *fileWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.lj.Close()
}
