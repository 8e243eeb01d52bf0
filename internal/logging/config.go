package logging

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidConfig is wrapped by every error of Validate and ApplyEnv.
var ErrInvalidConfig = errors.New("invalid log configuration")

// Defaults.
const (
	DefaultFormat           = FormatAuto
	DefaultLevel            = "info"
	DefaultMaxSizeMB        = 100
	DefaultMaxBackups       = 5
	DefaultSubjectPrefix    = "confiture.logs"
	DefaultBuffer           = 1024
	DefaultDropWarnInterval = time.Minute
)

// Console formats.
const (
	FormatAuto = "auto"
	FormatText = "text"
	FormatJSON = "json"
)

// Config says where log records go. The worker's YAML file holds it under `log:`. Every sink
// has its own level: a record reaches a sink when its level is at least the sink's.
type Config struct {
	// Console is the sink on the process's standard error. It is always on.
	Console ConsoleConfig `yaml:"console"`
	// File is a JSON-lines file rotated by size. Off unless File.Path is set.
	File FileConfig `yaml:"file"`
	// NATS publishes each record as JSON on <subject_prefix>.<level>. Off unless NATS.Enabled.
	NATS NATSConfig `yaml:"nats"`
	// DropWarnInterval is how often a sink that lost records since the last report is reported,
	// by a WARN record `log_records_dropped` sent to the other sinks. Defaults to 1m; -1 turns
	// the warning off (the metric still counts).
	DropWarnInterval time.Duration `yaml:"drop_warn_interval"`
}

// ConsoleConfig configures the console sink.
type ConsoleConfig struct {
	// Format is "auto", "text" or "json"; auto is text on a terminal and JSON otherwise.
	// Defaults to "auto".
	Format string `yaml:"format"`
	// Level is the lowest level written: debug, info, warn or error. Defaults to "info".
	Level string `yaml:"level"`
}

// FileConfig configures the file sink (JSON lines, rotated by lumberjack).
type FileConfig struct {
	// Path of the log file; rotated files are kept beside it with a timestamp in the name.
	// Defaults to "" (no file sink).
	Path string `yaml:"path"`
	// Level is the lowest level written: debug, info, warn or error. Defaults to "info".
	Level string `yaml:"level"`
	// MaxSizeMB is the size in megabytes at which the file is rotated. Defaults to 100.
	MaxSizeMB int `yaml:"max_size_mb"`
	// MaxBackups is how many rotated files are kept. Defaults to 5; -1 keeps them all.
	MaxBackups int `yaml:"max_backups"`
	// MaxAgeDays removes rotated files older than this many days. Defaults to 0 (keep them
	// whatever their age; MaxBackups still applies).
	MaxAgeDays int `yaml:"max_age_days"`
	// Compress gzips rotated files. Defaults to false.
	Compress bool `yaml:"compress"`
}

// NATSConfig configures the NATS sink.
type NATSConfig struct {
	// Enabled turns the sink on. Defaults to false.
	Enabled bool `yaml:"enabled"`
	// Level is the lowest level published: debug, info, warn or error. Defaults to "info".
	Level string `yaml:"level"`
	// SubjectPrefix starts every subject; a record goes to <prefix>.<level> with the level in
	// lower case (debug, info, warn, error). Defaults to "confiture.logs".
	SubjectPrefix string `yaml:"subject_prefix"`
	// Buffer is how many records wait for the publisher; when it is full, records are dropped
	// and counted rather than slowing the logger down. Defaults to 1024.
	Buffer int `yaml:"buffer"`
}

// WithDefaults returns c with every unset field set to its default.
func (c Config) WithDefaults() Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Console.Format, DefaultFormat)
	def(&c.Console.Level, DefaultLevel)
	def(&c.File.Level, DefaultLevel)
	def(&c.NATS.Level, DefaultLevel)
	def(&c.NATS.SubjectPrefix, DefaultSubjectPrefix)
	if c.File.MaxSizeMB == 0 {
		c.File.MaxSizeMB = DefaultMaxSizeMB
	}
	if c.File.MaxBackups == 0 {
		c.File.MaxBackups = DefaultMaxBackups
	}
	if c.NATS.Buffer == 0 {
		c.NATS.Buffer = DefaultBuffer
	}
	if c.DropWarnInterval == 0 {
		c.DropWarnInterval = DefaultDropWarnInterval
	}
	return c
}

// Validate reports every problem of c, each naming its field as the YAML file spells it
// (log.console.level, ...). Unset fields are valid: they take their defaults.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: log.%s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...)))
	}
	if err := checkFormat(c.Console.Format); err != nil {
		bad("console.format", "%v", err)
	}
	if _, err := ParseLevel(c.Console.Level); err != nil {
		bad("console.level", "%v", err)
	}
	if _, err := ParseLevel(c.File.Level); err != nil {
		bad("file.level", "%v", err)
	}
	if _, err := ParseLevel(c.NATS.Level); err != nil {
		bad("nats.level", "%v", err)
	}
	if c.File.MaxSizeMB < 0 {
		bad("file.max_size_mb", "%d is negative", c.File.MaxSizeMB)
	}
	if c.File.MaxBackups < -1 {
		bad("file.max_backups", "%d: want a count, or -1 to keep every rotated file", c.File.MaxBackups)
	}
	if c.File.MaxAgeDays < 0 {
		bad("file.max_age_days", "%d is negative (0 keeps rotated files whatever their age)", c.File.MaxAgeDays)
	}
	if err := checkSubjectPrefix(c.NATS.SubjectPrefix); err != nil {
		bad("nats.subject_prefix", "%v", err)
	}
	if c.NATS.Buffer < 0 {
		bad("nats.buffer", "%d is negative", c.NATS.Buffer)
	}
	if c.DropWarnInterval < 0 && c.DropWarnInterval != -1 {
		bad("drop_warn_interval", "%s: want a positive duration, or -1 to turn the warning off", c.DropWarnInterval)
	}
	return errors.Join(errs...)
}

// ParseLevel reads "debug", "info", "warn" or "error" (any case).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown level %q: want debug, info, warn or error", s)
}

func checkFormat(s string) error {
	switch s {
	case FormatAuto, FormatText, FormatJSON:
		return nil
	}
	return fmt.Errorf("unknown format %q: want auto, text or json", s)
}

func checkSubjectPrefix(s string) error {
	for _, tok := range strings.Split(s, ".") {
		switch {
		case tok == "":
			return fmt.Errorf("%q has an empty token (a leading, trailing or double dot)", s)
		case tok == "*" || tok == ">":
			return fmt.Errorf("%q holds a wildcard; a publish subject cannot", s)
		case strings.ContainsAny(tok, " \t\r\n"):
			return fmt.Errorf("%q holds white space", s)
		}
	}
	return nil
}

// Environment variables read by ApplyEnv.
const (
	EnvFormat    = "CONFITURE_LOG_FORMAT"
	EnvLevel     = "CONFITURE_LOG_LEVEL"
	EnvFile      = "CONFITURE_LOG_FILE"
	EnvFileLevel = "CONFITURE_LOG_FILE_LEVEL"
	EnvNATS      = "CONFITURE_LOG_NATS"
	EnvNATSLevel = "CONFITURE_LOG_NATS_LEVEL"
)

// ApplyEnv overrides c with the variables read through getenv: CONFITURE_LOG_FORMAT and
// CONFITURE_LOG_LEVEL (the console sink), CONFITURE_LOG_FILE and CONFITURE_LOG_FILE_LEVEL,
// CONFITURE_LOG_NATS (true or false) and CONFITURE_LOG_NATS_LEVEL. An empty variable changes
// nothing. A value that does not parse is an error naming the variable, and is not applied.
func ApplyEnv(c *Config, getenv func(string) string) error {
	var errs []error
	bad := func(name, v string, err error) {
		errs = append(errs, fmt.Errorf("%w: %s=%q: %v", ErrInvalidConfig, name, v, err))
	}
	if v := getenv(EnvFormat); v != "" {
		if err := checkFormat(v); err != nil {
			bad(EnvFormat, v, err)
		} else {
			c.Console.Format = v
		}
	}
	levels := []struct {
		name string
		dst  *string
	}{{EnvLevel, &c.Console.Level}, {EnvFileLevel, &c.File.Level}, {EnvNATSLevel, &c.NATS.Level}}
	for _, l := range levels {
		if v := getenv(l.name); v != "" {
			if _, err := ParseLevel(v); err != nil {
				bad(l.name, v, err)
			} else {
				*l.dst = v
			}
		}
	}
	if v := getenv(EnvFile); v != "" {
		c.File.Path = v
	}
	if v := getenv(EnvNATS); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			bad(EnvNATS, v, errors.New("want true or false"))
		} else {
			c.NATS.Enabled = on
		}
	}
	return errors.Join(errs...)
}
