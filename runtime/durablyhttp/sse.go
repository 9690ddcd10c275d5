package durablyhttp

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/durably-go/durably"
)

// sse writes one Server-Sent Events response (H-052): "data: <json>\n\n"
// messages, comment heartbeats, and the progress throttle of H-053.
// Messages are collected and written together: one write and one flush per
// burst, not per message.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	// conn, once the handler took the connection over (takeOver): the
	// stream then writes its chunks itself and w and rc are nil.
	conn     net.Conn
	head     int           // bytes reserved at the start of out for the chunk's size line
	timeout  time.Duration // of each write; <= 0: none
	throttle time.Duration
	encode   func(b []byte, e *durably.Event) ([]byte, bool)

	out      []byte  // messages not yet written; nil between bursts
	outBuf   *[]byte // the pooled buffer out came from, while it has one
	lastSent map[string]time.Time
	held     map[string]item // the latest throttled progress per run
	timer    *time.Timer
	deadline time.Time // of writes
	failed   bool
}

// item is a message to send: the event, and its encoding when the hub
// shared one encoding among its streams. The event is shared, read-only.
type item struct {
	ev   *durably.Event
	data []byte
}

func newSSE(w http.ResponseWriter, timeout, throttle time.Duration, encode func([]byte, *durably.Event) ([]byte, bool)) *sse {
	rc := http.NewResponseController(w)
	// http.Server.WriteTimeout is for requests that end: it would fail
	// the first write past it and so end every stream at that age. A
	// stream lives as long as its client reads, so it replaces that
	// deadline with its own per write (net/http already clears the read
	// deadline while the handler runs). Writers that cannot
	// (ErrNotSupported) have no deadlines.
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	_ = rc.SetWriteDeadline(deadline)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: rc, timeout: timeout, deadline: deadline, throttle: throttle, encode: encode,
		lastSent: map[string]time.Time{}, held: map[string]item{}, timer: time.NewTimer(time.Hour)}
	s.timer.Stop()
	if err := s.rc.Flush(); err != nil {
		s.failed = true
	}
	return s
}

// outPool holds the buffers bursts are collected in. A stream keeps one
// only from its first message to its flush: a thousand idle streams would
// otherwise each hold a buffer as large as their largest burst, which was
// most of the server's memory per stream. Few streams write at the same
// moment, so few buffers serve them all.
var outPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// maxPooledOut is the largest buffer returned to outPool: a rare large
// burst's buffer is let go instead of kept for everyone.
const maxPooledOut = 64 << 10

// begin makes sure out has a buffer from the pool.
func (s *sse) begin() {
	if s.outBuf == nil {
		s.outBuf = outPool.Get().(*[]byte)
		s.out = (*s.outBuf)[:s.head]
	}
}

// release hands the buffer back to the pool.
func (s *sse) release() {
	if s.outBuf == nil {
		return
	}
	if cap(s.out) <= maxPooledOut {
		*s.outBuf = s.out[:0]
		outPool.Put(s.outBuf)
	}
	s.outBuf, s.out = nil, nil
}

// send queues one message for the next flush.
func (s *sse) send(it *item) {
	if s.failed {
		return
	}
	s.begin()
	s.out = append(s.out, "data: "...)
	if it.data != nil {
		s.out = append(s.out, it.data...)
	} else {
		var ok bool
		n := len(s.out)
		if s.out, ok = s.encode(s.out, it.ev); !ok {
			s.out = s.out[:n-len("data: ")]
			return
		}
	}
	s.out = append(s.out, '\n', '\n')
}

// flush writes what was queued.
func (s *sse) flush() {
	if s.failed || len(s.out) <= s.head {
		s.release()
		return
	}
	// Moving the deadline costs a timer update; moving it once per half
	// timeout still gives every write between half and all of it.
	if now := time.Now(); s.timeout > 0 && s.deadline.Sub(now) < s.timeout/2 {
		s.deadline = now.Add(s.timeout)
		if s.conn != nil {
			_ = s.conn.SetWriteDeadline(s.deadline)
		} else {
			_ = s.rc.SetWriteDeadline(s.deadline)
		}
	}
	var err error
	if s.conn != nil {
		err = s.writeChunk()
	} else if _, err = s.w.Write(s.out); err == nil {
		err = s.rc.Flush()
	}
	s.release()
	if err != nil {
		s.failed = true
	}
}

// chunkHead is the room begin reserves for a chunk's size line: up to 8
// hexadecimal digits and CRLF.
const chunkHead = 10

// writeChunk writes out, after the reserved head, as one chunk of the
// chunked transfer coding in one write, framed byte for byte as net/http
// frames a flushed write ("%x\r\n", the data, "\r\n").
func (s *sse) writeChunk() error {
	var digits [16]byte
	size := strconv.AppendUint(digits[:0], uint64(len(s.out)-chunkHead), 16)
	start := chunkHead - 2 - len(size)
	copy(s.out[start:], size)
	s.out[chunkHead-2], s.out[chunkHead-1] = '\r', '\n'
	s.out = append(s.out, '\r', '\n')
	_, err := s.conn.Write(s.out[start:])
	return err
}

// endChunks writes the last chunk of a taken-over stream, which net/http
// writes when a handler returns. A client that cannot take five bytes
// within a second (or the write timeout, if shorter) is not waited for:
// Close waits for this.
func (s *sse) endChunks() {
	if s.failed || s.conn == nil {
		return
	}
	d := time.Second
	if s.timeout > 0 {
		d = min(d, s.timeout)
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(d))
	if _, err := s.conn.Write([]byte("0\r\n\r\n")); err != nil {
		s.failed = true
	}
}

func (s *sse) heartbeat() {
	if s.failed {
		return
	}
	s.begin()
	s.out = append(s.out, ": ping\n\n"...)
	s.flush()
}

// handle applies the throttle (H-053) and queues or holds the message.
func (s *sse) handle(it *item, now time.Time) {
	e := it.ev
	switch {
	case e.Type == durably.EventRunProgress && s.throttle > 0:
		if last, ok := s.lastSent[e.RunID]; !ok || now.Sub(last) >= s.throttle {
			delete(s.held, e.RunID)
			s.lastSent[e.RunID] = now
			s.send(it)
			return
		}
		s.held[e.RunID] = *it
		s.schedule()
	case e.Type.ClosesRun():
		if held, ok := s.held[e.RunID]; ok {
			delete(s.held, e.RunID)
			s.send(&held)
		}
		delete(s.lastSent, e.RunID)
		s.send(it)
	default:
		s.send(it)
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
	for run, it := range s.held {
		if now.Sub(s.lastSent[run]) >= s.throttle {
			delete(s.held, run)
			s.lastSent[run] = now
			s.send(&it)
		}
	}
	s.schedule()
	s.flush()
}

// takeBurst handles e and whatever else events has ready, so that a burst
// is written at once, and reports whether the stream is over (the run
// closed or events ended). Each event gets its own copy: a held progress
// must keep pointing at itself while the burst goes on.
func (s *sse) takeBurst(e durably.Event, events <-chan durably.Event) (over bool) {
	for {
		ev := e
		s.handle(&item{ev: &ev}, time.Now())
		if ev.Type.ClosesRun() {
			return true
		}
		select {
		case next, ok := <-events:
			if !ok {
				return true
			}
			e = next
		default:
			return false
		}
	}
}

// drainHeld sends every held progress: the stream is ending (H-053 rule 4).
func (s *sse) drainHeld() {
	for run, it := range s.held {
		delete(s.held, run)
		s.send(&it)
	}
	s.flush()
}

// queue is a bounded FIFO between the engine's synchronous event delivery,
// which must never block, and a stream's writer. When a client reads too
// slowly for the buffer, the queue overflows and the stream ends; the
// client reconnects and starts from a fresh snapshot.
//
// It holds the hub's batches themselves, shared read-only among the
// streams of one filter, not copies of their items: a copy per stream
// grew to each stream's largest backlog and stayed that large.
type queue struct {
	mu         sync.Mutex
	batches    [][]item
	n          int // items in batches
	max        int
	overflowed bool
	signal     chan struct{}
	notify     func() // instead of signal, when set: a taken-over stream has no goroutine waiting
}

func newQueue(max int) *queue { return &queue{max: max, signal: make(chan struct{}, 1)} }

// push appends a batch, which nobody may change from now on, and, if
// wake, wakes the stream once if it has anything to take.
func (q *queue) push(batch []item, wake bool) {
	q.mu.Lock()
	switch {
	case len(batch) == 0:
	case q.n+len(batch) > q.max:
		q.overflowed = true
	default:
		q.batches = append(q.batches, batch)
		q.n += len(batch)
	}
	wake = wake && (q.n > 0 || q.overflowed)
	notify := q.notify
	q.mu.Unlock()
	if !wake {
		return
	}
	if notify != nil {
		notify()
		return
	}
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// notifyWith makes push call notify instead of signalling, and calls it
// once for what was pushed before.
func (q *queue) notifyWith(notify func()) {
	q.mu.Lock()
	q.notify = notify
	q.mu.Unlock()
	notify()
}

// take returns the batches queued, in into's storage, and whether the
// queue overflowed.
func (q *queue) take(into [][]item) ([][]item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	into = append(into[:0], q.batches...)
	clear(q.batches)
	q.batches = q.batches[:0]
	q.n = 0
	return into, q.overflowed
}

// subscribe serves GET /subscribe (H-046 … H-049): the run's snapshot,
// then its live events, ending after the run's last event.
func (h *Handler[C, L]) subscribe(req *request[C], run *durably.Run) {
	ctx, end, ok := h.beginStream(req)
	if !ok {
		return
	}
	defer end()
	events, err := h.e.SubscribeRun(ctx, run.ID)
	if err != nil {
		h.fail(req, err)
		return
	}
	s := newSSE(req.w, h.opts.StreamWriteTimeout, h.opts.SSEThrottle, func(b []byte, e *durably.Event) ([]byte, bool) { return e.AppendJSON(b), true })
	heartbeat := h.heartbeat()
	defer heartbeat.Stop()
	for !s.failed {
		select {
		case e, ok := <-events:
			if !ok || s.takeBurst(e, events) {
				s.drainHeld()
				return
			}
			s.flush()
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
	sub := newListSub(filter.JobNames, filter.Labels.ToMap(), h.opts.StreamBuffer)

	ctx, end, ok := h.beginStream(req)
	if !ok {
		return
	}
	unwatch := h.e.WatchRemoteEvents()
	remove := h.hub.add(h, sub)
	finish := func() {
		remove()
		unwatch()
		end()
	}
	handedOver := false
	defer func() {
		if !handedOver {
			finish()
		}
	}()
	s := newSSE(req.w, h.opts.StreamWriteTimeout, h.opts.SSEThrottle, appendProjection)
	if handedOver = h.takeOver(req, s, sub, finish); handedOver {
		return // the stream goes on without this goroutine
	}
	heartbeat := h.heartbeat()
	defer heartbeat.Stop()
	var batches [][]item
	for !s.failed {
		select {
		case <-sub.q.signal:
			var overflowed bool
			batches, overflowed = sub.q.take(batches)
			now := time.Now()
			for _, batch := range batches {
				for i := range batch {
					s.handle(&batch[i], now)
				}
			}
			clear(batches) // the hub's batches need not outlive their fan-out
			s.flush()
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

// listSub is one GET /runs/subscribe stream as the hub sees it.
type listSub struct {
	jobs   map[string]bool
	labels map[string]string
	key    string // equal for streams with equal filters
	q      *queue
	wire   *wire // when the stream's connection was taken over; guarded by the hub's mu
	phase  int   // the hub's tick at which the stream is woken
}

func newListSub(jobs []string, labels map[string]string, buffer int) *listSub {
	sub := &listSub{jobs: map[string]bool{}, labels: labels, q: newQueue(buffer)}
	for _, j := range jobs {
		sub.jobs[j] = true
	}
	// The key only groups streams; any injective encoding does.
	names := slices.Sorted(maps.Keys(sub.jobs))
	keys := slices.Sorted(maps.Keys(labels))
	var b strings.Builder
	for _, j := range names {
		fmt.Fprintf(&b, "j%d:%s", len(j), j)
	}
	for _, k := range keys {
		fmt.Fprintf(&b, "l%d:%s%d:%s", len(k), k, len(labels[k]), labels[k])
	}
	sub.key = b.String()
	return sub
}

func (sub *listSub) wants(e *durably.Event) bool {
	if len(sub.jobs) > 0 && !sub.jobs[e.JobName] {
		return false
	}
	for k, v := range sub.labels {
		if e.Labels[k] != v {
			return false
		}
	}
	return true
}

// fanoutInterval is the longest the hub holds a stream's events. Under
// load, events arriving within it reach a stream in one write instead of
// one write each: with a thousand streams, write system calls are what the
// server spends its time on. It adds at most this much delay.
const fanoutInterval = 20 * time.Millisecond

// fanoutPhases: under load the hub ticks this many times per
// fanoutInterval and wakes one phase of the streams at each tick, each
// stream once per interval. Waking all of them at once made a burst of a
// thousand writes (and of a thousand clients reading) every interval, and
// the last stream of a burst waited for all the others: that, not the
// interval, was most of the delivery delay's 99th percentile.
const fanoutPhases = 4

// hub fans the engine's events out to the list streams of one handler.
// The engine's listener only appends the event to a list, so a run never
// waits on streams however many there are; the hub's goroutine encodes
// each event once, filters once per distinct filter, and queues for each
// stream what it wants, waking it at its phase's tick.
type hub struct {
	once      sync.Once
	mu        sync.Mutex
	subs      map[*listSub]struct{}
	pending   []*durably.Event
	wake      chan struct{}
	ticking   bool // the hub's ticks take pending events: no need to wake it
	nextPhase int
}

func (hb *hub) add(h interface {
	engine() *durably.Engine
	done() <-chan struct{}
	heartbeatEvery() time.Duration
}, sub *listSub) (remove func()) {
	hb.once.Do(func() {
		hb.subs = map[*listSub]struct{}{}
		hb.wake = make(chan struct{}, 1)
		unsubscribe := h.engine().OnEvent(hb.collect)
		go func() {
			defer unsubscribe()
			hb.run(h.done(), h.heartbeatEvery())
		}()
	})
	hb.mu.Lock()
	sub.phase = hb.nextPhase
	hb.nextPhase = (hb.nextPhase + 1) % fanoutPhases
	hb.subs[sub] = struct{}{}
	hb.mu.Unlock()
	return func() {
		hb.mu.Lock()
		delete(hb.subs, sub)
		hb.mu.Unlock()
	}
}

func (hb *hub) collect(e durably.Event) {
	if e.Type == durably.EventRunLeaseRenewed || e.Type == durably.EventWorkerError {
		return
	}
	hb.mu.Lock()
	if len(hb.subs) == 0 {
		hb.mu.Unlock()
		return
	}
	hb.pending = append(hb.pending, &e)
	ticking := hb.ticking
	hb.mu.Unlock()
	if ticking {
		return
	}
	select {
	case hb.wake <- struct{}{}:
	default:
	}
}

func (hb *hub) run(done <-chan struct{}, heartbeat time.Duration) {
	var f fanout
	var wires []*wire
	// A ticker, not a timer reset after each tick: the phases keep their
	// cadence however long a fan-out takes.
	tick := time.NewTicker(time.Hour)
	tick.Stop()
	defer tick.Stop()
	sweep := time.NewTicker(sweepInterval)
	defer sweep.Stop()
	ping := time.NewTicker(time.Hour)
	ping.Stop()
	if heartbeat > 0 {
		ping.Reset(heartbeat)
	}
	defer ping.Stop()
	var lastEvents time.Time // of the last fan-out that had events
	phase := 0
	quietTicks := 0 // since the last fan-out with events
	for {
		select {
		case <-hb.wake:
			hb.mu.Lock()
			hb.ticking = true
			hb.mu.Unlock()
			if time.Since(lastEvents) >= fanoutInterval {
				// After a quiet spell an event goes out at once, to all.
				if f.run(hb, -1) {
					lastEvents = time.Now()
				}
			}
			quietTicks = 0
			tick.Reset(fanoutInterval / fanoutPhases) // also when it ran: the ticks start from now
		case <-tick.C:
			if f.run(hb, phase) {
				lastEvents, quietTicks = time.Now(), 0
			} else {
				quietTicks++
			}
			phase = (phase + 1) % fanoutPhases
			// Every phase was woken since the last events: stop ticking
			// unless events came meanwhile.
			hb.mu.Lock()
			hb.ticking = quietTicks < fanoutPhases || len(hb.pending) > 0
			ticking := hb.ticking
			hb.mu.Unlock()
			if !ticking {
				tick.Stop()
			}
		case <-sweep.C:
			wires = hb.wires(wires)
			for _, w := range wires {
				if peerGone(w.conn) {
					w.wake(wireEnd)
				}
			}
			clear(wires)
		case <-ping.C:
			wires = hb.wires(wires)
			for _, w := range wires {
				w.wake(wirePing)
			}
			clear(wires)
		case <-done:
			return
		}
	}
}

// fanout is the hub goroutine's storage for one fan-out.
type fanout struct {
	subs    []*listSub
	encoded []item
	groups  map[string][]item
}

// run queues the pending events for every stream that wants them and
// wakes the streams of phase (-1: all); it reports whether there were
// events.
func (f *fanout) run(hb *hub, phase int) bool {
	hb.mu.Lock()
	batch := hb.pending
	hb.pending = nil
	f.subs = f.subs[:0]
	for sub := range hb.subs {
		f.subs = append(f.subs, sub)
	}
	hb.mu.Unlock()
	f.encoded = f.encoded[:0]
	for _, e := range batch {
		if data, ok := appendProjection(nil, e); ok {
			f.encoded = append(f.encoded, item{ev: e, data: data})
		}
	}
	if f.groups == nil {
		f.groups = map[string][]item{}
	}
	clear(f.groups)
	for _, sub := range f.subs {
		items, seen := f.groups[sub.key]
		if !seen && len(f.encoded) > 0 {
			for _, it := range f.encoded {
				if sub.wants(it.ev) {
					items = append(items, it)
				}
			}
			f.groups[sub.key] = items
		}
		if wake := phase < 0 || sub.phase == phase; wake || len(items) > 0 {
			sub.q.push(items, wake)
		}
	}
	clear(f.subs)
	return len(batch) > 0
}
