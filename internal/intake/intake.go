// Package intake turns request messages from NATS into runs in the queue database. A request
// that is malformed, names an unknown target or hook, or is otherwise unacceptable is rejected
// with a run.rejected event that says why, and its message is terminated. An accepted request
// is recorded (with its run.accepted event) in one queue-database transaction before the message
// is acknowledged, so nothing acknowledged is lost and a redelivery is recognised by its id.
package intake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/fault"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/redact"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// Admitter starts an accepted run, or queues it behind the runs of its target, inside the
// transaction that recorded it.
type Admitter interface {
	Admit(ctx context.Context, tx pgx.Tx, run *runstore.Run) error
}

// Checker validates a decoded request against what this worker can do (configured targets,
// loaded hooks and their parameters, parseable SQL) without changing anything. The error it
// returns should be a *contract.DecodeError carrying an error code.
type Checker interface {
	Check(req *contract.Request) error
}

// Verifier checks the signature of a decoded request against its target's policy (see
// package signing) without opening any connection. receivedAt is when the request reached
// NATS. The error it returns should be a *contract.DecodeError carrying an error code.
type Verifier interface {
	Verify(req *contract.Request, data []byte, receivedAt time.Time) error
}

// Rollouts starts the rollout of a request that names a target group instead of a target.
type Rollouts interface {
	// IsGroup reports whether name is a configured target group.
	IsGroup(name string) bool
	// GroupTargets returns the configured targets a group draws on (its listed targets, or the
	// target it discovers its members through): a group's request must satisfy the signing
	// policy of each.
	GroupTargets(group string) []string
	// TargetSources returns the configured targets whose signing policy a request for target
	// must satisfy: the target, and for a group's member, the targets its group draws on.
	TargetSources(target string) []string
	// ResolveGroup returns the group's members now, in order, and its rollout policy (the
	// group's configured defaults over the worker's). An error that is a *contract.DecodeError
	// rejects the request; any other is transient (the request comes again later).
	ResolveGroup(ctx context.Context, group string) (members []string, policy contract.RolloutPolicy, err error)
	// StartRollout starts a rollout recorded in tx, with its first wave.
	StartRollout(ctx context.Context, tx pgx.Tx, r *runstore.Rollout) error
}

// Observer receives intake's measurements (the worker's Prometheus metrics).
type Observer interface {
	// RunFinished counts a request that ended at intake: rejected or duplicate.
	RunFinished(status string)
	// IntakeLag reports how long an accepted request waited between publish and record.
	IntakeLag(d time.Duration)
}

type noObserver struct{}

func (in *Intake) observer() Observer {
	if in.Observer == nil {
		return noObserver{}
	}
	return in.Observer
}

func (noObserver) RunFinished(string)      {}
func (noObserver) IntakeLag(time.Duration) {}

// ConsumerName is the durable consumer the workers share on the request stream.
const ConsumerName = "confiture-worker"

// Intake consumes the request stream.
type Intake struct {
	JS       jetstream.JetStream
	Store    *runstore.Store
	Admitter Admitter
	Checker  Checker
	// Verifier checks request signatures before Checker sees the request. Defaults to none:
	// signatures are not checked.
	Verifier Verifier
	// Rollouts starts the rollouts of requests naming a target group. Defaults to none: such a
	// request is rejected (unknown_group).
	Rollouts Rollouts
	Logger   *slog.Logger
	// MaxRequestBytes bounds a request. Defaults to 1 MiB.
	MaxRequestBytes int
	// AckWait is how long a request may take before NATS redelivers it. Defaults to 30s.
	AckWait time.Duration
	// Observer receives measurements. Defaults to none.
	Observer Observer
	// Stream is the request stream. Defaults to contract.RequestStream.
	Stream string
	// Durable is the durable consumer the workers share on Stream. Defaults to ConsumerName.
	Durable string
	// SubjectPrefix is what precedes the target in a request's subject. Defaults to
	// contract.RequestSubjectPrefix. The worker keeps the contract's names; a test on a shared
	// NATS server uses a stream and subjects of its own, so that it never takes (and rejects)
	// the requests of workers and tests that use the contract's stream there.
	SubjectPrefix string
	// Fault is called at fault.IntakeAfterCommit, for the tests that inject failures; an error
	// it returns leaves the request unacknowledged (it comes again, as a duplicate). Defaults
	// to none.
	Fault fault.Func

	cc    jetstream.ConsumeContext
	lanes []chan jetstream.Msg
	wg    sync.WaitGroup
}

func (in *Intake) setDefaults() {
	if in.Logger == nil {
		in.Logger = slog.New(slog.DiscardHandler)
	}
	if in.MaxRequestBytes <= 0 {
		in.MaxRequestBytes = 1 << 20
	}
	if in.AckWait <= 0 {
		in.AckWait = 30 * time.Second
	}
	if in.Stream == "" {
		in.Stream = contract.RequestStream
	}
	if in.Durable == "" {
		in.Durable = ConsumerName
	}
	if in.SubjectPrefix == "" {
		in.SubjectPrefix = contract.RequestSubjectPrefix
	}
}

// EnsureConsumer sets the defaults of the Intake's fields and creates or updates the durable
// consumer on the request stream. Start calls it; a caller of Handle without Start calls it
// first.
func (in *Intake) EnsureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	in.setDefaults()
	c, err := in.JS.CreateOrUpdateConsumer(ctx, in.Stream, jetstream.ConsumerConfig{
		Durable:       in.Durable,
		Description:   "confiture workers: migration requests",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       in.AckWait,
		MaxDeliver:    -1, // never drop a request that was not yet recorded; bad input is terminated
		MaxAckPending: 64,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("request consumer: %w", err)
	}
	return c, nil
}

// lanes is how many requests one worker handles at once. Requests for one target always go to
// the same lane, so one worker records them in the order it receives them; across workers, the
// target's admission lock (see accept) makes the order the queue database records them in the
// order they start in.
const lanes = 4

// Start consumes requests in the background until Stop.
func (in *Intake) Start(ctx context.Context) error {
	c, err := in.EnsureConsumer(ctx)
	if err != nil {
		return err
	}
	in.lanes = make([]chan jetstream.Msg, lanes)
	for i := range in.lanes {
		ch := make(chan jetstream.Msg, 8)
		in.lanes[i] = ch
		in.wg.Go(func() {
			for msg := range ch {
				in.Handle(ctx, msg)
			}
		})
	}
	// Keep the prefetch small: a buffered message must not pass AckWait while it waits.
	cc, err := c.Consume(func(msg jetstream.Msg) { in.lanes[laneOf(msg.Subject())] <- msg },
		jetstream.PullMaxMessages(2*lanes),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				in.Logger.Debug("request consumer", "error", err.Error())
			}
		}))
	if err != nil {
		in.closeLanes()
		return fmt.Errorf("consume requests: %w", err)
	}
	in.cc = cc
	return nil
}

func laneOf(subject string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(subject))
	return int(h.Sum32() % lanes)
}

// Stop stops taking requests; the requests being handled finish.
func (in *Intake) Stop() {
	if in.cc != nil {
		in.cc.Drain()
		<-in.cc.Closed()
	}
	in.closeLanes()
}

func (in *Intake) closeLanes() {
	for _, ch := range in.lanes {
		close(ch)
	}
	in.lanes = nil
	in.wg.Wait()
}

// rejection is why a request is refused.
type rejection struct {
	code string
	msg  string
	// wrongSubject: the request names another target than its subject's.
	wrongSubject bool
}

// Handle processes one request message: it records it and acknowledges it, or rejects it and
// terminates it, or (when the queue database cannot be reached) asks for redelivery later.
// A panic while handling it (a bug, say in the Checker) is recovered: the request is rejected
// with code internal, or, if it was recorded before, its copy is terminated. Start (or
// EnsureConsumer) must have set the Intake's defaults.
func (in *Intake) Handle(ctx context.Context, msg jetstream.Msg) {
	subjectTarget := strings.TrimPrefix(msg.Subject(), in.SubjectPrefix)
	if !contract.ValidTargetName(subjectTarget) {
		subjectTarget = "_invalid"
	}
	h := &handling{ref: outbox.RunRef{Target: subjectTarget}, receivedAt: time.Now(),
		group: in.Rollouts != nil && in.Rollouts.IsGroup(subjectTarget)}
	if md, err := msg.Metadata(); err == nil {
		h.seq = md.Sequence.Stream
		h.receivedAt = md.Timestamp
	}
	// The body's id wins (decode takes it); the message id names a request that cannot be
	// decoded.
	h.identify(contract.RequestIDOfMsgID(subjectTarget, msg.Headers().Get(jetstream.MsgIDHeader)))
	h.log = in.Logger.With("subject", msg.Subject(), "stream_seq", h.seq)

	// Bound the handling of one message below AckWait, so a hung database cannot hold intake
	// (or shutdown) forever; the message is then redelivered.
	ctx, cancel := context.WithTimeout(ctx, max(in.AckWait-time.Second, 5*time.Second))
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			in.recovered(ctx, msg, h, v, debug.Stack())
		}
	}()
	ref, seq := &h.ref, h.seq
	req, body, rej := in.decode(h, msg.Data())

	var err error
	if rej != nil && req != nil {
		var known bool
		if known, err = in.recorded(ctx, h, req.ID); err == nil && known {
			if rej.wrongSubject {
				// The request belongs to another target: its rejection must not land on the
				// run this id already has here.
				ref.Run = h.messageRunID()
			} else {
				// A copy of a request already recorded (perhaps checked by a worker with other
				// hooks loaded) is a duplicate, never a rejection of the run in progress.
				err = in.duplicateOf(ctx, msg, *ref, seq, rej,
					h.log.With("run", ref.Run, "request_id", ref.RequestID, "target", subjectTarget))
				rej, req = nil, nil
			}
		}
	}
	log := h.log.With("run", ref.Run, "request_id", ref.RequestID, "target", subjectTarget)
	switch {
	case err != nil:
	case rej != nil:
		err = in.reject(ctx, msg, *ref, seq, rej, log)
	case req != nil:
		if req.Group != "" {
			err = in.acceptRollout(ctx, msg, req, body, *ref, seq, log)
		} else {
			err = in.accept(ctx, msg, req, body, *ref, seq, log)
		}
		if rej := rejectionOfDBError(err); rej != nil {
			// The database refused the request's content itself: retrying cannot help.
			err = in.reject(ctx, msg, *ref, seq, rej, log)
		}
	}
	if err != nil {
		in.redeliver(msg, err, log)
	}
}

// handling is what Handle knows of a message so far: a recovered panic reports on it.
type handling struct {
	// group: the subject names a target group, so the request is a rollout's; rollout: the
	// request names a group (configured or not). Either way its events are a rollout's.
	group, rollout bool
	ref            outbox.RunRef
	seq            uint64
	receivedAt     time.Time
	log            *slog.Logger
}

// identify names the request the message holds, and so its run.
func (h *handling) identify(requestID string) {
	h.ref.RequestID = requestID
	h.ref.Run = contract.RunID(h.ref.Target, requestID)
	if h.group || h.rollout {
		h.ref.Run = contract.RolloutID(h.ref.Target, requestID)
	}
	if requestID == "" {
		h.ref.Run = h.messageRunID()
	}
}

// messageRunID names the run of a rejection that cannot have the request's run id: derived
// from the message's place in the stream, so that a redelivery (its Term lost) is rejected
// again with the same event id, which de-duplication drops.
func (h *handling) messageRunID() string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprintf("confiture.rejected\x00%s\x00%d", h.ref.Target, h.seq))).String()
}

// redeliver asks for the message again later: the queue database is unreachable or failing,
// and nothing was recorded.
func (in *Intake) redeliver(msg jetstream.Msg, err error, log *slog.Logger) {
	delay := redeliveryDelay(msg)
	log.Warn("could not record request; it will be redelivered", "error", err.Error(), "retry_in", delay)
	_ = msg.NakWithDelay(delay)
}

// recovered answers a request whose handling panicked. The consumer redelivers without limit,
// so the message must not come back: it would panic every worker that takes it in turn. A
// copy of a request recorded before is terminated and its run goes on; any other request is
// rejected with code internal. The transaction that was open, if any, was rolled back.
func (in *Intake) recovered(ctx context.Context, msg jetstream.Msg, h *handling, v any, stack []byte) {
	text := panicText(v)
	log := h.log.With("run", h.ref.Run, "request_id", h.ref.RequestID, "target", h.ref.Target)
	log.Error("request handling panicked", "panic", text, "stack", string(stack))
	if h.ref.RequestID != "" {
		known, err := in.recorded(ctx, h, h.ref.RequestID)
		if err != nil {
			in.redeliver(msg, err, log)
			return
		}
		if known {
			log.Warn("the request was recorded before: this copy is terminated and its run goes on")
			if err := msg.Term(); err != nil {
				log.Warn("could not terminate the copy; a redelivery is answered the same way", "error", err.Error())
			}
			return
		}
	}
	rej := &rejection{code: contract.CodeInternal,
		msg: "the worker failed while handling this request (panic: " + text + "); it is not retried: publish it again with a new id once the worker is fixed, and report it to the worker's operators"}
	if err := in.reject(ctx, msg, h.ref, h.seq, rej, log); err != nil {
		in.redeliver(msg, err, log)
	}
}

// urlRe matches a URL of any scheme: a panic value may quote a connection string.
var urlRe = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://\S+`)

// panicText is a panic value for an event or a log record, without any URL (a connection
// string) or password=... value in it.
func panicText(v any) string {
	s := urlRe.ReplaceAllString(fmt.Sprint(v), "[URL removed]")
	return redact.String(s)
}

// decode decodes and checks a request, in this order: size, contract (schema and limits),
// what PostgreSQL can store, subject, signature (Verifier), then what this worker can run
// (Checker). Nothing here opens a connection to a target. body is the request's canonical
// body (contract.RequestBody), which identifies its content. Once the request is decoded, h
// knows its id.
func (in *Intake) decode(h *handling, data []byte) (*contract.Request, []byte, *rejection) {
	subjectTarget, receivedAt := h.ref.Target, h.receivedAt
	if len(data) > in.MaxRequestBytes {
		return nil, nil, &rejection{code: contract.CodeInvalidRequest, msg: fmt.Sprintf("request is %d bytes, over the limit of %d bytes (max_request_bytes)", len(data), in.MaxRequestBytes)}
	}
	req, body, err := contract.DecodeRequestBody(data)
	if err != nil {
		return nil, nil, rejectionOf(err)
	}
	h.rollout = req.Group != ""
	h.identify(req.ID)
	// PostgreSQL text cannot hold these, so such a request could never be recorded.
	if !utf8.Valid(data) {
		return req, nil, &rejection{code: contract.CodeInvalidRequest, msg: "request is not valid UTF-8"}
	}
	if hasNULEscape(data) {
		return req, nil, &rejection{code: contract.CodeInvalidRequest, msg: `request contains a NUL character (\u0000), which PostgreSQL text cannot hold`}
	}
	if req.Group != "" {
		if req.Group != subjectTarget {
			return req, nil, &rejection{code: contract.CodeInvalidRequest, wrongSubject: true,
				msg: fmt.Sprintf("request for group %q was published on the subject of %q", req.Group, subjectTarget)}
		}
		if !h.group {
			msg := fmt.Sprintf("unknown target group %q: this worker configures no such group", req.Group)
			return req, nil, &rejection{code: contract.CodeUnknownGroup, msg: msg}
		}
	} else if req.Target != subjectTarget {
		return req, nil, &rejection{code: contract.CodeInvalidRequest, wrongSubject: true,
			msg: fmt.Sprintf("request for target %q was published on the subject of target %q", req.Target, subjectTarget)}
	}
	if in.Verifier != nil {
		// A group's request is held to the signing policy of every target the group draws on.
		targets := []string{req.Target}
		switch {
		case req.Group != "":
			targets = in.Rollouts.GroupTargets(req.Group)
		case in.Rollouts != nil:
			targets = in.Rollouts.TargetSources(req.Target)
		}
		for _, t := range targets {
			as := *req
			as.Target = t
			if err := in.Verifier.Verify(&as, data, receivedAt); err != nil {
				return req, nil, rejectionOf(err)
			}
		}
	}
	if err := in.Checker.Check(req); err != nil {
		return req, nil, rejectionOf(err)
	}
	return req, body, nil
}

// rejectionOfDBError turns an error that PostgreSQL raised about the data itself (SQLSTATE
// class 22, data exception) into a rejection; other errors are transient.
func rejectionOfDBError(err error) *rejection {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22") {
		return &rejection{code: contract.CodeInvalidRequest, msg: "the queue database cannot store this request: " + pgErr.Message}
	}
	return nil
}

func rejectionOf(err error) *rejection {
	var de *contract.DecodeError
	if errors.As(err, &de) {
		return &rejection{code: de.Code, msg: de.Message}
	}
	return &rejection{code: contract.CodeInvalidRequest, msg: err.Error()}
}

func (in *Intake) reject(ctx context.Context, msg jetstream.Msg, ref outbox.RunRef, seq uint64, rej *rejection, log *slog.Logger) error {
	ev := outbox.New(ref, contract.KindRunRejected, fmt.Sprint(seq))
	ev.Error = &contract.EventError{Code: rej.code, Message: rej.msg}
	ev.Message = "request rejected: " + rej.msg
	if err := pgx.BeginFunc(ctx, in.Store.Pool, func(tx pgx.Tx) error {
		return outbox.Insert(ctx, tx, in.Store.Schema(), ev)
	}); err != nil {
		return err
	}
	log.Warn("request rejected", "code", rej.code, "reason", rej.msg)
	in.observer().RunFinished("rejected")
	// Never TermWithReason: servers before 2.10 ignore "+TERM <reason>", and the ack goes to
	// the server that leads the consumer, which in a cluster being upgraded need not be the one
	// this worker is connected to; the message would come back every AckWait. The reason is in
	// the run.rejected event.
	if err := msg.Term(); err != nil {
		log.Warn("could not terminate the rejected request; a redelivery is rejected again with the same event id", "error", err.Error())
	}
	return nil
}

// duplicateOf answers a copy of a recorded request that this worker would reject: the run
// goes on, and the copy is ignored with a run.duplicate event that says why.
func (in *Intake) duplicateOf(ctx context.Context, msg jetstream.Msg, ref outbox.RunRef, seq uint64, rej *rejection, log *slog.Logger) error {
	ev := outbox.New(ref, contract.KindRunDuplicate, fmt.Sprint(seq))
	ev.Message = fmt.Sprintf("request %s was received before (run %s): this copy is ignored (%s: %s)", ref.RequestID, ref.Run, rej.code, rej.msg)
	if err := pgx.BeginFunc(ctx, in.Store.Pool, func(tx pgx.Tx) error {
		return outbox.Insert(ctx, tx, in.Store.Schema(), ev)
	}); err != nil {
		return err
	}
	log.Info("copy of a recorded request ignored", "code", rej.code, "reason", rej.msg)
	in.observer().RunFinished("duplicate")
	if err := msg.Term(); err != nil {
		log.Warn("could not terminate the copy; a redelivery is answered again with the same event id", "error", err.Error())
	}
	return nil
}

// accept records an accepted request. The run keeps the hash of its body, not of the
// message: a copy under the same id that asks for the same thing (re-encoded, or signed again)
// is a duplicate; one that asks for something else is refused.
func (in *Intake) accept(ctx context.Context, msg jetstream.Msg, req *contract.Request, body []byte, ref outbox.RunRef, seq uint64, log *slog.Logger) error {
	sum := sha256.Sum256(body)
	run := &runstore.Run{
		ID: ref.Run, RequestID: req.ID, Target: req.Target, Direction: req.Direction,
		DryRun: req.DryRun, Request: msg.Data(), RequestSHA256: hex.EncodeToString(sum[:]),
	}
	var existing *runstore.Run
	err := pgx.BeginFunc(ctx, in.Store.Pool, func(tx pgx.Tx) error {
		// The target's admission lock, before the insert: another worker's transaction for
		// this target commits (and admits) before this one takes its seq, or waits until this
		// one has. So runs of a target start in the order the queue database recorded them.
		if err := in.Store.LockTarget(ctx, tx, req.Target); err != nil {
			return err
		}
		created, ex, err := in.Store.InsertRun(ctx, tx, run)
		if err != nil {
			return err
		}
		existing = ex
		if !created {
			ev := duplicate(ref, seq, "run "+ex.ID, ex.Status, ex.RequestSHA256 == run.RequestSHA256)
			return outbox.Insert(ctx, tx, in.Store.Schema(), ev)
		}
		accepted := outbox.New(ref, contract.KindRunAccepted)
		accepted.Message = fmt.Sprintf("%s of %d migration(s) accepted", req.Direction, len(req.Migrations))
		if err := outbox.Insert(ctx, tx, in.Store.Schema(), accepted); err != nil {
			return err
		}
		return in.Admitter.Admit(ctx, tx, run)
	})
	if err != nil {
		return err
	}
	if existing != nil {
		log.Info("duplicate request ignored", "existing_status", existing.Status)
		in.observer().RunFinished("duplicate")
	} else {
		log.Info("request accepted", "direction", req.Direction, "migrations", len(req.Migrations))
		if md, err := msg.Metadata(); err == nil {
			in.observer().IntakeLag(time.Since(md.Timestamp))
		}
	}
	// The run is recorded. If this ack is lost, the message comes again and the unique key
	// on (target, request id) recognises it as a duplicate.
	if err := in.Fault.At(ctx, fault.IntakeAfterCommit, fault.Where{Run: run.ID}); err != nil {
		return err
	}
	if err := msg.Ack(); err != nil {
		log.Debug("ack failed; a redelivery will be recognised as a duplicate", "error", err.Error())
	}
	return nil
}

// duplicate is the run.duplicate of a copy of the request ref names, which recorded before
// (what, now in state), asked for the same thing (same) or for something else.
func duplicate(ref outbox.RunRef, seq uint64, what, state string, same bool) contract.Event {
	ev := outbox.New(ref, contract.KindRunDuplicate, fmt.Sprint(seq))
	if same {
		ev.Message = fmt.Sprintf("request %s was received before (%s, %s): nothing more to do", ref.RequestID, what, state)
	} else {
		ev.Message = fmt.Sprintf("request id %s reused with a different body: %s (%s) has the first one, this one is ignored; publish it with a new id", ref.RequestID, what, state)
		ev.Error = &contract.EventError{Code: contract.CodeDuplicateRequest, Message: ev.Message}
	}
	return ev
}

// recorded reports whether the request id was recorded before on the message's subject: as a
// run of the target, or a rollout of the group.
func (in *Intake) recorded(ctx context.Context, h *handling, requestID string) (bool, error) {
	if h.group {
		return in.Store.RolloutExists(ctx, h.ref.Target, requestID)
	}
	return in.Store.RunExists(ctx, h.ref.Target, requestID)
}

// acceptRollout records a request naming a target group as a rollout over the group's members
// as they resolve now, and starts it, in one transaction; then acknowledges the message. A
// copy of a recorded request is a duplicate, like a run's.
func (in *Intake) acceptRollout(ctx context.Context, msg jetstream.Msg, req *contract.Request, body []byte, ref outbox.RunRef, seq uint64, log *slog.Logger) error {
	sum := sha256.Sum256(body)
	r := &runstore.Rollout{
		ID: ref.Run, Group: req.Group, RequestID: req.ID, DryRun: req.DryRun, Direction: req.Direction,
		Request: msg.Data(), RequestSHA256: hex.EncodeToString(sum[:]), State: contract.RolloutRunning,
	}
	if known, err := in.Store.RolloutExists(ctx, req.Group, req.ID); err != nil {
		return err
	} else if !known {
		members, policy, err := in.Rollouts.ResolveGroup(ctx, req.Group)
		var de *contract.DecodeError
		if errors.As(err, &de) {
			return in.reject(ctx, msg, ref, seq, &rejection{code: de.Code, msg: de.Message}, log)
		}
		if err != nil {
			return err
		}
		if req.Rollout != nil {
			policy = req.Rollout.Over(policy)
		}
		sizes, canary := policy.WaveSizes(len(members), req.DryRun)
		var waveOf []int
		for w, n := range sizes {
			for range n {
				waveOf = append(waveOf, w)
			}
		}
		r.Policy, r.Waves, r.Canary, r.Members = policy, len(sizes), canary, members[:len(waveOf)]
		r.WaveOf = waveOf
	}
	var existing *runstore.Rollout
	err := pgx.BeginFunc(ctx, in.Store.Pool, func(tx pgx.Tx) error {
		var created bool
		var err error
		if r.Members != nil {
			created, existing, err = in.Store.InsertRollout(ctx, tx, r)
		} else {
			existing, err = in.Store.FindRollout(ctx, tx, req.Group, req.ID)
		}
		if err != nil {
			return err
		}
		if !created {
			ev := duplicate(ref, seq, "rollout "+existing.ID, existing.State, existing.RequestSHA256 == r.RequestSHA256)
			return outbox.Insert(ctx, tx, in.Store.Schema(), ev)
		}
		accepted := outbox.New(ref, contract.KindRunAccepted)
		accepted.Message = fmt.Sprintf("%s of %d migration(s) accepted as a rollout over %d target(s) of group %s", req.Direction, len(req.Migrations), len(r.Members), req.Group)
		if err := outbox.Insert(ctx, tx, in.Store.Schema(), accepted); err != nil {
			return err
		}
		return in.Rollouts.StartRollout(ctx, tx, r)
	})
	if err != nil {
		return err
	}
	if existing != nil {
		log.Info("duplicate request ignored", "existing_state", existing.State)
		in.observer().RunFinished("duplicate")
	} else {
		log.Info("rollout accepted", "group", req.Group, "targets", len(r.Members), "waves", r.Waves, "dry_run", req.DryRun)
	}
	if err := msg.Ack(); err != nil {
		log.Debug("ack failed; a redelivery will be recognised as a duplicate", "error", err.Error())
	}
	return nil
}

func redeliveryDelay(msg jetstream.Msg) time.Duration {
	n := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		n = md.NumDelivered
	}
	d := time.Second << min(n-1, 5)
	return min(d, 30*time.Second)
}

// hasNULEscape reports whether JSON text holds the escape \u0000 (a backslash-escaped
// backslash followed by "u0000" is not one).
func hasNULEscape(data []byte) bool {
	for i := 0; ; {
		j := bytes.Index(data[i:], []byte(`u0000`))
		if j < 0 {
			return false
		}
		at := i + j
		slashes := 0
		for k := at - 1; k >= 0 && data[k] == '\\'; k-- {
			slashes++
		}
		if slashes%2 == 1 {
			return true
		}
		i = at + 1
	}
}
