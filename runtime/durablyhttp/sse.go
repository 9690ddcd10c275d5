package durablyhttp

import (
	"net/http"
	"sync"
	"time"

	"github.com/durably-go/durably"
)

// writeTimeout bounds one write to a client: a client that stops reading
// loses its stream instead of holding a goroutine forever.
const writeTimeout = 30 * time.Second

// sse writes one Server-Sent Events response (H-052): "data: <json>\n\n"
// messages, comment heartbeats, and the progress throttle of H-053.
type sse struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	throttle time.Duration
	encode   func(b []byte, e *durably.Event) ([]byte, bool)

	buf      []byte
	lastSent map[string]time.Time
	held     map[string]durably.Event // the latest throttled progress per run
	timer    *time.Timer
	failed   bool
}

func newSSE(w http.ResponseWriter, throttle time.Duration, encode func([]byte, *durably.Event) ([]byte, bool)) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: http.NewResponseController(w), throttle: throttle, encode: encode,
		lastSent: map[string]time.Time{}, held: map[string]durably.Event{}, timer: time.NewTimer(time.Hour)}
	s.timer.Stop()
	s.flush()
	return s
}

// send writes one message now.
func (s *sse) send(e *durably.Event) {
	if s.failed {
		return
	}
	b, ok := s.encode(append(s.buf[:0], "data: "...), e)
	if !ok {
		return
	}
	s.buf = append(b, '\n', '\n')
	s.write(s.buf)
}

func (s *sse) write(b []byte) {
	_ = s.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := s.w.Write(b); err != nil {
		s.failed = true
		return
	}
	s.flush()
}

func (s *sse) flush() {
	if err := s.rc.Flush(); err != nil {
		s.failed = true
	}
}

func (s *sse) heartbeat() { s.write([]byte(": ping\n\n")) }

// handle applies the throttle (H-053) and sends or holds e.
func (s *sse) handle(e *durably.Event, now time.Time) {
	switch {
	case e.Type == durably.EventRunProgress && s.throttle > 0:
		if last, ok := s.lastSent[e.RunID]; !ok || now.Sub(last) >= s.throttle {
			delete(s.held, e.RunID)
			s.lastSent[e.RunID] = now
			s.send(e)
			return
		}
		s.held[e.RunID] = *e
		s.schedule()
	case e.Type.ClosesRun():
		if held, ok := s.held[e.RunID]; ok {
			delete(s.held, e.RunID)
			s.send(&held)
		}
		delete(s.lastSent, e.RunID)
		s.send(e)
	default:
		s.send(e)
	}
}

// schedule arms the timer for the earliest held progress.
func (s *sse) schedule() {
	var next time.Time
	for run := range s.held {
		due := s.lastSent[run].Add(s.throttle)
		if next.IsZero() || due.Before(next) {
			next = due
		}
	}
	if next.IsZero() {
		return
	}
	s.timer.Reset(time.Until(next))
}

// due sends the held progress whose window has passed.
func (s *sse) due(now time.Time) {
	for run, e := range s.held {
		if now.Sub(s.lastSent[run]) >= s.throttle {
			delete(s.held, run)
			s.lastSent[run] = now
			s.send(&e)
		}
	}
	s.schedule()
}

// drainHeld sends every held progress: the stream is ending (H-053 rule 4).
func (s *sse) drainHeld() {
	for run, e := range s.held {
		delete(s.held, run)
		s.send(&e)
	}
}

// queue is a bounded FIFO between the engine's synchronous event delivery,
// which must never block, and a stream's writer. When a client reads too
// slowly for the buffer, the queue overflows and the stream ends; the
// client reconnects and starts from a fresh snapshot.
type queue struct {
	mu         sync.Mutex
	items      []durably.Event
	max        int
	overflowed bool
	signal     chan struct{}
}

func newQueue(max int) *queue { return &queue{max: max, signal: make(chan struct{}, 1)} }

func (q *queue) push(e durably.Event) {
	q.mu.Lock()
	if len(q.items) >= q.max {
		q.overflowed = true
	} else {
		q.items = append(q.items, e)
	}
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// take returns everything queued, and whether the queue overflowed.
func (q *queue) take(into []durably.Event) ([]durably.Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	into = append(into[:0], q.items...)
	clear(q.items)
	q.items = q.items[:0]
	return into, q.overflowed
}

// subscribe serves GET /subscribe (H-046 … H-049): the run's snapshot,
// then its live events, ending after the run's last event.
func (h *Handler[C, L]) subscribe(req *request[C], run *durably.Run) {
	h.streams.Add(1)
	defer h.streams.Done()
	ctx, cancel := h.streamContext(req.r)
	defer cancel()
	events, err := h.e.SubscribeRun(ctx, run.ID)
	if err != nil {
		h.fail(req, err)
		return
	}
	s := newSSE(req.w, h.opts.SSEThrottle, func(b []byte, e *durably.Event) ([]byte, bool) { return e.AppendJSON(b), true })
	heartbeat := h.heartbeat()
	defer heartbeat.Stop()
	for !s.failed {
		select {
		case e, ok := <-events:
			if !ok {
				s.drainHeld()
				return
			}
			s.handle(&e, time.Now())
			if e.Type.ClosesRun() {
				s.drainHeld()
				return
			}
		case <-s.timer.C:
			s.due(time.Now())
		case <-heartbeat.C:
			s.heartbeat()
		case <-ctx.Done():
			return
		}
	}
}

// heartbeat returns a ticker of comment lines, or a stopped one.
func (h *Handler[C, L]) heartbeat() *time.Ticker {
	if h.opts.Heartbeat < 0 {
		t := time.NewTicker(time.Hour)
		t.Stop()
		return t
	}
	return time.NewTicker(h.opts.Heartbeat)
}

// subscribeRuns serves GET /runs/subscribe (H-050, H-051): projections of
// the events that pass the scoped filter, until the client goes away.
func (h *Handler[C, L]) subscribeRuns(req *request[C]) {
	q := req.r.URL.Query()
	filter := SubscribeFilter[L]{JobNames: q["jobName"]}
	var err error
	if filter.Labels, err = labelsFromQuery[L](req.r); err != nil {
		writeError(req.w, http.StatusBadRequest, err.Error())
		return
	}
	if h.hooksOn(req) {
		a := h.opts.Auth
		switch {
		case a.ScopeRunsSubscribe != nil:
			filter, err = a.ScopeRunsSubscribe(req.r.Context(), req.auth, filter)
		case a.ScopeRuns != nil:
			var scoped RunsFilter[L]
			scoped, err = a.ScopeRuns(req.r.Context(), req.auth, RunsFilter[L]{JobNames: filter.JobNames, Labels: filter.Labels})
			filter = SubscribeFilter[L]{JobNames: scoped.JobNames, Labels: scoped.Labels}
		}
		if err != nil {
			h.fail(req, err)
			return
		}
	}
	jobs := map[string]bool{}
	for _, j := range filter.JobNames {
		jobs[j] = true
	}
	labels := filter.Labels.ToMap()

	h.streams.Add(1)
	defer h.streams.Done()
	ctx, cancel := h.streamContext(req.r)
	defer cancel()
	qu := newQueue(h.opts.StreamBuffer)
	defer h.e.WatchRemoteEvents()()
	unsubscribe := h.e.OnEvent(func(e durably.Event) {
		if len(jobs) > 0 && !jobs[e.JobName] {
			return
		}
		for k, v := range labels {
			if e.Labels[k] != v {
				return
			}
		}
		if e.Type == durably.EventRunLeaseRenewed || e.Type == durably.EventWorkerError {
			return
		}
		qu.push(e)
	})
	defer unsubscribe()
	s := newSSE(req.w, h.opts.SSEThrottle, AppendProjection)
	heartbeat := h.heartbeat()
	defer heartbeat.Stop()
	var batch []durably.Event
	for !s.failed {
		select {
		case <-qu.signal:
			var overflowed bool
			batch, overflowed = qu.take(batch)
			now := time.Now()
			for i := range batch {
				s.handle(&batch[i], now)
			}
			if overflowed {
				return
			}
		case <-s.timer.C:
			s.due(time.Now())
		case <-heartbeat.C:
			s.heartbeat()
		case <-ctx.Done():
			return
		}
	}
}
