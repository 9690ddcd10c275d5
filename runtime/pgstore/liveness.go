package pgstore

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
)

// The liveness check. A connection can stop answering without being
// closed: a NAT or a load balancer forgets it, a failover moves a virtual
// IP, a firewall starts dropping. Nothing then tells the client; a read
// waits for ever. The deadlines of calls (deadline.go) bound that wait,
// but they must leave room for legitimate slow work, so they are long. The
// liveness check finds a silent connection much sooner, without cutting
// slow work short: once a connection in use has waited checkAfter for the
// server (a read of its socket in progress: a statement, a commit, the
// pool's ping, the login), the store asks the server, on a fresh
// connection, what that session is doing.
//
//   - Working on it ("active": running, waiting for a lock, sending
//     rows): the wait is legitimate; it is asked again later, less often.
//   - Idle, twice in a row for the same wait: the server answered, or
//     never got the question, and the answer is not coming. The connection
//     is abandoned (closed), so that the call fails as unavailable and the
//     work moves to a fresh connection.
//   - The server cannot be reached by a fresh connection within
//     probeTimeout either: the network is down. Every such wait is
//     abandoned, and so, until a probe reaches the server again, is every
//     wait of checkAfter.
//   - Anything else (idle in a transaction, a session the server does not
//     know, as behind a pooler that hands out pids of its own): no
//     conclusion; the call's deadline decides.
//
// The connections watched are those the pool dialled through
// ConfigurePool's dialer, which also sets TCP keepalive so that the kernel
// finds a dead peer even on a connection that waits on nothing. The LISTEN
// connection watches itself (listen.go).
const (
	checkAfter   = time.Second
	checkEvery   = 250 * time.Millisecond
	probeTimeout = 3 * time.Second
	recheckMax   = 10 * time.Second

	// What ConfigurePool sets, unless the configuration sets its own.
	pingTimeout    = 3 * time.Second
	connectTimeout = 5 * time.Second
)

// connSet is the connections a pool dialled through ConfigurePool's
// dialer. One per pool; found again by New through the tracer.
type connSet struct {
	base pgconn.DialFunc // the pool's own dialer

	mu     sync.Mutex
	open   map[*liveConn]struct{}
	closed bool

	// checkMu serializes the checks of stores sharing the pool, and guards
	// the check's bookkeeping on each connection.
	checkMu sync.Mutex
}

// liveConn is a connection of the set: a net.Conn that knows whether its
// client waits for the server, and can be abandoned.
type liveConn struct {
	net.Conn
	set *connSet
	pid atomic.Uint32
	// inUse: out of the pool (from the dial or the acquire to the
	// release). An idle connection's read in progress (pgx's background
	// reader can leave one behind) waits for nothing.
	inUse atomic.Bool
	// since is when the read in progress began (unix nanoseconds), 0
	// while there is none; waits counts reads and acquires, so that what
	// the server said during one wait is not taken for the next.
	since     atomic.Int64
	waits     atomic.Uint64
	abandoned atomic.Pointer[silentError]

	// The check's bookkeeping, under set.checkMu.
	checkedWait uint64
	nextCheck   time.Time
	gap         time.Duration
	idleSeen    bool
}

// silentError is what the calls waiting on an abandoned connection fail
// with: unavailable (transient), with the reason.
type silentError struct{ reason string }

func (e *silentError) Error() string { return "pgstore: connection abandoned: " + e.reason }

func (c *liveConn) Read(b []byte) (int, error) {
	c.waits.Add(1)
	c.since.Store(time.Now().UnixNano())
	n, err := c.Conn.Read(b)
	c.since.Store(0)
	if err != nil {
		if why := c.abandoned.Load(); why != nil {
			return n, why
		}
	}
	return n, err
}

func (c *liveConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		if why := c.abandoned.Load(); why != nil {
			return n, why
		}
	}
	return n, err
}

func (c *liveConn) Close() error {
	c.set.mu.Lock()
	delete(c.set.open, c)
	c.set.mu.Unlock()
	return c.Conn.Close()
}

// acquired marks the connection in use; a read left in progress since it
// was idle counts from now.
func (c *liveConn) acquired() {
	c.waits.Add(1)
	if c.since.Load() != 0 {
		c.since.Store(time.Now().UnixNano())
	}
	c.inUse.Store(true)
}

// abandon closes the connection if its client still waits in the wait the
// check looked at; the read in progress fails with why.
func (c *liveConn) abandon(wait uint64, why *silentError) bool {
	if c.waits.Load() != wait || c.since.Load() == 0 || !c.inUse.Load() {
		return false
	}
	c.abandoned.CompareAndSwap(nil, why)
	_ = c.Conn.Close()
	return true
}

// watchConns sets cfg up for the liveness check; see ConfigurePool.
func watchConns(cfg *pgxpool.Config) {
	if connsOf(cfg.ConnConfig.Tracer) != nil {
		return // set up already
	}
	set := &connSet{base: cfg.ConnConfig.DialFunc, open: map[*liveConn]struct{}{}}
	if set.base == nil {
		set.base = (&net.Dialer{}).DialContext
	}
	cfg.ConnConfig.DialFunc = set.dial
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	if cfg.PingTimeout == 0 {
		cfg.PingTimeout = pingTimeout
	}
	// ShouldPing is the one hook pgxpool calls, synchronously, on every
	// acquire, before the ping it may send.
	shouldPing := cfg.ShouldPing
	cfg.ShouldPing = func(ctx context.Context, p pgxpool.ShouldPingParams) bool {
		if c := liveConnOf(p.Conn); c != nil {
			c.acquired()
		}
		if shouldPing != nil {
			return shouldPing(ctx, p)
		}
		return p.IdleDuration > time.Second // pgxpool's default
	}
	var t pgx.QueryTracer = &tracer{set: set}
	if own := cfg.ConnConfig.Tracer; own != nil {
		t = multitracer.New(own, t)
	}
	cfg.ConnConfig.Tracer = t
}

// watchedConns is the set of pool's connections, or nil when the pool was
// not set up by ConfigurePool.
func watchedConns(pool *pgxpool.Pool) *connSet {
	return connsOf(pool.Config().ConnConfig.Tracer)
}

func connsOf(t pgx.QueryTracer) *connSet {
	if t := tracerOf(t); t != nil {
		return t.set
	}
	return nil
}

func tracerOf(t pgx.QueryTracer) *tracer {
	switch t := t.(type) {
	case *tracer:
		return t
	case *multitracer.Tracer:
		for _, q := range t.QueryTracers {
			if t := tracerOf(q); t != nil {
				return t
			}
		}
	}
	return nil
}

func (s *connSet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := s.dialUnwatched(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := &liveConn{Conn: nc, set: s}
	c.inUse.Store(true) // the login's reads are waits too
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = nc.Close()
		return nil, errors.New("pgstore: store closed")
	}
	s.open[c] = struct{}{}
	return c, nil
}

// dialUnwatched dials with the pool's dialer and TCP keepalive, for the
// connections that watch themselves (LISTEN) or are short-lived (the
// probe).
func (s *connSet) dialUnwatched(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := s.base(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if tcp, ok := nc.(*net.TCPConn); ok {
		tuneTCP(tcp)
	}
	return nc, nil
}

// close cuts every connection of the set and refuses new ones (the pool's
// store is closing).
func (s *connSet) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.closed = true
	conns := make([]*liveConn, 0, len(s.open))
	for c := range s.open {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.abandoned.CompareAndSwap(nil, &silentError{reason: "the store is closing"})
		_ = c.Close()
	}
}

// tracer learns each connection's server pid at its login, and when it
// goes back to the pool. It traces no query (pgx wants a QueryTracer).
type tracer struct{ set *connSet }

var (
	_ pgx.ConnectTracer     = (*tracer)(nil)
	_ pgxpool.ReleaseTracer = (*tracer)(nil)
)

func (*tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (*tracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (*tracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return ctx
}

func (*tracer) TraceConnectEnd(_ context.Context, data pgx.TraceConnectEndData) {
	if data.Conn == nil {
		return
	}
	if c := liveConnOf(data.Conn); c != nil {
		c.pid.Store(data.Conn.PgConn().PID())
		// Idle until acquired: a connection the pool opens in the
		// background (MinConns) is never acquired at once.
		c.inUse.Store(false)
	}
}

func (*tracer) TraceRelease(_ *pgxpool.Pool, data pgxpool.TraceReleaseData) {
	if c := liveConnOf(data.Conn); c != nil {
		c.inUse.Store(false)
	}
}

// liveConnOf is conn's socket, if the set dialled it.
func liveConnOf(conn *pgx.Conn) *liveConn {
	if conn == nil {
		return nil
	}
	nc := conn.PgConn().Conn()
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	c, _ := nc.(*liveConn)
	return c
}

// wait is a read the check looks at.
type wait struct {
	conn *liveConn
	wait uint64
	pid  uint32
}

// due returns the waits to look at now: those of checkAfter or more, of
// connections in use, whose next check is due. set.checkMu is held.
func (set *connSet) due(now time.Time) []wait {
	set.mu.Lock()
	defer set.mu.Unlock()
	var due []wait
	for c := range set.open {
		since := c.since.Load()
		if since == 0 || !c.inUse.Load() || now.Sub(time.Unix(0, since)) < checkAfter {
			continue
		}
		if w := c.waits.Load(); w != c.checkedWait {
			c.checkedWait, c.nextCheck, c.gap, c.idleSeen = w, time.Time{}, checkEvery, false
		}
		if now.Before(c.nextCheck) {
			continue
		}
		due = append(due, wait{conn: c, wait: c.checkedWait, pid: c.pid.Load()})
	}
	return due
}

// later spaces the checks of a wait the server says is legitimate (or
// cannot judge), doubling up to recheckMax. set.checkMu is held.
func (c *liveConn) later(now time.Time) {
	c.gap = min(2*c.gap, recheckMax)
	c.nextCheck = now.Add(c.gap)
	c.idleSeen = false
}

// probed is what a probe found.
type probed struct {
	waits  []wait
	states map[uint32]string
	err    error
}

// watch runs the liveness check until the store closes: every checkEvery
// it looks at the waits that are due, probing the server (one probe at a
// time, on a goroutine of its own, so that the ticks go on meanwhile).
func (s *Store) watch() {
	defer close(s.watchDone)
	if s.conns == nil {
		<-s.closing
		return
	}
	tick := time.NewTicker(checkEvery)
	defer tick.Stop()
	results := make(chan probed, 1)
	probing, down := false, false
	for {
		select {
		case <-s.closing:
			if probing {
				<-results // the probe's context ends with the store
			}
			return
		case r := <-results:
			probing = false
			down = s.judge(r, time.Now())
		case <-tick.C:
			due := s.dueWaits(time.Now(), down)
			if !probing && (len(due) > 0 || down) {
				probing = true
				go func() { results <- s.probe(due) }()
			}
		}
	}
}

// dueWaits returns the waits to probe; while the server is known to be out
// of reach, it abandons them instead.
func (s *Store) dueWaits(now time.Time, down bool) []wait {
	s.conns.checkMu.Lock()
	defer s.conns.checkMu.Unlock()
	due := s.conns.due(now)
	if down {
		s.abandon(due, errOutOfReach, slog.LevelDebug) // logged when the server was found out of reach
		return nil
	}
	return due
}

// errOutOfReach is why waits are abandoned while the server cannot be
// reached.
var errOutOfReach = &silentError{reason: "no answer, and a fresh connection could not reach the server within " + probeTimeout.String()}

// judge acts on a probe's findings and reports whether the server is out
// of reach.
func (s *Store) judge(r probed, now time.Time) (down bool) {
	s.conns.checkMu.Lock()
	defer s.conns.checkMu.Unlock()
	if r.err != nil {
		if errors.Is(r.err, errUnreachable) {
			s.abandon(r.waits, errOutOfReach, slog.LevelWarn)
			return true
		}
		s.logger.Debug("durably: liveness check failed", "err", r.err)
		for _, w := range r.waits {
			w.conn.later(now)
		}
		return false
	}
	var silent []wait
	for _, w := range r.waits {
		switch {
		case r.states[w.pid] != "idle":
			w.conn.later(now)
		case w.conn.idleSeen:
			silent = append(silent, w)
		default:
			w.conn.idleSeen, w.conn.nextCheck = true, now.Add(checkEvery)
		}
	}
	s.abandon(silent, &silentError{reason: "the server reports the session idle while the connection waits for its answer"}, slog.LevelWarn)
	return false
}

// abandon abandons the waits still in progress, logging it at level.
func (s *Store) abandon(waits []wait, why *silentError, level slog.Level) {
	n := 0
	for _, w := range waits {
		if w.conn.abandon(w.wait, why) {
			n++
		}
	}
	if n > 0 {
		s.logger.Log(context.Background(), level, "durably: database connections abandoned", "count", n, "reason", why.reason)
		s.resetPool()
	}
}

// errUnreachable: the probe's fresh connection got no answer in time.
var errUnreachable = errors.New("pgstore: the server cannot be reached")

// probe asks the server, on a fresh connection (not the pool's, whose
// connections may all be silent), what the sessions of waits are doing.
func (s *Store) probe(waits []wait) probed {
	ctx, cancel := context.WithTimeout(s.life, probeTimeout)
	defer cancel()
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.Tracer = nil // the probe's connection is not one of the pool's
	cfg.DialFunc = s.conns.dialUnwatched
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return probed{waits: waits, err: s.probeFailure(ctx, err)}
	}
	defer conn.Close(ctx) //nolint:errcheck
	pids := make([]int32, len(waits))
	for i, w := range waits {
		pids[i] = int32(w.pid)
	}
	rows, err := pgdb.New(conn).BackendStates(ctx, pids)
	if err != nil {
		return probed{waits: waits, err: s.probeFailure(ctx, err)}
	}
	states := make(map[uint32]string, len(rows))
	for _, r := range rows {
		states[uint32(r.Pid)] = r.State
	}
	return probed{waits: waits, states: states}
}

// probeFailure tells a server out of reach (no answer before the probe's
// deadline) from other failures, which say nothing of the waits.
func (s *Store) probeFailure(ctx context.Context, err error) error {
	if s.life.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errors.Join(errUnreachable, err)
	}
	return err
}

// keepAlive is the TCP keepalive of the pool's connections (tuneTCP).
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 3}
