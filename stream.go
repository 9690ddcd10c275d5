package durably

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/durably-go/durably/store"
)

// runStreamTypes are the events a run stream forwards: not
// step:cancel, run:trigger, run:coalesced, run:lease-renewed, worker:error.
var runStreamTypes = map[EventType]bool{
	EventRunLeased: true, EventRunComplete: true, EventRunFail: true, EventRunCancel: true, EventRunDelete: true,
	EventRunProgress: true, EventStepStart: true, EventStepComplete: true, EventStepFail: true, EventLogWrite: true,
}

// maxStreamBacklog bounds what a slow consumer of a run stream can hold in
// memory. Past it, progress and log events are dropped (a later progress
// supersedes an earlier one anyway); run and step events are kept.
const maxStreamBacklog = 1024

// SubscribeRun streams one run's events: first a snapshot of
// its current state (Sequence 0), then live events, and the channel closes
// after run:complete, run:fail, run:cancel or run:delete, or when ctx ends.
// A pending or missing run has no snapshot; the stream waits for it.
//
// On a store that carries events between processes (PostgreSQL, D3) the
// stream also follows a run executed elsewhere; since other processes may
// take a moment to notice a new watcher, the run is read once more a second
// in, and a finish missed meanwhile is reported from storage.
func (e *Engine) SubscribeRun(ctx context.Context, runID string) (<-chan Event, error) {
	q := newEventQueue()
	release := e.WatchRemoteEvents()
	unsubscribe := e.OnEvent(func(ev Event) {
		if ev.RunID == runID && runStreamTypes[ev.Type] {
			q.push(ev)
		}
	})
	run, err := e.store.GetRun(ctx, runID)
	if err != nil {
		unsubscribe()
		release()
		return nil, fmt.Errorf("durably: subscribe: %w", err)
	}
	snapshot := snapshotEvents(run, e.now())
	if e.transport != nil && (run == nil || !run.Status.Terminal()) {
		go e.resync(ctx, runID, q)
	}
	out := make(chan Event)
	go func() {
		defer close(out)
		defer release()
		defer unsubscribe()
		send := func(ev Event) bool {
			select {
			case out <- ev:
				return !ev.Type.ClosesRun()
			case <-ctx.Done():
				return false
			}
		}
		for _, ev := range snapshot {
			if !send(ev) {
				return
			}
		}
		for {
			ev, ok := q.pop(ctx)
			if !ok || !send(ev) {
				return
			}
		}
	}()
	return out, nil
}

// resync reads the run once more after other processes had time to notice
// this watcher, and reports a finish whose event may have been missed.
func (e *Engine) resync(ctx context.Context, runID string, q *eventQueue) {
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return
	}
	run, err := e.store.GetRun(ctx, runID)
	if err != nil || run == nil || !run.Status.Terminal() {
		return
	}
	for _, ev := range snapshotEvents(run, e.now()) {
		q.push(ev)
	}
}

// WatchRemoteEvents asks the store to deliver events of other processes
// (D3) until release is called; SubscribeRun does it by itself. Listeners
// of OnEvent that want remote events call it. Without an event-carrying
// store it does nothing.
func (e *Engine) WatchRemoteEvents() (release func()) {
	if e.transport == nil {
		return func() {}
	}
	return e.transport.WatchRemote()
}

// snapshotEvents describes a run's current state as the events a late
// subscriber missed (R-125, H-047).
func snapshotEvents(run *Run, now time.Time) []Event {
	if run == nil {
		return nil
	}
	base := Event{RunID: run.ID, JobName: run.JobName, Labels: run.Labels, Timestamp: now}
	switch run.Status {
	case store.StatusLeased:
		leased := base
		leased.Type, leased.Input, leased.LeaseOwner, leased.LeaseExpiresAt = EventRunLeased, run.Input, run.LeaseOwner, run.LeaseExpiresAt
		evs := []Event{leased}
		if run.Progress != nil {
			p := base
			p.Type, p.Progress = EventRunProgress, run.Progress
			evs = append(evs, p)
		}
		return evs
	case store.StatusCompleted:
		c := base
		c.Type, c.Output = EventRunComplete, run.Output
		return []Event{c}
	case store.StatusFailed:
		f := base
		f.Type, f.Error = EventRunFail, run.Error
		if f.Error == "" {
			f.Error = "Unknown error"
		}
		return []Event{f}
	case store.StatusCancelled:
		c := base
		c.Type = EventRunCancel
		return []Event{c}
	}
	return nil
}

// eventQueue is an unbounded-by-design, bounded-in-practice FIFO between a
// synchronous emitter, which must never block, and a consumer.
type eventQueue struct {
	mu     sync.Mutex
	items  []Event
	signal chan struct{}
}

func newEventQueue() *eventQueue { return &eventQueue{signal: make(chan struct{}, 1)} }

func (q *eventQueue) push(ev Event) {
	q.mu.Lock()
	if len(q.items) >= maxStreamBacklog && (ev.Type == EventRunProgress || ev.Type == EventLogWrite) {
		q.mu.Unlock()
		return
	}
	q.items = append(q.items, ev)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *eventQueue) pop(ctx context.Context) (Event, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			ev := q.items[0]
			q.items[0] = Event{}
			q.items = q.items[1:]
			q.mu.Unlock()
			return ev, true
		}
		q.mu.Unlock()
		select {
		case <-q.signal:
		case <-ctx.Done():
			return Event{}, false
		}
	}
}
