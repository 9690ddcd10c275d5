package storekit

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/durably-go/durably/store"
)

// DroppedWrites reports the failures of queued, fire-and-forget writes
// (progress, logs) for a store's writer. A failure of the write itself is
// logged every time; a database outage, which fails every such write for
// as long as it lasts, is logged once and then summarised every Every.
type DroppedWrites struct {
	Logger *slog.Logger
	Every  time.Duration    // default 10s
	Now    func() time.Time // default time.Now

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// Report is the writer's callback for a dropped write.
func (d *DroppedWrites) Report(err error) {
	if !errors.Is(err, store.ErrUnavailable) {
		d.Logger.Error("durably: queued write failed", "err", err)
		return
	}
	now, every := time.Now, d.Every
	if d.Now != nil {
		now = d.Now
	}
	if every <= 0 {
		every = 10 * time.Second
	}
	t := now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.last.IsZero() && t.Sub(d.last) < every {
		d.suppressed++
		return
	}
	d.Logger.Warn("durably: queued writes dropped: database unavailable", "err", err, "alsoDroppedSinceLastReport", d.suppressed)
	d.last, d.suppressed = t, 0
}
