package remote

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/worker/protocol"
)

// A worker that breaks the protocol loses its own connection, with the
// reason logged; the master and a healthy worker building meanwhile carry
// on.
func TestProtocolViolations(t *testing.T) {
	bad := []string{"malformed", "oversized", "text", "wrongtype", "early", "badinfo"}
	cfg := ci.MasterConfig{
		Workers:  fakeWorkers(append([]string{"healthy"}, bad...)...),
		Builders: []ci.BuilderConfig{shellBuilder("b", []string{"healthy"}, "true")},
	}
	m := startMaster(t, cfg, nil)
	running := make(chan struct{})
	release := make(chan struct{})
	m.attachFake(t, "healthy", fakeOptions{onCommand: func(f *fakeWorker, c fakeCommand) {
		close(running)
		f.update(c.ID, []any{"stdout", lines("working\n")})
		<-release
		f.update(c.ID, []any{"rc", 0})
		f.complete(c.ID, nil)
	}})
	bs := m.Submit(t, citest.Request{Builder: "b"})
	<-running

	attached := func(name string) *fakeWorker {
		f, _ := m.attachFake(t, name, fakeOptions{})
		return f
	}
	cases := []struct {
		name   string
		reason string
		run    func(t *testing.T) *fakeWorker
	}{
		{"malformed", "malformed frame", func(t *testing.T) *fakeWorker {
			f := attached("malformed")
			require.NoError(t, f.ws.Write(context.Background(), websocket.MessageBinary, []byte{0x82, 0xa2, 'o', 'p', 0xc1}))
			return f
		}},
		{"oversized", "frame over the", func(t *testing.T) *fakeWorker {
			f := attached("oversized")
			big := make([]byte, protocol.MaxFrameSize+1)
			// The master closes the connection while this is written.
			f.ws.Write(context.Background(), websocket.MessageBinary, big)
			return f
		}},
		{"text", "a MessageText message", func(t *testing.T) *fakeWorker {
			f := attached("text")
			require.NoError(t, f.ws.Write(context.Background(), websocket.MessageText, []byte(`{"op":"update"}`)))
			return f
		}},
		{"wrongtype", `is a int64, not a string`, func(t *testing.T) *fakeWorker {
			f := attached("wrongtype")
			require.NoError(t, f.write(protocol.Message{"op": "update", "seq_number": 0, "command_id": 7, "args": []any{}}))
			return f
		}},
		{"early", `before the handshake ended`, func(t *testing.T) *fakeWorker {
			// This worker answers nothing: it speaks first.
			f, err := dialFake(t, m.addr, "early", fakeOptions{mute: true})
			require.NoError(t, err)
			require.NoError(t, f.write(protocol.Message{"op": "update", "seq_number": 0, "command_id": "0", "args": []any{}}))
			return f
		}},
		{"badinfo", "get_worker_info returned a string", func(t *testing.T) *fakeWorker {
			f, err := dialFake(t, m.addr, "badinfo", fakeOptions{rawInfo: "not a map"})
			require.NoError(t, err)
			return f
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.run(t)
			err := f.waitClosed()
			require.Error(t, err)
			m.WaitFor(t, "the violation to be counted", func() bool { return m.l.Stats().ProtocolErrors >= int64(i+1) })
			assert.Contains(t, m.logs.String(), tc.reason)
			m.WaitFor(t, tc.name+" to be detached", func() bool { return !m.connected(tc.name) })
		})
	}

	// The healthy worker's build went on.
	close(release)
	builds := m.WaitBuildset(t, bs)
	require.Len(t, builds, 1)
	assert.Equal(t, ci.Success, builds[0].Results())
	assert.Equal(t, "working\n", builds[0].Log("sh", "stdio"))
	assert.True(t, m.connected("healthy"))
}

// Late messages are dropped and counted: a response nobody waits for, an
// update for a command that is not running (answered with an exception).
func TestUnknownMessagesCounted(t *testing.T) {
	cfg := ci.MasterConfig{Workers: fakeWorkers("w1"), Builders: []ci.BuilderConfig{shellBuilder("b", []string{"w1"}, "true")}}
	m := startMaster(t, cfg, nil)
	answers := make(chan [2]protocol.Message, 1)
	f, conn := m.attachFake(t, "w1", fakeOptions{onCommand: func(f *fakeWorker, c fakeCommand) {
		// An update right after the complete, without waiting.
		completed := f.send(protocol.Message{"op": protocol.OpComplete, "command_id": c.ID, "args": nil})
		late := f.send(protocol.Message{"op": protocol.OpUpdate, "command_id": c.ID, "args": []any{[]any{"rc", 0}}})
		answers <- [2]protocol.Message{<-completed, <-late}
	}})
	require.NoError(t, f.write(protocol.Message{"op": "response", "seq_number": 999, "result": nil}))
	r := f.update("42", []any{"stdout", lines("late\n")})
	require.NotNil(t, r)
	assert.ErrorContains(t, r.ResponseError(), `unknown command_id "42"`)
	// Frames are handled in order: the response was counted before the
	// update was answered.
	assert.Equal(t, ConnStats{UnknownResponses: 1, UnknownCommands: 1}, conn.Stats())
	assert.Equal(t, int64(1), m.l.Stats().UnknownResponses)

	require.NoError(t, conn.RunCommand(context.Background(), "b", &ci.RemoteCommand{Name: "rmfile", Args: map[string]any{"path": "x"}}))
	a := <-answers
	assert.NoError(t, a[0].ResponseError())
	assert.ErrorContains(t, a[1].ResponseError(), "command")
	assert.Equal(t, int64(2), conn.Stats().UnknownCommands)

	r = f.call(protocol.Message{"op": "frobnicate"})
	assert.ErrorContains(t, r.ResponseError(), "Command frobnicate does not exist")
	assert.True(t, m.connected("w1"), "unknown ops after the handshake are answered, not fatal")
}

// An interrupted command: interrupt_command carries the builder, the
// command id and why; the worker's last updates are kept; messages after
// the end are dropped.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	cfg, clock := onFakeClock(ci.MasterConfig{Workers: fakeWorkers("w1"), Builders: []ci.BuilderConfig{shellBuilder("b", []string{"w1"}, "sleep", "100")}})
	const grace = 2 * time.Second
	m := startMaster(t, cfg, &Listener{InterruptTimeout: grace})
	started := make(chan fakeCommand, 1)
	f, conn := m.attachFake(t, "w1", fakeOptions{onCommand: func(f *fakeWorker, c fakeCommand) { started <- c }})
	ctx := context.Background()

	t.Run("completes", func(t *testing.T) {
		cctx, cancel := context.WithCancelCause(ctx)
		result := make(chan error, 1)
		cmd := &ci.RemoteCommand{Name: "shell", Args: map[string]any{"workdir": "build", "command": []any{"sleep", "100"}}}
		go func() { result <- conn.RunCommand(cctx, "b", cmd) }()
		c := <-started
		cancel(errors.New("stopped by a test"))
		n := len(f.requestsOf(protocol.OpInterruptCommand)) + 1
		ir := f.waitRequests(protocol.OpInterruptCommand, n)[n-1]
		assert.Equal(t, "b", ir["builder_name"])
		assert.Equal(t, c.ID, ir["command_id"])
		assert.Equal(t, "stopped by a test", ir["why"])
		f.update(c.ID, []any{"header", lines("killing\n")}, []any{"rc", -1})
		f.complete(c.ID, nil)
		require.NoError(t, <-result)
		assert.Equal(t, -1, cmd.RC)
	})

	t.Run("does not complete", func(t *testing.T) {
		clock.Advance(grace) // past the timer of the interrupt above
		cctx, cancel := context.WithCancel(ctx)
		result := make(chan error, 1)
		cmd := &ci.RemoteCommand{Name: "shell", Args: map[string]any{"workdir": "build", "command": []any{"sleep", "100"}}}
		go func() { result <- conn.RunCommand(cctx, "b", cmd) }()
		c := <-started
		cancel()
		// It waits for the command's end until the interrupt timeout,
		// on the master's clock.
		waitTimer(t, clock, clock.Now().Add(grace))
		clock.Advance(grace - time.Millisecond)
		select {
		case err := <-result:
			t.Fatalf("RunCommand returned %v before the interrupt timeout", err)
		default:
		}
		clock.Advance(time.Millisecond)
		require.ErrorIs(t, <-result, context.Canceled)
		before := conn.Stats().UnknownCommands
		r := f.update(c.ID, []any{"rc", -1})
		assert.Error(t, r.ResponseError())
		assert.Equal(t, before+1, conn.Stats().UnknownCommands)
	})
}

// A worker that goes silent mid-build is declared lost within the
// timeout: its build ends RETRY and is built again on another worker.
func TestLiveness_SilentWorkerLost(t *testing.T) {
	t.Parallel()
	cfg, clock := onFakeClock(ci.MasterConfig{
		Workers:  fakeWorkers("silent", "healthy"),
		Builders: []ci.BuilderConfig{shellBuilder("b", []string{"silent", "healthy"}, "make")},
	})
	m := startMaster(t, cfg, &Listener{Timeout: 3 * time.Second, KeepaliveInterval: 300 * time.Millisecond})
	started := make(chan struct{})
	silent, conn := m.attachFake(t, "silent", fakeOptions{onCommand: func(f *fakeWorker, c fakeCommand) {
		f.update(c.ID, []any{"stdout", lines("started\n")})
		close(started)
		f.silence()
	}})
	bs := m.Submit(t, citest.Request{Builder: "b"})
	<-started

	// Heard last at clockT0: lost once the timeout has passed since. The
	// clock moves by small steps, each giving the connection's monitor
	// time to run and set its next timer, until the worker is lost.
	for conn.Err() == nil {
		require.True(t, clock.Now().Before(clockT0.Add(30*time.Second)), "the silent worker was never declared lost")
		clock.Advance(100 * time.Millisecond)
		select {
		case <-conn.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	assert.False(t, clock.Now().Before(clockT0.Add(3*time.Second)), "lost at %s, before the timeout", clock.Now().Sub(clockT0))
	assert.ErrorIs(t, conn.Err(), ci.ErrWorkerLost)
	assert.ErrorContains(t, conn.Err(), "(timeout 3s): lost")
	m.attachFake(t, "healthy", fakeOptions{})
	builds := m.WaitBuildset(t, bs)
	require.Len(t, builds, 1)
	assert.Equal(t, ci.Success, builds[0].Results())
	all := m.storedBuilds(t, "b")
	require.Len(t, all, 2)
	results := map[ci.Result]int{}
	for _, b := range all {
		results[b.Results]++
	}
	assert.Equal(t, map[ci.Result]int{ci.Retry: 1, ci.Success: 1}, results)
	assert.GreaterOrEqual(t, m.l.Stats().Lost, int64(1))
	assert.Contains(t, m.logs.String(), "worker silent for")
	_ = silent
}

// Keepalives go out on their own; a worker that answers WebSocket pings
// but not keepalives, or keepalives but not pings, is alive.
func TestLiveness_Keepalives(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		noPong, noKeep bool
	}{{"pongs only", false, true}, {"keepalives only", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, clock := onFakeClock(ci.MasterConfig{Workers: fakeWorkers("w1"), Builders: []ci.BuilderConfig{shellBuilder("b", []string{"w1"}, "true")}})
			const keepalive = 150 * time.Millisecond
			m := startMaster(t, cfg, &Listener{Timeout: 1500 * time.Millisecond, KeepaliveInterval: keepalive})
			f, err := dialFake(t, m.addr, "w1", fakeOptions{})
			require.NoError(t, err)
			f.noPong.Store(tc.noPong)
			f.ignoreKeepalives.Store(tc.noKeep)
			conn := m.waitAttached(t, "w1")
			// 25 keepalives span more than twice the timeout.
			for i := 1; i <= 25; i++ {
				m.tick(t, clock, conn, keepalive)
				f.waitRequests(protocol.OpKeepalive, i)
			}
			assert.NoError(t, conn.Err())
			assert.Positive(t, f.pings.Load())
		})
	}
}

// A second connection under the name of a connected worker is refused
// with 409 until the first is closed or declared lost, whether it answers
// or not; the refusal is logged with both remote addresses.
func TestDuplicateWorker(t *testing.T) {
	t.Parallel()
	cfg := ci.MasterConfig{Workers: fakeWorkers("w1"), Builders: []ci.BuilderConfig{shellBuilder("b", []string{"w1"}, "true")}}

	t.Run("old answers", func(t *testing.T) {
		t.Parallel()
		m := startMaster(t, cfg, nil)
		_, old := m.attachFake(t, "w1", fakeOptions{})
		_, err := dialFake(t, m.addr, "w1", fakeOptions{})
		require.Equal(t, 409, statusOf(err), "err: %v", err)
		assert.Contains(t, err.Error(), `worker "w1" is already connected from 127.0.0.1:`)
		assert.NotContains(t, strings.TrimSpace(err.Error()), "\n")
		assert.NoError(t, old.Err())
		cur, _ := m.WorkerConn("w1")
		assert.Same(t, old, cur)
		assert.Equal(t, int64(1), m.l.Stats().Duplicates)
		b := m.Build(t, citest.Request{Builder: "b"})
		assert.Equal(t, ci.Success, b.Results())
	})

	t.Run("old silent", func(t *testing.T) {
		t.Parallel()
		cfg, clock := onFakeClock(cfg)
		// The timeout bounds the ping of the old connection to a quarter of
		// it, in real time.
		const timeout = 2 * time.Second
		m := startMaster(t, cfg, &Listener{Timeout: timeout})
		oldFake, old := m.attachFake(t, "w1", fakeOptions{})
		oldFake.silence()
		_, err := dialFake(t, m.addr, "w1", fakeOptions{})
		require.Equal(t, 409, statusOf(err), "err: %v", err)
		assert.Contains(t, err.Error(), "does not answer; it keeps the name until it is declared lost")
		assert.NoError(t, old.Err(), "the silent worker keeps its name")
		assert.Regexp(t, `refusing a second connection of a connected worker.* remote=127\.0\.0\.1:\d+ reason=".*already connected from 127\.0\.0\.1:\d+`, m.logs.String())
		// Once it is declared lost, the name is free.
		clock.Advance(timeout)
		<-old.Done()
		m.WaitFor(t, "the old connection to detach", func() bool {
			_, ok := m.WorkerConn("w1")
			return !ok
		})
		_, err = dialFake(t, m.addr, "w1", fakeOptions{})
		require.NoError(t, err)
		m.WaitFor(t, "the new connection to attach", func() bool {
			cur, ok := m.WorkerConn("w1")
			return ok && cur != old
		})
		b := m.Build(t, citest.Request{Builder: "b"})
		assert.Equal(t, ci.Success, b.Results())
	})
}

// A frame that arrives with the WebSocket upgrade request, in the same
// segment, is read as the connection's first frame: here, an update sent
// before the handshake, which is a protocol violation.
func TestFrameWithUpgradeRequest(t *testing.T) {
	m := startMaster(t, ci.MasterConfig{Workers: fakeWorkers("eager")}, nil)
	frame, err := protocol.Message{"op": "update", "seq_number": 0, "command_id": "0", "args": []any{}}.Encode()
	require.NoError(t, err)
	require.Less(t, len(frame), 126, "a frame with a 7-bit length")
	// A client's frame: FIN and binary, then the masked length, the mask
	// and the masked payload.
	mask := []byte{1, 2, 3, 4}
	ws := append([]byte{0x82, 0x80 | byte(len(frame))}, mask...)
	for i, b := range frame {
		ws = append(ws, b^mask[i%4])
	}
	req := "GET / HTTP/1.1\r\nHost: " + m.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("eager:pw-eager")) + "\r\n\r\n"
	c, err := net.Dial("tcp", m.addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write(append([]byte(req), ws...))
	require.NoError(t, err)

	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitTimeout)))
	got, err := io.ReadAll(c) // the 101, the master's frames, then the close
	require.NoError(t, err, "the master closes the connection")
	assert.True(t, strings.HasPrefix(string(got), "HTTP/1.1 101 "), "%q", got)
	m.WaitFor(t, "the violation to be counted", func() bool { return m.l.Stats().ProtocolErrors == 1 })
	assert.Contains(t, m.logs.String(), `worker sent \"update\" before the handshake ended`)
	assert.NotContains(t, m.logs.String(), "rsv bits")
}

// A worker that stops answering is shown silent, with the time it will be
// declared lost, then lost at that time.
func TestLiveness_SilenceVisible(t *testing.T) {
	t.Parallel()
	cfg, clock := onFakeClock(ci.MasterConfig{Workers: fakeWorkers("w1"), Builders: []ci.BuilderConfig{shellBuilder("b", []string{"w1"}, "true")}})
	const timeout, keepalive = 3 * time.Second, 200 * time.Millisecond
	m := startMaster(t, cfg, &Listener{Timeout: timeout, KeepaliveInterval: keepalive})
	f, conn := m.attachFake(t, "w1", fakeOptions{})
	status := func() ci.WorkerStatus {
		for _, w := range m.Workers() {
			if w.Name == "w1" {
				return w
			}
		}
		t.Fatal("no worker w1")
		return ci.WorkerStatus{}
	}

	// Answering keepalives, the worker is not silent. (It leaves pings
	// unanswered, so that after each tick no answer is on its way.)
	f.noPong.Store(true)
	for i := 1; i <= 3; i++ {
		m.tick(t, clock, conn, keepalive)
	}
	f.waitRequests(protocol.OpKeepalive, 3)
	silent, _, _ := conn.Silence()
	assert.False(t, silent)
	assert.True(t, status().LostAt.IsZero())

	// Silent once a keepalive interval and its grace (a quarter of the
	// interval) have passed without a word.
	f.silence()
	last := clock.Now()
	clock.Advance(keepalive + keepalive/4)
	silent, _, _ = conn.Silence()
	assert.False(t, silent)
	clock.Advance(time.Millisecond)
	silent, since, lostAt := conn.Silence()
	require.True(t, silent)
	assert.True(t, last.Equal(since), "silent since %s, last heard at %s", since, last)
	assert.True(t, last.Add(timeout).Equal(lostAt), "lost at %s, last heard at %s", lostAt, last)
	st := status()
	assert.True(t, st.Connected)
	assert.Equal(t, since, st.SilentSince)
	assert.Equal(t, lostAt, st.LostAt)

	// Lost at that time.
	clock.Set(lostAt.Add(-time.Millisecond))
	require.NoError(t, conn.Err())
	clock.Set(lostAt)
	<-conn.Done()
	assert.ErrorIs(t, conn.Err(), ci.ErrWorkerLost)
	silent, _, _ = conn.Silence()
	assert.False(t, silent, "a lost connection is no longer silent: it is gone")
	m.WaitFor(t, "w1 to be detached", func() bool { return !status().Connected })
	assert.True(t, status().LostAt.IsZero())
}

// pingsBefore returns the print "ping" requests f received, and whether
// one came just before each shell command.
func pingsBefore(f *fakeWorker) (pings int, before []bool) {
	reqs := f.requestsOf("")
	for i, r := range reqs {
		if r.Op() == protocol.OpPrint && r["message"] == "ping" {
			pings++
		}
		if r.Op() == protocol.OpStartCommand && r["command_name"] == "shell" {
			before = append(before, i > 0 && reqs[i-1].Op() == protocol.OpPrint && reqs[i-1]["message"] == "ping")
		}
	}
	return pings, before
}

// The master pings a worker before a build, as Buildbot's does, unless it
// heard from it less than ci.PingQuiet ago: builds one after another skip
// that round trip.
func TestPing_OnlyWhenQuiet(t *testing.T) {
	t.Parallel()
	cfg, clock := onFakeClock(ci.MasterConfig{
		Workers:  fakeWorkers("w1"),
		Builders: []ci.BuilderConfig{shellBuilder("b", []string{"w1"}, "true")},
	})
	m := startMaster(t, cfg, nil)
	f, _ := m.attachFake(t, "w1", fakeOptions{})

	// Just attached: heard from at the clock's time.
	require.Len(t, m.WaitBuildset(t, m.Submit(t, citest.Request{Builder: "b"})), 1)
	pings, before := pingsBefore(f)
	assert.Equal(t, 0, pings)
	assert.Equal(t, []bool{false}, before)

	// Quiet for PingQuiet: pinged first.
	clock.Advance(ci.PingQuiet)
	require.Len(t, m.WaitBuildset(t, m.Submit(t, citest.Request{Builder: "b"})), 1)
	pings, before = pingsBefore(f)
	assert.Equal(t, 1, pings)
	assert.Equal(t, []bool{false, true}, before)

	// Heard from by the ping and the build just now: not again.
	clock.Advance(ci.PingQuiet / 2)
	require.Len(t, m.WaitBuildset(t, m.Submit(t, citest.Request{Builder: "b"})), 1)
	pings, before = pingsBefore(f)
	assert.Equal(t, 1, pings)
	assert.Equal(t, []bool{false, true, false}, before)
}

// A worker quiet for a while that does not answer the ping before a build
// is disconnected, and the build request waits for another worker: nothing
// is claimed or started on the worker that did not answer.
func TestPing_UnansweredDropsWorker(t *testing.T) {
	t.Parallel()
	cfg, clock := onFakeClock(ci.MasterConfig{
		Workers:  fakeWorkers("mute", "healthy"),
		Builders: []ci.BuilderConfig{shellBuilder("b", []string{"mute", "healthy"}, "true")},
	})
	// The ping waits for the timeout, in real time; the fake clock moves
	// less than that, so that the monitor does not find the worker lost.
	m := startMaster(t, cfg, &Listener{Timeout: 2 * time.Second})
	mute, conn := m.attachFake(t, "mute", fakeOptions{})
	mute.noPong.Store(true)
	mute.silence() // read, never answered
	clock.Advance(ci.PingQuiet)

	bs := m.Submit(t, citest.Request{Builder: "b"})
	<-conn.Done()
	assert.Contains(t, m.logs.String(), "worker did not answer before a build; disconnecting it")

	m.attachFake(t, "healthy", fakeOptions{})
	builds := m.WaitBuildset(t, bs)
	require.Len(t, builds, 1)
	assert.Equal(t, ci.Success, builds[0].Results())
	all := m.storedBuilds(t, "b")
	require.Len(t, all, 1, "no build on the worker that did not answer")
	var healthy int64
	for _, w := range m.Workers() {
		if w.Name == "healthy" {
			healthy = w.ID
		}
	}
	assert.Equal(t, healthy, all[0].WorkerID)
}

// storedBuilds returns the stored builds of the builder, finished or not.
func (m *testMaster) storedBuilds(tb testing.TB, builder string) []*ci.Build {
	tb.Helper()
	bid, ok := m.BuilderID(builder)
	require.True(tb, ok, "no builder %q", builder)
	all, _, err := m.Store.ListBuilds(context.Background(), ci.BuildQuery{BuilderID: bid})
	require.NoError(tb, err)
	return all
}
