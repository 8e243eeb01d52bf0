// Command worker is the confiture hook worker daemon. See `worker --help`.
package main

import (
	"os"

	"github.com/confiture-io/confiture-worker/internal/workercmd"
)

func main() {
	os.Exit(workercmd.Main(os.Args[1:], os.Stdout, os.Stderr))
}
