package client

import (
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/migrations"
)

// The contract's types, as the workers read and write them (schemas/request.v1.json,
// schemas/event.v1.json, schemas/api.v1.json document every field).
type (
	// Request is a migration request (confiture.request/v1).
	Request = contract.Request
	// Migration is one migration of a request: its SQL, checksum and hooks.
	Migration = contract.Migration
	// HookSpec declares one hook of a migration.
	HookSpec = contract.HookSpec
	// Event is a fact about a run (confiture.event/v1).
	Event = contract.Event
	// EventError says why something failed, was retried or was rejected.
	EventError = contract.EventError
	// StatusReply is a target's migrations, from its tracking table.
	StatusReply = contract.StatusReply
	// MigrationStatus is one migration of a StatusReply.
	MigrationStatus = contract.MigrationStatus
	// RunsReply is a target's latest runs.
	RunsReply = contract.RunsReply
	// RunInfo is a run as the workers record it.
	RunInfo = contract.RunInfo
	// RunReply is one run and its events.
	RunReply = contract.RunReply
	// ActionReply is a run after an operator action.
	ActionReply = contract.ActionReply
)

// Values of the contract a client uses.
const (
	RequestSchemaV1 = contract.RequestSchemaV1
	DirectionUp     = contract.DirectionUp
	DirectionDown   = contract.DirectionDown

	KindRunCompleted = contract.KindRunCompleted
	KindRunFailed    = contract.KindRunFailed
	KindRunRejected  = contract.KindRunRejected

	ActionPause  = contract.ActionPause
	ActionResume = contract.ActionResume
	ActionFail   = contract.ActionFail
	ActionRetry  = contract.ActionRetry
)

// Checksum is the checksum of a migration's up SQL, as Migration.Checksum carries it.
func Checksum(upSQL string) string { return contract.Checksum(upSQL) }

// RunID is the id of the run a request id gives on target: known before the request is
// published.
func RunID(target, requestID string) string { return contract.RunID(target, requestID) }

// LoadDir reads a migrations directory as submit does, checksums computed: its own
// <version>_<name>.up.sql, optional .down.sql and .hooks.yaml, or a directory written for
// golang-migrate, goose, dbmate or Flyway, its format detected (see docs/COMING_FROM.md). An
// error lists every problem found, one a line, each with its file and line.
func LoadDir(dir string) ([]Migration, error) { return migrations.Load(dir) }

// LoadDirAs reads a migrations directory in the given format: "confiture", "golang-migrate",
// "goose", "dbmate" or "flyway" ("" detects it, as LoadDir does). It returns the format read.
func LoadDirAs(dir, format string) ([]Migration, string, error) {
	ms, f, err := migrations.LoadFormat(dir, migrations.Format(format))
	return ms, string(f), err
}
