// Package contract holds the Go types that mirror the public NATS contract: the JSON Schemas in
// schemas/ are the source of truth, and tests check that these types and the schemas agree.
//
// Clients such as cmd/submit depend on this package and on nothing else of the worker.
package contract

import (
	"encoding/json"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Schema identifiers carried in every message's "schema" field. A message with any other
// identifier is rejected, never guessed at.
const (
	RequestSchemaV1 = "confiture.request/v1"
	EventSchemaV1   = "confiture.event/v1"
)

// Directions of a request.
const (
	DirectionUp   = "up"
	DirectionDown = "down"
)

// Phase names, in the order the contract runs them for "up".
const (
	PhaseBeforeValidation = "before_validation"
	PhaseBeforeDDL        = "before_ddl"
	PhaseDDL              = "ddl"
	PhaseAfterDDL         = "after_ddl"
	PhaseAfterValidation  = "after_validation"
	PhaseCleanup          = "cleanup"
	PhaseOnError          = "on_error"
)

// Phases lists every phase name, "up" order first and on_error last.
var Phases = []string{
	PhaseBeforeValidation, PhaseBeforeDDL, PhaseDDL, PhaseAfterDDL, PhaseAfterValidation,
	PhaseCleanup, PhaseOnError,
}

// IsPhase reports whether name is one of Phases.
func IsPhase(name string) bool {
	for _, p := range Phases {
		if p == name {
			return true
		}
	}
	return false
}

// Request asks the worker to bring one target up (or down) through a set of migrations.
// See schemas/request.v1.json for the meaning and limits of every field.
type Request struct {
	Schema string `json:"schema"`
	ID     string `json:"id"`
	// Target names the target; Group, instead, a target group: the request is then a rollout
	// (Rollout says how), one run per member. Exactly one of them is set.
	Target      string         `json:"target,omitempty"`
	Group       string         `json:"group,omitempty"`
	Rollout     *RolloutPolicy `json:"rollout,omitempty"`
	Direction   string         `json:"direction"`
	To          string         `json:"to,omitempty"`
	DryRun      bool           `json:"dry_run,omitempty"`
	Force       bool           `json:"force,omitempty"`
	RequestedBy string         `json:"requested_by,omitempty"`
	// Adopt names the migration tool whose history table the target's run takes over before
	// planning (AdoptGoose, ...); AdoptTable, when set, is that table's name when it is not the
	// tool's default. Only going up.
	Adopt      string      `json:"adopt,omitempty"`
	AdoptTable string      `json:"adopt_table,omitempty"`
	Migrations []Migration `json:"migrations"`
	// Signature, when present, signs the request (see SignRequest). A target may require it.
	Signature *Signature `json:"signature,omitempty"`
}

// Migration is one versioned change as read from disk: its SQL, its hooks and its checksum.
type Migration struct {
	Version  string     `json:"version"`
	Name     string     `json:"name"`
	UpSQL    string     `json:"up_sql"`
	DownSQL  string     `json:"down_sql,omitempty"`
	Checksum string     `json:"checksum"`
	Hooks    []HookSpec `json:"hooks,omitempty"`
	// NoTransaction: the migration's statements do not share a transaction; each runs and
	// commits on its own, in order (goose's "-- +goose NO TRANSACTION", dbmate's
	// "transaction:false", Flyway's executeInTransaction=false).
	NoTransaction bool `json:"no_transaction,omitempty"`
	// File is the file the migration was read from, relative to its directory: what messages
	// name when they can (an adoption's mismatch). The worker reads nothing from it.
	File string `json:"file,omitempty"`
	// FlywayChecksum is the checksum Flyway records for the migration, for one read from a
	// Flyway directory: an adoption of Flyway compares it with flyway_schema_history's.
	FlywayChecksum *int32 `json:"flyway_checksum,omitempty"`
}

// The tools whose history a request may adopt (Request.Adopt).
const (
	AdoptGoose         = "goose"
	AdoptGolangMigrate = "golang-migrate"
	AdoptDbmate        = "dbmate"
	AdoptFlyway        = "flyway"
)

// AdoptTools lists the values of Request.Adopt.
var AdoptTools = []string{AdoptGoose, AdoptGolangMigrate, AdoptDbmate, AdoptFlyway}

// ID is the migration's display identifier, "<version>_<name>".
func (m *Migration) ID() string { return m.Version + "_" + m.Name }

// HookSpec declares one hook of a migration, as written in its hooks file.
type HookSpec struct {
	Phase     string         `json:"phase"`
	Name      string         `json:"name"`
	Hook      string         `json:"hook"`
	Params    map[string]any `json:"params,omitempty"`
	Priority  int            `json:"priority,omitempty"`
	DependsOn []string       `json:"depends_on,omitempty"`
}

// Event kinds published on confiture.events.<target>.<run>.<kind>.
const (
	KindRunAccepted  = "run.accepted"
	KindRunRejected  = "run.rejected"
	KindRunDuplicate = "run.duplicate"
	KindRunStarted   = "run.started"
	KindRunCompleted = "run.completed"
	KindRunFailed    = "run.failed"
	// KindRunRetrying: planning or a dry-run could not run for now (transient trouble, a
	// stopping worker, an error that may pass) and is tried again; error says why.
	KindRunRetrying = "run.retrying"
	// KindRunPaused: the run stopped at its step and waits (an operator paused it, or
	// cancelled the job of its batched hook); it holds its target until resumed or failed.
	KindRunPaused = "run.paused"
	// KindRunResumed: a paused run goes on, or the reconciler gave a run whose job was lost a
	// new one.
	KindRunResumed = "run.resumed"
	// KindRunRetried: an operator retried a failed run: it plans again once its target is free
	// and resumes from its failed phase. A run.failed before it no longer ends the run.
	KindRunRetried         = "run.retried"
	KindMigrationStarted   = "migration.started"
	KindMigrationCompleted = "migration.completed"
	KindMigrationFailed    = "migration.failed"
	KindPhaseStarted       = "phase.started"
	KindPhaseCompleted     = "phase.completed"
	KindPhaseRetrying      = "phase.retrying"
	KindPhaseFailed        = "phase.failed"
	KindHookStarted        = "hook.started"
	KindHookCompleted      = "hook.completed"
	KindHookFailed         = "hook.failed"
	KindBackfillProgress   = "backfill.progress"
	KindDryRunReport       = "dryrun.report"

	// Rollout events, on confiture.events.<group>.<rollout>.<kind>: their run is the rollout's
	// id, their target the group, and their data a RolloutStatus.
	KindRolloutStarted = "rollout.started"
	// KindRolloutProgress: a member's run ended (data.member says which and how); the counts
	// are the rollout's after it.
	KindRolloutProgress  = "rollout.progress"
	KindWaveStarted      = "wave.started"
	KindWaveCompleted    = "wave.completed"
	KindRolloutHalted    = "rollout.halted"
	KindRolloutResumed   = "rollout.resumed"
	KindRolloutCompleted = "rollout.completed"
)

// EventKinds lists every kind this version of the worker publishes.
var EventKinds = []string{
	KindRunAccepted, KindRunRejected, KindRunDuplicate, KindRunStarted, KindRunCompleted,
	KindRunFailed, KindRunRetrying, KindRunPaused, KindRunResumed, KindRunRetried, KindMigrationStarted, KindMigrationCompleted, KindMigrationFailed,
	KindPhaseStarted, KindPhaseCompleted, KindPhaseRetrying, KindPhaseFailed, KindHookStarted,
	KindHookCompleted, KindHookFailed, KindBackfillProgress, KindDryRunReport,
	KindRolloutStarted, KindRolloutProgress, KindWaveStarted, KindWaveCompleted, KindRolloutHalted,
	KindRolloutResumed, KindRolloutCompleted,
}

// IsTerminal reports whether an event of this kind ends its run. A failed run can still be
// retried by an operator: a run.retried after a run.failed supersedes it.
func IsTerminal(kind string) bool {
	return kind == KindRunCompleted || kind == KindRunFailed || kind == KindRunRejected
}

// Event is a fact about a run. Fields that do not apply to a kind hold their zero value;
// Error is present only where one applies, Data only for kinds that carry a payload.
type Event struct {
	Schema       string          `json:"schema"`
	ID           string          `json:"id"`
	Time         time.Time       `json:"time"`
	Kind         string          `json:"kind"`
	Run          string          `json:"run"`
	RequestID    string          `json:"request_id"`
	Target       string          `json:"target"`
	Migration    string          `json:"migration"`
	Version      string          `json:"version"`
	Phase        string          `json:"phase"`
	Hook         string          `json:"hook"`
	Attempt      int             `json:"attempt"`
	DurationMS   int64           `json:"duration_ms"`
	RowsAffected int64           `json:"rows_affected"`
	Message      string          `json:"message,omitempty"`
	Error        *EventError     `json:"error,omitempty"`
	Data         json.RawMessage `json:"data,omitempty"`
}

// EventError describes why something failed or was rejected.
type EventError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	SQLState  string `json:"sqlstate,omitempty"`
	Retryable bool   `json:"retryable"`
}

// Error codes carried in EventError.Code.
const (
	CodeInvalidRequest    = "invalid_request"
	CodeUnsupportedSchema = "unsupported_schema"
	CodeUnknownTarget     = "unknown_target"
	// CodeUnknownGroup: the request names a target group that is not configured, or whose
	// members cannot be found now (its discovery failed or found none).
	CodeUnknownGroup     = "unknown_group"
	CodeUnknownHook      = "unknown_hook"
	CodeInvalidHooks     = "invalid_hooks"
	CodeInvalidSQL       = "invalid_sql"
	CodeChecksumMismatch = "checksum_mismatch"
	CodeDrift            = "drift"
	// CodeAdoptMismatch: the history table of the tool a request adopts has a dirty or failed
	// entry, or disagrees with the request's migrations.
	CodeAdoptMismatch   = "adopt_mismatch"
	CodeNoDownMigration = "no_down_migration"
	CodeHookFailed      = "hook_failed"
	CodeSQLError        = "sql_error"
	CodePanic           = "panic"
	CodeTimeout         = "timeout"
	CodeCancelled       = "cancelled"
	// CodeUnavailable: a target or the queue database was unreachable (or out of connection
	// slots, or starting up) for longer than the worker's outage tolerance.
	CodeUnavailable = "unavailable"
	// CodeInterrupted: a stopping worker interrupted the attempt; it resumes on any worker and
	// does not count.
	CodeInterrupted = "interrupted"
	// CodeDiscarded: River discarded the step's job (its attempts ran out outside the
	// pipeline's own count, as when its worker died again and again).
	CodeDiscarded        = "discarded"
	CodeDuplicateRequest = "duplicate_request"
	// CodeSignatureRequired: the target accepts only signed requests and this one is not.
	CodeSignatureRequired = "signature_required"
	// CodeInvalidSignature: the signature names a key the target does not allow, or does not
	// match the request.
	CodeInvalidSignature = "invalid_signature"
	// CodeSignatureExpired: the signature is too old (signature_max_age), past its expires_at,
	// or dated in the future.
	CodeSignatureExpired = "signature_expired"
	CodeInternal         = "internal"
)

// TargetNamePattern is what a target's name looks like, in a request (schemas/request.v1.json),
// a subject and the worker's configuration: it is a NATS subject token.
const TargetNamePattern = `^[A-Za-z0-9_-]{1,64}$`

var targetNameRe = regexp.MustCompile(TargetNamePattern)

// ValidTargetName reports whether name matches TargetNamePattern.
func ValidTargetName(name string) bool { return targetNameRe.MatchString(name) }

// NATS subjects and JetStream stream names.
const (
	RequestSubjectPrefix = "confiture.requests."
	EventSubjectPrefix   = "confiture.events."
	LogSubjectPrefix     = "confiture.logs."
	RequestStream        = "CONFITURE_REQUESTS"
	EventStream          = "CONFITURE_EVENTS"
)

// RequestSubject is the subject a request for target is published on.
func RequestSubject(target string) string { return RequestSubjectPrefix + target }

// EventSubject is the subject an event is published on.
func EventSubject(target, run, kind string) string {
	return EventSubjectPrefix + target + "." + run + "." + kind
}

// RunEventsFilter matches every event of one run.
func RunEventsFilter(target, run string) string {
	return EventSubjectPrefix + target + "." + run + ".>"
}

// RequestMsgID is the JetStream message id a request is published with: "<target>:<request id>".
// JetStream de-duplicates by message id across the whole request stream, not per subject, so the
// id must include the target: the same request id sent to two targets gives two runs. A target
// name holds no ':' (see schemas/request.v1.json), so the first ':' ends it.
func RequestMsgID(target, requestID string) string { return target + ":" + requestID }

// RequestIDOfMsgID returns the request id that msgID, read on the subject of target, carries:
// msgID without its "<target>:" prefix, or msgID itself when it has none (clients before
// RequestMsgID used the bare request id).
func RequestIDOfMsgID(target, msgID string) string {
	if id, ok := strings.CutPrefix(msgID, target+":"); ok {
		return id
	}
	return msgID
}

// runNamespace is the UUID namespace of run ids. Never change it: clients derive run ids too.
var runNamespace = uuid.MustParse("6f1c2b0e-5d1a-4c57-9a53-3f0c1e7d2a41")

// RunID is the id of the run a request produces: a UUIDv5 of target and request id. A client
// knows it before publishing, so it can follow the run's events, and a repeated request maps to
// the run the first one created.
func RunID(target, requestID string) string {
	return uuid.NewSHA1(runNamespace, []byte(target+"\x00"+requestID)).String()
}

// rolloutNamespace is the UUID namespace of rollout ids. Never change it: clients derive them.
var rolloutNamespace = uuid.MustParse("2b8e7c1a-94d3-4f0e-8a61-5c7d3e9f1b24")

// RolloutID is the id of the rollout a request naming group produces: a UUIDv5 of group and
// request id, known to the client before it publishes.
func RolloutID(group, requestID string) string {
	return uuid.NewSHA1(rolloutNamespace, []byte(group+"\x00"+requestID)).String()
}

// RolloutPolicy says how a rollout proceeds (the request's rollout object). Zero fields take
// the group's configured defaults, then the worker's (see DefaultRolloutPolicy).
type RolloutPolicy struct {
	// Canary is how many members run first, alone; nil: the default (1).
	Canary *int `json:"canary,omitempty" yaml:"canary"`
	// WaveSize or WavePercent (of the members after the canary, rounded up) size the waves.
	WaveSize    int `json:"wave_size,omitempty" yaml:"wave_size"`
	WavePercent int `json:"wave_percent,omitempty" yaml:"wave_percent"`
	// MaxConcurrent bounds the runs of the rollout running at once.
	MaxConcurrent int `json:"max_concurrent,omitempty" yaml:"max_concurrent"`
	// PauseMS is the wait between two waves.
	PauseMS int64 `json:"pause_ms,omitempty" yaml:"pause_ms"`
	// FailureThreshold (a count; nil: the default, 0) or FailurePercent (of the wave) is how
	// many failed runs a wave tolerates; past it the rollout halts.
	FailureThreshold *int `json:"failure_threshold,omitempty" yaml:"failure_threshold"`
	FailurePercent   int  `json:"failure_percent,omitempty" yaml:"failure_percent"`
	// DryRunAll, with a dry-run request, dry-runs every member rather than the canary.
	DryRunAll bool `json:"dry_run_all,omitempty" yaml:"dry_run_all"`
}

// RolloutStatus is the data of a rollout event, and what the service API says of a rollout.
type RolloutStatus struct {
	Rollout   string `json:"rollout"`
	Group     string `json:"group"`
	RequestID string `json:"request_id"`
	// State is running, halted or completed.
	State  string `json:"state"`
	DryRun bool   `json:"dry_run,omitempty"`
	// Wave is the current wave, from 0; Canary says wave 0 is the canary. Waves counts them.
	Wave   int  `json:"wave"`
	Waves  int  `json:"waves"`
	Canary bool `json:"canary,omitempty"`
	// WaveSize is the number of members of the current wave.
	WaveSize int `json:"wave_size"`
	// Counts of members.
	Total     int `json:"total"`
	Pending   int `json:"pending"`
	Running   int `json:"running"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	// Policy is the rollout's effective policy.
	Policy RolloutPolicy `json:"policy"`
	// Member is the member whose run ended, in rollout.progress.
	Member *RolloutMember `json:"member,omitempty"`
	// Failures lists the failed members (in rollout.halted, rollout.completed and the API).
	Failures []RolloutMember `json:"failures,omitempty"`
	// NextWaveAt is when the next wave starts, during a pause.
	NextWaveAt *time.Time `json:"next_wave_at,omitempty"`
}

// RolloutMember is a member of a rollout and its run.
type RolloutMember struct {
	Target string `json:"target"`
	Run    string `json:"run,omitempty"`
	Wave   int    `json:"wave"`
	// State is pending, running, completed, failed or skipped.
	State string      `json:"state"`
	Error *EventError `json:"error,omitempty"`
}

// Rollout and rollout member states.
const (
	RolloutRunning   = "running"
	RolloutHalted    = "halted"
	RolloutCompleted = "completed"
	MemberPending    = "pending"
	MemberRunning    = "running"
	MemberCompleted  = "completed"
	MemberFailed     = "failed"
	MemberSkipped    = "skipped"
)

// RunPlan is the data of run.started: what the run does.
type RunPlan struct {
	Direction string `json:"direction"`
	// Versions are the migrations the run applies or reverts, in order.
	Versions []string `json:"versions"`
	// Applied counts the request's migrations already applied (complete).
	Applied int `json:"already_applied"`
	// Forced lists the applied migrations whose new checksum the run recorded (force).
	Forced []string `json:"forced_checksums,omitempty"`
	// Resumed lists the migrations an earlier run left incomplete that this run resumes, each
	// from its first phase not done.
	Resumed []ResumedMigration `json:"resumed,omitempty"`
	// Incomplete lists incomplete migrations this run leaves as they are (beyond "to", or not
	// in the request).
	Incomplete []IncompleteMigration `json:"incomplete,omitempty"`
	// Adopted lists the migrations the run recorded as applied by the tool it adopts (a
	// dry-run: would record), and AdoptedFrom that tool's history table ("goose:
	// public.goose_db_version"); both empty without adopt.
	Adopted     []string `json:"adopted,omitempty"`
	AdoptedFrom string   `json:"adopted_from,omitempty"`
}

// ResumedMigration is a migration a run resumes.
type ResumedMigration struct {
	Version string `json:"version"`
	// From is the phase the run resumes it at.
	From string `json:"from"`
}

// IncompleteMigration is a migration whose DDL committed but whose later phases did not all
// commit: the next request that includes it resumes it.
type IncompleteMigration struct {
	Version string `json:"version"`
	Name    string `json:"name"`
	// Phase is the last phase that committed.
	Phase string `json:"phase"`
}

// RunSummary is the data of run.completed and run.failed.
type RunSummary struct {
	// Incomplete lists the target's incomplete migrations as the run leaves them, read from
	// its tracking table. While one is listed, submit does not exit 0.
	Incomplete []IncompleteMigration `json:"incomplete,omitempty"`
	// Unread, when set, says why the tracking table could not be read (a failed run whose
	// target is unreachable): Incomplete is then unknown, and submit does not exit 0 either.
	Unread string `json:"unread,omitempty"`
	// Applied lists the migrations whose DDL this run applied, in version order, with the time
	// their DDL took: the run's per-migration times, read from the tracking table.
	Applied []AppliedMigration `json:"applied,omitempty"`
}

// AppliedMigration is one migration a run applied, in its RunSummary.
type AppliedMigration struct {
	Version string `json:"version"`
	Name    string `json:"name"`
	// DDLMS is how long its DDL took, in milliseconds.
	DDLMS int64 `json:"ddl_ms"`
}

// BackfillProgress is the data of a backfill.progress event. The event's rows_affected holds
// Rows too.
type BackfillProgress struct {
	// Rows done so far.
	Rows int64 `json:"rows"`
	// EstimatedTotal is the planner's estimate of all the rows to do; 0 when unknown.
	EstimatedTotal int64 `json:"estimated_total"`
	// BatchSize is the size of the next batch, as adapted toward the target batch duration.
	BatchSize int `json:"batch_size"`
	// RowsPerSecond is the rate since the worker took the backfill up.
	RowsPerSecond float64 `json:"rows_per_second"`
	// ETAMS is the estimated time left, in milliseconds; 0 when unknown.
	ETAMS int64 `json:"eta_ms"`
	// LastBatchMS is how long the last batch held its transaction.
	LastBatchMS float64 `json:"last_batch_ms"`
}
