// Package client is the Go client of Confiture workers: a service publishes a migration request
// (built in code, or read from a migrations directory with LoadDir) and follows its run to the
// end; an observer follows every run of a target; an operator reads a target's status and runs
// and acts on a run, through the workers' service API. cmd/submit is built on it.
//
// It talks to the workers only through NATS and the public contract (the JSON Schemas in
// schemas/), never through their database. Its types are the contract's: Request, Event and the
// API's replies.
//
//	c, err := client.Connect("nats://127.0.0.1:4222")
//	...
//	ms, err := client.LoadDir("migrations")
//	req := &client.Request{Schema: client.RequestSchemaV1, ID: "deploy-42", Target: "app",
//		Direction: client.DirectionUp, Migrations: ms}
//	pub, err := c.Publish(ctx, req)
//	final, err := c.Wait(ctx, req.Target, pub.Run, nil) // run.completed or run.failed
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// Client is a NATS connection to the workers' streams.
type Client struct {
	NC *nats.Conn
	JS jetstream.JetStream

	denials *denials
}

// Connect connects to the NATS server at url. opts may carry credentials and TLS (see package
// natsauth) and an error handler of the caller's, which still gets every asynchronous error.
func Connect(url string, opts ...nats.Option) (*Client, error) {
	d := &denials{waiters: map[int]waiter{}}
	all := append([]nats.Option{nats.Name("confiture-submit")}, opts...)
	// Last, so that it wraps whatever error handler opts set.
	all = append(all, func(o *nats.Options) error {
		prev := o.AsyncErrorCB
		o.AsyncErrorCB = func(nc *nats.Conn, sub *nats.Subscription, err error) {
			d.report(err)
			if prev != nil {
				prev(nc, sub, err)
			}
		}
		return nil
	})
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &Client{NC: nc, JS: js, denials: d}, nil
}

// PermissionError says that the NATS server did not allow this connection's user to publish
// to, or subscribe to, a subject. It wraps nats.ErrPermissionViolation.
type PermissionError struct {
	// Op is "publish" or "subscribe".
	Op string
	// Subject is the subject refused.
	Subject string
	// Server is the server's own message.
	Server string
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("permission denied: the NATS server does not allow this user to %s %s (%s)", e.Op, e.Subject, e.Server)
}

// Unwrap makes errors.Is(err, nats.ErrPermissionViolation) hold.
func (e *PermissionError) Unwrap() error { return nats.ErrPermissionViolation }

// The server's words: Permissions Violation for Publish to "x" / for Subscription to "x".
var violationRe = regexp.MustCompile(`Permissions Violation for (Publish|Subscription) to "([^"]+)"`)

// denials hands the server's asynchronous permission violations to the operations waiting for
// a reply that the violation means will never come: without them, a publish on a subject this
// user may not use would wait for its timeout.
type denials struct {
	mu      sync.Mutex
	next    int
	waiters map[int]waiter
}

type waiter struct {
	concerns func(*PermissionError) bool
	cancel   context.CancelCauseFunc
}

func (d *denials) report(err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	pe := &PermissionError{Op: "publish", Server: strings.TrimPrefix(err.Error(), nats.ErrPermissionViolation.Error()+": ")}
	if m := violationRe.FindStringSubmatch(err.Error()); m != nil {
		pe.Subject = m[2]
		if m[1] == "Subscription" {
			pe.Op = "subscribe to"
		} else {
			pe.Op = "publish on"
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, w := range d.waiters {
		if w.concerns(pe) {
			w.cancel(pe)
		}
	}
}

// watch returns ctx, cancelled with a *PermissionError as its cause when the server reports
// a violation that concerns says matters to the operation; done stops watching.
func (c *Client) watch(ctx context.Context, concerns func(*PermissionError) bool) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	if c.denials == nil { // a Client not made by Connect
		return ctx, func() { cancel(nil) }
	}
	c.denials.mu.Lock()
	id := c.denials.next
	c.denials.next++
	c.denials.waiters[id] = waiter{concerns: concerns, cancel: cancel}
	c.denials.mu.Unlock()
	return ctx, func() {
		c.denials.mu.Lock()
		delete(c.denials.waiters, id)
		c.denials.mu.Unlock()
		cancel(nil)
	}
}

// denied returns the permission error that cancelled ctx, if one did.
func denied(ctx context.Context) *PermissionError {
	var pe *PermissionError
	if errors.As(context.Cause(ctx), &pe) {
		return pe
	}
	return nil
}

// A subscription refused (the inbox that replies arrive on) breaks every request.
func isSubscribe(pe *PermissionError) bool { return pe.Op == "subscribe to" || pe.Subject == "" }

// Close closes the connection.
func (c *Client) Close() { c.NC.Close() }

// Published says what became of a publish.
type Published struct {
	// Run is the id of the run the request produces (or produced, for a duplicate); for a
	// request naming a target group, the id of its rollout.
	Run string
	// Duplicate is set when JetStream already had a request with this id for this target.
	Duplicate bool
}

// Publish sends req on its target's request subject, with contract.RequestMsgID(target, request
// id) as the message id, and waits for JetStream to store it.
func (c *Client) Publish(ctx context.Context, req *contract.Request) (Published, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return Published{}, err
	}
	if req.Group != "" {
		pub, err := c.PublishRaw(ctx, req.Group, req.ID, data)
		if err == nil {
			pub.Run = contract.RolloutID(req.Group, req.ID)
		}
		return pub, err
	}
	return c.PublishRaw(ctx, req.Target, req.ID, data)
}

// PublishRaw sends data as the request requestID for target, with contract.RequestMsgID(target,
// requestID) as the message id (none when requestID is empty). The message id includes the
// target because JetStream de-duplicates across the whole request stream: the same request id
// sent to two targets gives two runs.
func (c *Client) PublishRaw(ctx context.Context, target, requestID string, data []byte) (Published, error) {
	var opts []jetstream.PublishOpt
	if requestID != "" {
		opts = append(opts, jetstream.WithMsgID(contract.RequestMsgID(target, requestID)))
	}
	subject := contract.RequestSubject(target)
	ctx, done := c.watch(ctx, func(pe *PermissionError) bool { return isSubscribe(pe) || pe.Subject == subject })
	defer done()
	ack, err := c.JS.Publish(ctx, subject, data, opts...)
	if err != nil {
		if pe := denied(ctx); pe != nil {
			return Published{}, pe
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			return Published{}, fmt.Errorf("no worker stream answers on %s: is a worker running against this NATS server? (%w)", contract.RequestSubject(target), err)
		}
		return Published{}, err
	}
	return Published{Run: contract.RunID(target, requestID), Duplicate: ack.Duplicate}, nil
}

// WaitRollout follows the events of rollout of group, calling each with every one, until the
// rollout stops: completed or halted (an operator may resume it), or its request was rejected.
// It returns that last event.
func (c *Client) WaitRollout(ctx context.Context, group, rollout string, each func(*contract.Event)) (*contract.Event, error) {
	var final *contract.Event
	err := c.follow(ctx, group, rollout, func(ev *contract.Event, pending uint64) error {
		if each != nil {
			each(ev)
		}
		switch ev.Kind {
		case contract.KindRolloutCompleted, contract.KindRolloutHalted, contract.KindRunRejected:
			final = ev
		case contract.KindRolloutResumed:
			final = nil
		}
		if final != nil && pending == 0 {
			return ErrStopFollowing
		}
		return nil
	})
	return final, err
}

// ErrStopFollowing, returned by a Follow callback, ends Follow without error.
var ErrStopFollowing = errors.New("stop following")

// Follow calls fn with every event of a run, from its first, until fn returns an error (or
// ErrStopFollowing) or ctx ends. Events that do not validate against confiture.event/v1 are
// reported as errors, not guessed at.
func (c *Client) Follow(ctx context.Context, target, run string, fn func(*contract.Event) error) error {
	return c.follow(ctx, target, run, func(ev *contract.Event, _ uint64) error { return fn(ev) })
}

// follow is Follow that also tells fn how many of the run's events are stored after this one.
func (c *Client) follow(ctx context.Context, target, run string, fn func(ev *contract.Event, pending uint64) error) error {
	return c.followFilter(ctx, contract.RunEventsFilter(target, run), jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}, fn)
}

// Replay says which of a target's stored events following it begins with; the zero Replay
// begins with the next event.
type Replay struct {
	// Since begins with the events stored this long ago.
	Since time.Duration
	// Last begins with the target's last Last events.
	Last int
}

// FollowTarget calls fn with every event of every run of target, in the order they were
// stored, from where replay says, until fn returns an error (or ErrStopFollowing) or ctx ends.
func (c *Client) FollowTarget(ctx context.Context, target string, replay Replay, fn func(*contract.Event) error) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	switch {
	case replay.Since > 0:
		start := time.Now().Add(-replay.Since)
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start}
	case replay.Last > 0:
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	}
	return c.followFilter(ctx, contract.EventSubjectPrefix+target+".>", cfg, func(ev *contract.Event, pending uint64) error {
		if replay.Last > 0 && pending >= uint64(replay.Last) {
			return nil // older than the last Last
		}
		return fn(ev)
	})
}

// followFilter calls fn with each event stored on the subjects filter matches, from where cfg
// says, and how many are stored after it.
func (c *Client) followFilter(ctx context.Context, filter string, cfg jetstream.OrderedConsumerConfig, fn func(ev *contract.Event, pending uint64) error) error {
	// Following takes JetStream API requests ($JS.API.CONSUMER.CREATE..., ...MSG.NEXT...).
	ctx, done := c.watch(ctx, func(pe *PermissionError) bool {
		return isSubscribe(pe) || strings.HasPrefix(pe.Subject, "$JS.")
	})
	defer done()
	// An ordered consumer with a single filter subject works on every JetStream server version.
	cfg.FilterSubjects = []string{filter}
	cons, err := c.JS.OrderedConsumer(ctx, contract.EventStream, cfg)
	if err != nil {
		if pe := denied(ctx); pe != nil {
			return fmt.Errorf("follow events: %w", pe)
		}
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
			if pe := denied(ctx); pe != nil {
				return fmt.Errorf("follow events: %w", pe)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("follow events: %w", err)
		}
		ev, err := contract.DecodeEvent(msg.Data())
		if err != nil {
			return fmt.Errorf("event on %s: %w", msg.Subject(), err)
		}
		var pending uint64
		if md, err := msg.Metadata(); err == nil {
			pending = md.NumPending
		}
		if err := fn(ev, pending); err != nil {
			if errors.Is(err, ErrStopFollowing) {
				return nil
			}
			return err
		}
	}
}

// Wait follows a run until its final event (run.completed, run.failed or run.rejected) and
// returns it, calling each (if not nil) with every event on the way. A final event that later
// events supersede is not the end: an operator may retry a failed run (run.retried), which
// then ends anew; Wait returns the last final event once no event is stored after it.
func (c *Client) Wait(ctx context.Context, target, run string, each func(*contract.Event)) (*contract.Event, error) {
	var final *contract.Event
	err := c.follow(ctx, target, run, func(ev *contract.Event, pending uint64) error {
		if each != nil {
			each(ev)
		}
		switch {
		case contract.IsTerminal(ev.Kind):
			final = ev
		case ev.Kind == contract.KindRunRetried || ev.Kind == contract.KindRunResumed:
			final = nil // the run goes on
		}
		if final != nil && pending == 0 {
			return ErrStopFollowing
		}
		return nil
	})
	return final, err
}
