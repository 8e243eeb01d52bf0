// Package api serves the worker's service API on NATS (nats.go's micro package; the contract is
// in internal/contract, api.go, and schemas/api.v1.json): a target's status, its latest runs,
// one run with its events, and the operator actions on a run. Every worker serves it in one
// queue group, so one of them answers each request; all read the same queue database.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/jobs"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/signing"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// Actions are the operator actions on runs (jobs.Pipeline has them).
type Actions interface {
	Pause(ctx context.Context, run, reason string) error
	Resume(ctx context.Context, run, reason string) error
	Fail(ctx context.Context, run, reason string) error
	Retry(ctx context.Context, run, reason string) error
}

// Rollouts are the rollouts of target groups (jobs.Pipeline has them).
type Rollouts interface {
	IsGroup(name string) bool
	GroupTargets(group string) []string
	RolloutStatus(ctx context.Context, id string) (contract.RolloutStatus, error)
	ResumeRollout(ctx context.Context, id string, retry bool, reason string) (contract.RolloutStatus, error)
}

// Config is what the API reads and acts on.
type Config struct {
	Store   *runstore.Store
	Targets *target.Set
	Actions Actions
	// Rollouts serves the rollout endpoint. Nil: every group is unknown.
	Rollouts Rollouts
	// Signing checks the signatures of actions, by the rules and signers of requests: a
	// target that accepts only signed requests accepts only signed actions. Nil checks none.
	Signing *signing.Policy
	// Build describes the worker's build, for the service's metadata.
	Build  string
	Logger *slog.Logger
}

// requestTimeout bounds the work of one request.
const requestTimeout = 10 * time.Second

// Serve adds the service to nc; Stop on the returned service removes it.
func Serve(nc *nats.Conn, cfg Config) (micro.Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        contract.APIService,
		Version:     contract.APIVersion,
		Description: "Confiture worker: the status of a target, its runs, one run's events, and the operator actions on a run",
		Metadata:    map[string]string{"build": cfg.Build, "schema": contract.APISchemaURL},
	})
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s := &server{cfg: cfg}
	for _, e := range []struct {
		name, about string
		handle      func(context.Context, string, *contract.APIRequest) (any, error)
	}{
		{contract.APIStatus, "the target's migrations, from its tracking table", s.status},
		{contract.APIRuns, "the target's latest runs, newest first (limit)", s.runs},
		{contract.APIRun, "one run of the target (run: its id or request id) and its events", s.run},
		{contract.APIAction, "pause, resume, fail or retry one run of the target (run, action, reason)", s.action},
		{contract.APIRollout, "a rollout of the target group: its status (run: its id or request id; none: the latest), or resume it when halted (action resume, failed retry|skip, reason)", s.rollout},
	} {
		of := "<target>"
		if e.name == contract.APIRollout {
			of = "<group>"
		}
		err := svc.AddEndpoint(e.name, s.handler(e.name, e.handle),
			micro.WithEndpointSubject(contract.APISubjectPrefix+e.name+".*"),
			micro.WithEndpointMetadata(map[string]string{"description": e.about, "subject": contract.APISubjectPrefix + e.name + "." + of}))
		if err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("api: endpoint %s: %w", e.name, err)
		}
	}
	return svc, nil
}

type server struct {
	cfg Config
}

// apiError is a refusal with its micro error code.
type apiError struct {
	code, msg string
}

func (e *apiError) Error() string { return e.msg }

func refuse(code, format string, args ...any) error {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

// handler decodes a request to endpoint, runs handle with the target its subject names, and
// replies with what handle returns, or with the refusal.
func (s *server) handler(endpoint string, handle func(context.Context, string, *contract.APIRequest) (any, error)) micro.HandlerFunc {
	return func(req micro.Request) {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		targetName := strings.TrimPrefix(req.Subject(), contract.APISubjectPrefix+endpoint+".")
		reply, err := func() (any, error) {
			r, err := contract.DecodeAPIRequest(req.Data())
			if err != nil {
				return nil, refuse(contract.APIErrBadRequest, "%v", err)
			}
			if endpoint == contract.APIRollout {
				if s.cfg.Rollouts == nil || !s.cfg.Rollouts.IsGroup(targetName) {
					return nil, refuse(contract.APIErrNotFound, "unknown target group %q", targetName)
				}
				if r.Action != "" {
					// An action on a group's rollout is held to the signing policy of every
					// target the group draws on, like its request; its signature names the group.
					if r.Signature != nil && r.Target != targetName {
						return nil, refuse(contract.APIErrForbidden, "the signed action names %q, not %q, the group of its subject", r.Target, targetName)
					}
					for _, t := range s.cfg.Rollouts.GroupTargets(targetName) {
						if s.cfg.Signing == nil {
							break
						}
						if err := s.cfg.Signing.VerifyAction(t, req.Data(), r.Signature, time.Now()); err != nil {
							return nil, refuse(contract.APIErrForbidden, "%v", err)
						}
					}
				}
				return handle(ctx, targetName, r)
			}
			if _, err := s.cfg.Targets.Get(targetName); err != nil {
				return nil, refuse(contract.APIErrNotFound, "%v", err)
			}
			if endpoint == contract.APIAction {
				if err := s.checkSigned(targetName, r, req.Data()); err != nil {
					return nil, err
				}
			}
			return handle(ctx, targetName, r)
		}()
		if err == nil {
			var data []byte
			if data, err = json.Marshal(reply); err == nil {
				err = req.Respond(data)
				if err != nil {
					s.cfg.Logger.Warn("api: could not reply", "endpoint", endpoint, "error", err.Error())
				}
				return
			}
		}
		var ae *apiError
		if !errors.As(err, &ae) {
			s.cfg.Logger.Error("api: request failed", "endpoint", endpoint, "target", targetName, "error", err.Error())
			ae = &apiError{code: contract.APIErrInternal, msg: err.Error()}
		}
		if rerr := req.Error(ae.code, ae.msg, nil); rerr != nil {
			s.cfg.Logger.Warn("api: could not reply", "endpoint", endpoint, "error", rerr.Error())
		}
	}
}

// checkSigned refuses an action on targetName that the target's signing policy refuses, and a
// signed action that names another target than its subject's.
func (s *server) checkSigned(targetName string, r *contract.APIRequest, data []byte) error {
	if r.Signature != nil && r.Target != targetName {
		return refuse(contract.APIErrForbidden, "the signed action names target %q, not %q, the target of its subject", r.Target, targetName)
	}
	if s.cfg.Signing == nil {
		return nil
	}
	if err := s.cfg.Signing.VerifyAction(targetName, data, r.Signature, time.Now()); err != nil {
		return refuse(contract.APIErrForbidden, "%v", err)
	}
	return nil
}

func (s *server) status(ctx context.Context, targetName string, _ *contract.APIRequest) (any, error) {
	t, _ := s.cfg.Targets.Get(targetName)
	ctx = target.WithTarget(ctx, t)
	pool, err := t.Conn(ctx) // reading a status creates nothing: a fresh target has no tracking table yet
	if err != nil {
		return nil, err
	}
	applied, err := t.AppliedMigrations(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("target %q: read the tracking table: %w", targetName, err)
	}
	reply := contract.StatusReply{Schema: contract.APIStatusSchemaV1, Target: targetName, Migrations: []contract.MigrationStatus{}}
	latest, err := s.cfg.Store.ListRuns(ctx, targetName, 1)
	if err != nil {
		return nil, err
	}
	if len(latest) == 1 {
		ri := RunInfo(&latest[0])
		reply.LastRun = &ri
	}
	for _, a := range applied {
		state := contract.MigrationApplied
		if !a.Complete {
			state = contract.MigrationIncomplete
		}
		reply.Migrations = append(reply.Migrations, contract.MigrationStatus{
			Version: a.Version, Name: a.Name, Checksum: a.Checksum, State: state, Phase: a.Phase,
			AppliedAt: a.AppliedAt.UTC(), ExecutionTimeMS: a.ExecutionTimeMS, AppliedBy: a.AppliedBy, Run: a.RunID,
		})
	}
	return reply, nil
}

func (s *server) runs(ctx context.Context, targetName string, r *contract.APIRequest) (any, error) {
	limit := r.Limit
	if limit == 0 {
		limit = contract.APIRunsDefault
	}
	listed, err := s.cfg.Store.ListRuns(ctx, targetName, limit)
	if err != nil {
		return nil, err
	}
	reply := contract.RunsReply{Schema: contract.APIRunsSchemaV1, Target: targetName, Runs: make([]contract.RunInfo, 0, len(listed))}
	for i := range listed {
		reply.Runs = append(reply.Runs, RunInfo(&listed[i]))
	}
	return reply, nil
}

// lookup returns the run of targetName that r names.
func (s *server) lookup(ctx context.Context, targetName string, r *contract.APIRequest) (*runstore.Listed, error) {
	if r.Run == "" {
		return nil, refuse(contract.APIErrBadRequest, "name the run: \"run\" holds its id or the request id it was published with")
	}
	l, err := s.cfg.Store.ListedRun(ctx, targetName, contract.RunIDOf(targetName, r.Run))
	if errors.Is(err, runstore.ErrRunNotFound) {
		return nil, refuse(contract.APIErrNotFound, "target %q has no run %q (by run id or request id)", targetName, r.Run)
	}
	return l, err
}

func (s *server) run(ctx context.Context, targetName string, r *contract.APIRequest) (any, error) {
	l, err := s.lookup(ctx, targetName, r)
	if err != nil {
		return nil, err
	}
	evs, err := outbox.RunEvents(ctx, s.cfg.Store.Pool, s.cfg.Store.Schema(), targetName, l.ID)
	if err != nil {
		return nil, err
	}
	complete := len(evs) > 0 && evs[0].Kind == contract.KindRunAccepted
	return contract.RunReply{Schema: contract.APIRunSchemaV1, Run: RunInfo(l), Events: evs, EventsComplete: complete}, nil
}

func (s *server) action(ctx context.Context, targetName string, r *contract.APIRequest) (any, error) {
	l, err := s.lookup(ctx, targetName, r)
	if err != nil {
		return nil, err
	}
	act := map[string]func(context.Context, string, string) error{
		contract.ActionPause: s.cfg.Actions.Pause, contract.ActionResume: s.cfg.Actions.Resume,
		contract.ActionFail: s.cfg.Actions.Fail, contract.ActionRetry: s.cfg.Actions.Retry,
	}[r.Action]
	if act == nil {
		return nil, refuse(contract.APIErrBadRequest, "name the action: \"action\" is pause, resume, fail or retry")
	}
	err = act(ctx, l.ID, r.Reason)
	var se *jobs.StateError
	switch {
	case errors.As(err, &se):
		return nil, refuse(contract.APIErrConflict, "%v", err)
	case errors.Is(err, runstore.ErrRunNotFound):
		return nil, refuse(contract.APIErrNotFound, "target %q has no run %q", targetName, r.Run)
	case err != nil:
		return nil, err
	}
	if l, err = s.cfg.Store.ListedRun(ctx, targetName, l.ID); err != nil {
		return nil, err
	}
	return contract.ActionReply{Schema: contract.APIActionSchemaV1, Action: r.Action, Run: RunInfo(l)}, nil
}

// rollout answers the rollout endpoint: the status of a rollout of group, resumed first when
// the request asks for it.
func (s *server) rollout(ctx context.Context, group string, r *contract.APIRequest) (any, error) {
	var ro *runstore.Rollout
	var err error
	switch {
	case r.Run == "":
		var latest []*runstore.Rollout
		if latest, err = s.cfg.Store.ListRollouts(ctx, group, 1); err == nil && len(latest) == 0 {
			return nil, refuse(contract.APIErrNotFound, "target group %q has no rollout", group)
		}
		if err == nil {
			ro = latest[0]
		}
	default:
		id := r.Run
		if _, perr := uuid.Parse(id); perr != nil {
			id = contract.RolloutID(group, r.Run)
		}
		ro, err = s.cfg.Store.GetRollout(ctx, s.cfg.Store.Pool, id, false)
		if err == nil && ro.Group != group {
			err = runstore.ErrRolloutNotFound
		}
	}
	if errors.Is(err, runstore.ErrRolloutNotFound) {
		return nil, refuse(contract.APIErrNotFound, "target group %q has no rollout %q (by rollout id or request id)", group, r.Run)
	}
	if err != nil {
		return nil, err
	}
	var st contract.RolloutStatus
	switch r.Action {
	case "":
		st, err = s.cfg.Rollouts.RolloutStatus(ctx, ro.ID)
	case contract.ActionResume:
		if r.Failed == "" {
			return nil, refuse(contract.APIErrBadRequest, "say what becomes of the failed targets: \"failed\" is retry (run them again from their failed phase) or skip")
		}
		st, err = s.cfg.Rollouts.ResumeRollout(ctx, ro.ID, r.Failed == contract.FailedRetry, r.Reason)
	default:
		return nil, refuse(contract.APIErrBadRequest, "a rollout's only action is resume")
	}
	var se *jobs.StateError
	if errors.As(err, &se) {
		return nil, refuse(contract.APIErrConflict, "%v", err)
	}
	if err != nil {
		return nil, err
	}
	return contract.RolloutReply{Schema: contract.APIRolloutSchemaV1, Rollout: st}, nil
}

// RunInfo is l as the API (and the runs page) shows it.
func RunInfo(l *runstore.Listed) contract.RunInfo {
	ri := contract.RunInfo{
		ID: l.ID, RequestID: l.RequestID, Target: l.Target, Direction: l.Direction, DryRun: l.DryRun, Status: l.Status,
		Version: l.StepVersion, Phase: l.StepPhase, FailedVersion: l.FailedVersion, FailedPhase: l.FailedPhase,
		Migrations: l.Migrations, CreatedAt: l.CreatedAt.UTC(), StartedAt: utc(l.StartedAt), FinishedAt: utc(l.FinishedAt),
	}
	end := time.Now()
	if l.FinishedAt != nil {
		end = *l.FinishedAt
	}
	ri.DurationMS = max(end.Sub(l.CreatedAt).Milliseconds(), 0)
	if len(l.Error) > 0 {
		var f struct {
			Error contract.EventError `json:"error"`
		}
		if json.Unmarshal(l.Error, &f) == nil && f.Error.Code != "" {
			ri.Error = &f.Error
		}
	}
	return ri
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
