// Command custom-worker is the confiture worker with one more hook, row_count_at_least.
// It takes the same flags and commands as `worker`: see `custom-worker --help`.
package main

import (
	"github.com/confiture-io/confiture-worker"

	_ "example.com/custom-worker/rowcount" // registers row_count_at_least
)

func main() {
	confiture.Main()
}
