package logging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// asyncBuffer is how many records the console and file sinks hold for their writers.
const asyncBuffer = 4096

// queue is the hand-off between the logger and the goroutine of one sink: a bounded channel
// of records that the logger fills without ever blocking, counters that Flush compares, and
// the channels that stop the goroutine. The console and file sinks (asyncWriter) and the NATS
// sink (natsSink) each run one goroutine that empties it in order.
type queue struct {
	s    *sink
	ch   chan []byte
	full error // what a record that does not fit is refused with

	queued    atomic.Uint64 // records accepted into ch
	processed atomic.Uint64 // records written, published or dropped after leaving ch

	closed atomic.Bool
	stop   chan struct{}
	exited chan struct{} // closed by the goroutine when it returns
}

func newQueue(s *sink, size int, full error) queue {
	return queue{
		s:      s,
		ch:     make(chan []byte, size),
		full:   full,
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
	}
}

var newline = []byte("\n")

// enqueue copies p (without its trailing newline when trim) into the channel. It never
// blocks: a record that does not fit is refused with q.full, which the slog handler returns
// and the sink's recovery counts.
func (q *queue) enqueue(p []byte, trim bool) (int, error) {
	if q.closed.Load() {
		return 0, errClosed
	}
	// Test for room before copying, so that a dead sink costs no allocation per record.
	if len(q.ch) == cap(q.ch) {
		return 0, q.full
	}
	b := p
	if trim {
		b = bytes.TrimSuffix(p, newline)
	}
	// The handler reuses p once Write returns.
	select {
	case q.ch <- bytes.Clone(b):
		q.queued.Add(1)
		return len(p), nil
	default:
		return 0, q.full
	}
}

// flush waits until every record accepted so far has been processed (or dropped), until the
// goroutine has stopped, or until ctx is done.
func (q *queue) flush(ctx context.Context) error {
	target := q.queued.Load()
	if q.processed.Load() >= target {
		return nil
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-q.exited:
			return nil
		case <-t.C:
			if q.processed.Load() >= target {
				return nil
			}
		}
	}
}

// closeQueues stops the goroutines of qs together, gives them at most wait to process what
// they hold, and counts as dropped what is still in their channels then.
func closeQueues(wait time.Duration, qs ...*queue) {
	for _, q := range qs {
		q.closed.Store(true)
		close(q.stop)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, q := range qs {
		select {
		case <-q.exited:
		case <-ctx.Done():
		}
		q.dropLeft()
	}
}

// dropLeft counts what is left in the channel as dropped.
func (q *queue) dropLeft() {
	for {
		select {
		case <-q.ch:
			q.s.drop(errClosed)
			q.processed.Add(1)
		default:
			return
		}
	}
}

// asyncWriter is the console's or the file's writer: the slog handler in front of it writes
// each record with one Write, which only copies the record into the queue; one goroutine
// writes the records to w in order. A w that is slow or stalled (a log shipper that stopped
// reading the pipe, a slow disk) fills the queue, and further records are dropped and
// counted instead of blocking the logger.
type asyncWriter struct {
	queue
	w io.Writer
}

func newAsyncWriter(s *sink, w io.Writer, size int) *asyncWriter {
	a := &asyncWriter{
		queue: newQueue(s, size, fmt.Errorf("buffer full: the %s sink's writer is slow or stalled", s.name)),
		w:     w,
	}
	go a.run()
	return a
}

// Write queues one record. Once Close has stopped the goroutine, it writes to w itself,
// as nothing else writes any more (the console sink keeps working after Close; the file's
// writer refuses); while a stuck write still holds the goroutine, it drops the record.
func (a *asyncWriter) Write(p []byte) (int, error) {
	if a.closed.Load() {
		select {
		case <-a.exited:
			return a.w.Write(p)
		default:
			return 0, errClosed
		}
	}
	return a.enqueue(p, false)
}

func (a *asyncWriter) run() {
	defer close(a.exited)
	for {
		select {
		case b := <-a.ch:
			a.write(b)
		case <-a.stop:
			for {
				select {
				case b := <-a.ch:
					a.write(b)
				default:
					return
				}
			}
		}
	}
}

func (a *asyncWriter) write(b []byte) {
	defer a.processed.Add(1)
	defer func() {
		if r := recover(); r != nil {
			a.s.drop(errors.New("writer panicked"))
		}
	}()
	if _, err := a.w.Write(b); err != nil {
		a.s.drop(err)
	}
}
