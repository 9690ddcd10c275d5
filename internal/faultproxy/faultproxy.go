// Package faultproxy is a TCP proxy for fault-injection tests: it sits
// between a client (pgx) and a server (PostgreSQL) and, on cue, refuses new
// connections, resets the open ones, blackholes traffic or silences
// connections for good, so that tests reproduce a database restart, a
// network partition or a silent drop (a NAT or load-balancer flush, a
// failover behind a virtual IP) without touching the real server.
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
	// silenceNew: connections accepted now are silent from the start.
	silenceNew bool
	closed     bool
	conns      map[*link]struct{}
	accepting  sync.WaitGroup
}

// link is one proxied connection: the client's side and, once dialled, the
// server's.
type link struct {
	client *net.TCPConn
	server net.Conn
	// Guarded by Proxy.mu; once set, never cleared.
	silent   bool // nothing passes
	deafened bool // the server's answers do not pass
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
	l.silent = p.silenceNew
	p.mu.Unlock()
	defer p.drop(l)

	// A blackholed proxy accepts but does not even reach the server; a
	// silent one never will.
	if !p.pass(l, false) {
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
	go func() { p.copy(l, server, client, false); done <- struct{}{} }()
	go func() { p.copy(l, client, server, true); done <- struct{}{} }()
	<-done
}

// copy forwards src to dst, holding data back while the proxy blackholes,
// as a partitioned network would (TCP retransmits it once the partition
// heals). On a silent link (or toward the client of a deafened one) it
// stops reading: what it read is lost, and neither an error nor the other
// side's close reaches the client.
func (p *Proxy) copy(l *link, dst io.Writer, src io.Reader, toClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if !p.pass(l, toClient) {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pass waits while the proxy blackholes, and for good on a silent link,
// or toward the client of a deafened one (until the link is reset or the
// proxy closes); false means stop forwarding.
func (p *Proxy) pass(l *link, toClient bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for (p.blackhole || l.silent || toClient && l.deafened) && !p.closed && p.open(l) {
		p.cond.Wait()
	}
	return !p.closed && p.open(l)
}

// open reports whether l is still one of the proxy's connections (Reset
// removes them); p.mu is held.
func (p *Proxy) open(l *link) bool {
	_, ok := p.conns[l]
	return ok
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
	p.cond.Broadcast() // silent and blackholed links stop waiting
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

// Silence makes every open connection silent for good, as a NAT or a load
// balancer that forgot them, or a failover behind a virtual IP, does: the
// proxy keeps them open but stops forwarding in both directions, so that
// the client neither hears an answer nor sees the connection close; what
// it sends is lost (and once the buffers are full, its writes block).
// Connections accepted from now until Restore are silent too, for good.
func (p *Proxy) Silence() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.silenceNew = true
	for l := range p.conns {
		l.silent = true
	}
}

// LoseAnswers makes the open connections deaf for good: what the client
// sends still reaches the server, but nothing the server sends comes back,
// as when a NAT forgets a connection between a request and its answer. A
// commit goes through and its client never learns it. New connections are
// not affected.
func (p *Proxy) LoseAnswers() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.conns {
		l.deafened = true
	}
}

// Restore ends Refuse, Blackhole and Silence: the proxy listens on its
// address again, forwards what it held back and forwards new connections.
// Connections silenced stay silent: the network has forgotten them.
func (p *Proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackhole = false
	p.silenceNew = false
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
