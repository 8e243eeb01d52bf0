// Command worker is the confiture hook worker daemon. See `worker --help`.
//
// A worker with hooks of its own is a copy of this file with blank imports of the hook
// packages: see package confiture and examples/custom-worker.
package main

import "github.com/confiture-io/confiture-worker/daemon"

func main() {
	daemon.Main()
}
