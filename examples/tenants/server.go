package main

import (
	"container/list"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durably-go/durably/examples/tenants/tenantjobs"
	"github.com/durably-go/durably/runtime/durablyhttp"
)

// The HTTP server's time limits. Each bounds how long a client that does
// nothing can hold a connection (and so a file descriptor and a
// goroutine): without IdleTimeout, keep-alive connections are kept
// forever.
const (
	readHeaderTimeout = 10 * time.Second // a client sending its request slowly
	readTimeout       = 30 * time.Second // the whole request, body included
	writeTimeout      = 30 * time.Second // the response; event streams set their own per write
	idleTimeout       = 60 * time.Second // a keep-alive connection between requests
)

// serverLimits are the bounds the server and handler apply.
type serverLimits struct {
	MaxConns               int // open connections; at it the longest-idle one is closed
	MaxStreams             int // event streams open at once
	MaxStreamsPerPrincipal int // event streams of one user
}

// defaultLimits derives the bounds from the process's file descriptor
// limit (Go raises the soft limit to the hard one at startup): most
// descriptors may be connections, a reserve stays for the database and
// logs, and at most half the connections may be event streams, so that
// requests always find room.
func defaultLimits(fdLimit int) serverLimits {
	conns := fdLimit - 1024
	if conns < fdLimit/2 {
		conns = fdLimit / 2
	}
	return serverLimits{MaxConns: conns, MaxStreams: conns / 2, MaxStreamsPerPrincipal: 32}
}

// newHTTPServer returns the server for handler with the time limits
// above, and the listener wrapper that keeps it under lim.MaxConns.
func newHTTPServer(handler http.Handler, lim serverLimits, logger *slog.Logger) (*http.Server, *connLimiter) {
	cl := newConnLimiter(lim.MaxConns, logger)
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ConnState:         cl.connState,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}, cl
}

// handlerLimits sets the handler's bounds on event streams; a user is
// the principal (user IDs are unique only within an organization here).
func handlerLimits(opts *durablyhttp.Options[tenantjobs.AuthContext, tenantjobs.Labels], lim serverLimits) {
	opts.MaxStreams = lim.MaxStreams
	opts.MaxStreamsPerPrincipal = lim.MaxStreamsPerPrincipal
	opts.StreamPrincipal = func(_ *http.Request, c tenantjobs.AuthContext) string {
		return fmt.Sprintf("%d:%s/%s", len(c.OrgID), c.OrgID, c.UserID)
	}
	opts.StreamWriteTimeout = 30 * time.Second
}

// connLimiter keeps a server's open connections under a bound, so that it
// never runs out of file descriptors: past the limit, accept4 fails with
// "too many open files" and new clients time out while idle keep-alive
// connections hold every descriptor. At the bound, accepting a connection
// first closes the connection that has been idle longest (as nginx reuses
// its keep-alive connections); a keep-alive client whose idle connection
// is closed opens another when it next needs one. Connections in use are
// never closed: when none is idle, new clients wait in the listen backlog
// until one closes.
type connLimiter struct {
	max    int
	logger *slog.Logger

	mu    sync.Mutex
	open  int
	idle  list.List     // of *limitedConn, longest idle first
	freed chan struct{} // a connection closed

	shed       atomic.Int64 // idle connections closed to make room
	lastLogged atomic.Int64 // unix nanoseconds
}

func newConnLimiter(max int, logger *slog.Logger) *connLimiter {
	return &connLimiter{max: max, logger: logger, freed: make(chan struct{}, 1)}
}

// Listener wraps ln; with max <= 0 it returns ln unchanged.
func (l *connLimiter) Listener(ln net.Listener) net.Listener {
	if l.max <= 0 {
		return ln
	}
	return &limitedListener{Listener: ln, l: l, done: make(chan struct{})}
}

// Shed reports how many idle connections were closed to make room.
func (l *connLimiter) Shed() int64 { return l.shed.Load() }

// connState is the server's ConnState hook: it keeps the list of idle
// connections.
func (l *connLimiter) connState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st == http.StateIdle {
		if c.elem == nil && !c.closed {
			c.elem = l.idle.PushBack(c)
		}
		return
	}
	if c.elem != nil {
		l.idle.Remove(c.elem)
		c.elem = nil
	}
}

// admit takes a slot for an accepted connection, or when all are taken
// closes the longest-idle connection, whose slot comes back through
// release, and reports false.
func (l *connLimiter) admit() bool {
	l.mu.Lock()
	if l.open < l.max {
		l.open++
		l.mu.Unlock()
		return true
	}
	var victim *limitedConn
	if e := l.idle.Front(); e != nil {
		victim = l.idle.Remove(e).(*limitedConn)
		victim.elem = nil
	}
	l.mu.Unlock()
	if victim == nil {
		return false // wait for a connection to close
	}
	// A request may arrive on it just now; the client sees the connection
	// close before any response and, for an idempotent request, retries.
	_ = victim.Close()
	n := l.shed.Add(1)
	now := time.Now().UnixNano()
	if last := l.lastLogged.Load(); now-last >= int64(10*time.Second) && l.lastLogged.CompareAndSwap(last, now) {
		l.logger.Warn("tenants: at the connection limit, closing the longest-idle connections", "limit", l.max, "closedSoFar", n)
	}
	return false
}

func (l *connLimiter) release() {
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

type limitedListener struct {
	net.Listener
	l         *connLimiter
	closeOnce sync.Once
	done      chan struct{}
}

// Accept admits a connection once it fits under the limit. It accepts
// first: reserving the slot beforehand would close an idle connection
// before any client needs its place. So one connection past the limit
// may wait here, which the file descriptors held in reserve allow for.
func (ln *limitedListener) Accept() (net.Conn, error) {
	c, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for !ln.l.admit() {
		select {
		case <-ln.l.freed:
		case <-ln.done:
			_ = c.Close()
			return nil, net.ErrClosed
		}
	}
	return &limitedConn{Conn: c, l: ln.l}, nil
}

func (ln *limitedListener) Close() error {
	ln.closeOnce.Do(func() { close(ln.done) })
	return ln.Listener.Close()
}

type limitedConn struct {
	net.Conn
	l      *connLimiter
	elem   *list.Element // in l.idle while idle; guarded by l.mu
	closed bool          // guarded by l.mu
	once   sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.closed = true
		if c.elem != nil {
			c.l.idle.Remove(c.elem)
			c.elem = nil
		}
		c.l.mu.Unlock()
		c.l.release()
	})
	return err
}

// passwordParam matches a password in a key=value DSN.
var passwordParam = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)`)

// redactDSN returns dsn fit for a log: passwords, in the URL's user
// information, in its query or in key=value form, are replaced by xxxxx.
func redactDSN(dsn string) string {
	if !strings.Contains(dsn, "://") {
		return passwordParam.ReplaceAllString(dsn, "${1}xxxxx")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "(a DSN that does not parse; not shown)"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
