// Package logging builds the worker's *slog.Logger from a Config: records fan out with
// slog-multi to several sinks (console, a rotated JSON file, NATS subjects), each with its own
// level, so that a slow or dead sink never slows hook execution or breaks the other sinks.
//
// Each sink is a slog handler wrapped by slogmulti.RecoverHandlerError: a sink that fails or
// panics loses that record, which is counted, and the others still get it. No sink writes in
// the caller's goroutine: each only copies the record into a bounded buffer (4096 records for
// the console and the file, Config.NATS.Buffer for NATS) that one goroutine per sink writes or
// publishes from, in order, dropping and counting what does not fit; so a stalled standard
// error pipe, a slow disk or a dead NATS server costs the logger a copy, never a wait. Flush
// waits until the buffers are written out. Lost records are reported as the
// confiture_log_records_dropped_total metric and, every DropWarnInterval, by a WARN record
// log_records_dropped on the other sinks.
//
// Every sink redacts secrets: passwords of URLs and of key=value connection strings in any
// string or error value, and the whole value of attributes whose key names a password, secret
// or token.
package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	slogmulti "github.com/samber/slog-multi"
)

// Sink names, as the metric's sink label and the warning's sink attribute spell them.
const (
	SinkConsole = "console"
	SinkFile    = "file"
	SinkNATS    = "nats"
)

// MsgRecordsDropped is the message of the periodic warning about lost records.
const MsgRecordsDropped = "log_records_dropped"

// defaultCloseWait bounds how long Close waits for a publisher, or a console or file write,
// that does not return.
const defaultCloseWait = 5 * time.Second

// Logging is the worker's logger and the sinks behind it.
type Logging struct {
	// Logger sends each record to every sink whose level it reaches.
	Logger *slog.Logger

	sinks   []*sink
	console *asyncWriter // in front of stderr
	fileOut *asyncWriter // in front of file; nil without a file sink
	file    *fileWriter
	nats    *natsSink

	interval     time.Duration
	reporterStop chan struct{}
	reporterDone chan struct{}
	closeWait    time.Duration
	closeOnce    sync.Once
}

// sink is one destination with its drop counter.
type sink struct {
	name    string
	handler slog.Handler // level-filtered and wrapped with error recovery
	dropped atomic.Uint64
	lastErr atomic.Pointer[string]

	// quiet is handler for the drop reports of the other sinks: a report this sink loses is
	// counted, and marked reported at once, so that two broken sinks do not report each
	// other's reports forever.
	quiet    slog.Handler
	others   *slog.Logger // the other sinks' quiet handlers: where this one's drops are reported
	reported uint64       // dropped as of the last report; only the reporter goroutine uses it
}

// drop counts one lost record; err, when known, is reported as the sink's last error.
func (s *sink) drop(err error) {
	if err != nil {
		msg := err.Error()
		s.lastErr.Store(&msg)
	}
	s.dropped.Add(1)
}

// extraSink adds a handler as a sink of its own; tests use it to add a failing sink.
type extraSink struct {
	name    string
	handler slog.Handler
}

// New builds the sinks of c and the logger over them. The console sink writes to stderr; with
// format "auto" it is text when isTerminal and JSON otherwise. The NATS sink, when enabled,
// buffers records until SetPublisher gives it a connection. Close releases what New started.
func New(c Config, stderr io.Writer, isTerminal bool) (*Logging, error) {
	return newLogging(c, stderr, isTerminal)
}

func newLogging(c Config, stderr io.Writer, isTerminal bool, extra ...extraSink) (*Logging, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.WithDefaults()
	l := &Logging{interval: c.DropWarnInterval, closeWait: defaultCloseWait}

	// The file is opened first: a bad path must not leave the console's goroutine running.
	var fw *fileWriter
	if c.File.Path != "" {
		w, err := newFileWriter(c.File)
		if err != nil {
			return nil, err
		}
		fw = w
	}

	consoleSink := &sink{name: SinkConsole}
	l.console = newAsyncWriter(consoleSink, stderr, asyncBuffer)
	consoleLevel, _ := ParseLevel(c.Console.Level)
	opts := &slog.HandlerOptions{Level: consoleLevel, ReplaceAttr: redactAttr}
	if c.Console.Format == FormatText || (c.Console.Format == FormatAuto && isTerminal) {
		l.addSink(consoleSink, slog.NewTextHandler(l.console, opts))
	} else {
		l.addSink(consoleSink, slog.NewJSONHandler(l.console, opts))
	}

	if fw != nil {
		s := &sink{name: SinkFile}
		l.file = fw
		l.fileOut = newAsyncWriter(s, fw, asyncBuffer)
		level, _ := ParseLevel(c.File.Level)
		l.addSink(s, slog.NewJSONHandler(l.fileOut, &slog.HandlerOptions{Level: level, ReplaceAttr: redactAttr}))
	}

	if c.NATS.Enabled {
		s := &sink{name: SinkNATS}
		l.nats = newNATSSink(c.NATS, s)
		level, _ := ParseLevel(c.NATS.Level)
		l.addSink(s, slog.NewJSONHandler(l.nats, &slog.HandlerOptions{Level: level, ReplaceAttr: redactAttr}))
	}

	for _, e := range extra {
		l.add(e.name, e.handler)
	}

	handlers := make([]slog.Handler, len(l.sinks))
	for i, s := range l.sinks {
		handlers[i] = s.handler
		var others []slog.Handler
		for _, o := range l.sinks {
			if o != s {
				others = append(others, o.quiet)
			}
		}
		s.others = slog.New(slogmulti.Fanout(others...))
	}
	// Each handler applies its own level in Enabled, which Fanout asks before handing it a
	// record: that is the routing by level, without a Router's extra predicate calls.
	l.Logger = slog.New(slogmulti.Fanout(handlers...))

	if l.interval > 0 {
		l.reporterStop = make(chan struct{})
		l.reporterDone = make(chan struct{})
		go l.report()
	}
	return l, nil
}

func (l *Logging) add(name string, h slog.Handler) {
	l.addSink(&sink{name: name}, h)
}

func (l *Logging) addSink(s *sink, h slog.Handler) {
	// slog.Logger discards what Handle returns, so the recovery callback is the only place a
	// failed write or a panic is seen: count it there. The error still goes up to Fanout,
	// which joins it with the others' and hands it to a Logger that ignores it.
	s.handler = slogmulti.RecoverHandlerError(func(_ context.Context, _ slog.Record, err error) {
		s.drop(err)
	})(h)
	s.quiet = slogmulti.RecoverHandlerError(func(_ context.Context, _ slog.Record, err error) {
		s.drop(err)
		s.reported++
	})(h)
	l.sinks = append(l.sinks, s)
}

// SetPublisher gives the NATS sink its connection; until then its records wait in the
// buffer (Config.NATS.Buffer records; more are dropped and counted) and are published once it
// is set. A nil p takes the connection away again, so records buffer instead of failing while
// the connection closes. SetPublisher does nothing when the NATS sink is off.
func (l *Logging) SetPublisher(p Publisher) {
	if l.nats != nil {
		l.nats.setPublisher(p)
	}
}

// Flush waits until the console and file sinks have written, and the NATS sink has handed to
// the publisher, every record logged so far, or until ctx is done. Call it before closing the
// NATS connection, then SetPublisher(nil); tests call it before reading a sink's output.
func (l *Logging) Flush(ctx context.Context) error {
	var errs []error
	for _, q := range l.queues() {
		if err := q.flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush the %s log sink: %w", q.s.name, err))
		}
	}
	return errors.Join(errs...)
}

// queues are the buffers of the console, file and NATS sinks, those configured.
func (l *Logging) queues() []*queue {
	qs := []*queue{&l.console.queue}
	if l.fileOut != nil {
		qs = append(qs, &l.fileOut.queue)
	}
	if l.nats != nil {
		qs = append(qs, &l.nats.queue)
	}
	return qs
}

// Dropped is how many records have been lost by all sinks together: a sink's buffer was full,
// a publish or a write failed, or a sink panicked.
func (l *Logging) Dropped() uint64 {
	var n uint64
	for _, s := range l.sinks {
		n += s.dropped.Load()
	}
	return n
}

// Collectors are the metrics of the sinks, to register with the worker's Prometheus registry:
// confiture_log_records_dropped_total{sink="console"|"file"|"nats"}, one per configured sink.
func (l *Logging) Collectors() []prometheus.Collector {
	cs := make([]prometheus.Collector, 0, len(l.sinks))
	for _, s := range l.sinks {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "confiture_log_records_dropped_total",
			Help:        "Log records a sink lost: its buffer full, a publish or a write failed, or the sink panicked.",
			ConstLabels: prometheus.Labels{"sink": s.name},
		}, func() float64 { return float64(s.dropped.Load()) }))
	}
	return cs
}

// Close publishes what the NATS buffer still holds (waiting at most 5 seconds for a publisher
// that does not return), reports drops one last time, writes what the console and file
// buffers hold (waiting at most 5 seconds more for writes that do not return; what is left
// then is dropped), stops the goroutines, and closes the file. It is safe to call more than
// once. Afterwards the console sink still writes, in the caller's goroutine unless a stuck
// write still holds the console's; records for the file and NATS sinks are dropped.
func (l *Logging) Close() error {
	var err error
	l.closeOnce.Do(func() {
		if l.nats != nil {
			closeQueues(l.closeWait, &l.nats.queue)
		}
		if l.reporterStop != nil {
			close(l.reporterStop)
			<-l.reporterDone
		}
		// The NATS queue, last, is closed already.
		qs := l.queues()
		if l.nats != nil {
			qs = qs[:len(qs)-1]
		}
		closeQueues(l.closeWait, qs...)
		if l.file != nil {
			err = l.file.Close()
		}
	})
	return err
}

// report warns about lost records every interval, and once more when Close stops it.
func (l *Logging) report() {
	defer close(l.reporterDone)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.reportDrops()
		case <-l.reporterStop:
			l.reportDrops()
			return
		}
	}
}

func (l *Logging) reportDrops() {
	for _, s := range l.sinks {
		total := s.dropped.Load()
		if total == s.reported {
			continue
		}
		attrs := []slog.Attr{
			slog.String("sink", s.name),
			slog.Uint64("dropped", total-s.reported),
			slog.Uint64("total", total),
		}
		if msg := s.lastErr.Load(); msg != nil {
			attrs = append(attrs, slog.String("error", *msg))
		}
		s.reported = total
		s.others.LogAttrs(context.Background(), slog.LevelWarn, MsgRecordsDropped, attrs...)
	}
}

// Interface guards.
var (
	_ io.Writer = (*natsSink)(nil)
	_ io.Writer = (*asyncWriter)(nil)
	_ io.Writer = (*fileWriter)(nil)
)
