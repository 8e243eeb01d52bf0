package submitcmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/buildinfo"
)

// result is what one submit invocation did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\n--- stdout:\n" + r.stdout + "--- stderr:\n" + r.stderr
}

// testEnv is an environment without $CONFITURE_NATS_URL, colours or a real user.
func testEnv(vars map[string]string) env {
	return env{
		getenv:   func(k string) string { return vars[k] },
		hostname: func() (string, error) { return "buildhost", nil },
		username: func() string { return "" },
		now:      time.Now,
	}
}

func submit(t *testing.T, args ...string) result {
	t.Helper()
	return submitEnv(t, testEnv(nil), args...)
}

func submitEnv(t *testing.T, e env, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut, e)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// writeDir writes files (name -> content) into a fresh directory and returns it.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	return dir
}

func validDir(t *testing.T) string {
	return writeDir(t, map[string]string{"001_create_users.up.sql": "create table users (id int);\n"})
}

func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	dir := validDir(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing DIR", nil, "missing DIR"},
		{"two DIRs", []string{dir, dir}, "one migrations directory, got 2"},
		{"bad direction", []string{dir, "--direction", "sideways"}, `--direction must be up or down, got "sideways"`},
		{"json without wait", []string{dir, "--json"}, "--json applies to the events that --wait follows"},
		{"unknown flag", []string{dir, "--colour"}, "unknown flag: --colour"},
		{"bad timeout", []string{dir, "--wait", "--timeout", "soon"}, "invalid argument"},
		{"zero timeout", []string{dir, "--wait", "--timeout", "0s"}, "--timeout must be positive"},
		{"bad id", []string{dir, "--id", "-x"}, "/id: does not match pattern"},
		{"bad target", []string{dir, "--target", "a.b"}, "/target: does not match pattern"},
		{"bad to", []string{dir, "--to", "v2"}, `/to: does not match pattern`},
		{"requested-by too long", []string{dir, "--requested-by", strings.Repeat("x", 201)}, "/requested_by: must be at most 200 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// An unreachable URL: nothing must get as far as connecting.
			r := submit(t, append(tc.args, "--nats-url", "nats://127.0.0.1:1")...)
			require.Equal(t, ExitUsage, r.code, r)
			require.Contains(t, r.stderr, tc.want, r)
			require.NotContains(t, r.stderr, "connect", r)
			require.Empty(t, r.stdout, r)
		})
	}
}

func TestHelpListsExitCodes(t *testing.T) {
	t.Parallel()
	r := submit(t, "--help")
	require.Equal(t, ExitOK, r.code, r)
	for _, s := range []string{"submit DIR", "Exit codes:", "3    the worker rejected", "4    timed out", "5    dry-run succeeded but found warnings at or above --fail-on", "--fail-on", "--dry-run", "--requested-by", "CONFITURE_NATS_URL"} {
		require.Contains(t, r.stdout, s)
	}
}

func TestInvalidDirectoryExit2ListsEveryProblem(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{
		"001_create_users.up.sql":     "create table users (id int);\n",
		"001_create_users.hooks.yaml": "before_validation:\n  - hook: assert\n    params: {sql: select true}\nafter_dll: []\n",
		"002_add_email.sql":           "alter table users add email text;\n",
		"003_empty.up.sql":            "-- nothing\n",
	})
	r := submit(t, dir, "--nats-url", "nats://127.0.0.1:1")
	require.Equal(t, ExitUsage, r.code, r)
	require.Contains(t, r.stderr, filepath.Join(dir, "001_create_users.hooks.yaml")+":4: unknown phase \"after_dll\"", r)
	require.Contains(t, r.stderr, filepath.Join(dir, "002_add_email.sql")+": not a migration file name", r)
	require.Contains(t, r.stderr, filepath.Join(dir, "003_empty.up.sql")+": is empty", r)
	require.True(t, strings.HasPrefix(r.stderr, "error: 3 problems in the migrations directory "+dir+":\n"), r)
	require.Contains(t, r.stderr, "\nhint: ", r)
	require.Contains(t, r.stderr, "nothing was published", r)
	require.Empty(t, r.stdout)

	missing := filepath.Join(t.TempDir(), "nope")
	r = submit(t, missing)
	require.Equal(t, ExitUsage, r.code, r)
	require.True(t, strings.HasPrefix(r.stderr, "error: "+missing+": no such directory\nhint: "), r)
}

func TestOversizedRequestExit2(t *testing.T) {
	t.Parallel()
	big := "select 1;\n-- " + strings.Repeat("x", 600_000) + "\n"
	dir := writeDir(t, map[string]string{"001_a.up.sql": big, "002_b.up.sql": big})
	r := submit(t, dir, "--nats-url", "nats://127.0.0.1:1")
	require.Equal(t, ExitUsage, r.code, r)
	require.Contains(t, r.stderr, "over the limit of 1048576 bytes", r)
}

func TestUnreachableNATSExit1(t *testing.T) {
	t.Parallel()
	dir := validDir(t)
	r := submit(t, dir, "--nats-url", "nats://127.0.0.1:1", "--wait")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, "error: cannot connect to NATS at nats://127.0.0.1:1", r)
	require.Contains(t, r.stderr, "nothing was published", r)

	// Credentials never show, whether from the flag or the environment.
	r = submitEnv(t, testEnv(map[string]string{NATSURLEnv: "nats://alice:s3cr3t-pw@127.0.0.1:1"}), dir)
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, "nats://alice:xxxxx@127.0.0.1:1", r)
	require.NotContains(t, r.stderr+r.stdout, "s3cr3t-pw", r)
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	require.Regexp(t, regexp.MustCompile(`^submit-\d{8}T\d{6}Z-[0-9a-f]{8}$`), generateID(time.Now()))
	require.NotEqual(t, generateID(time.Now()), generateID(time.Now()))

	s := &submitter{env: testEnv(map[string]string{"USER": "ada"})}
	require.Equal(t, "ada@buildhost", s.defaultRequestedBy())
	s = &submitter{env: testEnv(map[string]string{"USER": strings.Repeat("é", 300)})}
	require.Len(t, []rune(s.defaultRequestedBy()), maxRequestedBy)
	s = &submitter{env: testEnv(nil)}
	require.Equal(t, "buildhost", s.defaultRequestedBy())

	require.Equal(t, "./migrations", shellQuote("./migrations"))
	require.Equal(t, `'my dir/it'\''s'`, shellQuote("my dir/it's"))
}

func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, Main([]string{"--version"}, &stdout, &stderr), stderr.String())
	require.Equal(t, "submit version "+buildinfo.String()+"\n", stdout.String(), "no DIR is needed to ask for the version")
}
