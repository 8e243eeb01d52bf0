package client

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// APIError is a request the workers' service API refused: Code is contract.APIErrBadRequest,
// APIErrNotFound, APIErrConflict or APIErrInternal.
type APIError struct {
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Message }

// ErrNoWorker says that no worker answered: none serves the API on this NATS server.
var ErrNoWorker = errors.New("no worker answered on this NATS server")

// call sends req to endpoint for target and decodes the reply, of schema identifier id, into
// reply.
func (c *Client) call(ctx context.Context, endpoint, target string, req contract.APIRequest, id string, reply any) error {
	req.Schema = contract.APIRequestSchemaV1
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return c.send(ctx, endpoint, target, data, id, reply)
}

// send sends the request data to endpoint for target and decodes the reply, of schema
// identifier id, into reply.
func (c *Client) send(ctx context.Context, endpoint, target string, data []byte, id string, reply any) error {
	subject := contract.APISubject(endpoint, target)
	ctx, done := c.watch(ctx, func(pe *PermissionError) bool { return isSubscribe(pe) || pe.Subject == subject })
	defer done()
	msg, err := c.NC.RequestWithContext(ctx, subject, data)
	if pe := denied(ctx); err != nil && pe != nil {
		return pe
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return ErrNoWorker
	case err != nil:
		return fmt.Errorf("%s of %s: %w", endpoint, target, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return &APIError{Code: code, Message: msg.Header.Get(micro.ErrorHeader)}
	}
	if err := contract.ValidateAPI(id, msg.Data); err != nil {
		return fmt.Errorf("%s of %s: the worker's reply: %w", endpoint, target, err)
	}
	return json.Unmarshal(msg.Data, reply)
}

// Status returns target's migrations, as its tracking table records them.
func (c *Client) Status(ctx context.Context, target string) (*contract.StatusReply, error) {
	var r contract.StatusReply
	return &r, c.call(ctx, contract.APIStatus, target, contract.APIRequest{}, contract.APIStatusSchemaV1, &r)
}

// Runs returns target's latest runs, newest first: at most limit (0: the API's default).
func (c *Client) Runs(ctx context.Context, target string, limit int) (*contract.RunsReply, error) {
	var r contract.RunsReply
	return &r, c.call(ctx, contract.APIRuns, target, contract.APIRequest{Limit: limit}, contract.APIRunsSchemaV1, &r)
}

// Run returns the run of target that run names (its id or its request id) and its events.
func (c *Client) Run(ctx context.Context, target, run string) (*contract.RunReply, error) {
	var r contract.RunReply
	return &r, c.call(ctx, contract.APIRun, target, contract.APIRequest{Run: run}, contract.APIRunSchemaV1, &r)
}

// Signer signs operator actions: a target that accepts only signed requests accepts only
// actions signed by one of its signers.
type Signer struct {
	// Key is the Ed25519 private key (contract.ParsePrivateKey reads a PKCS#8 PEM file's).
	Key ed25519.PrivateKey
	// KeyID is the key's id in the target's signers.
	KeyID string
	// Expires, when set, is how long after signing the signature holds; the worker's
	// signature_max_age bounds it anyway.
	Expires time.Duration
}

// Act does action (ActionPause, ...) on the run of target that run names, with reason for its
// event, signed by signer when it is not nil, and returns the run after it.
func (c *Client) Act(ctx context.Context, target, run, action, reason string, signer *Signer) (*contract.ActionReply, error) {
	var r contract.ActionReply
	req := contract.APIRequest{Schema: contract.APIRequestSchemaV1, Run: run, Action: action, Reason: reason}
	return &r, c.signedCall(ctx, contract.APIAction, target, req, signer, contract.APIActionSchemaV1, &r)
}

// signedCall is call for an action, signed by signer when it is not nil.
func (c *Client) signedCall(ctx context.Context, endpoint, target string, req contract.APIRequest, signer *Signer, id string, reply any) error {
	if signer == nil {
		return c.call(ctx, endpoint, target, req, id, reply)
	}
	req.Schema, req.Target = contract.APIRequestSchemaV1, target
	now := time.Now()
	var expires time.Time
	if signer.Expires > 0 {
		expires = now.Add(signer.Expires)
	}
	data, err := contract.SignAPIRequest(&req, signer.Key, signer.KeyID, now, expires)
	if err != nil {
		return err
	}
	return c.send(ctx, endpoint, target, data, id, reply)
}

// Rollout returns the status of the rollout of group that rollout names (its id or its
// request id; "": the group's latest).
func (c *Client) Rollout(ctx context.Context, group, rollout string) (*contract.RolloutStatus, error) {
	var r contract.RolloutReply
	err := c.call(ctx, contract.APIRollout, group, contract.APIRequest{Run: rollout}, contract.APIRolloutSchemaV1, &r)
	return &r.Rollout, err
}

// ResumeRollout resumes the halted rollout of group that rollout names: its failed targets are
// run again from their failed phase (failed contract.FailedRetry) or skipped
// (contract.FailedSkip). signer signs it when it is not nil (a group drawing on a target that
// accepts only signed requests accepts only signed actions).
func (c *Client) ResumeRollout(ctx context.Context, group, rollout, failed, reason string, signer *Signer) (*contract.RolloutStatus, error) {
	var r contract.RolloutReply
	req := contract.APIRequest{Run: rollout, Action: contract.ActionResume, Failed: failed, Reason: reason}
	err := c.signedCall(ctx, contract.APIRollout, group, req, signer, contract.APIRolloutSchemaV1, &r)
	return &r.Rollout, err
}
