package pgstore

import (
	"context"
	"encoding/json"
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
	s.ensureListening()
	return s.wakeups
}

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
	// Payloads: "w:<instance>" wakes workers, "p:<instance>" announces a
	// new event watcher, "e:<instance>:[events]" carries events,
	// "r:<instance>:<id>" an event parked by id.
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		kind, rest, _ := strings.Cut(n.Payload, ":")
		from, body, _ := strings.Cut(rest, ":")
		if from == s.instance {
			continue
		}
		switch kind {
		case "w":
			s.wake()
		case "p":
			s.publish.Store(true) // a process started watching for events
		case "e":
			s.deliverEvents([]byte(body))
		case "r":
			payload, err := s.q.GetEventPayload(ctx, body)
			if err != nil {
				s.logger.Warn("durably: event payload not found", "id", body, "err", err)
				continue
			}
			s.deliver([]byte(payload))
		}
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
