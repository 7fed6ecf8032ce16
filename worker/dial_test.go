package worker

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countConn counts the writes that reach it.
type countConn struct {
	net.Conn
	writes [][]byte
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (c *countConn) SetWriteDeadline(time.Time) error { return nil }

func TestBatchConn(t *testing.T) {
	cc := &countConn{}
	bc := &batchConn{Conn: cc}
	bc.Write([]byte("alone"))
	bc.start()
	bc.Write([]byte("one "))
	bc.Write([]byte("two"))
	require.Len(t, cc.writes, 1, "writes are gathered until flush")
	require.NoError(t, bc.flush(time.Second))
	bc.Write([]byte("after"))
	assert.Equal(t, [][]byte{[]byte("alone"), []byte("one two"), []byte("after")}, cc.writes)
	bc.start()
	require.NoError(t, bc.flush(time.Second))
	assert.Len(t, cc.writes, 3, "nothing gathered, nothing written")
}
