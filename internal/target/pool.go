package target

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNoTarget is the error of a connection taken from a target's pool with a context that
// WithTarget did not tag: the pool serves every target of its database, and cannot know whose
// search_path the connection needs.
var ErrNoTarget = errors.New("connection taken from a target database's pool with a context that names no target (target.WithTarget): its search_path would be unknown")

type tagKey struct{}

// reclaimKey tags the context with which the server takes idle connections to close them.
type reclaimKey struct{}

// WithTarget returns ctx tagged with t: a connection taken from t's pool with it (or with a
// context derived from it) is prepared for t, its search_path set to t's schema, and counts
// against t's MaxConns while it is held. Tag the context once the target is known, before
// anything uses its pool.
func WithTarget(ctx context.Context, t *Target) context.Context {
	return context.WithValue(ctx, tagKey{}, t)
}

// FromContext returns the target ctx is tagged with, or nil.
func FromContext(ctx context.Context) *Target {
	t, _ := ctx.Value(tagKey{}).(*Target)
	return t
}

// dbPool is the pool of one database (one connection string), shared by the targets on it,
// opened on first use.
type dbPool struct {
	cfg    *pgxpool.Config
	server *server

	mu            sync.Mutex // held while the pool opens
	pool          atomic.Pointer[pgxpool.Pool]
	serverVersion atomic.Int64

	// leases holds the connections handed out by prepare, each with the target whose
	// MaxConns slot it holds, until it is released or closed.
	leases sync.Map // *pgx.Conn → *Target
}

// newDBPool prepares the pool of a database on srv from its parsed configuration.
func newDBPool(cfg *pgxpool.Config, srv *server) *dbPool {
	db := &dbPool{cfg: cfg, server: srv}
	// A single pool never needs more than the server allows; the cap itself is the server's.
	cfg.MaxConns = int32(cap(srv.slots))
	cfg.ConnConfig.RuntimeParams["application_name"] = "confiture-worker"
	cfg.ConnConfig.DialFunc = srv.dialFunc(cfg.ConnConfig.DialFunc)
	cfg.PrepareConn = db.prepare
	cfg.AfterRelease = db.afterRelease
	cfg.BeforeClose = db.unlease
	srv.add(db)
	return db
}

// open opens the pool on first use and reads the server's version, through a connection
// prepared for t.
func (db *dbPool) open(ctx context.Context, t *Target) (*pgxpool.Pool, error) {
	if pool := db.pool.Load(); pool != nil {
		return pool, nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if pool := db.pool.Load(); pool != nil {
		return pool, nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, db.cfg)
	if err != nil {
		return nil, err
	}
	var version int
	if err := pool.QueryRow(WithTarget(ctx, t), `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		pool.Close()
		return nil, err
	}
	db.serverVersion.Store(int64(version))
	db.pool.Store(pool)
	return pool, nil
}

// close closes the pool, if open; the next use opens it again.
func (db *dbPool) close() {
	db.mu.Lock()
	defer db.mu.Unlock()
	if pool := db.pool.Swap(nil); pool != nil {
		pool.Close()
	}
}

// prepare is the pool's PrepareConn: it readies conn for the target the acquiring context is
// tagged with. It takes one of the target's MaxConns slots, waiting for one with ctx, then sets
// the session's search_path.
func (db *dbPool) prepare(ctx context.Context, conn *pgx.Conn) (bool, error) {
	if ctx.Value(reclaimKey{}) != nil {
		return true, nil // to be closed (server.reclaim)
	}
	t := FromContext(ctx)
	if t == nil {
		return true, ErrNoTarget // the connection goes back to the pool untouched
	}
	if t.db != db {
		return true, fmt.Errorf("target %q: connection taken from the pool of another database", t.cfg.Name)
	}
	// While it waits here, the acquire keeps the connection the pool handed out (idle) until
	// one of the target's own is released.
	select {
	case t.slots <- struct{}{}:
	case <-ctx.Done():
		return true, fmt.Errorf("target %q: waiting for one of its %d connections (max_conns): %w", t.cfg.Name, cap(t.slots), ctx.Err())
	}
	if _, err := conn.Exec(ctx, t.searchPath); err != nil {
		<-t.slots
		// The session's state is unknown: the pool destroys the connection.
		return false, fmt.Errorf("target %q: set the search_path: %w", t.cfg.Name, err)
	}
	db.leases.Store(conn, t)
	return true, nil
}

// afterRelease is the pool's AfterRelease: the connection gives its target's slot back, and
// is closed rather than kept idle while a dial to the server waits for a slot.
func (db *dbPool) afterRelease(conn *pgx.Conn) bool {
	db.unlease(conn)
	return db.server.waiting.Load() == 0
}

// unlease gives back the target slot conn holds, if any; it is also the pool's BeforeClose,
// for a connection destroyed on release (broken, or left in a transaction).
func (db *dbPool) unlease(conn *pgx.Conn) {
	if t, ok := db.leases.LoadAndDelete(conn); ok {
		<-t.(*Target).slots
	}
}
