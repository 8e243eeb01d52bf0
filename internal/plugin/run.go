package plugin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/confiture-io/confiture-worker/internal/clip"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/redact"
)

// Limits of what the worker reads from a plugin.
const (
	// MaxOutput is the most a plugin may write on stdout; a plugin that writes more is killed.
	MaxOutput = 1 << 20
	// MaxStderr is how much of a plugin's stderr is logged; the rest is read and dropped.
	MaxStderr = 64 << 10
	// maxStderrLine bounds one logged line of stderr.
	maxStderrLine = 4 << 10
	// maxMessage bounds the message of a hook result built from a plugin's result.
	maxMessage = 4 << 10
)

// Environment variables the worker sets for a plugin.
const (
	EnvTargetDSN    = "CONFITURE_TARGET_DSN"
	EnvTargetSchema = "CONFITURE_TARGET_SCHEMA"
	defaultPath     = "/usr/local/bin:/usr/bin:/bin"
)

// Errors of a plugin run, for errors.Is. Each reads as part of a sentence after the plugin's
// name: `plugin "notify" timed out after 5m0s`.
var (
	// ErrTimeout: the plugin ran longer than its manifest's timeout and was killed.
	ErrTimeout = errors.New("timed out")
	// ErrExit: the plugin exited with a non-zero status or was killed by a signal.
	ErrExit = errors.New("exited with an error")
	// ErrBadOutput: the plugin's stdout was not one valid result.
	ErrBadOutput = errors.New("broke the plugin protocol")
)

// hook is one declaration of a plugin, with its parameters.
type hook struct {
	plugin *plugin
	params json.RawMessage
}

// Run runs the plugin program once: it writes the request on its stdin, logs its stderr and reads
// its result from stdout. It does not use hc.Tx.
func (h *hook) Run(ctx context.Context, hc *hooks.Context) (hooks.Result, error) {
	p := h.plugin
	name := p.manifest.Name
	log := hc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("plugin", name)

	req, err := h.request(hc)
	if err != nil {
		return hooks.Result{}, hooks.Permanent(fmt.Errorf("plugin %q: %w", name, err))
	}

	runCtx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()

	home, err := os.MkdirTemp("", "confiture-plugin-")
	if err != nil {
		home = "" // HOME=/ below
	} else {
		defer os.RemoveAll(home)
	}

	started := time.Now()
	r, err := p.exec(runCtx, req, p.environ(hc, home), func(line string) {
		log.WarnContext(ctx, line, "stream", "stderr")
	}, hc.TargetDSN)
	if err != nil {
		return hooks.Result{}, fmt.Errorf("plugin %q: start %s: %w", name, p.command, err)
	}
	elapsed := time.Since(started)
	log.DebugContext(ctx, "plugin_exited", "duration_ms", elapsed.Milliseconds(), "exit", exitDescription(r.waitErr))

	switch {
	case r.killed && ctx.Err() != nil:
		return hooks.Result{}, fmt.Errorf("plugin %q interrupted after %s; its processes were killed: %w", name, roundDuration(elapsed), context.Cause(ctx))
	case r.killed:
		return hooks.Result{}, fmt.Errorf("plugin %q %w after %s (the timeout set by %s); its processes were killed", name, ErrTimeout, p.timeout, p.path)
	case r.tooLarge:
		return hooks.Result{}, fmt.Errorf("plugin %q %w: output larger than 1 MiB on stdout; its processes were killed", name, ErrBadOutput)
	}

	res, decodeErr := decodeResult(r.out, hc.TargetDSN)
	if r.waitErr != nil {
		msg := fmt.Sprintf("plugin %q %s", name, exitDescription(r.waitErr))
		reason := ""
		if decodeErr == nil {
			reason = failureReason(res, hc.TargetDSN)
		}
		switch {
		case reason != "":
			msg += ": " + reason
		case r.lastStderr != "":
			msg += fmt.Sprintf(" (last line of stderr: %s)", strconv.Quote(r.lastStderr))
		}
		return hooks.Result{}, &exitError{msg: msg, err: r.waitErr}
	}
	if decodeErr != nil {
		return hooks.Result{}, fmt.Errorf("plugin %q %w: %w", name, ErrBadOutput, decodeErr)
	}

	result := hooks.Result{
		RowsAffected: res.RowsAffected,
		Stats:        redactStats(res.Stats, hc.TargetDSN),
		Message:      clip.String(redact.String(res.Message, redact.Secrets(hc.TargetDSN)...), maxMessage, ""),
	}
	if !res.Success {
		result.Failed = true
		result.Message = failureReason(res, hc.TargetDSN)
		if result.Message == "" {
			result.Message = fmt.Sprintf("plugin %q reported success: false", name)
		}
	}
	return result, nil
}

// request builds and checks the JSON request for hc.
func (h *hook) request(hc *hooks.Context) ([]byte, error) {
	params := h.params
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	data, err := json.Marshal(Request{
		Schema: RequestSchemaV1, Run: hc.Run, RequestID: hc.RequestID, Target: hc.Target,
		Migration: hc.Migration, Version: hc.Version, Phase: hc.Phase, Hook: hc.Hook,
		Attempt: hc.Attempt, IdempotencyKey: IdempotencyKey(originOf(hc), hc.Migration, hc.Phase, hc.Hook),
		Params: params, TargetSchema: hc.TargetSchema,
	})
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	// Cheap (microseconds), and it keeps the worker honest about its own contract.
	if err := validateRequest(data); err != nil {
		return nil, fmt.Errorf("request does not match %s: %w", RequestSchemaV1, err)
	}
	return append(data, '\n'), nil
}

// failureReason is the reason a failed result gives: its message and its error, redacted.
func failureReason(res *Result, dsn string) string {
	var parts []string
	if res.Message != "" {
		parts = append(parts, res.Message)
	}
	if e := res.Error; e != nil {
		s := e.Message
		if e.Code != "" {
			s = e.Code + ": " + s
		}
		if s != res.Message {
			parts = append(parts, s)
		}
	}
	return clip.String(redact.String(strings.Join(parts, ": "), redact.Secrets(dsn)...), maxMessage, "")
}

// redactStats redacts the strings of a plugin's stats, at any depth.
func redactStats(stats map[string]any, dsn string) map[string]any {
	if len(stats) == 0 {
		return nil
	}
	known := redact.Secrets(dsn)
	var walk func(v any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case string:
			return redact.String(v, known...)
		case map[string]any:
			for k, x := range v {
				v[k] = walk(x)
			}
		case []any:
			for i, x := range v {
				v[i] = walk(x)
			}
		}
		return v
	}
	walk(stats)
	return stats
}

// execResult is how a plugin process ended.
type execResult struct {
	// out is stdout, at most MaxOutput bytes.
	out []byte
	// waitErr is the error of waiting for the process: nil when it exited with status 0.
	waitErr error
	// tooLarge is set when stdout exceeded MaxOutput and the plugin was killed for it.
	tooLarge bool
	// killed is set when ctx ended before the plugin and it was killed for it.
	killed bool
	// lastStderr is the last line of stderr, redacted and shortened to maxQuote bytes.
	lastStderr string
}

// exec runs the plugin to completion or until ctx is done, and kills its whole process group at
// the end either way, so that nothing it started outlives it. startErr is set when it could not
// start at all. stderr goes to logLine line by line, redacted with dsn.
func (p *plugin) exec(ctx context.Context, request []byte, env []string, logLine func(string), dsn string) (r execResult, startErr error) {
	// Every stream is an *os.File, so that Wait does not wait for copying goroutines (which a
	// grandchild holding a pipe open would block) and the process group can be killed first.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return r, err
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		closeAll(stdinR, stdinW)
		return r, err
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		closeAll(stdinR, stdinW, stdoutR, stdoutW)
		return r, err
	}
	cmd := exec.Command(p.command, p.manifest.Args...)
	cmd.Dir = p.dir
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderrW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	closeAll(stdinR, stdoutW, stderrW) // the child has its copies
	if err != nil {
		closeAll(stdinW, stdoutR, stderrR)
		return r, err
	}
	pgid := cmd.Process.Pid
	var killOnce sync.Once
	kill := func() { killOnce.Do(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) }) }

	var wg sync.WaitGroup
	wg.Go(func() {
		// A plugin need not read its request; a write error (EPIPE) is not a failure.
		_, _ = stdinW.Write(request)
		_ = stdinW.Close()
	})
	wg.Go(func() {
		defer stdoutR.Close()
		r.out, _ = io.ReadAll(io.LimitReader(stdoutR, MaxOutput+1))
		if len(r.out) > MaxOutput {
			r.out, r.tooLarge = r.out[:MaxOutput], true
			kill()
			_, _ = io.Copy(io.Discard, stdoutR) // until every writer is dead
		}
	})
	wg.Go(func() {
		defer stderrR.Close()
		r.lastStderr = logStderr(stderrR, logLine, dsn)
	})

	exited := make(chan struct{})
	watcher := make(chan bool)
	go func() {
		select {
		case <-ctx.Done():
			kill()
			watcher <- true
		case <-exited:
			watcher <- false
		}
	}()
	r.waitErr = cmd.Wait()
	close(exited)
	r.killed = <-watcher
	// The leader is gone; kill what it left behind in its group, so that the pipes close. The
	// group id cannot be taken by another group while a member of ours lives; if none does,
	// this is a harmless ESRCH.
	kill()
	// A descendant that left the group (setsid, a daemon) may still hold the pipes: give the
	// readers and the writer a short grace, then close the pipes under them, so the hook never
	// outlives its timeout by more than that.
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(pipeGrace):
		closeAll(stdinW, stdoutR, stderrR)
		<-done
	}
	return r, nil
}

// pipeGrace is how long a plugin's pipes may stay open after its process group is gone.
const pipeGrace = 2 * time.Second

// exitError is a plugin's non-zero exit; it is ErrExit for errors.Is.
type exitError struct {
	msg string
	err error // *exec.ExitError
}

func (e *exitError) Error() string        { return e.msg }
func (e *exitError) Unwrap() error        { return e.err }
func (e *exitError) Is(target error) bool { return target == ErrExit }

func closeAll(files ...*os.File) {
	for _, f := range files {
		_ = f.Close()
	}
}

// logStderr reads r line by line and logs each non-empty line, redacted and shortened to
// maxStderrLine bytes, until MaxStderr bytes were logged; then it logs a note once and drops the
// rest. It returns the last non-empty line, logged or not, shortened to maxQuote bytes.
func logStderr(r io.Reader, logLine func(string), dsn string) (last string) {
	br := bufio.NewReaderSize(r, 4096)
	// Keep enough of a long line to redact a secret that straddles the cut.
	keep := maxStderrLine + len(dsn) + 64
	logged := 0
	full := false
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if room := keep - len(line); room > 0 {
			line = append(line, chunk[:min(len(chunk), room)]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if s := strings.TrimRight(string(line), "\r\n"); strings.TrimSpace(s) != "" {
			s = clip.String(redact.String(s, redact.Secrets(dsn)...), maxStderrLine, "")
			last = clip.String(s, maxQuote, "")
			switch {
			case full:
			case logged+len(s) > MaxStderr:
				full = true
				logLine(fmt.Sprintf("[stderr beyond %d KiB not logged]", MaxStderr>>10))
			default:
				logged += len(s)
				logLine(s)
			}
		}
		line = line[:0]
		if err != nil {
			return last
		}
	}
}

// exitDescription describes how a process ended.
func exitDescription(err error) string {
	if err == nil {
		return "exited with status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("was killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
		}
		return fmt.Sprintf("exited with status %d", ee.ExitCode())
	}
	return "failed: " + err.Error()
}

func roundDuration(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// environ builds the plugin's scrubbed environment: PATH, HOME and TMPDIR (a private temporary
// directory, or / when there is none), LANG and LC_ALL when set, the variables its manifest
// allows that are set and are not worker secrets, then the target's connection string and
// schema.
func (p *plugin) environ(hc *hooks.Context, home string) []string {
	vars := map[string]string{"PATH": defaultPath, "HOME": "/"}
	order := []string{"PATH", "HOME"}
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	if v := os.Getenv("PATH"); v != "" {
		set("PATH", v)
	}
	if home != "" {
		set("HOME", home)
		set("TMPDIR", home)
	}
	for _, k := range append([]string{"LANG", "LC_ALL"}, p.env...) {
		if v, ok := os.LookupEnv(k); ok && !workerSecret(k) {
			set(k, v)
		}
	}
	set(EnvTargetDSN, hc.TargetDSN)
	set(EnvTargetSchema, hc.TargetSchema)
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env
}

// workerSecret reports whether an environment variable may hold one of the worker's own
// secrets (its configuration, its database and NATS credentials). Those never reach a plugin,
// whatever its manifest allows.
func workerSecret(name string) bool {
	upper := strings.ToUpper(name)
	for _, prefix := range []string{"CONFITURE_", "NATS_"} {
		if strings.HasPrefix(upper, prefix) {
			return true
		}
	}
	switch upper {
	case "DATABASE_URL", "TEST_DATABASE_URL", "PGPASSWORD", "PGPASSFILE", "PGSERVICEFILE":
		return true
	}
	return false
}

// originOf is the run whose idempotency keys hc's hook uses: the run that began the migration's
// work (see hooks.Context.Origin).
func originOf(hc *hooks.Context) string {
	if hc.Origin != "" {
		return hc.Origin
	}
	return hc.Run
}
