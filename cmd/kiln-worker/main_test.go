package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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

// run runs kiln-worker with args and returns its output.
func run(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errOut, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	err = m.Run(ctx, args)
	return out.String(), errOut.String(), err
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func TestMain_Version(t *testing.T) {
	out, _, err := run(t, t.Context(), "--version")
	require.NoError(t, err)
	assert.Contains(t, out, "kiln-worker "+protocol.Version)
}

func TestMain_Usage(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.Mkdir(bad, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bad, worker.ConfigFile), []byte("master=m\nname=n\ncolour=blue\n"), 0o600))
	for _, tt := range []struct {
		args  []string
		usage bool   // a usage error (exit status 2)
		want  string // in the error
	}{
		{nil, true, "no command"},
		{[]string{"frob"}, true, `unknown command "frob"`},
		{[]string{"create-worker", dir, "m:9989", "n"}, true, "want BASEDIR MASTER NAME PASSWORD"},
		{[]string{"create-worker", "--keepalive", "600", dir, "m:9989", "n", "p"}, true, "flag provided but not defined: -keepalive"},
		{[]string{"create-worker", "--protocol", "pb", dir, "m:9989", "n", "p"}, true, "only msgpack_experimental_v7"},
		{[]string{"create-worker", "--use-tls", dir, "ws://m:9989/", "n", "p"}, true, "--use-tls"},
		{[]string{"create-worker", dir, "m:port", "n", "p"}, false, "port"},
		{[]string{"create-worker", dir, "m:9989", "a:b", "p"}, false, "colon"},
		{[]string{"start", dir, dir}, true, "at most one BASEDIR"},
		{[]string{"start", filepath.Join(dir, "none")}, false, "no such file"},
		{[]string{"start", bad}, false, `unknown key "colour"`},
	} {
		_, _, err := run(t, t.Context(), tt.args...)
		require.Error(t, err, "%q", tt.args)
		assert.Equal(t, tt.usage, errors.As(err, new(usageError)), "%q: %v", tt.args, err)
		assert.ErrorContains(t, err, tt.want, "%q", tt.args)
		assert.NotContains(t, oneLine(err), "\n")
	}
	_, err := os.Stat(filepath.Join(dir, worker.ConfigFile))
	assert.ErrorIs(t, err, os.ErrNotExist, "failed create-worker commands write nothing")
}

func TestMain_CreateWorker(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "slave-amd64")
	// Plain ws:// to another machine is refused, unless allowed.
	_, _, err := run(t, t.Context(), "create-worker", dir, "buildbot.example.org:9989", "slave-amd64", "p@ss word")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "master buildbot.example.org:9989 is not on this machine, and ws:// would send the worker's password in clear")
	assert.NotContains(t, err.Error(), "p@ss word")
	assert.NoDirExists(t, dir)
	out, _, err := run(t, t.Context(), "create-worker", "--allow-plaintext", dir, "buildbot.example.org:9989", "slave-amd64", "p@ss word")
	require.NoError(t, err)
	assert.Contains(t, out, "worker configured in "+dir)

	fi, err := os.Stat(filepath.Join(dir, worker.ConfigFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the file holds the password")
	w, err := worker.ReadConfig(dir)
	require.NoError(t, err)
	assert.Equal(t, &worker.Worker{Master: "buildbot.example.org:9989", Name: "slave-amd64", Password: "p@ss word", BaseDir: dir, AllowPlaintext: true}, w)
	admin, err := os.ReadFile(filepath.Join(dir, "info", "admin"))
	require.NoError(t, err)
	assert.Equal(t, "Your Name Here <admin@youraddress.invalid>\n", string(admin))
	host, err := os.ReadFile(filepath.Join(dir, "info", "host"))
	require.NoError(t, err)
	assert.Equal(t, "Please put a description of this build host here\n", string(host))

	// Again: nothing changes, edited info files are kept.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "info", "admin"), []byte("Ada\n"), 0o644))
	out, _, err = run(t, t.Context(), "create-worker", "--allow-plaintext", dir, "buildbot.example.org:9989", "slave-amd64", "p@ss word")
	require.NoError(t, err)
	assert.Contains(t, out, "already exists and is correct")
	admin, _ = os.ReadFile(filepath.Join(dir, "info", "admin"))
	assert.Equal(t, "Ada\n", string(admin))

	// Different settings go to a .new file beside the old one.
	out, _, err = run(t, t.Context(), "create-worker", "-q", "--allow-plaintext", dir, "buildbot.example.org:9989", "slave-amd64", "other")
	require.NoError(t, err)
	assert.Empty(t, out, "-q")
	w, err = worker.ReadConfig(dir)
	require.NoError(t, err)
	assert.Equal(t, "p@ss word", w.Password)
	b, err := os.ReadFile(filepath.Join(dir, worker.ConfigFile+".new"))
	require.NoError(t, err)
	assert.Contains(t, string(b), "password=other")
}

func TestMain_CreateWorker_Relocatable(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "w")
	ca := filepath.Join(parent, "ca.pem")
	require.NoError(t, os.WriteFile(ca, caPEM(t), 0o644))
	_, _, err := run(t, t.Context(), "create-worker", "-r", "--use-tls", "--ca-file", ca, "--maxdelay", "60",
		"--unconfined", "--delete-leftover-dirs", dir, "ci.example.org:9989", "w", "pass")
	require.NoError(t, err)
	conf, err := os.ReadFile(filepath.Join(dir, worker.ConfigFile))
	require.NoError(t, err)
	assert.NotContains(t, string(conf), "basedir", "a relocatable worker records no base folder")

	moved := filepath.Join(parent, "moved")
	require.NoError(t, os.Rename(dir, moved))
	w, err := worker.ReadConfig(moved)
	require.NoError(t, err)
	assert.Equal(t, &worker.Worker{
		Master: "wss://ci.example.org:9989/", Name: "w", Password: "pass", BaseDir: moved, CAFile: ca,
		Unconfined: true, DeleteLeftoverDirs: true, MaxBackoff: time.Minute,
	}, w)
}

// caPEM returns a certificate in PEM.
func caPEM(t *testing.T) []byte {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

func TestMain_Start(t *testing.T) {
	conns := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "w1" || p != "pass" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err == nil {
			conns <- c
		}
	}))
	t.Cleanup(srv.Close)
	dir := filepath.Join(t.TempDir(), "w")
	_, _, err := run(t, t.Context(), "create-worker", "-q", dir, srv.Listener.Addr().String(), "w1", "pass")
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	result := make(chan error, 1)
	go func() {
		_, _, err := run(t, ctx, "start", "--nodaemon", dir)
		result <- err
	}()
	var c *websocket.Conn
	select {
	case c = <-conns:
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not connect")
	}
	defer c.CloseNow()
	msg, err := protocol.Message{"op": "get_worker_info", "seq_number": int64(0)}.Encode()
	require.NoError(t, err)
	require.NoError(t, c.Write(t.Context(), websocket.MessageBinary, msg))
	_, frame, err := c.Read(t.Context())
	require.NoError(t, err)
	resp, err := protocol.ParseMessage(frame)
	require.NoError(t, err)
	info, ok := resp["result"].(map[string]any)
	require.True(t, ok, "%v", resp)
	assert.Equal(t, dir, info["basedir"])
	assert.Equal(t, "Your Name Here <admin@youraddress.invalid>\n", info["admin"])

	cancel() // SIGTERM
	_, _, err = c.Read(t.Context())
	assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err), "%v", err)
	select {
	case err := <-result:
		assert.NoError(t, err, "a stopped worker exits with status 0")
	case <-time.After(20 * time.Second):
		t.Fatal("start did not return")
	}
}

// TestMain_Stop: stop ends the worker running in a folder (its commands
// interrupted, exit status 0); a second start on the folder refuses to
// run; stop without a running worker says how to stop one under systemd.
func TestMain_Stop(t *testing.T) {
	bin := buildBinary(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := websocket.Accept(w, r, nil); err == nil {
			defer c.CloseNow()
			c.Read(r.Context()) // until the worker goes
		}
	}))
	t.Cleanup(srv.Close)
	dir := filepath.Join(t.TempDir(), "w")
	_, _, err := run(t, t.Context(), "create-worker", "-q", dir, srv.Listener.Addr().String(), "w1", "pass")
	require.NoError(t, err)

	_, _, err = run(t, t.Context(), "stop", dir)
	require.Error(t, err)
	assert.Equal(t, "stop: no worker runs in "+dir+" (it has no kiln-worker.pid); one run by systemd stops with systemctl stop kiln-worker@NAME", err.Error())

	worker := exec.Command(bin, "start", dir)
	var log bytes.Buffer
	worker.Stderr = &log
	require.NoError(t, worker.Start())
	exited := waitProcess(t, worker)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if pid, err := readPID(dir); err == nil && pid == worker.Process.Pid {
			break
		}
		require.True(t, time.Now().Before(deadline), "no pid file")
		time.Sleep(10 * time.Millisecond)
	}
	out, err := exec.Command(bin, "start", dir).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), fmt.Sprintf("a worker already runs in %s (process %d, in kiln-worker.pid)", dir, worker.Process.Pid))

	out, err = exec.Command(bin, "stop", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, fmt.Sprintf("stopping the worker of %s (process %d)\nworker stopped\n", dir, worker.Process.Pid), string(out))
	select {
	case err := <-exited:
		assert.NoError(t, err, "%s", log.String())
	case <-time.After(time.Minute):
		t.Fatal("the worker did not exit")
	}
	assert.NoFileExists(t, filepath.Join(dir, PIDFile), "the record goes with the worker")
}
