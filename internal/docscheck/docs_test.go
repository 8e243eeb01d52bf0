// Package docscheck holds the tests that keep the README and docs/ true to the repository: the
// make targets they name exist, the repository paths they cite exist, every `worker` and
// `submit` command line in their shell blocks parses (its subcommands and flags exist), and,
// under make docs-check, their shell blocks run as a reader would run them and print what the
// docs show (run_test.go).
package docscheck

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/submitcmd"
	"github.com/confiture-io/confiture-worker/internal/workercmd"
)

const root = "../.."

// docs returns the README and every page of docs/, by path relative to the repository.
func docs(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	out := map[string]string{}
	for _, p := range append(paths, filepath.Join(root, "README.md")) {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		rel, err := filepath.Rel(root, p)
		require.NoError(t, err)
		out[rel] = string(b)
	}
	require.Greater(t, len(out), 5)
	return out
}

// shellLines returns the command lines of the ```sh blocks of doc (blocks, logicalLines), with
// comments and whatever follows a pipe or a command separator cut off.
func shellLines(t *testing.T, path, doc string) []string {
	t.Helper()
	var out []string
	for _, b := range blocks(t, path, doc) {
		if b.want != nil {
			continue // a transcript
		}
		for _, l := range logicalLines(b.script) {
			for _, cut := range []string{" | ", " #", " && ", "; "} {
				if i := strings.Index(l, cut); i >= 0 {
					l = l[:i]
				}
			}
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

var makeRe = regexp.MustCompile("(?m)(?:^|`)make ([a-z][a-z/-]*)")

func TestMakeTargetsInTheDocsExist(t *testing.T) {
	t.Parallel()
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	require.NoError(t, err)
	for path, doc := range docs(t) {
		for _, m := range makeRe.FindAllStringSubmatch(doc, -1) {
			require.Regexp(t, "(?m)^"+regexp.QuoteMeta(m[1])+":", string(mk), "%s names `make %s`, which the Makefile does not have", path, m[1])
		}
	}
}

// pathRe finds a repository path in backticks: a top-level directory of the repository and
// what follows.
var pathRe = regexp.MustCompile("`((?:internal|docs|examples|cmd|schemas|scripts|daemon)/[A-Za-z0-9_./-]*)`")

func TestPathsInTheDocsExist(t *testing.T) {
	t.Parallel()
	for path, doc := range docs(t) {
		for _, m := range pathRe.FindAllStringSubmatch(doc, -1) {
			p := strings.TrimSuffix(m[1], "/")
			if strings.ContainsAny(p, "*<") {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, p)); err == nil {
				continue
			}
			// A migration is cited by its name, the prefix of its files.
			files, _ := filepath.Glob(filepath.Join(root, p) + ".*")
			require.NotEmpty(t, files, "%s cites %s, which does not exist", path, m[1])
		}
	}
}

// Every worker and submit command line of the docs' shell blocks parses: run with --help, it
// exits 0, so each subcommand and flag exists.
func TestCommandLinesInTheDocsParse(t *testing.T) {
	t.Parallel()
	mains := map[string]func([]string, *bytes.Buffer, *bytes.Buffer) int{
		"worker": func(a []string, o, e *bytes.Buffer) int { return workercmd.Main(a, o, e) },
		"submit": func(a []string, o, e *bytes.Buffer) int { return submitcmd.Main(a, o, e) },
	}
	n := 0
	for path, doc := range docs(t) {
		for _, line := range shellLines(t, path, doc) {
			fields := strings.Fields(line)
			for len(fields) > 0 && strings.Contains(fields[0], "=") && !strings.HasPrefix(fields[0], "-") {
				fields = fields[1:] // VAR=value before the command
			}
			if len(fields) >= 2 && fields[0] == "go" && fields[1] == "run" && len(fields) >= 3 {
				fields = append([]string{fields[2]}, fields[3:]...)
			}
			if len(fields) == 0 {
				continue
			}
			main, ok := mains[filepath.Base(fields[0])]
			if !ok || !slices.Contains([]string{"worker", "submit", "bin/worker", "bin/submit", "./bin/worker", "./bin/submit", "./cmd/worker", "./cmd/submit"}, fields[0]) {
				continue
			}
			var out, errOut bytes.Buffer
			args := unquote(fields[1:])
			require.Equal(t, 0, main(append(args, "--help"), &out, &errOut), "%s: %q does not parse: %s", path, line, errOut.String())
			checkSubcommands(t, path, line, args, out.String())
			n++
		}
	}
	require.Greater(t, n, 5, "command lines checked")
}

// checkSubcommands checks that the words of a command line before its first flag name the
// command whose help was printed, and that what is left of them is positional arguments it
// takes (a placeholder such as DIR in its usage line): a mistyped subcommand shows its group's
// help, which --help alone would not reveal.
func checkSubcommands(t *testing.T, path, line string, args []string, help string) {
	t.Helper()
	_, usage, ok := strings.Cut(help, "Usage:\n")
	require.True(t, ok, "%s: %q: no usage in its help", path, line)
	usage, _, _ = strings.Cut(strings.TrimSpace(usage), "\n")
	var cmdPath []string
	placeholder := false
	for _, w := range strings.Fields(usage) {
		switch {
		case w == strings.ToUpper(w) && strings.ToLower(w) != w:
			placeholder = true
		case strings.HasPrefix(w, "[") || strings.HasPrefix(w, "-"):
		case !placeholder:
			cmdPath = append(cmdPath, w)
		}
	}
	var words []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		words = append(words, a)
	}
	sub := cmdPath[1:]
	require.GreaterOrEqual(t, len(words), len(sub), "%s: %q", path, line)
	require.Equal(t, sub, append([]string{}, words[:len(sub)]...), "%s: %q names another command than %v", path, line, cmdPath)
	if len(words) > len(sub) {
		require.True(t, placeholder, "%s: %q: %v is not a command of %v, which takes no arguments", path, line, words[len(sub):], cmdPath)
	}
}

// unquote drops the shell quotes around each argument.
func unquote(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.Trim(a, `"'`)
	}
	return out
}
