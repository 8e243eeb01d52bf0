package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
)

func TestRunSuccessMapsResult(t *testing.T) {
	t.Parallel()
	p, dir := newPlugin(t, `
cat > request.json
printf '{"schema":"confiture.plugin-result/v1","success":true,"rows_affected":42,"stats":{"testplugin.batches":3,"testplugin.table":"users"},"message":"backfilled 42 rows"}\n'
`, "")
	hc := hookContext(nil)
	res, err := run(t, p, map[string]any{"table": "users", "batch": 100}, hc)
	require.NoError(t, err)
	require.Equal(t, hooks.Result{
		RowsAffected: 42,
		Stats:        map[string]any{"testplugin.batches": float64(3), "testplugin.table": "users"},
		Message:      "backfilled 42 rows",
	}, res)

	raw, err := os.ReadFile(filepath.Join(dir, "request.json"))
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(string(raw), "}\n"), "one line of JSON")
	require.Equal(t, 1, strings.Count(string(raw), "\n"))
	require.NoError(t, validateRequest(raw))
	var req Request
	require.NoError(t, json.Unmarshal(raw, &req))
	require.Equal(t, Request{
		Schema: RequestSchemaV1, Run: hc.Run, RequestID: "deploy-42", Target: "default",
		Migration: "20240601120000_add_email", Version: "20240601120000", Phase: "after_ddl",
		Hook: "announce", Attempt: 1, IdempotencyKey: IdempotencyKey(hc.Run, hc.Migration, "after_ddl", "announce"),
		Params: json.RawMessage(`{"batch":100,"table":"users"}`), TargetSchema: "app",
	}, req)
	require.Regexp(t, `^[0-9a-f]{64}$`, req.IdempotencyKey)
	require.NotContains(t, string(raw), "s3cret-pw")
	require.NotContains(t, string(raw), "db.example")
}

func TestIdempotencyKeyIsStableAcrossAttempts(t *testing.T) {
	t.Parallel()
	p, dir := newPlugin(t, `cat > "request-$$.json"; `+okResult, "")
	keys := map[int]string{}
	for attempt := 1; attempt <= 2; attempt++ {
		hc := hookContext(nil)
		hc.Attempt = attempt
		_, err := run(t, p, nil, hc)
		require.NoError(t, err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "request-*.json"))
	require.NoError(t, err)
	require.Len(t, files, 2)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var req Request
		require.NoError(t, json.Unmarshal(raw, &req))
		require.JSONEq(t, `{}`, string(req.Params))
		keys[req.Attempt] = req.IdempotencyKey
	}
	require.Equal(t, keys[1], keys[2])
	require.NotEqual(t, keys[1], IdempotencyKey("other-run", "20240601120000_add_email", "after_ddl", "announce"))
	require.NotEqual(t, keys[1], IdempotencyKey(hookContext(nil).Run, "20240601120000_add_email", "cleanup", "announce"))
}

func TestRunProtocolViolations(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, script string
		is           error
		want         []string
	}{
		{"not JSON", `echo "hello world, I am not JSON"`, ErrBadOutput,
			[]string{"is not one JSON object", `"hello world, I am not JSON\n"`}},
		{"empty", `cat >/dev/null`, ErrBadOutput, []string{"printed no result on stdout"}},
		{"two objects", okResult + "; " + okResult, ErrBadOutput, []string{"is not one JSON object"}},
		{"array", `echo '[1, 2]'`, ErrBadOutput, []string{"must be one JSON object", `"[1, 2]\n"`}},
		{"wrong schema", `echo '{"schema":"confiture.plugin-result/v2","success":true}'`, ErrBadOutput,
			[]string{`"schema" must be "confiture.plugin-result/v1"`}},
		{"schema violation", `echo '{"schema":"confiture.plugin-result/v1","success":"yes","rows_affected":-1,"extra":1}'`, ErrBadOutput,
			[]string{"does not match confiture.plugin-result/v1", "/success", "/rows_affected", "extra"}},
		{"long garbage", `i=0; while [ $i -lt 100 ]; do printf 'garbage-%03d ' $i; i=$((i+1)); done`, ErrBadOutput,
			[]string{`it begins with "garbage-000 garbage-001`, `garbage-"...`}},
		{"exit status", `echo '{"schema":"confiture.plugin-result/v1","success":false,"error":{"code":"disk_full","message":"no space left"}}'; exit 3`, ErrExit,
			[]string{`plugin "testplugin" exited with status 3: disk_full: no space left`}},
		{"exit status, no result", `echo "cannot reach $CONFITURE_TARGET_DSN" >&2; echo >&2; exit 1`, ErrExit,
			[]string{`plugin "testplugin" exited with status 1 (last line of stderr: "cannot reach postgres://app:xxxxx@db.example`}},
		{"exit status, success result", okResult + `; exit 4`, ErrExit, []string{"exited with status 4"}},
		{"signal", `kill -9 $$`, ErrExit, []string{"was killed by signal 9 (killed)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p, _ := newPlugin(t, c.script, "")
			_, err := run(t, p, nil, nil)
			require.ErrorIs(t, err, c.is)
			for _, w := range c.want {
				require.Contains(t, err.Error(), w)
			}
			require.Less(t, len(err.Error()), 1200)
			require.NotContains(t, err.Error(), "s3cret-pw")
			require.True(t, hooks.Retryable(err), "a plugin's failure is retried")
		})
	}
}

func TestRunFailureResult(t *testing.T) {
	t.Parallel()
	p, _ := newPlugin(t, `echo '{"schema":"confiture.plugin-result/v1","success":false,"rows_affected":3,"message":"validation failed","error":{"code":"mismatch","message":"3 rows differ"}}'`, "")
	res, err := run(t, p, nil, nil)
	require.NoError(t, err)
	require.True(t, res.Failed)
	require.Equal(t, int64(3), res.RowsAffected)
	require.Equal(t, "validation failed: mismatch: 3 rows differ", res.Message)

	p, _ = newPlugin(t, `echo '{"schema":"confiture.plugin-result/v1","success":false}'`, "")
	res, err = run(t, p, nil, nil)
	require.NoError(t, err)
	require.True(t, res.Failed)
	require.Equal(t, `plugin "testplugin" reported success: false`, res.Message)
}

// processGone reports whether pid no longer runs (it may linger as a zombie until reaped).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return os.IsNotExist(err)
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] == "Z"
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err, "the plugin wrote no pid file")
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	require.NoError(t, err)
	return pid
}

func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	p, dir := newPlugin(t, `
sleep 30 &
echo $! > sleep.pid
sleep 30
`+okResult, "timeout: 300ms\n")
	start := time.Now()
	_, err := run(t, p, nil, nil)
	elapsed := time.Since(start)
	require.ErrorIs(t, err, ErrTimeout)
	require.ErrorContains(t, err, `plugin "testplugin" timed out after 300ms`)
	require.ErrorContains(t, err, "p.hook.yaml")
	require.Less(t, elapsed, 2*time.Second)
	require.GreaterOrEqual(t, elapsed, 300*time.Millisecond)
	pid := readPid(t, filepath.Join(dir, "sleep.pid"))
	require.Eventually(t, func() bool { return processGone(pid) }, 2*time.Second, 10*time.Millisecond,
		"the background sleep %d outlived its plugin", pid)
}

func TestRunKillsWhatThePluginLeftBehind(t *testing.T) {
	t.Parallel()
	// The background sleep keeps stdout and stderr open: without killing the group, reading
	// them would wait for it.
	p, dir := newPlugin(t, `
sleep 30 &
echo $! > sleep.pid
`+okResult, "")
	start := time.Now()
	_, err := run(t, p, nil, nil)
	require.NoError(t, err)
	require.Less(t, time.Since(start), 2*time.Second)
	pid := readPid(t, filepath.Join(dir, "sleep.pid"))
	require.Eventually(t, func() bool { return processGone(pid) }, 2*time.Second, 10*time.Millisecond)
}

func TestRunContextCancelled(t *testing.T) {
	t.Parallel()
	p, dir := newPlugin(t, `
echo $$ > plugin.pid
sleep 30
`, "")
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() {
		// Cancel once the plugin runs (a wait on a condition, not a bare sleep).
		for {
			if _, err := os.Stat(filepath.Join(dir, "plugin.pid")); err == nil {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	_, err := runCtx(ctx, t, p, nil, nil)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ErrTimeout)
	require.ErrorContains(t, err, `plugin "testplugin" interrupted`)
	require.Less(t, time.Since(start), 2*time.Second)
}

func TestRunOutputLargerThanLimit(t *testing.T) {
	t.Parallel()
	p, _ := newPlugin(t, `yes "{}"`, "")
	start := time.Now()
	_, err := run(t, p, nil, nil)
	require.ErrorIs(t, err, ErrBadOutput)
	require.ErrorContains(t, err, "output larger than 1 MiB")
	require.Less(t, time.Since(start), 5*time.Second)

	// Exactly at the limit is fine: a valid result padded with white space.
	p, _ = newPlugin(t, `
printf '{"schema":"confiture.plugin-result/v1","success":true}'
n=$(( 1048576 - 54 ))
head -c $n /dev/zero | tr '\0' ' '
`, "")
	res, err := run(t, p, nil, nil)
	require.NoError(t, err)
	require.False(t, res.Failed)
}

func TestRunDoesNotNeedToReadStdin(t *testing.T) {
	t.Parallel()
	p, _ := newPlugin(t, okResult, "")
	big := strings.Repeat("x", 512<<10) // far more than a pipe buffer
	res, err := run(t, p, map[string]any{"blob": big}, nil)
	require.NoError(t, err)
	require.False(t, res.Failed)
}

func TestRunLogsStderrRedacted(t *testing.T) {
	t.Parallel()
	p, _ := newPlugin(t, `
cat > /dev/null
echo "connecting to $CONFITURE_TARGET_DSN" >&2
echo "retrying with password=s3cret-pw and host=db.example" >&2
echo "" >&2
printf 'last line without newline' >&2
`+okResult, "")
	logger, buf := newLogger()
	_, err := run(t, p, nil, hookContext(logger))
	require.NoError(t, err)
	logs := buf.String()
	require.NotContains(t, logs, "s3cret-pw")
	var stderr []string
	for _, l := range lines(buf) {
		if strings.Contains(l, "stream=stderr") {
			require.Contains(t, l, "level=WARN")
			require.Contains(t, l, "plugin=testplugin")
			stderr = append(stderr, l)
		}
	}
	require.Len(t, stderr, 3, logs)
	require.Contains(t, stderr[0], "connecting to postgres://app:xxxxx@db.example:5432/app")
	require.Contains(t, stderr[1], "password=xxxxx")
	require.Contains(t, stderr[2], "last line without newline")
}

func TestRunBoundsStderr(t *testing.T) {
	t.Parallel()
	p, _ := newPlugin(t, `
long=$(head -c 10000 /dev/zero | tr '\0' 'a')
echo "$long" >&2
i=0
while [ $i -lt 3000 ]; do echo "line $i of a plugin that talks far too much" >&2; i=$((i+1)); done
`+okResult, "")
	logger, buf := newLogger()
	_, err := run(t, p, nil, hookContext(logger))
	require.NoError(t, err)
	var n, notes int
	for _, l := range lines(buf) {
		if strings.Contains(l, "stream=stderr") {
			n++
			require.Less(t, len(l), maxStderrLine+200)
		}
		if strings.Contains(l, "not logged") {
			notes++
		}
	}
	require.Equal(t, 1, notes)
	require.Greater(t, n, 1000)
	require.Less(t, n, 3000)
	require.Less(t, len(buf.String()), 2*MaxStderr+n*200)
}

func TestRunRedactsResult(t *testing.T) {
	t.Parallel()
	p, _ := newPlugin(t, `
printf '{"schema":"confiture.plugin-result/v1","success":true,"message":"used %s","stats":{"dsn":"%s","nested":["%s"]}}\n' "$CONFITURE_TARGET_DSN" "$CONFITURE_TARGET_DSN" "$CONFITURE_TARGET_DSN"
`, "")
	res, err := run(t, p, nil, nil)
	require.NoError(t, err)
	b, err := json.Marshal(res)
	require.NoError(t, err)
	require.NotContains(t, string(b), "s3cret-pw")
	require.Contains(t, res.Message, "postgres://app:xxxxx@db.example")

	p, _ = newPlugin(t, `echo "cannot connect to $CONFITURE_TARGET_DSN"`, "")
	_, err = run(t, p, nil, nil)
	require.ErrorIs(t, err, ErrBadOutput)
	require.NotContains(t, err.Error(), "s3cret-pw")
	require.Contains(t, err.Error(), "cannot connect to postgres://app:xxxxx@")
}

// TestRunEnvironmentIsScrubbed cannot run in parallel: it sets environment variables.
func TestRunEnvironmentIsScrubbed(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://worker:db-secret@queue/confiture")
	t.Setenv("CONFITURE_DATABASE_URL", "postgres://worker:db-secret@queue/confiture")
	t.Setenv("NATS_TOKEN", "nats-secret")
	t.Setenv("PGPASSWORD", "pg-secret")
	t.Setenv("PLUGIN_TEST_ALLOWED", "allowed-value")
	t.Setenv("PLUGIN_TEST_NOT_ALLOWED", "not-allowed-value")
	t.Setenv("LANG", "C.UTF-8")

	p, dir := newPlugin(t, `
env > env.txt
printf '%s\n' "$0" "$@" > args.txt
cat > stdin.txt
printf '{"schema":"confiture.plugin-result/v1","success":true,"message":"%s"}\n' "$(env | tr '\n"\\' ';__')"
`, `args: [--target, default]
env: [DATABASE_URL, CONFITURE_DATABASE_URL, NATS_TOKEN, PGPASSWORD, PLUGIN_TEST_ALLOWED, UNSET_VARIABLE]
`)
	res, err := run(t, p, nil, nil)
	require.NoError(t, err)
	require.Contains(t, res.Message, "CONFITURE_TARGET_DSN=")
	for _, secret := range []string{"DATABASE_URL=", "NATS_TOKEN", "PGPASSWORD", "db-secret", "nats-secret", "pg-secret", "NOT_ALLOWED"} {
		require.NotContains(t, res.Message, secret)
	}

	raw, err := os.ReadFile(filepath.Join(dir, "env.txt"))
	require.NoError(t, err)
	env := map[string]string{}
	for line := range strings.Lines(string(raw)) {
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		env[k] = v
	}
	delete(env, "PWD") // set by the shell
	delete(env, "SHLVL")
	delete(env, "_")
	home := env["HOME"]
	require.DirExists(t, filepath.Dir(home))
	require.NoDirExists(t, home, "the plugin's HOME is removed after the run")
	require.Equal(t, map[string]string{
		"PATH":                    os.Getenv("PATH"),
		"HOME":                    home,
		"TMPDIR":                  home,
		"LANG":                    "C.UTF-8",
		"PLUGIN_TEST_ALLOWED":     "allowed-value",
		"CONFITURE_TARGET_DSN":    testDSN,
		"CONFITURE_TARGET_SCHEMA": "app",
	}, env)

	for _, f := range []string{"args.txt", "stdin.txt"} {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		require.NotEmpty(t, raw)
		require.NotContains(t, string(raw), testDSN, f)
		require.NotContains(t, string(raw), "s3cret-pw", f)
	}
}

func TestRunWorksWithTheExecutor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeScript(t, dir, "ok.sh", `cat >/dev/null; echo '{"schema":"confiture.plugin-result/v1","success":true,"rows_affected":7}'`)
	writeScript(t, dir, "fail.sh", `echo '{"schema":"confiture.plugin-result/v1","success":false,"message":"nope"}'`)
	writeFile(t, dir, "ok.hook.yaml", `
name: ok
command: ok.sh
phases: [after_ddl]
params_schema: {type: object, additionalProperties: false, required: [n], properties: {n: {type: integer}}}
`, 0o644)
	writeFile(t, dir, "fail.hook.yaml", "name: fail\ncommand: fail.sh\n", 0o644)
	defs, failures := Discover([]string{dir}, nil)
	require.Empty(t, failures)
	reg := hooks.NewRegistry()
	for _, d := range defs {
		require.NoError(t, reg.Register(d))
	}

	// Parameters are checked against the manifest's schema before anything runs.
	_, err := reg.Plan("after_ddl", []contract.HookSpec{{Phase: "after_ddl", Name: "a", Hook: "ok", Params: map[string]any{"n": "x"}}})
	require.ErrorIs(t, err, hooks.ErrInvalidHooks)
	_, err = reg.Plan("cleanup", []contract.HookSpec{{Phase: "cleanup", Name: "a", Hook: "ok", Params: map[string]any{"n": 1}}})
	require.ErrorContains(t, err, "may not run in cleanup")

	planned, err := reg.Plan("after_ddl", []contract.HookSpec{
		{Phase: "after_ddl", Name: "first", Hook: "ok", Params: map[string]any{"n": 1}},
		{Phase: "after_ddl", Name: "second", Hook: "fail"},
	})
	require.NoError(t, err)
	hc := hookContext(nil)
	info := hooks.PhaseInfo{
		TargetDSN: hc.TargetDSN, TargetSchema: hc.TargetSchema, Run: hc.Run, RequestID: hc.RequestID,
		Target: hc.Target, Migration: hc.Migration, Version: hc.Version, Phase: "after_ddl", Attempt: 1,
	}
	exec := hooks.Executor{}
	outs, err := exec.Run(testCtx(t), info, nil, hooks.NewStats(nil), planned, hooks.RunOptions{})
	var he *hooks.HookError
	require.ErrorAs(t, err, &he)
	require.True(t, he.Failure)
	require.Equal(t, "second", he.Hook)
	require.ErrorContains(t, err, "nope")
	require.Len(t, outs, 2)
	require.Equal(t, int64(7), outs[0].Result.RowsAffected)
}

func TestExamplePlugin(t *testing.T) {
	t.Parallel()
	logger, buf := newLogger()
	defs, failures := Discover([]string{"../../examples/plugins"}, nil)
	require.Empty(t, failures)
	require.Len(t, defs, 1)
	def := defs[0]
	require.Equal(t, "notify", def.Name)
	abs, err := filepath.Abs("../../examples/plugins/notify.hook.yaml")
	require.NoError(t, err)
	require.Equal(t, abs, def.Source)

	reg := hooks.NewRegistry()
	require.NoError(t, hooks.RegisterBuiltins(reg))
	require.NoError(t, reg.Register(def))
	_, err = reg.Plan("after_ddl", []contract.HookSpec{{Phase: "after_ddl", Name: "announce", Hook: "notify", Params: map[string]any{"mesage": "typo"}}})
	require.ErrorIs(t, err, hooks.ErrInvalidHooks)
	planned, err := reg.Plan("after_ddl", []contract.HookSpec{{Phase: "after_ddl", Name: "announce", Hook: "notify",
		Params: map[string]any{"message": `customers are "ready"`}}})
	require.NoError(t, err)

	hc := hookContext(logger)
	res, err := planned[0].Hook.Run(testCtx(t), hc)
	require.NoError(t, err)
	require.Equal(t, hooks.Result{
		Stats:   map[string]any{"notify.messages": float64(1)},
		Message: `customers are "ready" (20240601120000_add_email, after_ddl)`,
	}, res)
	require.Contains(t, buf.String(), "stream=stderr")
	require.Contains(t, buf.String(), IdempotencyKey(hc.Run, hc.Migration, hc.Phase, hc.Hook))

	// Its example parameters work too.
	h, err := def.New(def.Example)
	require.NoError(t, err)
	res, err = h.Run(testCtx(t), hookContext(nil))
	require.NoError(t, err)
	require.False(t, res.Failed)
}
