// Package plugin runs hooks written as external programs, in any language, the git/kubectl
// way: a plugin is a manifest file and an executable, found at start-up in plugin directories.
//
// # Manifests
//
// Discover scans each plugin directory (not recursively) for *.hook.yaml and *.hook.json files:
//
//	name: notify                  # the hook type hooks files name in `hook:`
//	version: 1.0.0
//	description: log a message and report it
//	phases: [after_ddl, on_error] # default: every hook phase
//	command: ./notify.sh          # relative to the manifest's directory; must be executable
//	args: []                      # passed as they are: no shell, no PATH lookup
//	timeout: 30s                  # default 5m, at most 24h
//	transactional: false          # the plugin's promise that its own work is all-or-nothing
//	env: [SLACK_WEBHOOK_URL]      # variables of the worker's environment it may receive
//	params_schema:                # JSON Schema (2020-12) of its parameters, self-contained
//	  type: object
//	  additionalProperties: false
//	  properties: {message: {type: string}}
//	example: {message: migrated}  # shown by `worker hooks describe`; must satisfy the schema
//
// Unknown keys are errors. A manifest that does not load becomes a hooks.LoadFailure naming its
// path and the reason, and the other plugins still load.
//
// # Protocol
//
// For each run of a hook the worker starts the command, in the manifest's directory and in a
// process group of its own, and:
//
//   - writes one Request (schemas/plugin-request.v1.json, "confiture.plugin-request/v1") as one
//     line of JSON on its stdin, then closes stdin. The request carries the run, target name,
//     migration, phase, declared hook name, attempt, an idempotency key that is the same on every
//     attempt, the parameters and the target's schema.
//   - gives it a scrubbed environment: PATH, HOME and TMPDIR (a private temporary directory,
//     removed afterwards), LANG and LC_ALL when set, the variables its manifest allows except
//     the worker's own secrets (CONFITURE_*, NATS_*, DATABASE_URL, PGPASSWORD, ...), and
//     CONFITURE_TARGET_DSN and CONFITURE_TARGET_SCHEMA. The connection string is only ever in
//     CONFITURE_TARGET_DSN: never in the arguments, which other users can see, nor on stdin.
//   - logs each line of its stderr on the hook's logger at WARN with stream=stderr, with
//     connection strings and passwords redacted, up to MaxStderr bytes.
//   - reads its stdout, at most MaxOutput bytes, which must hold exactly one Result
//     (schemas/plugin-result.v1.json, "confiture.plugin-result/v1").
//
// The hook succeeds when the program exits with status 0 and its result says success: true;
// rows_affected, stats and message become the hooks.Result. success: false is a failed result.
// A non-zero exit status, output that is empty, not JSON, invalid or larger than MaxOutput, and
// running past the manifest's timeout are errors that say so (quoting at most about 200 bytes
// of the output); all of them fail the hook and are retried like any failure of its phase.
// When the timeout passes or the job's context ends, the whole process group is killed with
// SIGKILL, and when the program exits, whatever it left running in its group is killed too.
//
// A plugin never joins the worker's transaction on the target (hooks.Context.Tx): it commits its
// own work, while the phase's transaction is open. A retry runs it again with the same
// idempotency key, so it must be idempotent.
package plugin
