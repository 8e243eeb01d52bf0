// Package bus connects the worker to NATS JetStream: to a server given by URL, or to an
// embedded nats-server with JetStream started in-process when none is given. It declares the
// contract's streams and publishes outbox events.
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/natsauth"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/redact"
)

// Options say which NATS to use.
type Options struct {
	// URL of the NATS server. Empty starts an embedded server.
	URL string
	// Name is the connection name servers show. Defaults to "confiture-worker".
	Name string
	// StoreDir is where the embedded server keeps JetStream data. Required when URL is empty.
	StoreDir string
	// EmbeddedHost and EmbeddedPort are where the embedded server listens for clients such as
	// submit. Defaults to 127.0.0.1:4222; when that port is taken, a free port is used.
	// EmbeddedPort -1 always picks a free port.
	EmbeddedHost string
	EmbeddedPort int
	// Auth secures the connection to the server at URL: credentials and TLS. The embedded
	// server takes no credentials (it listens on loopback only); Auth is ignored for it.
	Auth   natsauth.Options
	Logger *slog.Logger
}

// Bus is a NATS connection with JetStream, and the embedded server if one was started.
type Bus struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	server *server.Server
	url    string
	log    *slog.Logger
	// systemID identifies the NATS system events go to; set by EnsureStreams.
	systemID string
}

// Connect connects to opts.URL, or starts an embedded server and connects to it.
func Connect(ctx context.Context, opts Options) (*Bus, error) {
	if opts.Name == "" {
		opts.Name = "confiture-worker"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Bus{url: opts.URL, log: opts.Logger}
	var auth []nats.Option
	if opts.URL == "" {
		if !opts.Auth.IsZero() {
			b.log.Warn("NATS credentials and TLS options apply to a NATS server given by URL; the embedded server takes none, ignoring them")
		}
		if err := b.startEmbedded(opts); err != nil {
			return nil, err
		}
	} else {
		var err error
		if auth, err = opts.Auth.NATSOptions(); err != nil {
			return nil, err
		}
	}
	nc, err := nats.Connect(b.url, append(auth,
		nats.Name(opts.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: our own Close
				b.log.Warn("NATS disconnected; reconnecting", "error", err.Error())
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			b.log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			// Permission violations (a subject this user may not use) and the like: the
			// operation that hit one waits for its timeout, so say why here.
			b.log.Error("NATS error", "error", redact.String(err.Error()))
		}),
	)...)
	if err != nil {
		b.shutdownServer()
		if d, ok := opts.Auth.Diagnose(err); ok {
			return nil, fmt.Errorf("%s at %s: %s", d.Problem, redact.URL(b.url), redact.String(d.Detail))
		}
		// The error may quote the URL: redact its text too, and do not wrap it.
		return nil, fmt.Errorf("connect to NATS at %s: %s", redact.URL(b.url), redact.String(err.Error(), redact.Secrets(b.url)...))
	}
	b.NC = nc
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, err
	}
	b.JS = js
	return b, nil
}

// URL is the client URL of the server in use (the embedded one's when embedded).
func (b *Bus) URL() string { return b.url }

// RedactedURL is URL without credentials, for logs and files.
func (b *Bus) RedactedURL() string { return redact.URL(b.url) }

// SystemID identifies the NATS system (server or cluster, and account) that this bus publishes
// events to: the event stream's name and creation time, "CONFITURE_EVENTS@<RFC 3339, UTC, with
// nanoseconds>". Every node of a cluster reports the same creation time and a restart keeps it,
// while another server, another cluster or another account has a stream of its own, created at
// another time. It is "" until EnsureStreams has run.
func (b *Bus) SystemID() string { return b.systemID }

// systemID formats the identity of the system whose event stream was created at created.
func systemID(created time.Time) string {
	return contract.EventStream + "@" + created.UTC().Format(time.RFC3339Nano)
}

// Embedded reports whether the bus runs an in-process server.
func (b *Bus) Embedded() bool { return b.server != nil }

func (b *Bus) startEmbedded(opts Options) error {
	if opts.StoreDir == "" {
		return errors.New("embedded NATS: a store directory is required")
	}
	if err := os.MkdirAll(opts.StoreDir, 0o750); err != nil {
		return fmt.Errorf("embedded NATS: %w", err)
	}
	host := opts.EmbeddedHost
	if host == "" {
		host = "127.0.0.1"
	}
	port := opts.EmbeddedPort
	if port == 0 {
		port = 4222
	}
	if port > 0 && !portFree(host, port) {
		b.log.Info("port taken; embedded NATS listens on a free port instead", "port", port)
		port = -1
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "confiture-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Clean(opts.StoreDir),
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 << 20,
	})
	if err != nil {
		return fmt.Errorf("embedded NATS: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return errors.New("embedded NATS: not ready after 15s")
	}
	b.server = s
	b.url = s.ClientURL()
	b.log.Info("embedded NATS server started", "url", b.url, "store_dir", opts.StoreDir)
	return nil
}

func portFree(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// StreamOptions size the contract's streams.
type StreamOptions struct {
	// RequestDuplicates is the request stream's de-duplication window. Defaults to 1h.
	RequestDuplicates time.Duration
	// MaxRequestBytes bounds one request message. Defaults to 1 MiB.
	MaxRequestBytes int32
	// EventMaxAge is how long observers can replay events. Defaults to 7 days.
	EventMaxAge time.Duration
	// Replicas for clustered servers. Defaults to 1.
	Replicas int
}

// streamAttempt bounds one JetStream API call of ensureStream. A cluster that is electing a
// stream's leader (just formed, or a node just lost) can leave a call unanswered; a new call
// then reaches the new leader.
const streamAttempt = 10 * time.Second

// ensureStream creates or updates a stream, retrying each call that times out until ctx ends.
func (b *Bus) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, streamAttempt)
		s, err := b.JS.CreateOrUpdateStream(actx, cfg)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return s, err
		}
		b.log.Warn("a JetStream API call went unanswered; the cluster may be electing a leader: trying again", "stream", cfg.Name)
	}
}

// EnsureStreams creates or updates the request stream (work queue, de-duplicated by message id)
// and the event stream (limits, for observers to replay), and records the system's identity
// (SystemID).
func (b *Bus) EnsureStreams(ctx context.Context, o StreamOptions) error {
	if o.RequestDuplicates <= 0 {
		o.RequestDuplicates = time.Hour
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = 1 << 20
	}
	if o.EventMaxAge <= 0 {
		o.EventMaxAge = 7 * 24 * time.Hour
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	_, err := b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        contract.RequestStream,
		Description: "confiture migration requests (confiture.request/v1)",
		Subjects:    []string{contract.RequestSubjectPrefix + "*"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  o.RequestDuplicates,
		// Leave room above the request limit so that an oversized request reaches the
		// worker and is rejected with a reason instead of failing at publish.
		MaxMsgSize: 4 * o.MaxRequestBytes,
		Replicas:   o.Replicas,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", contract.RequestStream, err)
	}
	events, err := b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        contract.EventStream,
		Description: "confiture run events (confiture.event/v1)",
		Subjects:    []string{contract.EventSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      o.EventMaxAge,
		Duplicates:  10 * time.Minute,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", contract.EventStream, err)
	}
	// Create and update responses both carry the stream's info (servers 2.9 to 2.15).
	created := events.CachedInfo().Created
	if created.IsZero() {
		return fmt.Errorf("stream %s: the server reported no creation time, which identifies the NATS system", contract.EventStream)
	}
	b.systemID = systemID(created)
	return nil
}

// PublishBatch publishes msgs to JetStream in order, each with its id as the message id, and
// waits until the server has stored every one. It implements outbox.Publisher.
func (b *Bus) PublishBatch(ctx context.Context, msgs []outbox.Message) error {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		if limit := b.NC.MaxPayload(); limit > 0 && int64(len(m.Data)) > limit {
			// An event the server cannot carry would block every event after it.
			m.Data = shrinkEvent(m.Data, b.log)
		}
		f, err := b.JS.PublishMsgAsync(&nats.Msg{Subject: m.Subject, Data: m.Data},
			jetstream.WithMsgID(m.ID))
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return errors.New("timed out waiting for JetStream to acknowledge events")
		}
	}
	return nil
}

// Close drains the connection and shuts the embedded server down.
func (b *Bus) Close() {
	if b.NC != nil {
		_ = b.NC.Drain()
		deadline := time.Now().Add(5 * time.Second)
		for !b.NC.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		b.NC.Close()
	}
	b.shutdownServer()
}

func (b *Bus) shutdownServer() {
	if b.server != nil {
		b.server.Shutdown()
		b.server.WaitForShutdown()
		b.server = nil
	}
}

var _ outbox.Publisher = (*Bus)(nil)

// shrinkEvent drops the payload of an event too large for the server and says so in its
// message; the event's id, kind and run stay, so observers still see the fact.
func shrinkEvent(data []byte, log *slog.Logger) []byte {
	var ev contract.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return data
	}
	log.Error("event larger than the NATS server's max_payload: publishing it without its data",
		"event", ev.ID, "kind", ev.Kind, "bytes", len(data))
	ev.Data = nil
	ev.Message = outbox.Truncate(ev.Message, 1024) + " [shrunk: the event exceeded the NATS server's max_payload]"
	if ev.Error != nil {
		ev.Error.Message = outbox.Truncate(ev.Error.Message, 1024)
	}
	out, err := json.Marshal(ev)
	if err != nil {
		return data
	}
	return out
}
