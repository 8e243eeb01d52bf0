// Package builtin registers every hook compiled into the worker: sql and assert (package
// hooks) and backfill (package backfill), which cannot register itself from package hooks
// without an import cycle.
package builtin

import (
	"errors"

	"github.com/confiture-io/confiture-worker/internal/backfill"
	"github.com/confiture-io/confiture-worker/internal/hooks"
)

// Register adds the built-in hooks to r.
func Register(r *hooks.Registry) error {
	return errors.Join(hooks.RegisterBuiltins(r), backfill.Register(r))
}
