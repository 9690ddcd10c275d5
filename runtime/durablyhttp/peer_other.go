//go:build !unix

package durablyhttp

import "net"

// canTakeOver: without a way to tell that a client left other than a
// goroutine reading its connection, streams stay with net/http.
const canTakeOver = false

func peerGone(net.Conn) bool { return false }

func sweepable(net.Conn) bool { return false }
