//go:build unix

// Streams are taken over only on unix (canTakeOver).

package durablyhttp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// rawResponse sends a GET to srv on a connection of its own and returns
// the bytes of the response up to its last chunk, the Date header left
// out (it is the only one that changes).
func rawResponse(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /runs/subscribe HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.HasSuffix(got, []byte("\r\n0\r\n\r\n")) {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
	}
	return regexp.MustCompile(`(?m)^Date: .*\r\n`).ReplaceAllString(string(got), "")
}

// TestTakenOverStreamSameBytes: a stream whose connection was taken over
// writes exactly what net/http wrote for the same stream: headers, chunk
// framing (one chunk per burst, small and large) and the last chunk.
func TestTakenOverStreamSameBytes(t *testing.T) {
	encode := func(b []byte, e *durably.Event) ([]byte, bool) { return append(b, e.RunID...), true }
	script := func(s *sse) {
		for _, it := range sharedItems(3) { // one burst of the hub's encodings
			s.handle(&it, time.Now())
		}
		s.flush()
		s.send(&item{ev: &durably.Event{RunID: "own"}})
		s.flush()
		progress := func(n int) *item {
			return &item{ev: &durably.Event{Type: durably.EventRunProgress, RunID: "p", Progress: &store.Progress{Current: n}}}
		}
		s.handle(progress(1), time.Now())
		s.handle(progress(2), time.Now()) // held by the throttle
		s.flush()
		s.heartbeat()
		s.flush() // nothing queued: nothing written
		// Around net/http's 2 KB and 4 KB buffers, and past the pool's largest.
		for _, n := range []int{2000, 3000, 5000, 70000} {
			s.send(&item{ev: &durably.Event{RunID: strings.Repeat("x", n)}})
			s.flush()
		}
		s.drainHeld()
	}
	var got [2]string
	for i, takeOver := range []bool{false, true} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := newSSE(w, time.Minute, time.Hour, encode)
			if takeOver {
				if !s.hijack(w, r) {
					t.Error("the stream was not taken over")
					return
				}
				defer s.conn.Close()
				defer s.endChunks()
			}
			script(s)
			if s.failed {
				t.Error("a write failed")
			}
		}))
		got[i] = rawResponse(t, srv)
		srv.Close()
	}
	if got[0] != got[1] {
		t.Fatalf("taken over, the stream's bytes differ from net/http's\nnet/http:\n%q\ntaken over:\n%q", got[0], got[1])
	}
	for _, want := range []string{"Transfer-Encoding: chunked\r\n", "\r\n11178\r\ndata: xxx", `data: {"type":"step:complete","runId":"run-0"`, "\r\n8\r\n: ping\n\n\r\n", "\r\n9\r\ndata: p\n\n\r\n0\r\n\r\n"} {
		if !strings.Contains(got[1], want) {
			t.Fatalf("no %q in\n%q", want, got[1])
		}
	}
}

// TestTakenOverStreamHoldsNothingOfNetHTTP: once taken over, the stream
// keeps no reference to net/http's response, which would keep the
// connection's read and write buffers alive.
func TestTakenOverStreamHoldsNothingOfNetHTTP(t *testing.T) {
	held := make(chan *sse, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := newSSE(w, time.Minute, 0, appendProjection)
		if !s.hijack(w, r) {
			t.Error("the stream was not taken over")
		}
		held <- s
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	s := <-held
	defer s.conn.Close()
	if s.w != nil || s.rc != nil || s.conn == nil {
		t.Fatalf("taken over, the stream holds w %v, rc %v, conn %v", s.w, s.rc, s.conn)
	}
}

// countConn is a connection that counts what is written to it and says
// when.
type countConn struct {
	net.Conn
	n     int
	wrote chan struct{}
}

func (c *countConn) Write(p []byte) (int, error) {
	c.n += len(p)
	c.wrote <- struct{}{}
	return len(p), nil
}
func (c *countConn) SetWriteDeadline(time.Time) error { return nil }
func (c *countConn) Close() error                     { return nil }

// BenchmarkTakenOverStreamEvent: a taken-over list stream's cost per
// fan-out, from the hub's push to the write on the connection: the
// writer's start, queue, throttle, frame, write (BenchmarkListStreamEvent
// without a goroutine to wake).
func BenchmarkTakenOverStreamEvent(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			batch := sharedItems(n)
			c := &countConn{wrote: make(chan struct{}, 1)}
			s := newSSE(&discardStream{h: http.Header{}}, time.Minute, 100*time.Millisecond, appendProjection)
			s.useConn(c)
			sub := &listSub{q: newQueue(1024)}
			w := newWire(s, sub, func() {})
			w.stop = func() bool { return true }
			sub.q.notifyWith(func() { w.wake(0) })
			b.ReportAllocs()
			for b.Loop() {
				sub.q.push(batch, true)
				<-c.wrote
			}
			b.SetBytes(int64(c.n / b.N))
		})
	}
}

// TestTakenOverStreamWriteDeadline: a taken-over stream whose client stops
// reading is ended by the write timeout, as in its handler, instead of
// holding its writer and its slot as long as the client keeps the
// connection.
func TestTakenOverStreamWriteDeadline(t *testing.T) {
	server, client := net.Pipe() // a write blocks until the other end reads: it never does
	defer client.Close()
	s := newSSE(&discardStream{h: http.Header{}}, 100*time.Millisecond, 0, appendProjection)
	s.useConn(server)
	sub := &listSub{q: newQueue(1024)}
	ended := make(chan time.Time, 1)
	w := newWire(s, sub, func() { ended <- time.Now() })
	w.stop = func() bool { return true }
	sub.q.notifyWith(func() { w.wake(0) })
	start := time.Now()
	sub.q.push(sharedItems(1), true)
	select {
	case at := <-ended:
		if took := at.Sub(start); took < 100*time.Millisecond {
			t.Fatalf("the stream ended after %v, before its write timeout", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stream whose client does not read was not ended by its write timeout")
	}
	if !s.failed {
		t.Fatal("the blocked write did not fail the stream")
	}
}

// A stream taken over after Close (Close landing between the stream's
// start and the takeover) ends at once and cleanly: the wake registered on
// Close runs immediately, on another goroutine, and its end must not race
// the takeover still setting the wire up (a nil stop function panicked the
// server under -race).
func TestTakeOverAfterCloseEndsTheStream(t *testing.T) {
	h := &Handler[struct{}, durably.MapLabels]{byPrincipal: map[string]int{}}
	h.closing, h.endClosing = context.WithCancel(context.Background())
	h.endClosing() // Close already happened
	h.hub.subs = map[*listSub]struct{}{}
	var ended sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := newSSE(w, time.Second, 0, appendProjection)
		sub := newListSub(nil, nil, 16)
		ended.Add(1)
		if !h.takeOver(&request[struct{}]{w: w, r: r}, s, sub, ended.Done) {
			t.Error("stream not taken over")
			ended.Done()
		}
	}))
	defer srv.Close()
	for range 300 {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c) // until the server closes the connection
		c.Close()
		if err != nil {
			t.Fatalf("stream not ended by the server: %v", err)
		}
		if !bytes.HasSuffix(b, []byte("0\r\n\r\n")) {
			t.Fatalf("stream ended without its last chunk:\n%q", b)
		}
	}
	ended.Wait()
}
