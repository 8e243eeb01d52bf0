// Package runview shows a run's events to a person: one line a step on a terminal (colours, a
// live progress bar for a backfill, the tables of a dry-run report) or plain lines when the
// output is not a terminal, or the events themselves as JSON lines; and the verdict on how the
// run ended, which a command maps to its exit code. `submit --wait` uses it, and any command
// that follows runs can.
//
// It depends only on the public contract (package contract).
package runview
