package pgstore

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Wakeups starts, on first use, a connection that LISTENs for triggers made
// by other processes and delivers a value for each burst of them (D4).
func (s *Store) Wakeups() <-chan struct{} {
	if s.disableListen {
		return nil
	}
	s.listenOnce.Do(func() { go s.listen() })
	return s.wakeups
}

// listen holds one dedicated connection in LISTEN, reconnecting with
// backoff, until the store closes.
func (s *Store) listen() {
	defer close(s.listenDone)
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

func (s *Store) listenOnceConn(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	// LISTEN takes an identifier, which cannot be a bind parameter, so
	// this one statement is built here rather than by sqlc.
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	own := "w:" + s.instance
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Payload == own || !strings.HasPrefix(n.Payload, "w:") {
			continue
		}
		s.wake()
	}
}

func (s *Store) wake() {
	select {
	case s.wakeups <- struct{}{}:
	default:
	}
}
