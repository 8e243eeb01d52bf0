// Package transient tells trouble that passes from errors that retrying cannot fix. A database
// that refuses connections for a moment, runs out of connection slots, is starting up or
// shutting down, or drops a connection is transient: the worker retries the work with back-off,
// without using up its attempts, for as long as its outage tolerance allows. Anything else is
// judged by the pipeline's ordinary rules (hooks.Retryable).
//
// The SQLSTATE classes taken as transient:
//
//	08     connection exception (connection refused by the server, lost, failed), except
//	       08P01 protocol_violation
//	53300  too_many_connections
//	57P01  admin_shutdown: the server terminated the session (a restart, pg_terminate_backend)
//	57P02  crash_shutdown
//	57P03  cannot_connect_now: the database is starting up or shutting down
//
// and, without a SQLSTATE: a connection that could not be made because the network failed
// (refused, reset, unreachable, timed out while dialing, a name that did not resolve), a
// connection closed under a query, and any error pgx says happened before the server could
// have seen the query (pgconn.SafeToRetry). Not transient: a failure to log in (SQLSTATE class
// 28), a database that does not exist (3D000), a TLS or authentication setting the server does
// not meet (configuration: retrying would only hide it), and the rest of class 53 (out of
// memory or lock slots, disk full: the same statement meets them again).
package transient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	// A pgconn.ConnectError wraps what failed: the network (below: transient), or a TLS or
	// authentication setting (not, even where pgx says nothing reached the server).
	if tlsRefused(err) {
		return false
	}
	return network(err) || pgconn.SafeToRetry(err)
}

// tlsRefused reports whether err is a TLS handshake that failed on a certificate or an alert.
func tlsRefused(err error) bool {
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &verify) || errors.As(err, &alert) || errors.As(err, &unknown) ||
		errors.As(err, &host) || errors.As(err, &invalid)
}

// network reports whether err is a failure of the network (or of the peer hanging up).
func network(err error) bool {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

func sqlState(code string) bool {
	if len(code) != 5 {
		return false
	}
	switch code {
	case "08P01":
		return false
	case "53300", "57P01", "57P02", "57P03":
		return true
	}
	return code[:2] == "08"
}
