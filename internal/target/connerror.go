package target

import (
	"slices"
	"strings"

	"github.com/confiture-io/confiture-worker/internal/redact"
)

// ConnectMessage is what err, a failure to connect to the database of dsn, says, without
// secrets (package redact). pgx lists each attempt to connect, and the attempts at one host
// (with TLS, then without, under sslmode=prefer) mostly fail the same way: a line said before
// is left out.
func ConnectMessage(err error, dsn string) string {
	var out []string
	for _, l := range strings.Split(redact.String(err.Error(), redact.Secrets(dsn)...), "\n") {
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
