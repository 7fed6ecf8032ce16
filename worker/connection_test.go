package worker_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker"
	"github.com/kilnci/kiln/worker/protocol"
)

func TestWorker_Reconnect(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	startWorker(t, w)
	c := m.accept()
	m.waitAttempt()
	c.handshake()

	// The master goes away, and refuses connections for a while.
	m.setAuth("w1", "pass", http.StatusServiceUnavailable)
	c.ws.CloseNow()
	for range 3 {
		m.waitAttempt()
	}
	m.setAuth("w1", "pass", 0)
	c = m.accept()
	c.handshake()
	run := c.runCommand("0", "listdir", map[string]any{"path": w.BaseDir}, nil)
	assert.Equal(t, int64(0), run.requests[0].Seq(), "the worker numbers its requests from 0 on a new connection")
}

func TestWorker_Unauthorized(t *testing.T) {
	m := startMaster(t, "w1", "other")
	w := newWorker(t, m)
	logs := make(records, 1000)
	w.Logger = slog.New(logs)
	startWorker(t, w)

	msg := logs.waitLog(t, slog.LevelError, "cannot attach")
	assert.Contains(t, msg, "401")
	assert.Contains(t, msg, "password")
	m.waitAttempt()
	m.waitAttempt() // retried

	m.setAuth("w1", "pass", 0)
	c := m.accept()
	c.handshake()
}

func TestWorker_Malformed(t *testing.T) {
	tests := []struct {
		name string
		send func(c *masterConn)
	}{
		{"NotMsgpack", func(c *masterConn) { c.writeFrame([]byte{0xc1}) }},
		{"NotAMap", func(c *masterConn) { c.writeFrame([]byte{0x93, 1, 2, 3}) }},
		{"NoSeqNumber", func(c *masterConn) { c.sendRaw(protocol.Message{"op": "print", "message": "x"}) }},
		{"TextFrame", func(c *masterConn) {
			require.NoError(t, c.ws.Write(t.Context(), websocket.MessageText, []byte("hello")))
		}},
		{"UnknownResponse", func(c *masterConn) {
			c.sendRaw(protocol.Response(42, nil, nil))
		}},
		{"TooLarge", func(c *masterConn) {
			b, err := protocol.Encode(map[string]any{"op": "print", "seq_number": 9, "message": strings.Repeat("x", protocol.MaxFrameSize)})
			require.NoError(t, err)
			c.ws.Write(t.Context(), websocket.MessageBinary, b) // the worker may close before it is all written
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := startMaster(t, "w1", "pass")
			w := newWorker(t, m)
			logs := make(records, 1000)
			w.Logger = slog.New(logs)
			startWorker(t, w)
			c := m.accept()
			c.handshake()

			tt.send(c)
			err := c.waitClosed()
			if tt.name != "TooLarge" {
				logs.waitLog(t, slog.LevelError, "malformed frame")
				assert.Equal(t, websocket.StatusProtocolError, websocket.CloseStatus(err), "%v", err)
			}
			c = m.accept() // and the worker dials again
			c.handshake()
		})
	}
}

func TestWorker_TLS(t *testing.T) {
	m, ca := startTLSMaster(t, "w1", "pass")
	w := newWorker(t, m)
	w.CAFile = ca
	startWorker(t, w)
	c := m.accept()
	info := c.handshake()
	assert.Equal(t, w.BaseDir, info["basedir"])
}

func TestWorker_TLSUnknownAuthority(t *testing.T) {
	m, _ := startTLSMaster(t, "w1", "pass")
	w := newWorker(t, m)
	logs := make(records, 1000)
	w.Logger = slog.New(logs)
	startWorker(t, w)
	msg := logs.waitLog(t, slog.LevelWarn, "reconnecting")
	assert.Contains(t, msg, "certificate")
}

// A master that stops reading makes the worker's writes time out: the
// connection is dropped and dialled again.
func TestWorker_WriteTimeout(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	m.mu.Lock()
	m.noRead = true
	m.mu.Unlock()
	w := newWorker(t, m)
	w.WriteTimeout = 100 * time.Millisecond
	logs := make(records, 1000)
	w.Logger = slog.New(logs)
	big := filepath.Join(w.BaseDir, "big")
	require.NoError(t, os.WriteFile(big, make([]byte, 12<<20), 0o644))
	startWorker(t, w)
	c := m.accept()
	// Blocks larger than the socket buffers, which nobody reads.
	c.send(protocol.Message{"op": "start_command", "command_id": "1", "command_name": "upload_file",
		"args": map[string]any{"path": big, "blocksize": int64(12 << 20), "maxsize": nil}})
	msg := logs.waitLog(t, slog.LevelWarn, "connection to master lost")
	assert.Contains(t, msg, "write update_upload_file_write")
	m.accept() // dialled again
}

func TestWorker_Ping(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	startWorker(t, newWorker(t, m))
	c := m.accept()
	c.handshake()
	assert.NoError(t, c.ws.Ping(t.Context()), "WebSocket pings are answered")
}

// TestWorker_WebPort: a worker given a web server's address (the master's
// web port) says so, rather than a bare handshake error.
func TestWorker_WebPort(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<!DOCTYPE html><title>Builders</title>")
	}))
	defer web.Close()
	w := &worker.Worker{Name: "w1", Password: "pass", Master: strings.TrimPrefix(web.URL, "http://"), BaseDir: t.TempDir(),
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	logs := make(records, 1000)
	w.Logger = slog.New(logs)
	startWorker(t, w)
	msg := logs.waitLog(t, slog.LevelWarn, "reconnecting")
	assert.Contains(t, msg, `reached an HTTP server that answered "200 OK", not a master's worker port`)
	assert.Contains(t, msg, "9989")
}

// TestWorker_Plaintext: plain ws:// is refused to a master on another
// machine, unless allowed; loopback masters and wss:// are fine.
func TestWorker_Plaintext(t *testing.T) {
	for master, ok := range map[string]bool{
		"buildbot.example.org:9989": false, "ws://10.0.0.1:9989/": false, "192.168.1.2": false,
		"localhost:9989": true, "127.0.0.2:9989": true, "[::1]:9989": true, "ws://localhost/": true,
		"wss://buildbot.example.org:9989/": true,
	} {
		w := &worker.Worker{Name: "w1", Master: master, BaseDir: t.TempDir()}
		err := w.Validate()
		if ok {
			assert.NoError(t, err, master)
			continue
		}
		if assert.Error(t, err, master) {
			assert.Contains(t, err.Error(), "ws:// would send the worker's password in clear", master)
		}
		w.AllowPlaintext = true
		assert.NoError(t, w.Validate(), master)
	}
}
