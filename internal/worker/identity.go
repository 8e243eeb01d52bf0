package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/confiture-io/confiture-worker/internal/redact"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// The workers sharing a queue database must relay its outbox to one NATS system: the relay of
// whichever worker holds the outbox lock publishes every worker's events, so a worker connected
// to another system would send its runs' events where its clients do not look, and the other
// workers' events to its own server. A worker registers in the queue database with the
// identity of its NATS system (bus.SystemID) and refuses to start while a live worker uses
// another one; with none live, it takes the queue database over to its system and says so.

// ErrNATSSystemConflict is what a worker refuses to start with when a live worker on its queue
// database is connected to another NATS system (see NATSSystemConflictError).
var ErrNATSSystemConflict = errors.New("a live worker on this queue database is connected to another NATS system")

// fixNATSSystemConflict is the advice every refusal ends with.
const fixNATSSystemConflict = "point this worker at the same NATS server or cluster (nats_url), or give it a queue database or queue_schema/river_schema of its own"

// NATSSystemConflictError is the refusal to start: the live workers connected to another NATS
// system than this one. It matches ErrNATSSystemConflict.
type NATSSystemConflictError struct {
	// QueueSchema is the schema of the worker table in the queue database.
	QueueSchema string
	// This is the worker refused; Others are the live workers on other NATS systems.
	This   runstore.WorkerInfo
	Others []runstore.WorkerInfo
	// Now is the queue database's clock, for how long ago the others were seen.
	Now time.Time
	// Liveness is how long a worker counts as live after its last heartbeat.
	Liveness time.Duration
}

func (e *NATSSystemConflictError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (queue_schema %s): ", ErrNATSSystemConflict, e.QueueSchema)
	for i, o := range e.Others {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "the worker on host %s (pid %d, last seen %s ago) relays its events to NATS system %s at %s",
			o.Host, o.PID, e.Now.Sub(o.SeenAt).Round(time.Millisecond), o.NATSSystem, redact.URL(o.NATSURL))
	}
	fmt.Fprintf(&b, ", and this worker is connected to NATS system %s at %s; each would relay the other's events to its own NATS server, where submit --wait and observers never see them. To fix it, %s (a worker that died stops counting %s after it was last seen)",
		e.This.NATSSystem, redact.URL(e.This.NATSURL), fixNATSSystemConflict, e.Liveness)
	return b.String()
}

// Is reports whether target is ErrNATSSystemConflict.
func (e *NATSSystemConflictError) Is(target error) bool { return target == ErrNATSSystemConflict }

// admitter returns the policy a worker registers under: no live worker may be connected to
// another NATS system than me.
func admitter(me runstore.WorkerInfo, schema string, liveness time.Duration) func(runstore.Roster) error {
	return func(r runstore.Roster) error {
		var others []runstore.WorkerInfo
		for _, o := range r.Live {
			if o.NATSSystem != me.NATSSystem {
				others = append(others, o)
			}
		}
		if len(others) == 0 {
			return nil
		}
		return &NATSSystemConflictError{QueueSchema: schema, This: me, Others: others, Now: r.Now, Liveness: liveness}
	}
}

// register records this worker in the queue database, or refuses to start (leaving the queue
// database as it was), then heartbeats in the background until closeAll. Call it once the
// streams exist (the system's identity is known) and before the relay or intake start.
func (w *Worker) register(ctx context.Context, store *runstore.Store) error {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	url := w.bus.RedactedURL()
	if w.bus.Embedded() {
		url += " (embedded)" // on the worker's host: 127.0.0.1 means that host
	}
	me := runstore.WorkerInfo{ID: w.id, Host: host, PID: os.Getpid(), NATSSystem: w.bus.SystemID(), NATSURL: url}
	roster, err := store.RegisterWorker(ctx, me, w.cfg.LivenessWindow, admitter(me, w.cfg.QueueSchema, w.cfg.LivenessWindow))
	if err != nil {
		if errors.Is(err, ErrNATSSystemConflict) {
			return err
		}
		return fmt.Errorf("queue database: %s", w.redact(err.Error()))
	}
	w.store, w.me = store, &me
	w.steady.Store(time.Now().UnixNano())
	w.logTakeover(me, roster)
	hbCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.heartbeatCancel, w.heartbeatDone = cancel, make(chan struct{})
	go func() {
		defer close(w.heartbeatDone)
		w.heartbeat(hbCtx, me)
	}()
	return nil
}

// logTakeover warns when the queue database's events went to another NATS system until now.
// A user moving from the embedded NATS server to a cluster stops the old workers and starts
// new ones; this is the one record of it.
func (w *Worker) logTakeover(me runstore.WorkerInfo, r runstore.Roster) {
	if r.Last == nil || r.Last.System == me.NATSSystem {
		return
	}
	from, to := r.Last.System+" at "+redact.URL(r.Last.URL), me.NATSSystem+" at "+me.NATSURL
	w.log.Warn(fmt.Sprintf("events of this queue database went to NATS system %s until now and go to NATS system %s from now on: observers of the old system see no new events; events not yet published (%d) go to the new one",
		from, to, r.Unpublished),
		"previous_nats_system", r.Last.System, "previous_nats_url", redact.URL(r.Last.URL),
		"previous_since", r.Last.Since, "nats_system", me.NATSSystem, "nats_url", me.NATSURL,
		"unpublished_events", r.Unpublished, "queue_schema", w.cfg.QueueSchema)
}

// heartbeat keeps this worker's row live until ctx ends.
func (w *Worker) heartbeat(ctx context.Context, me runstore.WorkerInfo) {
	ticker := time.NewTicker(w.cfg.HeartbeatInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			w.beat(ctx, me)
		}
	}
}

// beat is one heartbeat. A worker taken for dead (its row deleted by a worker that started
// while this one missed its heartbeats) registers again, under the same check as at start;
// while it may not, it says so once (and its relay, which cannot be stopped from here, may
// publish to the wrong system: a refusal at start is the real guard).
func (w *Worker) beat(ctx context.Context, me runstore.WorkerInfo) {
	report := func(problem string, log func(string, ...any), msg string, args ...any) {
		if problem != w.beatProblem {
			log(msg, args...)
		}
		w.beatProblem = problem
	}
	// A heartbeat stuck for the liveness window (a connection that died without a word) is
	// given up: the next one tries again.
	bctx, cancel := context.WithTimeout(ctx, w.cfg.LivenessWindow)
	defer cancel()
	err := w.store.Heartbeat(bctx, me.ID)
	if errors.Is(err, runstore.ErrWorkerGone) {
		var r runstore.Roster
		r, err = w.store.RegisterWorker(bctx, me, w.cfg.LivenessWindow, admitter(me, w.cfg.QueueSchema, w.cfg.LivenessWindow))
		switch {
		case errors.Is(err, ErrNATSSystemConflict):
			report("conflict", w.log.Error, "this worker missed its heartbeats, was taken for dead, and may not register again: stop it", "error", err.Error())
			return
		case err == nil:
			w.log.Warn("this worker missed its heartbeats for longer than liveness_window and was taken for dead; registered again",
				"liveness_window", w.cfg.LivenessWindow.String())
			w.logTakeover(me, r)
		}
	}
	switch {
	case err != nil && ctx.Err() != nil:
		// Stopping.
	case err != nil:
		w.steady.Store(0)
		report("error", w.log.Warn, "worker heartbeat failed; retrying", "error", w.redact(err.Error()))
	default:
		w.steady.CompareAndSwap(0, time.Now().UnixNano())
		report("", w.log.Info, "worker heartbeat recovered")
	}
}

// steadySince is since when this worker's heartbeats have succeeded without a miss (zero while
// they fail), for the reconciler (jobs.Config.SteadySince).
func (w *Worker) steadySince() time.Time {
	if n := w.steady.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// unregister stops the heartbeat and deletes this worker's row. Call it once the relay has
// stopped: until then, this worker's events still go to its NATS system.
func (w *Worker) unregister() {
	if w.heartbeatCancel != nil {
		w.heartbeatCancel()
		<-w.heartbeatDone
		w.heartbeatCancel = nil
	}
	if w.me == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.store.UnregisterWorker(ctx, w.me.ID); err != nil {
		w.log.Warn("could not remove this worker from the worker table; it counts as live until liveness_window has passed",
			"error", w.redact(err.Error()), "liveness_window", w.cfg.LivenessWindow.String())
	}
	w.me = nil
}
