//go:build unix

package remote

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// lazyBufferSize is the size of the buffers a lazyConn borrows: what it
// reads from the socket at once, and the largest frame it writes in one
// piece.
const lazyBufferSize = 4 << 10

// lazyBuffers are the buffers lazyConns borrow while they read or write.
var lazyBuffers = sync.Pool{New: func() any {
	b := make([]byte, lazyBufferSize)
	return &b
}}

// A lazyConn is a worker's TCP connection under its WebSocket, buffered
// only while it is used: it borrows a buffer from lazyBuffers when the
// socket has data to read, until the WebSocket has taken it all, and
// while it writes a frame, which it sends in one write when the frame
// fits; it waits for data with no buffer. The WebSocket's own bufio
// buffers, which it keeps for as long as the worker is connected, can
// then be of the smallest size. An idle worker's connection then holds no
// buffer.
//
// Read is called by one goroutine at a time, and so is Write (the
// WebSocket's locks see to it); they share nothing.
type lazyConn struct {
	net.Conn
	rc syscall.RawConn

	// Read's: the bytes read and not yet taken are rdata[rn:], in rbuf
	// if it is borrowed.
	rbuf  *[]byte
	rdata []byte
	rn    int
	// readFD is l.readSocket, made once; its results are kept in rsock.
	readFD func(fd uintptr) bool
	rsock  struct {
		buf *[]byte
		n   int
		err error
	}

	// Write's: the frame being written and, while it fits, its bytes so
	// far in wbuf.
	frame frameTracker
	wbuf  *[]byte
	wdata []byte
}

// newLazyConn returns c as a lazyConn that reads early (what the worker
// sent after its request) first, or nil if c is not a socket.
func newLazyConn(c net.Conn, early []byte) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	l := &lazyConn{Conn: c, rc: rc, rdata: early}
	l.readFD = l.readSocket
	return l
}

func (l *lazyConn) Read(p []byte) (int, error) {
	if l.rn < len(l.rdata) {
		n := copy(p, l.rdata[l.rn:])
		l.rn += n
		if l.rn == len(l.rdata) {
			l.releaseRead()
		}
		return n, nil
	}
	if len(p) >= lazyBufferSize {
		return l.Conn.Read(p)
	}
	// Wait for data, then read it into a borrowed buffer.
	err := l.rc.Read(l.readFD)
	buf, n, rerr := l.rsock.buf, l.rsock.n, l.rsock.err
	l.rsock.buf, l.rsock.err = nil, nil
	if err == nil && rerr != nil {
		err = &net.OpError{Op: "read", Net: l.LocalAddr().Network(), Source: l.LocalAddr(), Addr: l.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	}
	if err != nil || n <= 0 {
		if buf != nil {
			lazyBuffers.Put(buf)
		}
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	l.rbuf, l.rdata, l.rn = buf, (*buf)[:n], 0
	m := copy(p, l.rdata)
	l.rn = m
	if m == n {
		l.releaseRead()
	}
	return m, nil
}

// readSocket reads what the socket has into a borrowed buffer, or asks
// to wait (with no buffer) if it has nothing. It is a method, made into a
// function once (readFD), rather than a closure made at each read.
func (l *lazyConn) readSocket(fd uintptr) bool {
	buf := lazyBuffers.Get().(*[]byte)
	var n int
	var err error
	for {
		n, err = syscall.Read(int(fd), *buf)
		if err != syscall.EINTR {
			break
		}
	}
	if err == syscall.EAGAIN {
		lazyBuffers.Put(buf)
		return false
	}
	l.rsock.buf, l.rsock.n, l.rsock.err = buf, n, err
	return true
}

// releaseRead gives back the read buffer, all of it taken.
func (l *lazyConn) releaseRead() {
	if l.rbuf != nil {
		lazyBuffers.Put(l.rbuf)
	}
	l.rbuf, l.rdata, l.rn = nil, nil, 0
}

// Write writes a frame in one piece once it is complete, if it fits in a
// buffer; a larger frame is written as it comes.
func (l *lazyConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n, end := l.frame.consume(p)
		part := p[:n]
		p = p[n:]
		if l.frame.size > lazyBufferSize {
			// Too large to hold: what is held goes first.
			if len(l.wdata) > 0 {
				if _, err := l.Conn.Write(l.wdata); err != nil {
					l.releaseWrite()
					return written, err
				}
				l.releaseWrite()
			}
			if _, err := l.Conn.Write(part); err != nil {
				return written, err
			}
		} else {
			if l.wbuf == nil {
				l.wbuf = lazyBuffers.Get().(*[]byte)
				l.wdata = (*l.wbuf)[:0]
			}
			l.wdata = append(l.wdata, part...)
		}
		if end {
			l.frame = frameTracker{}
			if len(l.wdata) > 0 {
				_, err := l.Conn.Write(l.wdata)
				l.releaseWrite()
				if err != nil {
					return written, err
				}
			}
		}
		written += n
	}
	return written, nil
}

// releaseWrite gives back the write buffer.
func (l *lazyConn) releaseWrite() {
	if l.wbuf != nil {
		lazyBuffers.Put(l.wbuf)
	}
	l.wbuf, l.wdata = nil, nil
}

// frameTracker follows the WebSocket frames of a stream of bytes (RFC
// 6455, section 5.2), to tell where each ends.
type frameTracker struct {
	hdr  [14]byte
	hn   int   // header bytes seen
	hlen int   // the header's length, once its first two bytes are seen
	size int64 // the frame's length, header included, once the header is complete
	left int64 // bytes of the frame to come, once the header is complete
}

// consume follows p, the next bytes of the stream: it returns how many of
// them belong to the current frame, and whether they end it (the next
// bytes then start a new frame, once the tracker is reset).
func (t *frameTracker) consume(p []byte) (n int, end bool) {
	for n < len(p) && (t.hlen == 0 || t.hn < t.hlen) {
		t.hdr[t.hn] = p[n]
		t.hn++
		n++
		if t.hn == 2 {
			t.hlen = 2
			if t.hdr[1]&0x80 != 0 {
				t.hlen += 4 // the masking key
			}
			switch t.hdr[1] & 0x7f {
			case 126:
				t.hlen += 2
			case 127:
				t.hlen += 8
			}
		}
		if t.hlen != 0 && t.hn == t.hlen {
			var payload int64
			switch l := t.hdr[1] & 0x7f; l {
			case 126:
				payload = int64(binary.BigEndian.Uint16(t.hdr[2:4]))
			case 127:
				payload = int64(binary.BigEndian.Uint64(t.hdr[2:10]) &^ (1 << 63))
			default:
				payload = int64(l)
			}
			t.size, t.left = int64(t.hlen)+payload, payload
		}
	}
	if t.hlen == 0 || t.hn < t.hlen {
		return n, false
	}
	k := min(int64(len(p)-n), t.left)
	n += int(k)
	t.left -= k
	return n, t.left == 0
}
