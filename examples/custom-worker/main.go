// Command custom-worker is the confiture worker with two more hooks: row_count_at_least, a Go
// hook, and fill_price_cents, a batched backfill defined in Go.
// It takes the same flags and commands as `worker`: see `custom-worker --help`.
package main

import (
	"github.com/confiture-io/confiture-worker/daemon"

	_ "example.com/custom-worker/backfills" // registers fill_price_cents
	_ "example.com/custom-worker/rowcount"  // registers row_count_at_least
)

func main() {
	daemon.Main()
}
