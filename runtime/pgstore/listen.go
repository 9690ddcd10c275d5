package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Wakeups starts, on first use, a connection that LISTENs for triggers made
// by other processes and delivers a value for each burst of them (D4). It
// returns once the LISTEN took effect, or after listenStartWait: a worker
// that claimed first and went idle before it would miss, until its next
// poll, a trigger committed in between.
func (s *Store) Wakeups() <-chan struct{} {
	if s.disableListen {
		return nil
	}
	s.ensureListening()
	t := time.NewTimer(listenStartWait)
	defer t.Stop()
	select {
	case <-s.listening:
	case <-t.C:
	case <-s.closing:
	}
	return s.wakeups
}

// listenStartWait bounds Wakeups' wait for the first LISTEN: a database
// away at start-up delays a worker's first claim, which would fail, no
// longer than this.
const listenStartWait = 2 * time.Second

func (s *Store) ensureListening() {
	s.listenOnce.Do(func() { go s.listen() })
}

// listen holds one dedicated connection in LISTEN, reconnecting with
// backoff, until the store closes.
func (s *Store) listen() {
	defer close(s.listenDone)
	defer close(s.remote)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.closing
		cancel()
	}()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnceConn(ctx)
		if ctx.Err() != nil {
			return
		}
		s.logger.Warn("durably: LISTEN connection lost; reconnecting", "err", err, "in", backoff)
		// A trigger may have been missed while disconnected: wake anyway.
		s.wake()
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// listenQuiet is how long the LISTEN connection waits for a notification
// before it makes sure, with a ping, that the server is still there: a
// connection that went silent (a NAT or load balancer that forgot it)
// would otherwise wait for ever, and the process would hear no other
// process's triggers or events until it restarted.
const listenQuiet = 5 * time.Second

func (s *Store) listenOnceConn(ctx context.Context) error {
	connectCtx, cancel := s.bound(ctx)
	defer cancel()
	cfg := s.pool.Config().ConnConfig.Copy()
	if s.conns != nil {
		cfg.DialFunc = s.conns.dialUnwatched // it watches itself (nextNotification)
	}
	conn, err := pgx.ConnectConfig(connectCtx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := s.bound(context.Background())
		defer cancel()
		conn.Close(closeCtx) //nolint:errcheck // the Terminate message of a dying connection
	}()
	// LISTEN takes an identifier, which cannot be a bind parameter, so
	// this one statement is built here rather than by sqlc.
	if _, err := conn.Exec(connectCtx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	s.listeningOnce.Do(func() { close(s.listening) })
	for {
		n, err := s.nextNotification(ctx, conn)
		if err != nil {
			return err
		}
		s.dispatch(ctx, n)
	}
}

// nextNotification waits for a notification, pinging the server after
// each listenQuiet without one; a ping that gets no answer within
// pingTimeout ends the connection.
func (s *Store) nextNotification(ctx context.Context, conn *pgx.Conn) (*pgconn.Notification, error) {
	for {
		quiet, cancel := context.WithTimeout(ctx, listenQuiet)
		n, err := conn.WaitForNotification(quiet)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(quiet.Err(), context.DeadlineExceeded) {
			return n, err
		}
		// A wait that timed out leaves the connection usable.
		ping, cancel := context.WithTimeout(ctx, pingTimeout)
		err = conn.Ping(ping)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("pgstore: LISTEN connection silent (no answer to a ping within %v): %w", pingTimeout, err)
		}
	}
}

// dispatch acts on a notification. Payloads: "w:<instance>" wakes
// workers, "p:<instance>" announces a new event watcher,
// "e:<instance>:[events]" carries events, "r:<instance>:<id>" an event
// parked by id.
func (s *Store) dispatch(ctx context.Context, n *pgconn.Notification) {
	kind, rest, _ := strings.Cut(n.Payload, ":")
	from, body, _ := strings.Cut(rest, ":")
	if from == s.instance {
		return
	}
	switch kind {
	case "w":
		s.wake()
	case "p":
		s.publish.Store(true) // a process started watching for events
	case "e":
		s.deliverEvents([]byte(body))
	case "r":
		ctx, cancel := s.bound(ctx)
		defer cancel()
		payload, err := s.q.GetEventPayload(ctx, body)
		if err != nil {
			s.logger.Warn("durably: event payload not found", "id", body, "err", err)
			return
		}
		s.deliver([]byte(payload))
	}
}

// deliverEvents splits a JSON array of events.
func (s *Store) deliverEvents(array []byte) {
	var events []json.RawMessage
	if err := json.Unmarshal(array, &events); err != nil {
		s.logger.Warn("durably: malformed event notification", "err", err)
		return
	}
	for _, e := range events {
		s.deliver(e)
	}
}

// deliver hands a remote event to the engine; a reader that falls behind
// loses events rather than blocking the LISTEN connection.
func (s *Store) deliver(e []byte) {
	select {
	case s.remote <- e:
	default:
		s.logger.Warn("durably: remote event dropped: reader too slow")
	}
}

func (s *Store) wake() {
	select {
	case s.wakeups <- struct{}{}:
	default:
	}
}
