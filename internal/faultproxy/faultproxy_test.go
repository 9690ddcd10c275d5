package faultproxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/durably-go/durably/internal/faultproxy"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func start(t *testing.T) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// roundTrip writes a line and reads it back within d.
func roundTrip(c net.Conn, d time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("echo mismatch: " + line)
	}
	return nil
}

func dial(t *testing.T, p *faultproxy.Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitConnections polls until the proxy holds n connections.
func waitConnections(t *testing.T, p *faultproxy.Proxy, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for p.Connections() != n {
		if time.Now().After(deadline) {
			t.Fatalf("proxy holds %d connections, want %d", p.Connections(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProxy(t *testing.T) {
	tests := []struct {
		name  string
		fault func(t *testing.T, p *faultproxy.Proxy, open net.Conn)
	}{
		{"forwards", func(t *testing.T, p *faultproxy.Proxy, open net.Conn) {
			if err := roundTrip(open, 2*time.Second); err != nil {
				t.Fatal(err)
			}
		}},
		{"refuse: new connections get ECONNREFUSED, open ones go on", func(t *testing.T, p *faultproxy.Proxy, open net.Conn) {
			if err := p.Refuse(); err != nil {
				t.Fatal(err)
			}
			_, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("dial while refusing: %v, want ECONNREFUSED", err)
			}
			if err := roundTrip(open, 2*time.Second); err != nil {
				t.Fatalf("open connection while refusing: %v", err)
			}
		}},
		{"reset: open connections get ECONNRESET", func(t *testing.T, p *faultproxy.Proxy, open net.Conn) {
			waitConnections(t, p, 1)
			p.Reset()
			err := roundTrip(open, 2*time.Second)
			if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("round trip after reset: %v, want ECONNRESET", err)
			}
		}},
		{"blackhole: nothing passes, then everything held back arrives", func(t *testing.T, p *faultproxy.Proxy, open net.Conn) {
			p.Blackhole()
			err := roundTrip(open, 200*time.Millisecond)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("round trip while blackholed: %v, want a timeout", err)
			}
			fresh := dial(t, p) // accepted, never answered
			if err := roundTrip(fresh, 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("new connection while blackholed: %v, want a timeout", err)
			}
			if err := p.Restore(); err != nil {
				t.Fatal(err)
			}
			_ = fresh.SetDeadline(time.Now().Add(2 * time.Second))
			line, err := bufio.NewReader(fresh).ReadString('\n')
			if err != nil || line != "ping\n" {
				t.Fatalf("held-back data after restore: %q %v", line, err)
			}
		}},
		{"silence: open and new connections hear nothing and stay open, for good", func(t *testing.T, p *faultproxy.Proxy, open net.Conn) {
			waitConnections(t, p, 1)
			p.Silence()
			if err := roundTrip(open, 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("round trip on a silenced connection: %v, want a timeout", err)
			}
			fresh := dial(t, p) // accepted, never answered
			if err := roundTrip(fresh, 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("new connection while silent: %v, want a timeout", err)
			}
			waitConnections(t, p, 2) // neither was closed
			if err := p.Restore(); err != nil {
				t.Fatal(err)
			}
			if err := roundTrip(dial(t, p), 2*time.Second); err != nil {
				t.Fatalf("new connection after restore: %v", err)
			}
			for name, c := range map[string]net.Conn{"silenced open connection": open, "connection made while silent": fresh} {
				if err := roundTrip(c, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("%s after restore: %v, want a timeout: it stays silent", name, err)
				}
			}
			p.Reset() // a silent connection can still be reset
			if err := roundTrip(open, 2*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("silenced connection after reset: %v, want it closed", err)
			}
		}},
		{"lose answers: what the client sends arrives, the answers never do", func(t *testing.T, p *faultproxy.Proxy, open net.Conn) {
			waitConnections(t, p, 1)
			p.LoseAnswers()
			if err := roundTrip(open, 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("round trip on a deafened connection: %v, want a timeout", err)
			}
			if err := roundTrip(dial(t, p), 2*time.Second); err != nil {
				t.Fatalf("new connection: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t)
			open := dial(t, p)
			tt.fault(t, p, open)
			// Restore always brings the proxy back on the same address.
			if err := p.Restore(); err != nil {
				t.Fatal(err)
			}
			if err := roundTrip(dial(t, p), 2*time.Second); err != nil {
				t.Fatalf("after restore: %v", err)
			}
		})
	}
}
