package durablyhttp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// A list stream (GET /runs/subscribe) lives as long as its client, and a
// server may hold thousands of them. Served through net/http, each one
// holds its connection's read and write buffers, the response's chunk
// buffer, the handler's goroutine (with the deep stack of the request's
// path) and net/http's goroutine that reads only to see the client leave:
// about 20 KB a stream, before the heap's headroom doubles it. Over
// HTTP/1.1 the handler therefore takes the connection over once the
// response headers are out, and the handler returns. The stream is then a
// wire: its connection, its queue and its throttle state. A goroutine
// exists only while there is something to write; the hub looks for
// clients that went away once per sweepInterval, and sends the
// heartbeats. The bytes on the connection are net/http's, chunk for
// chunk. HTTP/2, and ResponseWriters that cannot be taken over, keep the
// stream in its handler.

// sweepInterval is how often the hub looks for clients of taken-over
// streams that went away: the longest such a stream keeps its slot
// (MaxStreams) and its memory after its client left without a write
// telling. net/http's own reader noticed at once, at the cost of a
// goroutine per stream.
const sweepInterval = time.Second

// What a wire's writer has to do besides emptying the queue.
const (
	wireDue  = 1 << iota // the throttle's timer fired
	wirePing             // a heartbeat
	wireEnd              // Close, or the client went away
)

// wire is a list stream whose connection the handler took over.
type wire struct {
	conn    net.Conn
	s       *sse // touched only by the writer, of which there is at most one
	sub     *listSub
	batches [][]item    // the writer's storage for the queue's batches
	finish  func()      // gives back what the stream holds: hub, remote watch, count
	stop    func() bool // unregisters the wake on Close; guarded by mu
	writer  func()      // write, made once: "go w.write()" allocates a closure each time

	mu      sync.Mutex
	running bool  // a writer is running; it looks at more before it exits
	more    bool  // something came while it ran
	todo    uint8 // wireDue, wirePing, wireEnd
	over    bool
}

// takeOver hands the list stream, its response headers written, to a
// wire, when the connection is HTTP/1.1 and can be taken over, and
// reports whether it did. Otherwise the handler serves the stream itself.
func (h *Handler[C, L]) takeOver(req *request[C], s *sse, sub *listSub, finish func()) bool {
	if !s.hijack(req.w, req.r) {
		return false
	}
	w := newWire(s, sub, finish)
	// After Close the function runs at once, and the stream may end before
	// AfterFunc has returned: stop is handed over under mu, and called here
	// if the stream ended first (a stream that ends by another cause
	// unregisters its function).
	stop := context.AfterFunc(h.closing, func() { w.wake(wireEnd) })
	w.mu.Lock()
	w.stop = stop
	ended := w.over
	w.mu.Unlock()
	if ended {
		stop()
	}
	if !sweepable(w.conn) {
		// A connection wrapped by the server (a limit on connections,
		// say) hides its socket from the sweep: a goroutine reads it, as
		// net/http's did, to see the client leave.
		go w.watch()
	}
	h.hub.attach(sub, w)
	sub.q.notifyWith(func() { w.wake(0) })
	return true
}

// watch reads the connection, dropping what the client sends, until it
// fails: the client left, or the stream ended and closed it.
func (w *wire) watch() {
	var buf [512]byte
	for {
		if _, err := w.conn.Read(buf[:]); err != nil {
			w.wake(wireEnd)
			return
		}
	}
}

// newWire makes the wire of s, which writes to its connection.
func newWire(s *sse, sub *listSub, finish func()) *wire {
	w := &wire{conn: s.conn, s: s, sub: sub, finish: finish}
	w.writer = w.write
	s.timer = time.AfterFunc(time.Hour, func() { w.wake(wireDue) })
	s.timer.Stop()
	return w
}

// hijack takes s's connection over from net/http, if it is HTTP/1.1 and
// w can be hijacked, so that s writes its chunks itself; it reports
// whether it did. On failure s may be failed.
func (s *sse) hijack(w http.ResponseWriter, r *http.Request) bool {
	if !canTakeOver || s.failed || r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return false
	}
	// Only a ResponseWriter that can be hijacked itself: a wrapper that
	// only unwraps to one may transform what is written through it.
	hj, ok := w.(http.Hijacker)
	if !ok {
		return false
	}
	conn, _, err := hj.Hijack() // what the client sent after its request is not read
	if err != nil {
		if !errors.Is(err, http.ErrNotSupported) {
			s.failed = true // the connection is in an unknown state: end the stream
		}
		return false
	}
	s.useConn(conn)
	return true
}

// useConn makes s write its chunks to conn itself.
func (s *sse) useConn(conn net.Conn) {
	// Nothing of net/http's response may stay reachable: it holds the
	// connection's buffers.
	s.w, s.rc = nil, nil
	s.conn, s.head = conn, chunkHead
	s.deadline = time.Time{} // Hijack cleared the connection's deadlines: set one at the first write
}

// wake records what there is to do and starts a writer unless one runs.
func (w *wire) wake(todo uint8) {
	w.mu.Lock()
	if w.over {
		w.mu.Unlock()
		return
	}
	w.todo |= todo
	if w.running {
		w.more = true
		w.mu.Unlock()
		return
	}
	w.running = true
	w.mu.Unlock()
	go w.writer()
}

// write is the wire's writer: it writes what is queued and due until
// nothing is left, then exits.
func (w *wire) write() {
	s := w.s
	for {
		w.mu.Lock()
		todo := w.todo
		w.todo, w.more = 0, false
		w.mu.Unlock()
		if todo&wireEnd != 0 {
			w.end()
			return
		}
		var overflowed bool
		w.batches, overflowed = w.sub.q.take(w.batches)
		now := time.Now()
		for _, batch := range w.batches {
			for i := range batch {
				s.handle(&batch[i], now)
			}
		}
		clear(w.batches) // the hub's batches need not outlive their fan-out
		if todo&wireDue != 0 {
			s.due(now)
		}
		s.flush()
		if todo&wirePing != 0 {
			s.heartbeat()
		}
		if s.failed || overflowed {
			w.end()
			return
		}
		w.mu.Lock()
		if !w.more {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}

// end ends the stream: the last chunk, the connection, and what the
// stream held. It runs on the writer, which stays marked running so that
// no other starts.
func (w *wire) end() {
	w.mu.Lock()
	w.over = true
	stop := w.stop
	w.mu.Unlock()
	if stop != nil { // nil: takeOver calls it once it has it
		stop()
	}
	w.s.timer.Stop()
	w.s.release()
	w.s.endChunks()
	_ = w.conn.Close()
	w.finish()
}

// attach makes the hub sweep and ping the wire of sub.
func (hb *hub) attach(sub *listSub, w *wire) {
	hb.mu.Lock()
	sub.wire = w
	hb.mu.Unlock()
}

// wires returns the wires of the hub's streams, in into's storage.
func (hb *hub) wires(into []*wire) []*wire {
	into = into[:0]
	hb.mu.Lock()
	for sub := range hb.subs {
		if sub.wire != nil {
			into = append(into, sub.wire)
		}
	}
	hb.mu.Unlock()
	return into
}
