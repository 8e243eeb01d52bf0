// Package transient tells trouble that passes from errors that retrying cannot fix. A database
// that refuses connections for a moment, runs out of connection slots, is starting up or
// shutting down, or drops a connection is transient: the worker retries the work with back-off,
// without using up its attempts, for as long as its outage tolerance allows. Anything else is
// judged by the pipeline's ordinary rules (hooks.Retryable).
//
// The SQLSTATE classes taken as transient:
//
//	08     connection exception (connection refused by the server, lost, failed)
//	53     insufficient resources (too_many_connections 53300, out of memory, disk full)
//	57P01  admin_shutdown: the server terminated the session (a restart, pg_terminate_backend)
//	57P02  crash_shutdown
//	57P03  cannot_connect_now: the database is starting up or shutting down
//
// and, without a SQLSTATE: a connection that could not be made (refused, reset, unreachable,
// timed out while dialing, a name that did not resolve), a connection closed under a query, and
// any error pgx says happened before the server could have seen the query (pgconn.SafeToRetry).
// A failure to log in (SQLSTATE class 28) or a database that does not exist (3D000) is not
// transient: it is configuration, and retrying would only hide it.
package transient

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Is reports whether err is transient trouble (see the package doc). A context's own
// cancellation or deadline is not: the caller knows why its context ended.
func Is(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return sqlState(pgErr.Code)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true // no SQLSTATE: the server was not reached, or hung up on the handshake
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	return pgconn.SafeToRetry(err)
}

func sqlState(code string) bool {
	if len(code) != 5 {
		return false
	}
	switch code[:2] {
	case "08", "53":
		return true
	}
	switch code {
	case "57P01", "57P02", "57P03":
		return true
	}
	return false
}
