package logging

import (
	"bytes"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/stretchr/testify/require"
)

func TestConfigDefaults(t *testing.T) {
	t.Parallel()

	c := Config{}.WithDefaults()
	require.Equal(t, Config{
		Console:          ConsoleConfig{Format: "auto", Level: "info"},
		File:             FileConfig{Level: "info", MaxSizeMB: 100, MaxBackups: 5},
		NATS:             NATSConfig{Level: "info", SubjectPrefix: "confiture.logs", Buffer: 1024},
		DropWarnInterval: time.Minute,
	}, c)
	require.NoError(t, Config{}.Validate())

	set := Config{File: FileConfig{MaxBackups: -1, MaxAgeDays: 7}, DropWarnInterval: -1}.WithDefaults()
	require.Equal(t, -1, set.File.MaxBackups, "-1 keeps every rotated file")
	require.Equal(t, 7, set.File.MaxAgeDays)
	require.Equal(t, time.Duration(-1), set.DropWarnInterval, "-1 turns the warning off")
	require.NoError(t, set.Validate())
}

func TestConfigValidateNamesTheField(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name  string
		c     Config
		field string
	}{
		{"console level", Config{Console: ConsoleConfig{Level: "verbose"}}, `log.console.level: unknown level "verbose"`},
		{"console format", Config{Console: ConsoleConfig{Format: "xml"}}, `log.console.format: unknown format "xml"`},
		{"file level", Config{File: FileConfig{Level: "trace"}}, "log.file.level"},
		{"nats level", Config{NATS: NATSConfig{Level: "fatal"}}, "log.nats.level"},
		{"max size", Config{File: FileConfig{MaxSizeMB: -2}}, "log.file.max_size_mb"},
		{"max backups", Config{File: FileConfig{MaxBackups: -2}}, "log.file.max_backups"},
		{"max age", Config{File: FileConfig{MaxAgeDays: -1}}, "log.file.max_age_days"},
		{"buffer", Config{NATS: NATSConfig{Buffer: -5}}, "log.nats.buffer"},
		{"wildcard prefix", Config{NATS: NATSConfig{SubjectPrefix: "logs.>"}}, "log.nats.subject_prefix"},
		{"trailing dot", Config{NATS: NATSConfig{SubjectPrefix: "logs."}}, "log.nats.subject_prefix"},
		{"interval", Config{DropWarnInterval: -time.Second}, "log.drop_warn_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.c.Validate()
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.ErrorContains(t, err, tc.field)
			_, err = New(tc.c, &bytes.Buffer{}, false)
			require.ErrorContains(t, err, tc.field, "New validates too")
		})
	}

	for _, l := range []string{"debug", "INFO", "Warn", "error"} {
		_, err := ParseLevel(l)
		require.NoError(t, err, l)
	}
}

func TestApplyEnv(t *testing.T) {
	t.Parallel()

	env := map[string]string{
		"CONFITURE_LOG_FORMAT":     "json",
		"CONFITURE_LOG_LEVEL":      "debug",
		"CONFITURE_LOG_FILE":       "/var/log/confiture/worker.log",
		"CONFITURE_LOG_FILE_LEVEL": "warn",
		"CONFITURE_LOG_NATS":       "true",
		"CONFITURE_LOG_NATS_LEVEL": "error",
	}
	c := Config{Console: ConsoleConfig{Format: "text"}, File: FileConfig{MaxSizeMB: 7}}
	require.NoError(t, ApplyEnv(&c, func(k string) string { return env[k] }))
	require.Equal(t, Config{
		Console: ConsoleConfig{Format: "json", Level: "debug"},
		File:    FileConfig{Path: "/var/log/confiture/worker.log", Level: "warn", MaxSizeMB: 7},
		NATS:    NATSConfig{Enabled: true, Level: "error"},
	}, c)

	off := map[string]string{"CONFITURE_LOG_NATS": "false"}
	require.NoError(t, ApplyEnv(&c, func(k string) string { return off[k] }))
	require.False(t, c.NATS.Enabled)
	require.Equal(t, "debug", c.Console.Level, "unset variables change nothing")

	bad := map[string]string{
		"CONFITURE_LOG_LEVEL":  "loud",
		"CONFITURE_LOG_NATS":   "maybe",
		"CONFITURE_LOG_FORMAT": "yaml",
	}
	before := c
	err := ApplyEnv(&c, func(k string) string { return bad[k] })
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, `CONFITURE_LOG_LEVEL="loud"`)
	require.ErrorContains(t, err, `CONFITURE_LOG_NATS="maybe"`)
	require.ErrorContains(t, err, `CONFITURE_LOG_FORMAT="yaml"`)
	require.Equal(t, before, c, "values that do not parse are not applied")
}

// TestOperationsExample decodes the example of docs/OPERATIONS.md the way the worker reads its
// file (goccy/go-yaml, unknown keys refused), so the documentation cannot drift from Config.
func TestOperationsExample(t *testing.T) {
	t.Parallel()

	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(doc)
	require.NotNil(t, m, "OPERATIONS.md has a yaml block")

	var file struct {
		Log Config `yaml:"log"`
	}
	require.NoError(t, yaml.NewDecoder(bytes.NewReader(m[1]), yaml.DisallowUnknownField()).Decode(&file))
	c := file.Log
	require.NoError(t, c.Validate())
	require.Equal(t, "auto", c.Console.Format)
	require.Equal(t, "info", c.Console.Level)
	require.NotEmpty(t, c.File.Path)
	require.Equal(t, "debug", c.File.Level)
	require.True(t, c.NATS.Enabled)
	require.Equal(t, "warn", c.NATS.Level)
	require.Equal(t, "confiture.logs", c.NATS.SubjectPrefix)
	require.Equal(t, time.Minute, c.DropWarnInterval)
}
