//go:build unix

package remote

import (
	"context"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/kilnci/kiln/ci"
)

// smallBufferClient dials with a small socket receive buffer, so that a
// worker that stops reading makes the master's writes block soon.
func smallBufferClient() *http.Client {
	d := &net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// A worker that stops reading is dropped when a write times out; the
// commands waiting on it fail with ErrWorkerLost. Other workers are not
// held up: each connection writes on its own.
func TestWriteTimeout(t *testing.T) {
	cfg := ci.MasterConfig{Workers: fakeWorkers("w1", "w2"), Builders: []ci.BuilderConfig{shellBuilder("b", []string{"w1", "w2"}, "true")}}
	m := startMaster(t, cfg, &Listener{WriteTimeout: 300 * time.Millisecond})
	f, conn := m.attachFake(t, "w1", fakeOptions{client: smallBufferClient()})
	_, other := m.attachFake(t, "w2", fakeOptions{})
	f.silence()
	big := strings.Repeat("x", 4<<20)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			errs <- conn.RunCommand(context.Background(), "b", &ci.RemoteCommand{Name: "shell", Args: map[string]any{"workdir": "build", "command": big}})
		}()
	}
	for range 4 {
		assert.ErrorIs(t, <-errs, ci.ErrWorkerLost)
	}
	assert.ErrorContains(t, conn.Err(), "write timed out")
	assert.Equal(t, int64(1), m.l.Stats().Lost)
	assert.NoError(t, other.RunCommand(context.Background(), "b", &ci.RemoteCommand{Name: "shell", Args: map[string]any{"workdir": "build", "command": "true"}}))
}
