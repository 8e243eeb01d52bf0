package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/builtin"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childWorkerMain())
	}
	goleak.VerifyTestMain(m,
		// pgx pools and the NATS server leave short-lived goroutines that end on their own
		// after Close; these are the ones still winding down when the check runs.
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*Server).acceptConnections.func1"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).flushStreamStateLoop"),
		// lumberjack's compression goroutine lives as long as the process (upstream issue).
		goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"),
	)
}

// bundle is one test's worker, target database and client.
type bundle struct {
	w      *Worker
	dsn    string
	db     *pgxpool.Pool
	client *client.Client
	// attempts counts calls of the test hooks by hook name.
	attempts map[string]*atomic.Int64
}

// setup starts a worker on a database of its own with an embedded NATS server.
func setup(t *testing.T, opts ...func(*Config)) *bundle {
	t.Helper()
	return setupOn(t, testdb.New(t), opts...)
}

// setupOn is setup on the database dsn.
func setupOn(t *testing.T, dsn string, opts ...func(*Config)) *bundle {
	t.Helper()
	b := &bundle{dsn: dsn, attempts: map[string]*atomic.Int64{}}
	reg := hooks.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	registerTestHooks(t, reg, b)
	cfg := Config{
		DatabaseURL:      dsn,
		DataDir:          t.TempDir(),
		EmbeddedNATSPort: -1,
		MaxAttempts:      3,
		RetryBackoff:     10 * time.Millisecond,
		RetryBackoffMax:  50 * time.Millisecond,
		ShutdownTimeout:  5 * time.Second,
		FetchCooldown:    time.Millisecond,
		Concurrency:      4,
		// Many tests run at once on a server of 100 connections: each worker's targets get
		// a few (a test that needs the default sets its own).
		MaxServerConns: 6,
		HTTPAddr:       "127.0.0.1:0",
		Registry:       reg,
		Logger:         testLogger(t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	w, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.Start(ctx))
	b.w = w
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, w.Stop(ctx))
	})
	b.client, err = client.Connect(w.NATSURL())
	require.NoError(t, err)
	t.Cleanup(b.client.Close)
	poolCfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	poolCfg.MaxConns = 2
	b.db, err = pgxpool.NewWithConfig(ctx, poolCfg)
	require.NoError(t, err)
	t.Cleanup(b.db.Close)
	return b
}

// testLogger writes the worker's records to the test log when CONFITURE_TEST_LOG is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("CONFITURE_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// registerTestHooks adds hooks that misbehave on purpose:
//   - flaky: fails while its attempt is below params.succeed_on;
//   - boom: panics;
//   - failing: always returns an error.
func registerTestHooks(t *testing.T, reg *hooks.Registry, b *bundle) {
	counter := func(name string) *atomic.Int64 {
		if b.attempts[name] == nil {
			b.attempts[name] = &atomic.Int64{}
		}
		return b.attempts[name]
	}
	counter("flaky")
	counter("boom")
	counter("failing")
	require.NoError(t, reg.Register(hooks.Definition{
		Name: "flaky", Source: "test",
		New: func(params map[string]any) (hooks.Hook, error) {
			var p struct {
				SucceedOn int `json:"succeed_on"`
			}
			if err := hooks.DecodeParams(params, &p); err != nil {
				return nil, err
			}
			return hooks.HookFunc(func(ctx context.Context, hc *hooks.Context) (hooks.Result, error) {
				b.attempts["flaky"].Add(1)
				if hc.Attempt < p.SucceedOn {
					return hooks.Result{}, fmt.Errorf("flaky failure on attempt %d", hc.Attempt)
				}
				tag, err := hc.Tx.Exec(ctx, `INSERT INTO audit (what) VALUES ('flaky')`)
				return hooks.Result{RowsAffected: tag.RowsAffected()}, err
			}), nil
		},
	}))
	// set_stat stores params.key = true in the run's stats; need_stat fails without it.
	require.NoError(t, reg.Register(hooks.Definition{
		Name: "set_stat", Source: "test",
		New: func(params map[string]any) (hooks.Hook, error) {
			key, _ := params["key"].(string)
			return hooks.HookFunc(func(context.Context, *hooks.Context) (hooks.Result, error) {
				return hooks.Result{Stats: map[string]any{key: true}}, nil
			}), nil
		},
	}))
	require.NoError(t, reg.Register(hooks.Definition{
		Name: "need_stat", Source: "test",
		New: func(params map[string]any) (hooks.Hook, error) {
			key, _ := params["key"].(string)
			return hooks.HookFunc(func(_ context.Context, hc *hooks.Context) (hooks.Result, error) {
				if v, ok := hc.Stats.Get(key); !ok || v != true {
					return hooks.Result{Failed: true, Message: "no stat " + key}, nil
				}
				return hooks.Result{Message: "saw " + key}, nil
			}), nil
		},
	}))
	require.NoError(t, reg.Register(hooks.Definition{
		Name: "boom", Source: "test",
		New: func(map[string]any) (hooks.Hook, error) {
			return hooks.HookFunc(func(context.Context, *hooks.Context) (hooks.Result, error) {
				b.attempts["boom"].Add(1)
				panic("boom hook exploded")
			}), nil
		},
	}))
	require.NoError(t, reg.Register(hooks.Definition{
		Name: "failing", Source: "test",
		New: func(map[string]any) (hooks.Hook, error) {
			return hooks.HookFunc(func(context.Context, *hooks.Context) (hooks.Result, error) {
				b.attempts["failing"].Add(1)
				return hooks.Result{}, fmt.Errorf("failing hook always fails")
			}), nil
		},
	}))
}

// mig builds a migration with its checksum.
func mig(version, name, up, down string, hs ...contract.HookSpec) contract.Migration {
	return contract.Migration{Version: version, Name: name, UpSQL: up, DownSQL: down,
		Checksum: contract.Checksum(up), Hooks: hs}
}

func hook(phase, name, kind string, params map[string]any, deps ...string) contract.HookSpec {
	return contract.HookSpec{Phase: phase, Name: name, Hook: kind, Params: params, DependsOn: deps}
}

func sqlHook(phase, name, sql string) contract.HookSpec {
	return hook(phase, name, "sql", map[string]any{"sql": sql})
}

var reqSeq atomic.Int64

func request(direction string, migs ...contract.Migration) *contract.Request {
	return &contract.Request{
		Schema: contract.RequestSchemaV1, ID: fmt.Sprintf("req-%d-%d", time.Now().UnixNano(), reqSeq.Add(1)),
		Target: "default", Direction: direction, Migrations: migs,
	}
}

// run publishes req and waits for its final event, returning every event of the run.
func (b *bundle) run(t *testing.T, req *contract.Request) []*contract.Event {
	t.Helper()
	pub, err := b.client.Publish(context.Background(), req)
	require.NoError(t, err)
	return b.wait(t, req.Target, pub.Run)
}

func (b *bundle) wait(t *testing.T, target, run string) []*contract.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var evs []*contract.Event
	_, err := b.client.Wait(ctx, target, run, func(ev *contract.Event) { evs = append(evs, ev) })
	require.NoError(t, err, "waiting for run %s; events so far: %v", run, kinds(evs))
	return evs
}

// waitPast waits for the run's final event after one of kind past: an operator's action reaches the
// stream through the outbox relay a moment after it returns, and until then the run's last event
// is still the final one from before it.
func (b *bundle) waitPast(t *testing.T, target, run, past string) []*contract.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		var evs []*contract.Event
		_, err := b.client.Wait(ctx, target, run, func(ev *contract.Event) { evs = append(evs, ev) })
		require.NoError(t, err, "waiting for run %s past %s; events so far: %v", run, past, kinds(evs))
		if len(ofKind(evs, past)) > 0 {
			return evs
		}
	}
}

func kinds(evs []*contract.Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		s := e.Kind
		if e.Phase != "" {
			s += ":" + e.Version + "/" + e.Phase
		}
		if e.Hook != "" {
			s += ":" + e.Hook
		}
		out = append(out, s)
	}
	return out
}

func last(evs []*contract.Event) *contract.Event { return evs[len(evs)-1] }

func ofKind(evs []*contract.Event, kind string) []*contract.Event {
	var out []*contract.Event
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (b *bundle) queryStrings(t *testing.T, sql string, args ...any) []string {
	t.Helper()
	return queryStrings(t, b.db, sql, args...)
}

// queryStrings returns the one text column of sql's rows.
func queryStrings(t *testing.T, db *pgxpool.Pool, sql string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), sql, args...)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

func (b *bundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	return countIn(t, b.db, sql, args...)
}

// countIn runs a count query on db.
func countIn(t *testing.T, db *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

var errFault = fmt.Errorf("injected fault")

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// testdbNew is testdb.New.
func testdbNew(t *testing.T) string { return testdb.New(t) }

// poolFor opens a small pool on dsn for the test.
func poolFor(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	cfg.MaxConns = 2
	db, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return db
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func waitForKind(t *testing.T, b *bundle, target, run, kind string) *contract.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var found *contract.Event
	err := b.client.Follow(ctx, target, run, func(ev *contract.Event) error {
		if ev.Kind == kind {
			found = ev
			return client.ErrStopFollowing
		}
		return nil
	})
	require.NoError(t, err, "waiting for %s", kind)
	return found
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitForKindOn(t *testing.T, cl *client.Client, target, run, kind string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := cl.Follow(ctx, target, run, func(ev *contract.Event) error {
		if ev.Kind == kind {
			return client.ErrStopFollowing
		}
		return nil
	})
	require.NoError(t, err, "waiting for %s", kind)
}
