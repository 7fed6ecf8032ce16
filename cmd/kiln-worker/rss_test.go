package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker/protocol"
)

// TestIdleRSS measures the resident memory of an idle kiln-worker,
// attached to a master as a stock Buildbot master attaches it, and checks
// it against a generous bound (the aim is under 10 MiB).
func TestIdleRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	bin := buildBinary(t)
	conns := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := websocket.Accept(w, r, nil); err == nil {
			conns <- c
		}
	}))
	t.Cleanup(srv.Close)
	dir := filepath.Join(t.TempDir(), "w")
	out, err := exec.Command(bin, "create-worker", "-q", dir, srv.Listener.Addr().String(), "w", "pass").CombinedOutput()
	require.NoError(t, err, "%s", out)
	wk := exec.Command(bin, "start", "-q", dir)
	wk.Stderr = testWriter{t}
	require.NoError(t, wk.Start())
	waitProcess(t, wk)

	var c *websocket.Conn
	select {
	case c = <-conns:
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not connect")
	}
	defer c.CloseNow()
	for i, req := range []protocol.Message{
		{"op": "print", "message": "attached"},
		{"op": "get_worker_info"},
		{"op": "set_worker_settings", "args": map[string]any{"buffer_size": 65536, "buffer_timeout": 5, "max_line_length": 4096, "newline_re": `(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)`}},
		{"op": "start_command", "command_id": "0", "command_name": "listdir", "args": map[string]any{"path": dir}},
	} {
		req["seq_number"] = int64(i)
		b, err := req.Encode()
		require.NoError(t, err)
		require.NoError(t, c.Write(t.Context(), websocket.MessageBinary, b))
	}
	// Answer the listdir's update and complete; wait for every response.
	for responses := 0; responses < 4; {
		_, frame, err := c.Read(t.Context())
		require.NoError(t, err)
		m, err := protocol.ParseMessage(frame)
		require.NoError(t, err)
		if m.Op() == protocol.OpResponse {
			require.NoError(t, m.ResponseError())
			responses++
			continue
		}
		b, err := protocol.Response(m.Seq(), nil, nil).Encode()
		require.NoError(t, err)
		require.NoError(t, c.Write(t.Context(), websocket.MessageBinary, b))
	}
	rss, err := vmRSS(wk.Process.Pid)
	require.NoError(t, err)
	t.Logf("kiln-worker idle RSS after attaching: %d KiB (%.1f MiB)", rss, float64(rss)/1024)
	assert.Less(t, rss, 32<<10, fmt.Sprintf("idle RSS of %d KiB", rss))
}
