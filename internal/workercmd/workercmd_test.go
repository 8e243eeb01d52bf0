package workercmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/buildinfo"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/logging"
)

// These tests never start the daemon: every argument list either names a subcommand or fails
// before the root command runs.

func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHooksListTable(t *testing.T) {
	t.Parallel()
	code, out, errOut := runMain(t, "hooks", "list")
	require.Equal(t, ExitOK, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Equal(t, []string{"NAME", "SOURCE", "VERSION", "PHASES", "TX", "STATUS", "DESCRIPTION"}, strings.Fields(lines[0]))
	rows := map[string][]string{}
	for _, l := range joinContinued(lines[1:]) {
		f := strings.Fields(l)
		rows[f[0]] = f
	}
	for _, name := range []string{"sql", "assert"} {
		require.Contains(t, rows, name, out)
		require.Equal(t, hooks.SourceBuiltin, rows[name][1], out)
		require.Equal(t, "-", rows[name][2], "no version")
		require.Equal(t, "all", rows[name][3], "a hook without phases may run in every one")
		require.Equal(t, "yes", rows[name][4], "transactional")
		require.Equal(t, "ok", rows[name][5])
	}
}

func TestHooksListJSON(t *testing.T) {
	t.Parallel()
	code, out, errOut := runMain(t, "hooks", "list", "--json")
	require.Equal(t, ExitOK, code, errOut)
	var list struct {
		Hooks []struct {
			Name          string   `json:"name"`
			Source        string   `json:"source"`
			Phases        []string `json:"phases"`
			Transactional bool     `json:"transactional"`
			Description   string   `json:"description"`
		} `json:"hooks"`
		LoadErrors []hooks.LoadFailure `json:"load_errors"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	require.NotNil(t, list.LoadErrors, "load_errors is a list even when empty: %s", out)
	require.Empty(t, list.LoadErrors)
	byName := map[string]int{}
	for i, h := range list.Hooks {
		byName[h.Name] = i
	}
	for _, name := range []string{"sql", "assert"} {
		i, ok := byName[name]
		require.True(t, ok, "%s missing from %s", name, out)
		require.Equal(t, hooks.SourceBuiltin, list.Hooks[i].Source)
		require.Equal(t, hooks.HookPhases, list.Hooks[i].Phases)
		require.True(t, list.Hooks[i].Transactional)
		require.NotEmpty(t, list.Hooks[i].Description)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"hooks", "list", "--bogus"},
		{"--bogus", "hooks", "list"},
		{"hooks", "list", "extra"},
		{"bogus"},
	} {
		code, out, errOut := runMain(t, args...)
		require.Equal(t, ExitUsage, code, "%v: %s", args, errOut)
		require.Empty(t, out)
		require.True(t, strings.HasPrefix(errOut, "worker: "), errOut)
	}
}

// A mistyped subcommand is a usage error that suggests the right one, at every level; it
// printed the group's help and exited 0 before.
func TestMistypedSubcommandIsAnErrorWithASuggestion(t *testing.T) {
	t.Parallel()
	for args, want := range map[string]string{
		"hooks lst":         `worker: unknown command "lst" for "worker hooks"; did you mean "list"?`,
		"hooks describ sql": `worker: unknown command "describ" for "worker hooks"; did you mean "describe"?`,
		"runs paus x":       `worker: unknown command "paus" for "worker runs"; did you mean "pause"?`,
		"hook list":         `worker: unknown command "hook" for "worker"; did you mean "hooks"?`,
		"hooks zzzzzzzz":    `worker: unknown command "zzzzzzzz" for "worker hooks"; its commands: describe, list`,
	} {
		code, out, errOut := runMain(t, strings.Fields(args)...)
		require.Equal(t, ExitUsage, code, "%s: %s", args, errOut)
		require.Empty(t, out, args)
		require.Equal(t, want+"\n", errOut, args)
	}
	// A group on its own still shows its help.
	code, out, errOut := runMain(t, "hooks")
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, "Available Commands:")
}

// A flag value that does not parse is a usage error like an unknown flag; today it exits 1.
func TestBadFlagValueIsAUsageError(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--concurrency", "many", "hooks", "list"},
		{"--shutdown-timeout", "soon", "hooks", "list"},
	} {
		code, _, errOut := runMain(t, args...)
		require.Contains(t, errOut, "invalid argument")
		require.Equal(t, ExitUsage, code, "%v: %s", args, errOut)
	}
}

func TestLoggerOptions(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	build := func(format, level string) (*logging.Logging, error) {
		lg, err := (&options{logFormat: format, logLevel: level}).logging(logging.Config{}, &buf, true, true)
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { _ = lg.Close() })
		return lg, nil
	}
	_, err := build("bogus", "info")
	var ue usageError
	require.True(t, errors.As(err, &ue), "%v", err)
	require.ErrorContains(t, err, "--log-format")
	require.ErrorContains(t, err, "bogus")

	_, err = build("json", "loud")
	require.True(t, errors.As(err, &ue), "%v", err)
	require.ErrorContains(t, err, "--log-level")

	// auto is JSON when stderr is not a terminal.
	lg, err := build("auto", "warn")
	require.NoError(t, err)
	lg.Logger.Info("hidden")
	lg.Logger.Warn("shown", "k", "v")
	require.NoError(t, lg.Flush(t.Context())) // the console sink writes from its own goroutine
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec), buf.String())
	require.Equal(t, "shown", rec["msg"])
	require.Equal(t, "v", rec["k"])

	buf.Reset()
	lg, err = build("text", "debug")
	require.NoError(t, err)
	lg.Logger.Debug("hello", "k", "v")
	require.NoError(t, lg.Flush(t.Context()))
	require.Contains(t, buf.String(), "msg=hello k=v")
	require.True(t, lg.Logger.Enabled(t.Context(), slog.LevelDebug))

	// Without the flags, the configuration's console settings apply.
	buf.Reset()
	lg, err = (&options{logFormat: "auto", logLevel: "info"}).logging(
		logging.Config{Console: logging.ConsoleConfig{Format: "text", Level: "error"}}, &buf, false, false)
	require.NoError(t, err)
	defer lg.Close()
	lg.Logger.Warn("not shown")
	lg.Logger.Error("shown")
	require.NoError(t, lg.Flush(t.Context()))
	require.NotContains(t, buf.String(), "not shown")
	require.Contains(t, buf.String(), "msg=shown")
}

func TestTargetFlagWithoutNameIsAUsageError(t *testing.T) {
	t.Parallel()
	code, out, errOut := runMain(t, "--target", "bad", "hooks", "list")
	require.Equal(t, ExitUsage, code, errOut)
	require.Empty(t, out)
	require.Contains(t, errOut, "--target")
	require.Contains(t, errOut, "NAME=DSN")

	code, _, errOut = runMain(t, "--target", "postgres://admin:s3cretpw@db.example:5432/app", "hooks", "list")
	require.Equal(t, ExitUsage, code, errOut)
	require.NotContains(t, errOut, "s3cretpw")
	require.NotContains(t, errOut, "admin")
	require.NotContains(t, errOut, "db.example")
}

// A DSN given without a name, but with a query string, has a '=' in it: the part before it is
// taken as the target name, which the target validation then quotes in its error.
func TestTargetFlagNeverEchoesADSN(t *testing.T) {
	t.Parallel()
	code, _, errOut := runMain(t, "--target", "postgres://admin:s3cretpw@db.example:5432/app?sslmode=require", "hooks", "list")
	require.Equal(t, ExitUsage, code, errOut)
	require.NotContains(t, errOut, "s3cretpw")
}

func TestTargetFlagAddsATarget(t *testing.T) {
	t.Parallel()
	code, _, errOut := runMain(t, "--target", "reporting=postgres://u:pw@db.example/reporting", "hooks", "list")
	require.Equal(t, ExitOK, code, errOut)

	// Invalid names and connection strings are usage errors that keep the password hidden.
	for _, tc := range [][]string{
		{"--target", "bad name=postgres://u:s3cretpw@db.example/x"},
		{"--target", "app=postgres://admin:s3cretpw@db.example:notaport/app"},
		{"--target", "app=host=db.example password=s3cretpw port=notaport"},
		{"--target", "host=db.example user=admin password=s3cretpw dbname=app"},
	} {
		code, _, errOut = runMain(t, append(tc, "hooks", "list")...)
		require.Equal(t, ExitUsage, code, "%v: %s", tc, errOut)
		require.NotContains(t, errOut, "s3cretpw", tc)
	}
}

func TestConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("concurrency: 2\nconcurency_typo: 3\n"), 0o600))
	code, out, errOut := runMain(t, "--config", bad, "hooks", "list")
	require.Equal(t, ExitUsage, code, errOut)
	require.Empty(t, out)
	require.Contains(t, errOut, "concurency_typo")

	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, os.WriteFile(good, []byte("concurrency: 2\ntargets:\n  - name: app\n    dsn: postgres://u@db.example/app\n"), 0o600))
	code, out, errOut = runMain(t, "--config", good, "hooks", "list")
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, "sql")

	// A configuration that loads but does not validate is a usage error too.
	invalid := filepath.Join(dir, "invalid.yaml")
	require.NoError(t, os.WriteFile(invalid, []byte("concurrency: -1\n"), 0o600))
	code, _, errOut = runMain(t, "--config", invalid, "hooks", "list")
	require.Equal(t, ExitUsage, code, errOut)
	require.Contains(t, errOut, "concurrency")

	code, _, errOut = runMain(t, "--config", filepath.Join(dir, "missing.yaml"), "hooks", "list")
	require.Equal(t, ExitUsage, code, errOut)
}

func TestConfigPrecedence(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "w.yaml")
	require.NoError(t, os.WriteFile(path, []byte("concurrency: 2\nnats_url: nats://file.example:4222\n"), 0o600))
	o := &options{configFile: path, concurrency: 5, targets: []string{"extra=postgres://u@db.example/extra"}}
	cfg, err := o.config(slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, 5, cfg.Concurrency, "a flag beats the file")
	if os.Getenv("CONFITURE_NATS_URL") == "" {
		require.Equal(t, "nats://file.example:4222", cfg.NATSURL)
	}
	require.Equal(t, "extra", cfg.Targets[len(cfg.Targets)-1].Name)
}

func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, Main([]string{"--version"}, &stdout, &stderr), stderr.String())
	require.Equal(t, "worker version "+buildinfo.String()+"\n", stdout.String())
}
