//go:build unix

// Streams are taken over only on unix (canTakeOver).

package durablyhttp_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

// openSQLite opens a SQLite store in the test's directory.
func openSQLite(t *testing.T) func() store.Store {
	path := filepath.Join(t.TempDir(), "h.db")
	return func() store.Store {
		st, err := sqlitestore.Open(path, sqlitestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
}

// rawListStream opens GET /runs/subscribe on a connection of its own and
// reads the response's headers.
func rawListStream(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /api/durably/runs/subscribe HTTP/1.1\r\nHost: x\r\nX-User-Id: u1\r\nX-Org-Id: org-a\r\nX-Role: admin\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("list stream: %v %v", res, err)
	}
	return conn, br
}

// TestListStreamsCostLittle: an open list stream over HTTP/1.1 costs no
// goroutine and a few KB, not net/http's connection buffers and two
// goroutines (three with the one that waited for Close): with a thousand
// streams those were most of the server's memory.
func TestListStreamsCostLittle(t *testing.T) {
	v := newEnv(t, openSQLite(t))
	addr := v.srv.Listener.Addr().String()
	rawListStream(t, addr) // the hub's goroutine starts with the first stream
	v.waitStreams(1, 5*time.Second)
	measure := func() (goroutines int, bytes uint64) {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return runtime.NumGoroutine(), m.HeapAlloc + m.StackInuse
	}
	g0, b0 := measure()
	const n = 200
	var last *bufio.Reader
	for range n {
		_, last = rawListStream(t, addr)
	}
	v.waitStreams(n+1, 5*time.Second)
	g1, b1 := measure()
	perStream := (int64(b1) - int64(b0)) / n
	t.Logf("per stream: %.2f goroutines, %d bytes", float64(g1-g0)/n, perStream)
	if g1-g0 > n/10 {
		t.Errorf("%d streams took %d goroutines", n, g1-g0)
	}
	if perStream > 6<<10 {
		t.Errorf("a stream holds %d bytes of heap and stack", perStream)
	}
	// And they still carry events.
	v.trigger(`{"jobName":"echo","input":{"message":"x"}}`, admin)
	read := make(chan error, 1)
	go func() {
		for {
			line, err := last.ReadString('\n')
			if err != nil || strings.Contains(line, `"type":"run:trigger"`) {
				read <- err
				return
			}
		}
	}()
	select {
	case err := <-read:
		if err != nil {
			t.Fatalf("the last stream ended before its run:trigger: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the last stream carried no run:trigger within 5 s")
	}
}

// TestTakenOverStreamClientLeaves: a list stream whose client closes its
// connection ends and gives its slot back without an event to write.
func TestTakenOverStreamClientLeaves(t *testing.T) {
	v := newEnv(t, openSQLite(t))
	conn, _ := rawListStream(t, v.srv.Listener.Addr().String())
	v.waitStreams(1, 5*time.Second)
	conn.Close()
	if took := v.waitStreams(0, 5*time.Second); took > 3*time.Second {
		t.Fatalf("the stream of a client that left stayed open %v", took)
	}
}

// TestShutdownEndsTakenOverStreams: http.Server.Shutdown with the
// handler's Close registered ends list streams, whose connections it no
// longer tracks once taken over, with the last chunk; the handler's
// Shutdown returns once they have ended, and nothing is left running.
func TestShutdownEndsTakenOverStreams(t *testing.T) {
	v := newEnv(t, openSQLite(t), func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) {
		o.Heartbeat = 10 * time.Millisecond
	})
	before := goleak.IgnoreCurrent()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: v.srv.Config.Handler}
	srv.RegisterOnShutdown(v.h.Close)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()

	type client struct {
		br   *bufio.Reader
		tail chan []byte
	}
	var clients []client
	for range 5 {
		_, br := rawListStream(t, ln.Addr().String())
		clients = append(clients, client{br: br, tail: make(chan []byte, 1)})
	}
	v.waitStreams(5, 5*time.Second)
	v.trigger(`{"jobName":"echo","input":{"message":"x"}}`, admin)
	for _, c := range clients {
		go func() {
			b, _ := io.ReadAll(c.br) // until the server closes the connection
			c.tail <- b
		}()
	}
	time.Sleep(50 * time.Millisecond) // a few heartbeats
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-served
	// The server's Shutdown does not wait for the taken-over streams (nor
	// for the Close it started); the handler's does.
	if err := v.h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := v.h.OpenStreams(); n != 0 {
		t.Fatalf("the handler's Shutdown returned with %d streams open", n)
	}
	for i, c := range clients {
		select {
		case b := <-c.tail:
			if !bytes.HasSuffix(b, []byte("\r\n0\r\n\r\n")) || !bytes.Contains(b, []byte(`"type":"run:trigger"`)) || !bytes.Contains(b, []byte(": ping")) {
				t.Fatalf("client %d read %q", i, b)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("client %d: its stream did not end with the server", i)
		}
	}
	http.DefaultClient.CloseIdleConnections() // the trigger's
	goleak.VerifyNone(t, before)
}

// wrappedConns hides the accepted connections' sockets behind a wrapper,
// as a server's own connection limit does.
type wrappedConns struct{ net.Listener }

type wrappedConn struct{ net.Conn }

func (l wrappedConns) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return wrappedConn{c}, nil
}

// TestTakenOverWrappedConnClientLeaves: a taken-over stream on a
// connection whose socket the server's wrapper hides still ends when its
// client leaves, without an event to write.
func TestTakenOverWrappedConnClientLeaves(t *testing.T) {
	v := newEnv(t, openSQLite(t))
	srv := httptest.NewUnstartedServer(v.srv.Config.Handler)
	srv.Listener = wrappedConns{srv.Listener}
	srv.Start()
	defer srv.Close()
	conn, _ := rawListStream(t, srv.Listener.Addr().String())
	v.waitStreams(1, 5*time.Second)
	conn.Close()
	if took := v.waitStreams(0, 5*time.Second); took > 3*time.Second {
		t.Fatalf("the stream of a client that left stayed open %v", took)
	}
}
