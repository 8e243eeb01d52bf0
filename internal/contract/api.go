package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/confiture-io/confiture-worker/internal/clip"
)

// The service API (schemas/api.v1.json): every worker serves it on NATS as the micro service
// APIService, and one of them answers each request (a queue group). Each endpoint's subject
// ends with the target it is about, so that NATS permissions can give a user some targets:
//
//	confiture.api.status.<target>   the target's migrations, from its tracking table
//	confiture.api.runs.<target>     the target's latest runs
//	confiture.api.run.<target>      one run of the target and its events
//	confiture.api.action.<target>   pause, resume, fail or retry one run of the target
//	confiture.api.rollout.<group>   a rollout of a target group: its status, or resume it
//
// A request's body is an APIRequest (an empty body is a request without options). A reply is a
// StatusReply, RunsReply, RunReply or ActionReply; a refusal is a micro error: the headers
// Nats-Service-Error-Code (APIErrBadRequest, APIErrForbidden, APIErrNotFound, APIErrConflict,
// APIErrInternal)
// and Nats-Service-Error (why), with an empty body.
const (
	APIService       = "confiture"
	APIVersion       = "1.1.0"
	APISubjectPrefix = "confiture.api."

	APIStatus = "status"
	APIRuns   = "runs"
	APIRun    = "run"
	APIAction = "action"
	// APIRollout is a rollout's status, or its resume (Action ActionResume, Failed).
	APIRollout = "rollout"

	APIRequestSchemaV1 = "confiture.api.request/v1"
	APIStatusSchemaV1  = "confiture.api.status/v1"
	APIRunsSchemaV1    = "confiture.api.runs/v1"
	APIRunSchemaV1     = "confiture.api.run/v1"
	APIActionSchemaV1  = "confiture.api.action/v1"
	APIRolloutSchemaV1 = "confiture.api.rollout/v1"

	// Error codes of a refused API request.
	APIErrBadRequest = "400" // the request is malformed, or names no run where one is needed
	APIErrForbidden  = "403" // the target accepts only signed actions, and this one's signature is missing or not valid
	APIErrNotFound   = "404" // no such target, or no such run of the target
	APIErrConflict   = "409" // the run's state does not allow the action
	APIErrInternal   = "500" // the worker could not answer (the database is unreachable, ...)

	// APIRunsDefault and APIRunsMax bound how many runs a runs request returns.
	APIRunsDefault = 20
	APIRunsMax     = 200
)

// How a resumed rollout treats its failed members (APIRequest.Failed).
const (
	FailedRetry = "retry"
	FailedSkip  = "skip"
)

// RolloutReply is a rollout's status (after the action, when one was asked).
type RolloutReply struct {
	Schema  string        `json:"schema"`
	Rollout RolloutStatus `json:"rollout"`
}

// Operator actions on a run (APIRequest.Action).
const (
	ActionPause  = "pause"
	ActionResume = "resume"
	ActionFail   = "fail"
	ActionRetry  = "retry"
)

// APISubject is the subject of endpoint (APIStatus, ...) for target.
func APISubject(endpoint, target string) string { return APISubjectPrefix + endpoint + "." + target }

// APIRequest is the body of an API request; fields an endpoint does not use are ignored.
type APIRequest struct {
	Schema string `json:"schema"`
	// Run names a run of the target (run, action): its id, or the request id it was published
	// with.
	Run string `json:"run,omitempty"`
	// Action is ActionPause, ActionResume, ActionFail or ActionRetry (action).
	Action string `json:"action,omitempty"`
	// Reason goes into the event the action records (action).
	Reason string `json:"reason,omitempty"`
	// Failed is how a resumed rollout treats its failed members: FailedRetry or FailedSkip
	// (rollout, action resume).
	Failed string `json:"failed,omitempty"`
	// Limit is how many runs to return, newest first (runs): 1 to APIRunsMax, default
	// APIRunsDefault.
	Limit int `json:"limit,omitempty"`
	// Target and Signature sign an action (SignAPIRequest): a target that accepts only signed
	// requests accepts only signed actions, by the same signers, and the signature names the
	// target so that it holds for that one only.
	Target    string     `json:"target,omitempty"`
	Signature *Signature `json:"signature,omitempty"`
}

// RunIDOf returns the id of the run of target that ref names: ref itself when it is a run id,
// else the run id of the request id ref.
func RunIDOf(target, ref string) string {
	if _, err := uuid.Parse(ref); err == nil {
		return ref
	}
	return RunID(target, ref)
}

// StatusReply is the status of a target: every migration its tracking table holds.
type StatusReply struct {
	Schema     string            `json:"schema"`
	Target     string            `json:"target"`
	Migrations []MigrationStatus `json:"migrations"`
	// LastRun is the target's latest run, if it has one: whether it failed, and where, says
	// what the tracking table cannot (a migration whose DDL failed left no row).
	LastRun *RunInfo `json:"last_run,omitempty"`
}

// Migration states in a StatusReply.
const (
	MigrationApplied    = "applied"
	MigrationIncomplete = "incomplete"
)

// MigrationStatus is one row of a target's tracking table.
type MigrationStatus struct {
	Version  string `json:"version"`
	Name     string `json:"name"`
	Checksum string `json:"checksum"`
	// State is MigrationApplied, or MigrationIncomplete: its DDL committed, a later phase did not.
	State string `json:"state"`
	// Phase is the last phase that committed.
	Phase           string    `json:"phase"`
	AppliedAt       time.Time `json:"applied_at"`
	ExecutionTimeMS int64     `json:"execution_time_ms"`
	AppliedBy       string    `json:"applied_by"`
	Run             string    `json:"run"`
}

// RunsReply lists a target's latest runs, newest first.
type RunsReply struct {
	Schema string    `json:"schema"`
	Target string    `json:"target"`
	Runs   []RunInfo `json:"runs"`
}

// RunInfo is a run as the queue database records it.
type RunInfo struct {
	ID        string `json:"id"`
	RequestID string `json:"request_id"`
	Target    string `json:"target"`
	Direction string `json:"direction"`
	DryRun    bool   `json:"dry_run"`
	// Status is queued, running, paused, completed or failed.
	Status string `json:"status"`
	// Version and Phase are the run's step (planning: both empty); FailedVersion and
	// FailedPhase where it failed, with Error.
	Version       string      `json:"version"`
	Phase         string      `json:"phase"`
	FailedVersion string      `json:"failed_version"`
	FailedPhase   string      `json:"failed_phase"`
	Error         *EventError `json:"error,omitempty"`
	// Migrations is how many migrations its plan holds (0 before planning).
	Migrations int        `json:"migrations"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// DurationMS is from its creation to its end, or to now while it has not ended.
	DurationMS int64 `json:"duration_ms"`
}

// RunReply is one run and its events, oldest first: its timeline. Events stay in the worker's
// outbox for its retention (24 hours by default); EventsComplete is false when older ones are
// gone.
type RunReply struct {
	Schema         string  `json:"schema"`
	Run            RunInfo `json:"run"`
	Events         []Event `json:"events"`
	EventsComplete bool    `json:"events_complete"`
}

// ActionReply is a run after an operator action.
type ActionReply struct {
	Schema string  `json:"schema"`
	Action string  `json:"action"`
	Run    RunInfo `json:"run"`
}

// The service API's schema file.
const (
	APISchemaFile = "api.v1.json"
	APISchemaURL  = "https://confiture.dev/schemas/api.v1.json"
)

// apiDefs are the parts of api.v1.json validated on their own, by the schema identifier of the
// message each describes.
var apiDefs = map[string]string{
	APIRequestSchemaV1: "request",
	APIStatusSchemaV1:  "status_reply",
	APIRunsSchemaV1:    "runs_reply",
	APIRunSchemaV1:     "run_reply",
	APIActionSchemaV1:  "action_reply",
	APIRolloutSchemaV1: "rollout_reply",
}

// apiDefRef is the ref of the part def of api.v1.json.
func apiDefRef(def string) string { return APISchemaURL + "#/$defs/" + def }

func apiSchema(id string) (*jsonschema.Schema, error) {
	def, ok := apiDefs[id]
	if !ok {
		return nil, fmt.Errorf("contract: no API message %q", id)
	}
	return compiled(apiDefRef(def))
}

// DecodeAPIRequest parses and validates the body of an API request. An empty body is a request
// without options. A refusal is a *DecodeError that says why.
func DecodeAPIRequest(data []byte) (*APIRequest, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return &APIRequest{Schema: APIRequestSchemaV1}, nil
	}
	if err := ValidateAPI(APIRequestSchemaV1, data); err != nil {
		return nil, err
	}
	var r APIRequest
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, invalid("malformed request: %s", clip.String(err.Error(), 200, "..."))
	}
	return &r, nil
}

// ValidateAPI validates an API message against the part of schemas/api.v1.json that describes
// messages with schema identifier id (APIRequestSchemaV1, APIStatusSchemaV1, ...).
func ValidateAPI(id string, data []byte) error {
	sch, err := apiSchema(id)
	if err != nil {
		return err
	}
	return validate(data, sch, "message", id)
}
