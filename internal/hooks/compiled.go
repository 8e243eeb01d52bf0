package hooks

// Compiled, when set, returns the hooks that Go packages registered with package confiture (the
// public hook API), as Definitions. Package confiture sets it when it is linked in; the worker's
// main (package daemon) adds them to the built-in hooks. This way the public API does not import
// the daemon, nor the daemon the public API.
var Compiled func() []Definition
