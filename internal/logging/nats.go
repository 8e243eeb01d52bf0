package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"sync/atomic"
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
// front of it writes each record with one Write; Write copies the bytes into the bounded
// queue without ever blocking, and the goroutine publishes them in order. Until a publisher
// is set the records wait in the queue, so the records of the start-up reach NATS once the
// connection is up, as long as they fit.
type natsSink struct {
	queue
	subjects [4]string // debug, info, warn, error

	pub     atomic.Pointer[publisherBox]
	changed chan struct{} // wakes the goroutine when the publisher changes; capacity 1
}

type publisherBox struct{ p Publisher }

func newNATSSink(c NATSConfig, s *sink) *natsSink {
	n := &natsSink{
		queue:   newQueue(s, c.Buffer, errBufferFull),
		changed: make(chan struct{}, 1),
	}
	for i, l := range []string{"debug", "info", "warn", "error"} {
		n.subjects[i] = c.SubjectPrefix + "." + l
	}
	go n.run()
	return n
}

// Write takes one record from the JSON handler, without its trailing newline. It never
// blocks: a record that does not fit is refused with errBufferFull.
func (n *natsSink) Write(p []byte) (int, error) {
	return n.enqueue(p, true)
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
