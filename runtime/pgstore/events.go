package pgstore

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
	"github.com/durably-go/durably/store"
)

// maxNotifyPayload stays under PostgreSQL's 8000-byte NOTIFY payload limit
// with room for the prefix.
const maxNotifyPayload = 7900

// payloadRetention is how long a parked oversized event stays fetchable.
const payloadRetention = time.Minute

var _ store.EventTransport = (*Store)(nil)

// PublishEvents queues events for the other processes. They travel with the
// writer's next group: packed into as few notifications as fit, and an
// event too large for one is parked in durably_event_payloads and sent by
// id.
func (s *Store) PublishEvents(payloads [][]byte) error {
	if len(payloads) == 0 || !s.publish.Load() {
		return nil // nobody elsewhere watches
	}
	return s.lane("").Submit(&op{kind: opPublish, payloads: payloads})
}

// Publishing reports whether another process watches events now.
func (s *Store) Publishing() bool { return s.publish.Load() }

// RemoteEvents delivers the events other processes publish.
func (s *Store) RemoteEvents() <-chan []byte {
	s.ensureListening()
	return s.remote
}

// packEvents groups encoded events into notification payloads, and returns
// the events too large for any notification separately.
func (s *Store) packEvents(ops []*op) (notifications []string, oversized [][]byte) {
	prefix := "e:" + s.instance + ":"
	var cur bytes.Buffer
	flush := func() {
		if cur.Len() > 0 {
			cur.WriteByte(']')
			notifications = append(notifications, cur.String())
			cur.Reset()
		}
	}
	for _, o := range ops {
		for _, p := range o.payloads {
			if len(prefix)+len(p)+2 > maxNotifyPayload {
				oversized = append(oversized, p)
				continue
			}
			if cur.Len() > 0 && cur.Len()+len(p)+2 > maxNotifyPayload {
				flush()
			}
			if cur.Len() == 0 {
				cur.WriteString(prefix)
				cur.WriteByte('[')
			} else {
				cur.WriteByte(',')
			}
			cur.Write(p)
		}
	}
	flush()
	return notifications, oversized
}

// Other processes' events are published only while some process watches
// for them: watchers keep a row in durably_event_listeners fresh, and every
// store checks a few times a second whether any other watcher exists.
const (
	presenceTTL      = 6 * time.Second
	presenceRefresh  = 2 * time.Second
	listenerInterval = 250 * time.Millisecond
)

// WatchRemote declares interest in other processes' events until release
// is called.
func (s *Store) WatchRemote() (release func()) {
	s.ensureListening()
	s.watchMu.Lock()
	s.watchers++
	first := s.watchers == 1
	s.watchMu.Unlock()
	if first {
		ctx, cancel := s.bound(context.Background())
		s.refreshPresence(ctx)
		// Tell the others now rather than at their next check, so that a
		// run triggered right after this does not go unwatched.
		if err := s.q.Notify(ctx, pgdb.NotifyParams{Channel: s.channel, Payload: "p:" + s.instance}); err != nil {
			s.logger.Warn("durably: watcher notification not sent", "err", err)
		}
		cancel()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.watchMu.Lock()
			s.watchers--
			last := s.watchers == 0
			s.watchMu.Unlock()
			if last {
				ctx, cancel := s.bound(context.Background())
				defer cancel()
				now := ts(time.Now())
				if err := s.q.DeleteEventListener(ctx, pgdb.DeleteEventListenerParams{Instance: s.instance, Now: now}); err != nil {
					s.logger.Warn("durably: event listener row not removed; it expires", "err", err)
				}
			}
		})
	}
}

func (s *Store) refreshPresence(ctx context.Context) {
	err := s.q.UpsertEventListener(ctx, pgdb.UpsertEventListenerParams{
		Instance: s.instance, ExpiresAt: ts(time.Now().Add(presenceTTL)),
	})
	if err != nil {
		s.logger.Warn("durably: event listener row not written", "err", err)
	}
}

// presenceLoop keeps this store's watcher row fresh and learns whether any
// other process watches, until the store closes.
func (s *Store) presenceLoop() {
	tick := time.NewTicker(listenerInterval)
	defer tick.Stop()
	var lastRefresh time.Time
	for {
		select {
		case <-s.closing:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		now := time.Now()
		s.watchMu.Lock()
		watching := s.watchers > 0
		s.watchMu.Unlock()
		if watching && now.Sub(lastRefresh) >= presenceRefresh {
			s.refreshPresence(ctx)
			lastRefresh = now
		}
		others, err := s.q.OtherEventListeners(ctx, pgdb.OtherEventListenersParams{Instance: s.instance, Now: ts(now)})
		cancel()
		if err == nil {
			s.publish.Store(others)
		}
	}
}
