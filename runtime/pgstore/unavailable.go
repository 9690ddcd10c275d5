package pgstore

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/store"
)

// classify marks the errors that say the database was out of reach, or asked
// to be retried, rather than anything about the operation, as
// store.ErrUnavailable: the engine retries those (fenced writes are safe to
// repeat) and the HTTP handler answers 503.
func classify(err error) error { return storekit.Classify(err, transient) }

// transientStates are the SQLSTATEs after which the same statement can
// succeed unchanged once the server is back or the conflict is gone.
var transientStates = map[string]bool{
	"57P01": true, // admin_shutdown: a fast or smart shutdown ended the session
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now: starting up or shutting down
	"40001": true, // serialization_failure
	"40P01": true, // deadlock_detected
	"53300": true, // too_many_connections
	"53100": true, // disk_full: as SQLite's FULL, retried until space is freed
	"53200": true, // out_of_memory
	"25006": true, // read_only_sql_transaction: a standby, during a failover
}

func transient(err error) bool {
	var silent *silentError
	var limit *noAnswerError
	if errors.Is(err, store.ErrUnavailable) || errors.As(err, &silent) || errors.As(err, &limit) {
		return true // classified already, abandoned by the liveness check, or past the call's deadline
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08 is "connection exception" as the server reports it.
		return transientStates[pgErr.Code] || len(pgErr.Code) == 5 && pgErr.Code[:2] == "08"
	}
	// Our own cancellation says nothing about the database.
	if errors.Is(err, context.Canceled) {
		return false
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true // no PgError inside (checked above): the network or the server's absence
	}
	if errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true // dial, read or write failures on the socket, timeouts included
	}
	// pgx reports a connection that died mid-batch or was closed under a
	// pool's feet with these messages only.
	msg := err.Error()
	for _, m := range []string{"conn closed", "unexpected EOF", "connection reset by peer", "broken pipe", "failed to connect"} {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}
