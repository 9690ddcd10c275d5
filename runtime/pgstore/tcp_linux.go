package pgstore

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tuneTCP makes the kernel find a dead peer (docs/operations.md): keepalive
// probes after 10 s without traffic, every 5 s, three unanswered ending the
// connection; and TCP_USER_TIMEOUT, which ends it when data it sent stays
// unacknowledged for 25 s. A live server's kernel acknowledges at once,
// however long its statement runs, so neither cuts slow work short.
func tuneTCP(c *net.TCPConn) {
	_ = c.SetKeepAliveConfig(keepAlive)
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout.Milliseconds()))
	})
}

const userTimeout = 25 * time.Second
