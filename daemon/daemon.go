// Package daemon is the worker's command line: the daemon, `worker hooks list|describe` and
// `worker runs ...`. cmd/worker is a call to Main; a custom worker is a call to Main beside
// blank imports of its hook packages, which register their hooks with package confiture.
//
// Package confiture, the hook API, does not import this one: a package that only defines a hook
// builds without the daemon's dependencies (NATS server, River, River UI, Prometheus).
package daemon

import (
	"io"
	"os"

	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/workercmd"
)

// Main runs the `worker` command line with every hook registered with package confiture in
// this process added to the built-in ones and to the external plugins, then exits.
func Main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var compiled []hooks.Definition
	if hooks.Compiled != nil {
		compiled = hooks.Compiled()
	}
	return workercmd.MainWithHooks(args, stdout, stderr, compiled)
}
