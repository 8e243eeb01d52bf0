// Command submit publishes a migrations directory as a request to the Confiture worker and,
// with --wait, follows the run until it ends. See internal/submitcmd.
package main

import (
	"os"

	"github.com/confiture-io/confiture-worker/internal/submitcmd"
)

func main() {
	os.Exit(submitcmd.Main(os.Args[1:], os.Stdout, os.Stderr))
}
