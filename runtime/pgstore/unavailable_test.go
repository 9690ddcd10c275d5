package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/faultproxy"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/storetest"
	"github.com/durably-go/durably/store"
)

// connectError is what pgx returns when nothing listens at the address.
func connectError(t *testing.T) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = pgconn.Connect(context.Background(), "postgres://u@"+addr+"/db?connect_timeout=2")
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("connect to a closed port: %v, want a *pgconn.ConnectError", err)
	}
	return err
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"broken pipe", fmt.Errorf("write: %w", syscall.EPIPE), true},
		{"EOF mid-batch", fmt.Errorf("pgstore: commit group: %w", io.ErrUnexpectedEOF), true},
		{"EOF", io.EOF, true},
		{"closed conn", fmt.Errorf("pgstore: claim: %w", pgconn.ErrConnClosed), true},
		{"conn closed text", errors.New("conn closed"), true},
		{"connect error", connectError(t), true},
		{"failed to connect text", errors.New("failed to connect to `user=postgres database=test`: dial error"), true},
		{"admin shutdown 57P01", &pgconn.PgError{Code: "57P01"}, true},
		{"crash shutdown 57P02", &pgconn.PgError{Code: "57P02"}, true},
		{"starting up 57P03", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure 08006", &pgconn.PgError{Code: "08006"}, true},
		{"connection exception 08000", &pgconn.PgError{Code: "08000"}, true},
		{"serialization failure 40001", fmt.Errorf("x: %w", &pgconn.PgError{Code: "40001"}), true},
		{"deadlock 40P01", &pgconn.PgError{Code: "40P01"}, true},
		{"too many connections 53300", &pgconn.PgError{Code: "53300"}, true},
		{"disk full 53100", &pgconn.PgError{Code: "53100"}, true},
		{"out of memory 53200", &pgconn.PgError{Code: "53200"}, true},
		{"read-only transaction on a standby 25006", &pgconn.PgError{Code: "25006"}, true},
		{"unique violation 23505", &pgconn.PgError{Code: "23505"}, false},
		{"syntax error 42601", &pgconn.PgError{Code: "42601"}, false},
		{"undefined table 42P01", &pgconn.PgError{Code: "42P01"}, false},
		{"auth failure inside a connect error", fmt.Errorf("connect: %w: %w", connectError(t), &pgconn.PgError{Code: "28P01"}), false},
		{"our own cancel", context.Canceled, false},
		{"decode failure", errors.New("store: decode run: bad time"), false},
		{"already classified", fmt.Errorf("x: %w", store.ErrUnavailable), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err)
			if is := errors.Is(got, store.ErrUnavailable); is != tt.want {
				t.Fatalf("classify(%v) unavailable = %v, want %v", tt.err, is, tt.want)
			}
			if tt.err != nil && !errors.Is(got, tt.err) {
				t.Fatalf("classify(%v) lost the original error: %v", tt.err, got)
			}
			if tt.err != nil && got.Error() != tt.err.Error() {
				t.Fatalf("classify changed the message: %q", got.Error())
			}
		})
	}
}

// TestUnavailableThroughProxy cuts a real store off its server with the
// fault proxy (refuse new connections, reset open ones) and checks that
// what every kind of call returns is classified, then that the store works
// again once the proxy is back, with no reopening.
func TestUnavailableThroughProxy(t *testing.T) {
	dsn := pgtest.Schema(t)
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.Start(net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = proxy.Addr()
	ctx := context.Background()
	st, err := Open(ctx, u.String(), Options{DisableListen: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e, err := durably.New(durably.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	if err := proxy.Refuse(); err != nil {
		t.Fatal(err)
	}
	proxy.Reset()
	calls := storetest.OutageCalls(ctx, st, time.Now(), true)
	for _, c := range calls {
		if err := c.Do(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s while the database is unreachable: %v, want ErrUnavailable", c.Name, err)
		}
	}

	if err := proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		if err := c.Do(); err != nil {
			t.Errorf("%s after the database came back: %v", c.Name, err)
		}
	}
}

// TestAdminShutdownIsUnavailable terminates the store's connection from
// another session, as a server shutdown or a DBA does: the next call fails
// as unavailable, and the one after it works on a fresh connection.
func TestAdminShutdownIsUnavailable(t *testing.T) {
	dsn := pgtest.Schema(t)
	ctx := context.Background()
	st, err := Open(ctx, dsn, Options{DisableListen: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e, err := durably.New(durably.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// One connection in the pool, so that the next call gets the killed one.
	st.Pool().Reset()
	var pid int32
	if err := st.Pool().QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	other, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	// Written by hand: a test's administrative statement, not the store's.
	if err := other.Exec(ctx, fmt.Sprintf("SELECT pg_terminate_backend(%d)", pid)).Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the FATAL message reaches the client's socket
	if _, err := st.GetRun(ctx, "r1"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("GetRun on a terminated connection: %v, want ErrUnavailable", err)
	}
	if _, err := st.GetRun(ctx, "r1"); err != nil {
		t.Fatalf("GetRun after the termination: %v", err)
	}
}
