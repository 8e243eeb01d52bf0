package target

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/testdb"
	"github.com/confiture-io/confiture-worker/internal/transient"
)

// adminPool is a pool of the test's own on dsn, outside any Set.
func adminPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(testCtx(t), dsn)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

func getAll(t *testing.T, set *Set, names ...string) []*Target {
	t.Helper()
	out := make([]*Target, len(names))
	for i, n := range names {
		tg, err := set.Get(n)
		require.NoError(t, err)
		out[i] = tg
	}
	return out
}

// dbName is the database of a test database's URL.
func dbName(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	return strings.TrimPrefix(u.Path, "/")
}

// Targets on the schemas of one database share its pool; each connection taken from it runs
// in the schema of the target its context names, however the connections pass from one target
// to the other.
func TestSchemaTargetsShareOnePool(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dsn := testdb.New(t)
	admin := adminPool(t, dsn)
	_, err := admin.Exec(ctx, `CREATE SCHEMA a; CREATE SCHEMA b`)
	require.NoError(t, err)
	// Two connections for three targets: each goes from one target to another all the time.
	set, err := NewSet([]Config{{Name: "a", DSN: dsn, Schema: "a"}, {Name: "b", DSN: dsn, Schema: "b"}, {Name: "plain", DSN: dsn}},
		MaxServerConns(2))
	require.NoError(t, err)
	t.Cleanup(set.Close)
	tgs := getAll(t, set, "a", "b", "plain")
	ta, tb, plain := tgs[0], tgs[1], tgs[2]
	pool, err := ta.Pool(ctx)
	require.NoError(t, err)
	poolB, err := tb.Pool(ctx)
	require.NoError(t, err)
	poolPlain, err := plain.Conn(ctx)
	require.NoError(t, err)
	require.Same(t, pool, poolB, "one pool per database")
	require.Same(t, pool, poolPlain)
	require.EqualValues(t, 2, pool.Config().MaxConns)

	const workers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		tg := tgs[w%3]
		wg.Go(func() {
			ctx := WithTarget(ctx, tg)
			for i := range rounds {
				var schema string
				if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
					errs <- err
					return
				}
				want := tg.Schema()
				if want == "" {
					want = "public"
				}
				if schema != want {
					errs <- fmt.Errorf("target %s ran in schema %s", tg.Name(), schema)
				}
				if _, err := pool.Exec(ctx, fmt.Sprintf(`CREATE TABLE t_%s_%d_%d ()`, tg.Name(), w, i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	rows, err := admin.Query(ctx, `SELECT schemaname, split_part(tablename, '_', 2) FROM pg_tables WHERE tablename LIKE 't\_%'`)
	require.NoError(t, err)
	landed, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var p [2]string
		return p, r.Scan(&p[0], &p[1])
	})
	require.NoError(t, err)
	count := map[[2]string]int{}
	for _, l := range landed {
		count[l]++
	}
	// Workers 0, 3, 6 are a's, 1, 4, 7 b's, 2 and 5 plain's.
	require.Equal(t, map[[2]string]int{{"a", "a"}: 3 * rounds, {"b", "b"}: 3 * rounds, {"public", "plain"}: 2 * rounds}, count,
		"every table in the schema of the target that created it")

	// A session-level SET search_path a migration leaves behind is undone by the next acquire.
	ctxA := WithTarget(ctx, ta)
	conn, err := pool.Acquire(ctxA)
	require.NoError(t, err)
	_, err = conn.Exec(ctxA, `SET search_path TO b`)
	require.NoError(t, err)
	conn.Release()
	for range 4 {
		var schema string
		require.NoError(t, pool.QueryRow(ctxA, `SELECT current_schema()`).Scan(&schema))
		require.Equal(t, "a", schema)
	}

	// A context that names no target gets no connection.
	_, err = pool.Exec(ctx, `CREATE TABLE untagged ()`)
	require.ErrorIs(t, err, ErrNoTarget)
	require.ErrorContains(t, err, "names no target (target.WithTarget)")
	_, err = pool.Acquire(context.Background())
	require.ErrorIs(t, err, ErrNoTarget)
	// Nor does one naming a target of another database.
	other, err := NewSet([]Config{{Name: "elsewhere", DSN: fakeDSN}})
	require.NoError(t, err)
	elsewhere, err := other.Get("elsewhere")
	require.NoError(t, err)
	_, err = pool.Exec(WithTarget(ctx, elsewhere), `SELECT 1`)
	require.ErrorContains(t, err, `target "elsewhere": connection taken from the pool of another database`)
	require.NotContains(t, err.Error(), "s3cr3t-pw")
	var n int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'untagged'`).Scan(&n))
	require.Zero(t, n)

	// Each target's slots are all back once its connections are released.
	require.Eventually(t, func() bool { return len(ta.slots)+len(tb.slots)+len(plain.slots) == 0 }, 5*time.Second, 10*time.Millisecond)
}

// The targets of many databases on one server, used at once by many goroutines, never hold
// more connections to it than max_server_conns, and all their work gets done: the idle
// connections of one database's pool are closed for another's.
func TestServerCapHoldsUnderLoad(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	const maxConns, databases, schemas = 3, 6, 5
	var cfgs []Config
	var names []string
	for d := range databases {
		dsn := testdb.New(t)
		names = append(names, dbName(t, dsn))
		conn, err := pgx.Connect(ctx, dsn)
		require.NoError(t, err)
		for s := range schemas {
			_, err := conn.Exec(ctx, fmt.Sprintf(`CREATE SCHEMA s%d`, s))
			require.NoError(t, err)
			cfgs = append(cfgs, Config{Name: fmt.Sprintf("d%d-s%d", d, s), DSN: dsn, Schema: fmt.Sprintf("s%d", s)})
		}
		require.NoError(t, conn.Close(ctx))
	}
	set, err := NewSet(cfgs, MaxServerConns(maxConns))
	require.NoError(t, err)
	t.Cleanup(set.Close)
	require.Len(t, set.servers, 1)

	// Sample the server's own count of the worker's connections to the test's databases.
	sampler, err := pgx.Connect(ctx, testdb.AdminURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = sampler.Close(context.Background()) })
	var peak, samples atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				sampled <- nil
				return
			default:
			}
			var n int64
			if err := sampler.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE application_name = 'confiture-worker' AND backend_type = 'client backend' AND datname = ANY($1)`, names).Scan(&n); err != nil {
				sampled <- err
				return
			}
			samples.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
		}
	}()

	// Every connection of one database's pool that another's needs is closed and made again:
	// at about 30ms a connection here, keep the work small.
	const goroutines, rounds = 24, 10
	var done atomic.Int64
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range rounds {
				tg, err := set.Get(cfgs[r.IntN(len(cfgs))].Name)
				if err != nil {
					errs <- err
					return
				}
				ctx := WithTarget(ctx, tg)
				pool, err := tg.Conn(ctx)
				if err != nil {
					errs <- err
					return
				}
				conn, err := pool.Acquire(ctx)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", tg.Name(), err)
					return
				}
				var schema string
				err = conn.QueryRow(ctx, `SELECT current_schema() FROM pg_sleep(0.002)`).Scan(&schema)
				conn.Release()
				if err != nil {
					errs <- err
					return
				}
				if schema != tg.Schema() {
					errs <- fmt.Errorf("target %s ran in schema %s", tg.Name(), schema)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(stop)
	require.NoError(t, <-sampled)
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, goroutines*rounds, done.Load(), "all the work is done")
	require.Positive(t, samples.Load())
	require.LessOrEqual(t, peak.Load(), int64(maxConns), "connections held to the server at once (pg_stat_activity)")
	require.Positive(t, peak.Load())
	t.Logf("peak %d connections over %d samples", peak.Load(), samples.Load())
	for _, srv := range set.servers {
		require.LessOrEqual(t, len(srv.slots), maxConns)
		require.Zero(t, srv.waiting.Load())
	}
}

// A connection waiting for a slot of its server gives up with its context (the acquire's, or
// the connect timeout's, with a transient error that says why), and gets a slot as soon as a
// connection of another database is released or idle.
func TestServerCapWaitsWithTheContext(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dsn1, dsn2 := testdb.New(t), testdb.New(t)
	set, err := NewSet([]Config{{Name: "one", DSN: dsn1}, {Name: "two", DSN: dsn2 + "?connect_timeout=1"}}, MaxServerConns(1))
	require.NoError(t, err)
	t.Cleanup(set.Close)
	tgs := getAll(t, set, "one", "two")
	one, two := tgs[0], tgs[1]
	ctx1, ctx2 := WithTarget(ctx, one), WithTarget(ctx, two)
	pool1, err := one.Conn(ctx1)
	require.NoError(t, err)
	held, err := pool1.Acquire(ctx1)
	require.NoError(t, err)
	srv := set.servers[serverAddr(&pool1.Config().ConnConfig.Config)]
	require.NotNil(t, srv)

	// The acquire's own context.
	short, cancel := context.WithTimeout(ctx2, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = two.Conn(short)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 2*time.Second)

	// The connect timeout: the error says why, and is transient.
	start = time.Now()
	_, err = two.Conn(ctx2)
	var busy *ServerBusyError
	require.ErrorAs(t, err, &busy, "%v", err)
	require.ErrorContains(t, err, `target "two"`)
	require.ErrorContains(t, err, "all 1 connections max_server_conns allows to server")
	require.True(t, transient.Is(err), "%v", err)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Eventually(t, func() bool { return srv.waiting.Load() == 0 }, 5*time.Second, 10*time.Millisecond)

	// Released while a dial waits: the connection is closed and its slot goes to the dial.
	opened := make(chan error, 1)
	go func() {
		_, err := two.Conn(ctx2)
		opened <- err
	}()
	require.Eventually(t, func() bool { return srv.waiting.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	held.Release()
	select {
	case err := <-opened:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting connection did not get the released connection's slot")
	}
	require.Eventually(t, func() bool { return pool1.Stat().TotalConns() == 0 }, 5*time.Second, 10*time.Millisecond)

	// Idle in another pool: closed for the dial that needs its slot.
	pool2, err := two.Conn(ctx2)
	require.NoError(t, err)
	// A release goes back to the pool in the background (AfterRelease).
	require.Eventually(t, func() bool { return pool2.Stat().IdleConns() == 1 }, 5*time.Second, 5*time.Millisecond)
	var db string
	require.NoError(t, pool1.QueryRow(ctx1, `SELECT current_database()`).Scan(&db))
	require.Equal(t, dbName(t, dsn1), db)
	require.Eventually(t, func() bool { return pool2.Stat().TotalConns() == 0 }, 5*time.Second, 5*time.Millisecond,
		"two's idle connection was closed for one")
	require.Len(t, srv.slots, 1, "one connection, one slot")
}

// A target holds at most MaxConns connections of its database's pool at once; the others on
// the database are not held back by it.
func TestTargetMaxConns(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dsn := testdb.New(t)
	set, err := NewSet([]Config{{Name: "small", DSN: dsn, MaxConns: 2}, {Name: "other", DSN: dsn}})
	require.NoError(t, err)
	t.Cleanup(set.Close)
	tgs := getAll(t, set, "small", "other")
	small, other := tgs[0], tgs[1]
	ctxS := WithTarget(ctx, small)
	pool, err := small.Pool(ctxS)
	require.NoError(t, err)
	// Connections still held when an assertion fails go back before the set closes (a pool
	// waits for its acquired connections on Close).
	held := map[*pgxpool.Conn]bool{}
	acquire := func(ctx context.Context) (*pgxpool.Conn, error) {
		c, err := pool.Acquire(ctx)
		if err == nil {
			held[c] = true
		}
		return c, err
	}
	release := func(c *pgxpool.Conn) { delete(held, c); c.Release() }
	defer func() {
		for c := range held {
			c.Release()
		}
	}()
	// Three idle connections, so that the third acquire below waits for small's slot, not for
	// a connection to be made (which can take longer than its deadline on a busy server).
	ctxO := WithTarget(ctx, other)
	for range 3 {
		_, err := acquire(ctxO)
		require.NoError(t, err)
	}
	for c := range held {
		release(c)
	}
	require.Eventually(t, func() bool { return pool.Stat().IdleConns() >= 3 }, 5*time.Second, 5*time.Millisecond)
	c1, err := acquire(ctxS)
	require.NoError(t, err)
	c2, err := acquire(ctxS)
	require.NoError(t, err)

	short, cancel := context.WithTimeout(ctxS, 200*time.Millisecond)
	defer cancel()
	_, err = acquire(short)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, `target "small": waiting for one of its 2 connections (max_conns)`)

	c3, err := acquire(ctxO)
	require.NoError(t, err, "another target of the database is not held back")
	release(c3)

	// A connection closed while held gives its slot back when the pool destroys it.
	require.NoError(t, c1.Conn().Close(ctx))
	release(c1)
	c1, err = acquire(ctxS)
	require.NoError(t, err)
	release(c1)
	release(c2)
	require.Eventually(t, func() bool { return len(small.slots) == 0 && len(other.slots) == 0 }, 5*time.Second, 10*time.Millisecond)
	var one int
	require.NoError(t, pool.QueryRow(ctxS, `SELECT 1`).Scan(&one))
}

func TestSetAdd(t *testing.T) {
	t.Parallel()
	set, err := NewSet([]Config{{Name: "default", DSN: fakeDSN}}, MaxServerConns(7))
	require.NoError(t, err)
	def, err := set.Get("default")
	require.NoError(t, err)

	tenant, err := set.Add(Config{Name: "tenant", DSN: fakeDSN, Schema: "billing"})
	require.NoError(t, err)
	require.Equal(t, "confiture_billing", tenant.TrackingSchema())
	require.Same(t, def.db, tenant.db, "a target added on a known database shares its pool")
	require.EqualValues(t, 7, tenant.db.cfg.MaxConns)
	got, err := set.Get("tenant")
	require.NoError(t, err)
	require.Same(t, tenant, got)
	require.Equal(t, []string{"default", "tenant"}, set.Names())

	// The same configuration again, with or without its defaults: the same target.
	again, err := set.Add(Config{Name: "tenant", DSN: fakeDSN, Schema: "billing", TrackingSchema: "confiture_billing", MaxConns: 4, Signers: []Signer{}})
	require.NoError(t, err)
	require.Same(t, tenant, again)
	again, err = set.Add(Config{Name: "default", DSN: fakeDSN})
	require.NoError(t, err)
	require.Same(t, def, again)

	for name, c := range map[string]Config{
		"another schema":     {Name: "tenant", DSN: fakeDSN, Schema: "sales"},
		"another database":   {Name: "tenant", DSN: fakeDSN + "?sslmode=disable", Schema: "billing"},
		"another max_conns":  {Name: "default", DSN: fakeDSN, MaxConns: 9},
		"signers of its own": {Name: "default", DSN: fakeDSN, Signers: []Signer{{ID: "k", PublicKey: "p"}}},
	} {
		_, err := set.Add(c)
		require.ErrorContains(t, err, fmt.Sprintf("target %q exists with another configuration", c.Name), name)
		require.NotContains(t, err.Error(), "s3cr3t-pw", name)
	}
	_, err = set.Add(Config{Name: "bad name", DSN: fakeDSN})
	require.ErrorContains(t, err, `target name "bad name"`)
	_, err = set.Add(Config{Name: "badport", DSN: "postgres://alice:s3cr3t-pw@db.example.com:notaport/app"})
	require.ErrorContains(t, err, `target "badport": invalid connection string`)
	require.NotContains(t, err.Error(), "s3cr3t-pw")
	_, err = set.Add(Config{Name: "negative", DSN: fakeDSN, MaxConns: -1})
	require.ErrorContains(t, err, `target "negative": max_conns must be positive`)
	require.Equal(t, []string{"default", "tenant"}, set.Names(), "failed additions leave nothing behind")

	other, err := set.Add(Config{Name: "other", DSN: "postgres://bob@127.0.0.1:1/other"})
	require.NoError(t, err)
	require.NotSame(t, def.db, other.db, "another connection string, another pool")
	require.Same(t, def.db.server, other.db.server, "on the same server")
}

func TestSetAddConcurrently(t *testing.T) {
	t.Parallel()
	set, err := NewSet(nil)
	require.NoError(t, err)
	t.Cleanup(set.Close)
	const goroutines, names = 16, 8
	got := make([][]*Target, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range names {
				tg, err := set.Add(Config{Name: fmt.Sprintf("m%d", i), DSN: fakeDSN, Schema: fmt.Sprintf("s%d", i)})
				if err != nil {
					t.Error(err)
					return
				}
				got[g] = append(got[g], tg)
				_ = set.Names()
				if _, err := set.Get(tg.Name()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for g := range goroutines {
		require.Len(t, got[g], names)
		for i := range names {
			require.Same(t, got[0][i], got[g][i], "one target per name")
			require.Same(t, got[0][0].db, got[g][i].db, "one pool per database")
		}
	}
	require.Len(t, set.Names(), names)
}

func TestSetFallback(t *testing.T) {
	t.Parallel()
	set, err := NewSet([]Config{{Name: "default", DSN: fakeDSN}})
	require.NoError(t, err)
	t.Cleanup(set.Close)
	unknownBefore, err := set.Get("gone")
	require.Nil(t, unknownBefore)
	wantUnknown := err.Error()
	require.Equal(t, `unknown target "gone" (configured: [default])`, wantUnknown)

	var mu sync.Mutex
	calls := map[string]int{}
	set.SetFallback(func(ctx context.Context, name string) (Config, error) {
		mu.Lock()
		calls[name]++
		mu.Unlock()
		deadline, ok := ctx.Deadline()
		if !ok || time.Until(deadline) > FallbackTimeout {
			return Config{}, errors.New("unbounded context")
		}
		switch name {
		case "gone":
			return Config{}, fmt.Errorf("no member %q: %w", name, ErrUnknownTarget)
		case "broken":
			return Config{}, errors.New("queue database unreachable")
		case "liar":
			return Config{Name: "someone-else", DSN: fakeDSN}, nil
		case "leaky":
			return Config{Name: name, DSN: "postgres://alice:s3cr3t-pw@db.example.com:notaport/app"}, nil
		}
		return Config{Name: name, DSN: fakeDSN, Schema: strings.TrimPrefix(name, "fleet-")}, nil
	})

	m, err := set.Get("fleet-acme")
	require.NoError(t, err)
	require.Equal(t, "acme", m.Schema())
	def, _ := set.Get("default")
	require.Same(t, def.db, m.db)
	again, err := set.Get("fleet-acme")
	require.NoError(t, err)
	require.Same(t, m, again)
	require.Equal(t, 1, calls["fleet-acme"], "asked once, then known")
	require.Equal(t, []string{"default", "fleet-acme"}, set.Names())

	_, err = set.Get("gone")
	require.ErrorIs(t, err, ErrUnknownTarget)
	require.Equal(t, wantUnknown, err.Error(), "the message of an unknown target, listing the configured ones")

	_, err = set.Get("broken")
	require.EqualError(t, err, `target "broken": queue database unreachable`)
	require.False(t, errors.Is(err, ErrUnknownTarget))

	_, err = set.Get("liar")
	require.ErrorContains(t, err, `target "liar": the fallback gave the configuration of target "someone-else"`)

	_, err = set.Get("leaky")
	require.ErrorContains(t, err, `target "leaky": invalid connection string`)
	require.NotContains(t, err.Error(), "s3cr3t-pw")

	_, err = set.Get("not a name")
	require.ErrorIs(t, err, ErrUnknownTarget)
	require.Zero(t, calls["not a name"], "a name no target can have is not looked up")
	require.Equal(t, []string{"default", "fleet-acme"}, set.Names())
}
