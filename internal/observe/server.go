package observe

import (
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultAddr is where the server listens when ServerOptions.Addr is empty: loopback only,
// where the server needs no credentials.
const DefaultAddr = "127.0.0.1:9090"

// RiverUIPrefix is the path River UI is mounted under.
const RiverUIPrefix = "/riverui"

// HTTP server limits. Handlers here answer in well under a second except River UI's job
// lists, which WriteTimeout leaves room for.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// ErrServerStarted is returned by a second call to Server.Start.
var ErrServerStarted = errors.New("observe: server already started")

// ServerOptions configures a Server.
type ServerOptions struct {
	// Addr is the host:port to listen on. Defaults to DefaultAddr, with FallbackOnConflict.
	Addr string
	// FallbackOnConflict makes the server listen on a free port of Addr's host when Addr's port
	// is taken, and log the address it got; without it a taken port is an error. Defaults to
	// true when Addr is empty (the default address), false otherwise (an operator who names an
	// address expects that one).
	FallbackOnConflict bool
	// Metrics is served at /metrics. Defaults to none (no /metrics).
	Metrics *Metrics
	// Health serves /healthz and /readyz. Defaults to a Health with no checks.
	Health *Health
	// RiverUI is mounted at RiverUIPrefix+"/" (see NewRiverUI). Defaults to none.
	RiverUI http.Handler
	// Runs, the runs page, is mounted at /runs/ (GET). Defaults to none.
	Runs http.Handler
	// DryRun, the dry-run reports page, is mounted at /dryrun/ (GET). Defaults to none.
	DryRun http.Handler
	// Credentials, when set, are required on every path but /healthz and /readyz, with their
	// roles (see guard). Without them, a server on a loopback address serves everything to
	// anyone, and one that listens beyond loopback serves only /healthz and /readyz.
	Credentials *Credentials
	// Logger receives the listening address and serving errors. Defaults to discarding.
	Logger *slog.Logger
}

// Server serves the observability endpoints on one address.
type Server struct {
	opts    ServerOptions
	handler http.Handler
	srv     *http.Server

	mu       sync.Mutex
	started  bool
	addr     string
	done     chan struct{} // closed when Serve returns
	serveErr error
}

// NewServer validates opts and returns a Server. It listens on nothing until Start.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr, opts.FallbackOnConflict = DefaultAddr, true
	}
	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("observe: ServerOptions.Addr %q: want host:port: %w", opts.Addr, err)
	}
	if opts.Health == nil {
		opts.Health = NewHealth(HealthOptions{})
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, handler: guard(&opts, newMux(&opts))}
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

type endpoint struct{ path, about string }

func newMux(opts *ServerOptions) http.Handler {
	mux := http.NewServeMux()
	var index []endpoint
	mux.Handle("GET /healthz", opts.Health.LiveHandler())
	index = append(index, endpoint{"/healthz", "liveness: 200 while the process runs"})
	mux.Handle("GET /readyz", opts.Health.ReadyHandler())
	index = append(index, endpoint{"/readyz", "readiness: 200 when every dependency check passes, 503 naming those that fail"})
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics.Handler())
		index = append(index, endpoint{"/metrics", "Prometheus metrics"})
	}
	if opts.RiverUI != nil {
		// Every method: River UI retries, cancels and deletes jobs with POST, PUT and PATCH.
		// The mux redirects /riverui to /riverui/.
		mux.Handle(RiverUIPrefix+"/", opts.RiverUI)
		index = append(index, endpoint{RiverUIPrefix + "/", "River UI: phase jobs, queues, retries (operators only, when the server has credentials)"})
	}
	if opts.Runs != nil {
		mux.Handle("GET /runs/", opts.Runs)
		index = append(index, endpoint{"/runs/", "the runs page: each target's latest runs, and each run's timeline"})
	}
	if opts.DryRun != nil {
		mux.Handle("GET /dryrun/", opts.DryRun)
		index = append(index, endpoint{"/dryrun/", "the dry-run page: each target's latest dry-run report, with its lock timeline"})
	}
	page := indexPage(index)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	return mux
}

func indexPage(eps []endpoint) []byte {
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>confiture worker</title></head><body>\n<h1>confiture worker</h1>\n<ul>\n")
	for _, e := range eps {
		fmt.Fprintf(&b, "<li><a href=\"%s\">%s</a>: %s</li>\n", html.EscapeString(e.path), html.EscapeString(e.path), html.EscapeString(e.about))
	}
	b.WriteString("</ul>\n</body></html>\n")
	return []byte(b.String())
}

// Start listens and serves in the background until Shutdown. ctx bounds only the listening.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return ErrServerStarted
	}
	ln, err := s.listen(ctx)
	if err != nil {
		return err
	}
	s.started, s.addr, s.done = true, ln.Addr().String(), make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("http server stopped", "addr", s.addr, "error", err)
			s.mu.Lock()
			s.serveErr = err
			s.mu.Unlock()
		}
	}()
	s.opts.Logger.Info("http server listening", "addr", s.addr,
		"metrics", s.opts.Metrics != nil, "river_ui", s.opts.RiverUI != nil, "credentials", s.opts.Credentials != nil)
	if s.opts.Credentials == nil && !isLoopback(s.opts.Addr) {
		s.opts.Logger.Warn("the http server listens beyond loopback without credentials: it serves only /healthz and /readyz; "+
			"give it a credentials file (http_credentials_file, see docs/SECURITY.md) to serve /metrics and River UI, or listen on 127.0.0.1",
			"addr", s.addr)
	}
	return nil
}

func (s *Server) listen(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.opts.Addr)
	if err == nil {
		return ln, nil
	}
	if !s.opts.FallbackOnConflict || !errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("observe: listen on %s: %w", s.opts.Addr, err)
	}
	host, _, _ := net.SplitHostPort(s.opts.Addr) // validated by NewServer
	ln, ferr := lc.Listen(ctx, "tcp", net.JoinHostPort(host, "0"))
	if ferr != nil {
		return nil, fmt.Errorf("observe: listen on %s: %w; on a free port: %w", s.opts.Addr, err, ferr)
	}
	s.opts.Logger.Warn("http address in use; listening on a free port instead",
		"wanted", s.opts.Addr, "addr", ln.Addr().String())
	return ln, nil
}

// Addr returns the address the server listens on, once started ("" before).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Shutdown stops accepting connections and waits, until ctx ends, for requests in flight to
// finish; then it closes whatever is left. It returns once the server has stopped, with ctx's
// error if it had to force, or the error that stopped serving early. Before Start it does
// nothing.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	started, done := s.started, s.done
	s.mu.Unlock()
	if !started {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close() // ctx ended with requests in flight: cut them
	}
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(err, s.serveErr)
}
