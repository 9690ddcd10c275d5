//go:build !linux

package pgstore

import "net"

// tuneTCP makes the kernel find a dead peer with keepalive probes; see the
// Linux version, which adds TCP_USER_TIMEOUT.
func tuneTCP(c *net.TCPConn) {
	_ = c.SetKeepAliveConfig(keepAlive)
}
