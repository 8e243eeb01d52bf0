package plugin

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A descendant that leaves the process group (setsid) and keeps the pipes open cannot keep the
// hook running: the pipes are closed after a short grace.
func TestDescendantOutsideTheGroupCannotHoldTheHook(t *testing.T) {
	t.Parallel()
	p, _ := newPlugin(t, "cat >/dev/null\nsetsid sleep 30 &\nsleep 0.3\n"+okResult+"\n", "timeout: 1s\n")
	start := time.Now()
	res, err := run(t, p, nil, nil)
	elapsed := time.Since(start)
	require.NoError(t, err)
	require.False(t, res.Failed)
	require.Less(t, elapsed, 10*time.Second, "returned after the grace, not after the escaped sleep")
}

// A manifest built to expand exponentially through YAML aliases is refused at once.
func TestAliasBombManifestIsRefusedQuickly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
		"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n" +
		"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n" +
		"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nname: bomb\ncommand: ./run.sh\n"
	writeScript(t, dir, "run.sh", okResult)
	path := writeFile(t, dir, "bomb.hook.yaml", bomb, 0o644)
	start := time.Now()
	_, err := load(path)
	require.ErrorContains(t, err, "aliases")
	require.Less(t, time.Since(start), 2*time.Second)
}
