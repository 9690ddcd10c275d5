// Package faultproxy is a TCP proxy for fault-injection tests: it sits
// between a client (pgx) and a server (PostgreSQL) and, on cue, refuses new
// connections, resets the open ones, or blackholes traffic, so that tests
// reproduce a database restart or a network partition without touching the
// real server.
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards connections from Addr to a target address.
type Proxy struct {
	target string
	addr   string

	mu        sync.Mutex
	cond      *sync.Cond // broadcast when blackholed or closed changes
	ln        net.Listener
	blackhole bool
	closed    bool
	conns     map[*link]struct{}
	accepting sync.WaitGroup
}

// link is one proxied connection: the client's side and, once dialled, the
// server's.
type link struct {
	client *net.TCPConn
	server net.Conn
}

// Start listens on a free port of 127.0.0.1 and forwards to target.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), ln: ln, conns: map[*link]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.serve(ln)
	return p, nil
}

// Addr is the host:port clients connect to; it stays the same across
// Refuse and Restore.
func (p *Proxy) Addr() string { return p.addr }

func (p *Proxy) serve(ln net.Listener) {
	p.accepting.Add(1)
	go func() {
		defer p.accepting.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.handle(c.(*net.TCPConn))
		}
	}()
}

func (p *Proxy) handle(client *net.TCPConn) {
	l := &link{client: client}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = client.Close()
		return
	}
	p.conns[l] = struct{}{}
	p.mu.Unlock()
	defer p.drop(l)

	// A blackholed proxy accepts but does not even reach the server.
	if !p.pass() {
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	l.server = server
	_, open := p.conns[l]
	gone := !open || p.closed
	p.mu.Unlock()
	if gone {
		_ = server.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { p.copy(server, client); done <- struct{}{} }()
	go func() { p.copy(client, server); done <- struct{}{} }()
	<-done
}

// copy forwards src to dst, holding data back while the proxy blackholes,
// as a partitioned network would (TCP retransmits it once the partition
// heals).
func (p *Proxy) copy(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.pass() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pass waits while the proxy blackholes; false means it closed meanwhile.
func (p *Proxy) pass() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.blackhole && !p.closed {
		p.cond.Wait()
	}
	return !p.closed
}

func (p *Proxy) drop(l *link) {
	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
	_ = l.client.Close()
	if l.server != nil {
		_ = l.server.Close()
	}
}

// Refuse stops listening: new connections are refused by the kernel
// (ECONNREFUSED), as when the server is down. Open connections go on; call
// Reset too to drop them.
func (p *Proxy) Refuse() error {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	p.mu.Unlock()
	if ln == nil {
		return nil
	}
	err := ln.Close()
	p.accepting.Wait()
	return err
}

// Reset aborts every open connection with a TCP reset on the client's
// side (ECONNRESET), as a crashed server or a restarted router does.
func (p *Proxy) Reset() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		links = append(links, l)
		delete(p.conns, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		_ = l.client.SetLinger(0) // close with RST instead of FIN
		_ = l.client.Close()
		if l.server != nil {
			_ = l.server.Close()
		}
	}
}

// Blackhole accepts connections and keeps open ones, but forwards nothing
// in either direction until Restore: reads and connects hang, as in a
// network partition.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	p.blackhole = true
	p.mu.Unlock()
}

// Restore ends Refuse and Blackhole: the proxy listens on its address
// again and forwards what it held back.
func (p *Proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackhole = false
	p.cond.Broadcast()
	if p.ln != nil || p.closed {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("faultproxy: listen again on %s: %w", p.addr, err)
	}
	p.ln = ln
	p.serve(ln)
	return nil
}

// Connections is the number of client connections open now.
func (p *Proxy) Connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	err := p.Refuse()
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	p.Reset()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
