// Package client publishes migration requests and follows their runs' events. It depends only
// on the public contract (package contract and NATS), never on the worker's internals: it is
// what cmd/submit and any other Go service use to talk to workers.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// Client is a NATS connection to the workers' streams.
type Client struct {
	NC *nats.Conn
	JS jetstream.JetStream
}

// Connect connects to the NATS server at url.
func Connect(url string, opts ...nats.Option) (*Client, error) {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("confiture-submit")}, opts...)...)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &Client{NC: nc, JS: js}, nil
}

// Close closes the connection.
func (c *Client) Close() { c.NC.Close() }

// Published says what became of a publish.
type Published struct {
	// Run is the id of the run the request produces (or produced, for a duplicate).
	Run string
	// Duplicate is set when JetStream already had a request with this id.
	Duplicate bool
}

// Publish sends req on its target's request subject with the request id as the message id, and
// waits for JetStream to store it.
func (c *Client) Publish(ctx context.Context, req *contract.Request) (Published, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return Published{}, err
	}
	return c.PublishRaw(ctx, req.Target, req.ID, data)
}

// PublishRaw sends data as a request for target with msgID as the message id.
func (c *Client) PublishRaw(ctx context.Context, target, msgID string, data []byte) (Published, error) {
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := c.JS.Publish(ctx, contract.RequestSubject(target), data, opts...)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			return Published{}, fmt.Errorf("no worker stream answers on %s: is a worker running against this NATS server? (%w)", contract.RequestSubject(target), err)
		}
		return Published{}, err
	}
	return Published{Run: contract.RunID(target, msgID), Duplicate: ack.Duplicate}, nil
}

// ErrStopFollowing, returned by a Follow callback, ends Follow without error.
var ErrStopFollowing = errors.New("stop following")

// Follow calls fn with every event of a run, from its first, until fn returns an error (or
// ErrStopFollowing) or ctx ends. Events that do not validate against confiture.event/v1 are
// reported as errors, not guessed at.
func (c *Client) Follow(ctx context.Context, target, run string, fn func(*contract.Event) error) error {
	// An ordered consumer with a single filter subject works on every JetStream server version.
	cons, err := c.JS.OrderedConsumer(ctx, contract.EventStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{contract.RunEventsFilter(target, run)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("follow events: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow events: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer func() {
		stop()
		it.Stop()
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("follow events: %w", err)
		}
		ev, err := contract.DecodeEvent(msg.Data())
		if err != nil {
			return fmt.Errorf("event on %s: %w", msg.Subject(), err)
		}
		if err := fn(ev); err != nil {
			if errors.Is(err, ErrStopFollowing) {
				return nil
			}
			return err
		}
	}
}

// Wait follows a run until its final event (run.completed, run.failed or run.rejected) and
// returns it, calling each (if not nil) with every event on the way.
func (c *Client) Wait(ctx context.Context, target, run string, each func(*contract.Event)) (*contract.Event, error) {
	var final *contract.Event
	err := c.Follow(ctx, target, run, func(ev *contract.Event) error {
		if each != nil {
			each(ev)
		}
		if contract.IsTerminal(ev.Kind) {
			final = ev
			return ErrStopFollowing
		}
		return nil
	})
	return final, err
}
