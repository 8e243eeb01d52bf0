package docscheck

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// The docs run as a reader would run them: TestDocsRun copies the repository into a sandbox,
// builds `worker` and `submit` onto its PATH, starts a worker (embedded NATS, a database of its
// own, targets default, app and staging-copy), and runs every ```sh block of README.md and
// docs/ there, in the order a reader meets them, each from the clone's root (the reader's own
// Go project, custom-worker, is beside it). A plain block
// whose first line is `$ command` is a transcript: the command runs, and what it prints must be
// what the block shows (a line `...`, indented or not, stands for any number of lines).
//
// A block fails when one of its commands fails. What cannot run here says why, in an HTML
// comment on the lines just above its fence, one directive a line:
//
//	<!-- docs-check: skip: REASON -->               the block is not run
//	<!-- docs-check: without "PREFIX": REASON -->   its lines starting with PREFIX are not run
//	<!-- docs-check: fails "PREFIX" N: REASON -->   a line starting with PREFIX exits N, as it should
//	<!-- docs-check: dir DIR -->                    it runs in DIR, relative to the clone
//
// make docs-check runs it (CONFITURE_DOCS_RUN=1); .ci/run calls make docs-check.

// block is one runnable block of a doc.
type block struct {
	doc  string
	line int // of the opening fence, 1-based
	// script is the block's text; for a transcript, its command.
	script string
	// want is a transcript's expected output; nil for a ```sh block.
	want    []string
	skip    string
	dir     string
	without []string
	fails   map[string]int
}

var directiveRe = regexp.MustCompile(`^<!-- docs-check: (.*) -->$`)

// blocks returns the ```sh blocks and transcripts of doc, in order, with their directives.
func blocks(t *testing.T, path, doc string) []block {
	t.Helper()
	lines := strings.Split(doc, "\n")
	var out []block
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasPrefix(l, "```") {
			continue
		}
		end := i + 1
		for end < len(lines) && !strings.HasPrefix(lines[end], "```") {
			end++
		}
		body := lines[i+1 : end]
		b := block{doc: path, line: i + 1, fails: map[string]int{}}
		switch {
		case l == "```sh":
			b.script = strings.Join(body, "\n")
		case l == "```" && len(body) > 0 && strings.HasPrefix(body[0], "$ "):
			b.script = strings.TrimPrefix(body[0], "$ ")
			b.want = body[1:]
		default:
			i = end
			continue
		}
		for j := i - 1; j >= 0; j-- {
			m := directiveRe.FindStringSubmatch(lines[j])
			if m == nil {
				break
			}
			parseDirective(t, &b, m[1])
		}
		out = append(out, b)
		i = end
	}
	return out
}

var (
	withoutRe = regexp.MustCompile(`^without "([^"]+)": .+`)
	failsRe   = regexp.MustCompile(`^fails "([^"]+)" ([0-9]+): .+`)
)

func parseDirective(t *testing.T, b *block, d string) {
	t.Helper()
	switch {
	case strings.HasPrefix(d, "skip: ") && len(d) > len("skip: "):
		b.skip = strings.TrimPrefix(d, "skip: ")
	case strings.HasPrefix(d, "dir "):
		b.dir = strings.TrimPrefix(d, "dir ")
	case withoutRe.MatchString(d):
		b.without = append(b.without, withoutRe.FindStringSubmatch(d)[1])
	case failsRe.MatchString(d):
		m := failsRe.FindStringSubmatch(d)
		n, _ := strconv.Atoi(m[2])
		b.fails[m[1]] = n
	default:
		t.Fatalf("%s:%d: docs-check directive %q is none of skip: REASON, dir DIR, without \"PREFIX\": REASON, fails \"PREFIX\" N: REASON", b.doc, b.line, d)
	}
}

// logicalLines returns the command lines of a block's script, continuation lines joined.
func logicalLines(script string) []string {
	var out []string
	cur := ""
	for _, l := range strings.Split(script, "\n") {
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		out = append(out, cur+l)
		cur = ""
	}
	return out
}

// sandbox is where the docs run.
type sandbox struct {
	root string
	env  []string
	// subst replaces the docs' placeholders and example values with the sandbox's own.
	subst *strings.Replacer
}

func TestDocsRun(t *testing.T) {
	if os.Getenv("CONFITURE_DOCS_RUN") == "" {
		t.Skip("make docs-check runs the docs' shell blocks (CONFITURE_DOCS_RUN=1)")
	}
	all := docs(t)
	order := []string{"README.md"}
	for p := range all {
		if p != "README.md" {
			order = append(order, p)
		}
	}
	slices.Sort(order[1:])

	sb := newSandbox(t)
	ran, skipped := 0, 0
	for _, path := range order {
		for _, b := range blocks(t, path, all[path]) {
			if b.skip != "" {
				t.Logf("%s:%d: skipped: %s", b.doc, b.line, b.skip)
				skipped++
				continue
			}
			sb.run(t, b)
			ran++
		}
	}
	t.Logf("%d blocks run, %d skipped (each with its reason)", ran, skipped)
	require.Greater(t, ran, 10, "blocks run")
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The reader's home: a clone of the repository, and their own project beside it.
	home := t.TempDir()
	root := filepath.Join(home, "confiture-worker")
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)

	// The repository as a clone has it: the tracked files.
	files, err := exec.CommandContext(ctx, "git", "-C", repo, "ls-files", "-z").Output()
	require.NoError(t, err, "git ls-files")
	for _, f := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		src := filepath.Join(repo, f)
		fi, err := os.Stat(src)
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		require.NoError(t, err)
		data, err := os.ReadFile(src)
		require.NoError(t, err)
		dst := filepath.Join(root, f)
		require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		require.NoError(t, os.WriteFile(dst, data, fi.Mode().Perm()))
	}
	// Make lint lists the files with git.
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}} {
		out, err := exec.CommandContext(ctx, "git", append([]string{"-C", root}, args...)...).CombinedOutput()
		require.NoError(t, err, "git %v: %s", args, out)
	}
	for _, cmd := range []string{"worker", "submit"} {
		build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(root, "bin", cmd), "./cmd/"+cmd)
		build.Dir = root
		out, err := build.CombinedOutput()
		require.NoError(t, err, "go build %s: %s", cmd, out)
	}
	// A reader's own migrations (./migrations) and Go hooks (custom-worker/, without the
	// go.mod the docs have them create).
	copyDir(t, "testdata/migrations", filepath.Join(root, "migrations"))
	copyDir(t, filepath.Join(root, "examples/custom-worker"), filepath.Join(home, "custom-worker"))
	for _, f := range []string{"go.mod", "go.sum"} {
		require.NoError(t, os.Remove(filepath.Join(home, "custom-worker", f)))
	}

	// One database for the queue and target default, one each for targets app and
	// staging-copy, and one for make run's worker.
	queue, app, staging, example := testdb.New(t), testdb.New(t), testdb.New(t), testdb.New(t)
	cfg := filepath.Join(t.TempDir(), "worker.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil,
		"database_url: %s\ntargets:\n  - name: default\n    dsn: %s\n  - name: app\n    dsn: %s\n  - name: staging-copy\n    dsn: %s\n",
		queue, queue, app, staging), 0o600))

	env := append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CONFITURE_") }),
		"PATH="+filepath.Join(root, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"),
		"GIT_SHA=docscheck",
		"CONFITURE_EXAMPLE_DB="+filepath.Base(example),
		"DATABASE_URL="+testdb.AdminURL(),
	)
	sb := &sandbox{root: root, env: env}
	nats := sb.startWorker(t, cfg)
	sb.env = append(sb.env, "CONFITURE_NATS_URL="+nats)
	sb.subst = strings.NewReplacer(
		"/path/to/confiture-worker", root,
		"postgres://postgres@127.0.0.1:5432/postgres", testdb.AdminURL(),
	)
	return sb
}

// exampleRun is the run id the docs use in their examples of log searches.
const exampleRun = "8cca5d7b-dd0b-505b-96c4-f78e46de8baf"

var runRe = regexp.MustCompile(`run=([0-9a-f-]{36})`)

// replace puts the sandbox's values in place of the docs' placeholders: paths, the database
// server and, once make run has run, the example run id by its run's.
func (sb *sandbox) replace(t *testing.T, script string) string {
	t.Helper()
	script = sb.subst.Replace(script)
	if strings.Contains(script, exampleRun) {
		log, err := os.ReadFile(filepath.Join(sb.root, ".run", "worker.log"))
		require.NoError(t, err, "a doc searches make run's log for a run before make run ran")
		m := runRe.FindSubmatch(log)
		require.NotNil(t, m, "make run's log names no run")
		script = strings.ReplaceAll(script, exampleRun, string(m[1]))
	}
	return script
}

// startWorker starts the worker the docs' commands talk to, logging JSON to worker.log in the
// sandbox, and returns its NATS URL.
func (sb *sandbox) startWorker(t *testing.T, cfg string) string {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	log, err := os.Create(filepath.Join(sb.root, "worker.log"))
	require.NoError(t, err)
	cmd := exec.Command(filepath.Join(sb.root, "bin", "worker"), "--config", cfg,
		"--data-dir", filepath.Join(t.TempDir(), "data"), "--ready-file", ready,
		"--log-format", "json", "--embedded-nats-port", "-1", "--http-addr", "off")
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = sb.root, sb.env, log, log
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = log.Close()
	})
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(ready); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("the worker exited during start-up (%v):\n%s", err, b)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("the worker was not ready in 2 minutes")
	return ""
}

// failMark starts the line the shell writes for each command that fails.
const failMark = "\x00docs-check failed"

// run runs one block and checks that each of its commands succeeds (or fails as a directive
// says), and for a transcript that it prints what the block shows.
func (sb *sandbox) run(t *testing.T, b block) {
	t.Helper()
	where := fmt.Sprintf("%s:%d", b.doc, b.line)
	var script []string
	lines := logicalLines(sb.replace(t, b.script))
	used := map[string]bool{}
	for _, l := range lines {
		text := strings.TrimSpace(l)
		if i := slices.IndexFunc(b.without, func(p string) bool { return strings.HasPrefix(text, p) }); i >= 0 {
			used[b.without[i]] = true
			continue
		}
		script = append(script, l)
	}
	for _, p := range b.without {
		require.True(t, used[p], "%s: no line starts with %q, which a directive leaves out", where, p)
	}
	const header = 2
	src := "set -o pipefail\n" +
		`trap 'printf "` + `\0docs-check failed %d %d\n" "$?" "$LINENO" >&2' ERR` + "\n" +
		strings.Join(script, "\n") + "\n"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", src)
	cmd.Dir = filepath.Join(sb.root, b.dir)
	cmd.Env = sb.env
	start := time.Now()
	out, runErr := cmd.CombinedOutput()
	t.Logf("%s: ran in %s:\n%s", where, time.Since(start).Round(time.Millisecond), out)
	require.NoError(t, ctx.Err(), "%s: timed out:\n%s", where, out)

	var printed []string
	failed := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		i := strings.Index(l, failMark)
		if i < 0 {
			printed = append(printed, l)
			continue
		}
		if i > 0 {
			printed = append(printed, l[:i])
		}
		var code, lineno int
		_, err := fmt.Sscanf(l[i+len(failMark):], " %d %d", &code, &lineno)
		require.NoError(t, err, "%s: %q", where, l)
		text := commandAt(script, lineno-header)
		failed[text] = code
	}
	for text, code := range failed {
		want, ok := -1, false
		for p, n := range b.fails {
			if strings.HasPrefix(strings.TrimSpace(text), p) {
				want, ok = n, true
			}
		}
		require.True(t, ok && want == code, "%s: %q exited %d:\n%s", where, text, code, strings.Join(printed, "\n"))
	}
	if runErr != nil && len(failed) == 0 {
		t.Fatalf("%s: %v:\n%s", where, runErr, strings.Join(printed, "\n"))
	}
	for p := range b.fails {
		require.True(t, slices.ContainsFunc(slices.Collect(maps.Keys(failed)), func(s string) bool { return strings.HasPrefix(strings.TrimSpace(s), p) }),
			"%s: the docs say %q fails; it did not:\n%s", where, p, strings.Join(printed, "\n"))
	}
	if b.want != nil {
		requireTranscript(t, where, b.want, printed)
	}
}

// commandAt returns the command at line n of script (its logical lines, one a line), 1-based.
func commandAt(script []string, n int) string {
	if n >= 1 && n <= len(script) {
		return script[n-1]
	}
	return fmt.Sprintf("line %d", n)
}

// requireTranscript checks printed against a transcript's lines: equal after trailing blanks
// are trimmed, where a line "..." (indented or not) in want stands for any number of lines.
func requireTranscript(t *testing.T, where string, want, printed []string) {
	t.Helper()
	trim := func(ls []string) []string {
		out := make([]string, len(ls))
		for i, l := range ls {
			out[i] = strings.TrimRight(l, " \t")
		}
		for len(out) > 0 && out[len(out)-1] == "" {
			out = out[:len(out)-1]
		}
		return out
	}
	want, got := trim(want), trim(printed)
	if !matchLines(want, got) {
		t.Fatalf("%s: the transcript shows\n%s\n\nthe command printed\n%s", where, strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
}

func matchLines(want, got []string) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	if strings.TrimSpace(want[0]) == "..." {
		for i := 0; i <= len(got); i++ {
			if matchLines(want[1:], got[i:]) {
				return true
			}
		}
		return false
	}
	return len(got) > 0 && want[0] == got[0] && matchLines(want[1:], got[1:])
}

// copyDir copies the regular files under src to dst, keeping their modes.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, fi.Mode().Perm())
	}))
}
