package target

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultMaxServerConns is the cap on the connections a Set's pools hold to one PostgreSQL
// server when MaxServerConns does not set it (the worker's max_server_conns).
const DefaultMaxServerConns = 50

// reclaimInterval is how often a dial waiting for a slot looks again for idle connections to
// close: a connection released while the dial began to wait may have gone back to its pool
// before the release could see the waiter.
const reclaimInterval = 50 * time.Millisecond

// reclaimCloseTimeout bounds the close of one idle connection reclaimed for a waiting dial.
const reclaimCloseTimeout = 5 * time.Second

// server counts the physical connections the pools of one Set hold to one PostgreSQL server,
// host:port as the connection string gives it (its first host, for a connection string that
// lists several), and holds them to its cap. Every pool on the server dials through dial: a
// connection takes a slot before it is dialed and gives it back once, when it is closed.
type server struct {
	addr  string
	slots chan struct{} // one element per connection held; its capacity is the cap
	// waiting counts the dials waiting for a slot. While one waits, no connection stays idle
	// on the server: idle ones are closed (reclaim), and one released is closed instead of
	// going back to its pool (dbPool.afterRelease).
	waiting atomic.Int32

	mu    sync.Mutex
	pools []*dbPool // the pools on this server
}

func newServer(addr string, maxConns int) *server {
	return &server{addr: addr, slots: make(chan struct{}, maxConns)}
}

// serverAddr is the server a connection configuration dials: its host (a name, an address or
// a Unix socket directory) and port.
func serverAddr(cfg *pgconn.Config) string {
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// add counts db's connections against the server.
func (s *server) add(db *dbPool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pools = append(s.pools, db)
}

// dialFunc returns the DialFunc of a pool on the server: dial, once a slot is free.
func (s *server) dialFunc(dial pgconn.DialFunc) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := s.take(ctx); err != nil {
			return nil, err
		}
		conn, err := dial(ctx, network, addr)
		if err != nil {
			s.give()
			return nil, err
		}
		return &slotConn{Conn: conn, server: s}, nil
	}
}

// take takes a slot, waiting while there is none. ctx is the dial's: it ends with the
// connection's connect timeout (connect_timeout, else pgxpool's two minutes) or when the pool
// closes. pgxpool dials in the background, so an Acquire whose own context ends returns at
// once while its dial may still wait here; the connection it then makes goes to the pool
// idle, and is the first to be reclaimed.
func (s *server) take(ctx context.Context) error {
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
	}
	start := time.Now()
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	tick := time.NewTicker(reclaimInterval)
	defer tick.Stop()
	for {
		s.reclaim()
		select {
		case s.slots <- struct{}{}:
			return nil
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return &ServerBusyError{Server: s.addr, Max: cap(s.slots), Waited: time.Since(start).Round(time.Millisecond)}
			}
			return fmt.Errorf("waiting for a connection to server %s: %w", s.addr, ctx.Err())
		case <-tick.C:
		}
	}
}

// give gives a slot back.
func (s *server) give() { <-s.slots }

// reclaim closes the idle connections of the pools on the server, so that their slots go to
// the dials waiting for one.
func (s *server) reclaim() {
	s.mu.Lock()
	pools := slices.Clone(s.pools)
	s.mu.Unlock()
	ctx := context.WithValue(context.Background(), reclaimKey{}, true)
	for _, db := range pools {
		pool := db.pool.Load()
		if pool == nil {
			continue
		}
		for _, c := range pool.AcquireAllIdle(ctx) {
			closeCtx, cancel := context.WithTimeout(context.Background(), reclaimCloseTimeout)
			_ = c.Conn().Close(closeCtx) // gives the slot back
			cancel()
			c.Release() // the pool destroys a closed connection
		}
	}
}

// slotConn is a connection to the server that holds one of its slots until it is closed.
type slotConn struct {
	net.Conn
	server *server
	once   sync.Once
}

// Close closes the connection and gives its slot back, once.
func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.server.give)
	return err
}

// ServerBusyError is a connection that could not be made in time because the worker already
// holds all the connections max_server_conns allows to the server. It is transient: pgx knows
// nothing was sent (SafeToRetry).
type ServerBusyError struct {
	// Server is host:port.
	Server string
	// Max is the cap.
	Max int
	// Waited is how long the connection waited for a slot.
	Waited time.Duration
}

func (e *ServerBusyError) Error() string {
	return fmt.Sprintf("all %d connections max_server_conns allows to server %s are in use (waited %s)", e.Max, e.Server, e.Waited)
}

// SafeToRetry reports that nothing reached the server (pgconn.SafeToRetry).
func (e *ServerBusyError) SafeToRetry() bool { return true }
