//go:build unix

package remote

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wsFrame returns a WebSocket frame of a binary message with n bytes of
// payload, masked or not.
func wsFrame(n int, masked bool, fill byte) []byte {
	var mask byte
	if masked {
		mask = 0x80
	}
	f := []byte{0x82}
	switch {
	case n < 126:
		f = append(f, mask|byte(n))
	case n < 1<<16:
		f = append(f, mask|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, mask|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	if masked {
		f = append(f, 1, 2, 3, 4)
	}
	return append(f, bytes.Repeat([]byte{fill}, n)...)
}

// writeRecorder records each write.
type writeRecorder struct {
	net.Conn
	writes [][]byte
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

// A lazyConn writes each frame that fits its buffer in one write, however
// the frame's bytes are split, and larger ones as they come.
func TestLazyConn_Write(t *testing.T) {
	sizes := []int{0, 1, 4, 125, 126, 200, 1000, lazyBufferSize - 4, lazyBufferSize - 3, 65535, 65536, 70000}
	var frames [][]byte
	var stream []byte
	for i, n := range sizes {
		f := wsFrame(n, i%2 == 1, byte('a'+i))
		frames = append(frames, f)
		stream = append(stream, f...)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		rec := &writeRecorder{}
		l := &lazyConn{Conn: rec}
		for rest := stream; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(300))
			written, err := l.Write(rest[:n])
			require.NoError(t, err)
			require.Equal(t, n, written)
			rest = rest[n:]
		}
		require.Equal(t, stream, bytes.Join(rec.writes, nil), "the bytes are written as they came")
		w := 0
		for i, f := range frames {
			if len(f) > lazyBufferSize {
				// Written as it comes: skip its writes.
				for got := 0; got < len(f); w++ {
					got += len(rec.writes[w])
				}
				continue
			}
			require.Less(t, w, len(rec.writes))
			assert.Equal(t, f, rec.writes[w], "frame %d (%d bytes) is one write", i, len(f))
			w++
		}
		require.Nil(t, l.wbuf, "no buffer is held between frames")
	}
}

// A lazyConn reads what the worker sent early first, then the socket,
// and holds no buffer once what it read is taken.
func TestLazyConn_Read(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer peer.Close()
	c, err := ln.Accept()
	require.NoError(t, err)
	defer c.Close()
	lc := newLazyConn(c, []byte("early"))
	require.NotNil(t, lc)
	l := lc.(*lazyConn)

	sent := bytes.Repeat([]byte("0123456789"), 2000) // larger than a buffer
	more := make(chan struct{})
	go func() {
		peer.Write([]byte("hello"))
		<-more
		for rest := sent; len(rest) > 0; {
			n := min(len(rest), 700)
			if _, err := peer.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
		peer.Close()
	}()
	p := make([]byte, 100)
	n, err := l.Read(p)
	require.NoError(t, err)
	require.Equal(t, "early", string(p[:n]))
	n, err = l.Read(p)
	require.NoError(t, err)
	require.Equal(t, "hello", string(p[:n]), "read in one piece")
	require.Nil(t, l.rbuf, "no buffer is held once all it read is taken")
	close(more)
	var got []byte
	sizes := []int{3, 16, 16, 600, lazyBufferSize, 1, 2000, 8000}
	for i := 0; ; i++ {
		p := make([]byte, sizes[i%len(sizes)])
		n, err := l.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if l.rn == len(l.rdata) {
			require.Nil(t, l.rbuf, "no buffer is held once all it read is taken")
		}
	}
	require.Equal(t, sent, got)
	require.Nil(t, l.rbuf)
}

// BenchmarkLazyConn_Read reads small frames' worth of bytes through a
// lazyConn, as the WebSocket does: the allocations per read are reported.
func BenchmarkLazyConn_Read(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(b, err)
	defer peer.Close()
	c, err := ln.Accept()
	require.NoError(b, err)
	defer c.Close()
	l := newLazyConn(c, nil)
	msg := bytes.Repeat([]byte("x"), 100)
	p := make([]byte, 16)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := peer.Write(msg); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < len(msg); {
			n, err := l.Read(p)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
}
