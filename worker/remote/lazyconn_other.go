//go:build !unix

package remote

import "net"

// newLazyConn returns nil: a connection is buffered by its WebSocket's
// bufio buffers alone.
func newLazyConn(c net.Conn, early []byte) net.Conn { return nil }
