package logging

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
)

// Publisher sends one message. A *nats.Conn satisfies it (core NATS, not JetStream: a log
// record is not worth an acknowledgement round trip). Publish must not keep data after it
// returns.
type Publisher interface {
	Publish(subject string, data []byte) error
}

var (
	errBufferFull  = errors.New("buffer full: the NATS publisher is slow or not connected")
	errNoPublisher = errors.New("closed before a NATS publisher was set")
)

// natsSink is the NATS sink's writer and its publishing goroutine. The slog.JSONHandler in
// front of it writes each record with one Write; Write copies the bytes into a bounded
// channel without ever blocking, and the goroutine publishes them in order. Until a publisher
// is set the records wait in the channel, so the records of the start-up reach NATS once the
// connection is up, as long as they fit.
type natsSink struct {
	s        *sink
	ch       chan []byte
	subjects [4]string // debug, info, warn, error

	pub     atomic.Pointer[publisherBox]
	changed chan struct{} // wakes the goroutine when the publisher changes; capacity 1

	queued    atomic.Uint64 // records accepted into ch
	processed atomic.Uint64 // records published or dropped after leaving ch

	closed atomic.Bool
	stop   chan struct{}
	exited chan struct{}
}

type publisherBox struct{ p Publisher }

func newNATSSink(c NATSConfig, s *sink) *natsSink {
	n := &natsSink{
		s:       s,
		ch:      make(chan []byte, c.Buffer),
		changed: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		exited:  make(chan struct{}),
	}
	for i, l := range []string{"debug", "info", "warn", "error"} {
		n.subjects[i] = c.SubjectPrefix + "." + l
	}
	go n.run()
	return n
}

// Write takes one record from the JSON handler. It never blocks: a record that does not fit
// is refused with errBufferFull, which the handler returns and the sink's recovery counts.
func (n *natsSink) Write(p []byte) (int, error) {
	if n.closed.Load() {
		return 0, errClosed
	}
	// Test for room before copying, so that a dead server costs no allocation per record.
	if len(n.ch) == cap(n.ch) {
		return 0, errBufferFull
	}
	// The handler reuses p once Write returns.
	b := bytes.Clone(bytes.TrimSuffix(p, []byte("\n")))
	select {
	case n.ch <- b:
		n.queued.Add(1)
		return len(p), nil
	default:
		return 0, errBufferFull
	}
}

func (n *natsSink) setPublisher(p Publisher) {
	if p == nil {
		n.pub.Store(nil)
	} else {
		n.pub.Store(&publisherBox{p})
	}
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

func (n *natsSink) run() {
	defer close(n.exited)
	// pending is a record taken from the channel while the publisher was being taken away.
	var pending []byte
	for {
		box := n.pub.Load()
		if box == nil {
			select {
			case <-n.changed:
				continue
			case <-n.stop:
				n.drain(pending)
				return
			}
		}
		if pending == nil {
			select {
			case pending = <-n.ch:
			case <-n.changed:
				continue
			case <-n.stop:
				n.drain(nil)
				return
			}
			// A SetPublisher(nil) that happened before this record was logged holds it back.
			if box = n.pub.Load(); box == nil {
				continue
			}
		}
		n.publish(box.p, pending)
		pending = nil
	}
}

// drain publishes what is left at Close, or counts it as dropped when there is no publisher.
func (n *natsSink) drain(pending []byte) {
	for {
		b := pending
		pending = nil
		if b == nil {
			select {
			case b = <-n.ch:
			default:
				return
			}
		}
		if box := n.pub.Load(); box != nil {
			n.publish(box.p, b)
		} else {
			n.s.drop(errNoPublisher)
			n.processed.Add(1)
		}
	}
}

func (n *natsSink) publish(p Publisher, b []byte) {
	defer n.processed.Add(1)
	defer func() {
		if r := recover(); r != nil {
			n.s.drop(errors.New("publisher panicked"))
		}
	}()
	if err := p.Publish(n.subjects[levelIndex(b)], b); err != nil {
		n.s.drop(err)
	}
}

// flush waits until every record accepted so far has been published (or dropped).
func (n *natsSink) flush(ctx context.Context) error {
	target := n.queued.Load()
	if n.processed.Load() >= target {
		return nil
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.exited:
			return nil
		case <-t.C:
			if n.processed.Load() >= target {
				return nil
			}
		}
	}
}

// close stops the goroutine after it has published what is left, waiting at most wait for a
// publisher that does not return; what is still in the channel then is counted as dropped.
func (n *natsSink) close(wait time.Duration) {
	n.closed.Store(true)
	close(n.stop)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-n.exited:
	case <-t.C:
	}
	for {
		select {
		case <-n.ch:
			n.s.drop(errClosed)
		default:
			return
		}
	}
}

var levelKey = []byte(`"level":"`)

// levelIndex reads the level a JSON handler wrote in b (debug 0, info 1, warn 2, error 3).
// The built-in attributes come first, so the first "level" key is the record's.
func levelIndex(b []byte) int {
	i := bytes.Index(b, levelKey)
	if i < 0 {
		return 1
	}
	rest := b[i+len(levelKey):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return 1
	}
	var l slog.Level
	if err := l.UnmarshalText(rest[:end]); err != nil {
		return 1
	}
	switch {
	case l < slog.LevelInfo:
		return 0
	case l < slog.LevelWarn:
		return 1
	case l < slog.LevelError:
		return 2
	}
	return 3
}
