package durably

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// When the database is unavailable (store.ErrUnavailable: connection
// refused or reset, administrator shutdown, serialization failure, SQLite
// busy or disk full), the engine waits and tries again instead of giving
// up: a lease holder's writes are fenced by generation, so repeating one is
// safe, and giving up would strand the run until its lease expired.
const (
	retryMin = 50 * time.Millisecond
	retryMax = time.Second
	// outageReminderMin is how long an outage lasts before it is logged a
	// second time; the reminders then come at doubling intervals.
	outageReminderMin = 10 * time.Second
	outageReminderMax = 5 * time.Minute
)

// backoff spaces attempts: retryMin doubling to retryMax, each jittered
// by ±25% so that the workers of many processes do not retry in step.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = retryMin
	} else {
		b.d = min(2*b.d, retryMax)
	}
	return b.d*3/4 + rand.N(b.d/2)
}

func (b *backoff) reset() { b.d = 0 }

// sleepCtx waits d, or less if ctx ends; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// outage logs the database's unavailability once when it begins, then at
// growing intervals while it lasts, and once when it ends, instead of every
// failed poll and retry. Every store call the engine retries reports to it.
type outage struct {
	down atomic.Bool // fast path for ok, which every successful call makes

	mu       sync.Mutex
	since    time.Time
	remindAt time.Time
	remind   time.Duration
	notify   func(OutageInfo) // Observer.Outage, if any
}

// failed records a transient failure of the database.
func (o *outage) failed(logger *slog.Logger, what string, err error) {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.down.Load() {
		o.down.Store(true)
		o.since, o.remind = now, outageReminderMin
		o.remindAt = now.Add(o.remind)
		logger.Warn("durably: database unavailable; retrying with backoff", "op", what, "err", err)
		o.observe(true, what, err)
		return
	}
	if now.After(o.remindAt) {
		o.remind = min(2*o.remind, outageReminderMax)
		o.remindAt = now.Add(o.remind)
		logger.Warn("durably: database still unavailable", "for", now.Sub(o.since).Round(time.Millisecond).String(), "op", what, "err", err)
	}
}

// ok records that the database answered.
func (o *outage) ok(logger *slog.Logger) {
	if !o.down.Load() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.down.Load() {
		o.down.Store(false)
		logger.Info("durably: database reachable again", "after", time.Since(o.since).Round(time.Millisecond).String())
		o.observe(false, "", nil)
	}
}

// unavailable reports whether err says the database was out of reach.
func unavailable(err error) bool { return errors.Is(err, ErrUnavailable) }
