//go:build unix

package durablyhttp_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
)

// smallBuffers makes accepted connections' send buffers small, so that a
// client that does not read blocks the server's writes soon.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// TestStalledReaderDropped: a client that never reads blocks the stream's
// write once the socket buffers are full; the write deadline per flush
// drops it within StreamWriteTimeout, freeing its slot (without it the
// handler would wait as long as the client keeps the connection).
func TestStalledReaderDropped(t *testing.T) {
	_, open := openFlaky(t)
	v := newEnv(t, open, func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) {
		o.StreamWriteTimeout = 300 * time.Millisecond
		o.MaxBodyBytes = 2 << 20
	}).started()
	// A completed run's snapshot carries its output: here 1 MB.
	big := strings.Repeat("x", 1<<20)
	id := v.trigger(`{"jobName":"echo","input":{"message":"`+big+`"}}`, admin)
	v.waitStatus(id, durably.StatusCompleted)

	srv := httptest.NewUnstartedServer(v.srv.Config.Handler)
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	defer srv.Close()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			// Before connect, so that the window never grows.
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/durably/subscribe?runId=%s HTTP/1.1\r\nHost: x\r\nX-User-Id: u1\r\nX-Org-Id: org-a\r\nX-Role: admin\r\n\r\n", id)
	v.waitStreams(1, 5*time.Second)
	took := v.waitStreams(0, 5*time.Second)
	t.Logf("stalled reader dropped after %v", took)
	if took > 2*time.Second {
		t.Fatalf("stalled reader held its stream %v with StreamWriteTimeout 300ms", took)
	}
	// The server closed the connection: reading now ends, short of 1 MB.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after %d bytes: %v", n, err)
	}
	if n >= 1<<20 {
		t.Fatalf("the whole snapshot (%d bytes) reached the stalled reader", n)
	}
}
