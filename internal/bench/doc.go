// Package bench holds the end-to-end benchmark (`make bench`): migration runs published on NATS
// and followed to run.completed, measured beside a bare baseline on the same database, a chain
// of seven River jobs in which each job inserts the next and completes itself in one
// transaction. The baseline is the floor the worker's phase pipeline is built on: the
// difference is the price of intake, events, the hook ledger and the target transactions.
package bench
