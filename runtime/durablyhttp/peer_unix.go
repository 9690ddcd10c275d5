//go:build unix

package durablyhttp

import (
	"net"
	"syscall"
)

// canTakeOver: streams are taken over where peerGone can tell that a
// client left without a goroutine waiting on its connection.
const canTakeOver = true

// peerGone reports whether the client of a taken-over stream closed its
// connection, without waiting: one non-blocking read on the socket (what a
// client sends on an event stream is read and dropped, as net/http's
// background reader did).
func peerGone(c net.Conn) bool {
	sc, ok := socket(c)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	err = raw.Read(func(fd uintptr) bool {
		var buf [256]byte
		for range 16 { // a client that keeps sending is looked at again next sweep
			n, err := syscall.Read(int(fd), buf[:])
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			case err != nil || n == 0:
				gone = true
			default:
				continue
			}
			break
		}
		return true // never wait for the socket to become readable
	})
	return gone || err != nil
}

// socket returns the socket below c, when there is one to read from
// without going through c: c itself, or what a TLS connection is over.
func socket(c net.Conn) (syscall.Conn, bool) {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn() // TLS: its records are not read otherwise
	}
	sc, ok := c.(syscall.Conn)
	return sc, ok
}

// sweepable reports whether peerGone can tell about c.
func sweepable(c net.Conn) bool {
	_, ok := socket(c)
	return ok
}
