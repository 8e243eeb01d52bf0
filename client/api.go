package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

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

// Act does action (contract.ActionPause, ...) on the run of target that run names, with reason
// for its event, and returns the run after it.
func (c *Client) Act(ctx context.Context, target, run, action, reason string) (*contract.ActionReply, error) {
	var r contract.ActionReply
	return &r, c.call(ctx, contract.APIAction, target, contract.APIRequest{Run: run, Action: action, Reason: reason}, contract.APIActionSchemaV1, &r)
}
