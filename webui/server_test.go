package webui_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/webui"
)

// fakeHook is a change hook answering its dialect's name.
type fakeHook struct{}

var _ ci.ChangeHook = fakeHook{}

func (fakeHook) Dialect() string { return "fake" }
func (fakeHook) Handler(m *ci.Master) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hook "+r.URL.Path) })
}

func TestServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	root := "http://" + ln.Addr().String()
	cfg := testConfig()
	cfg.PublicURL = root + "/ci/"
	cfg.ChangeHooks = []ci.ChangeHook{fakeHook{}}
	cfg.Services = append(cfg.Services, &webui.Server{Listener: ln, Options: webui.Options{Authz: webui.Authz{Force: webui.Anyone}}})
	citest.Start(t, cfg)

	get := func(url string) (int, string) {
		res, err := http.Get(url)
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(b)
	}
	code, body := get(root + "/ci/")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `href="/ci/builders/pass"`)
	code, body = get(root + "/ci/builders/count")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `<form method="post" action="/ci/builders/count/force"`, "the server's options apply")
	// The hooks are under the public URL's path too, and at the root for a
	// proxy that strips it.
	code, body = get(root + "/ci/change_hook/fake")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "hook /change_hook/fake", body)
	code, _ = get(root + "/change_hook/fake")
	assert.Equal(t, http.StatusOK, code)
	res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(root + "/ci")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusMovedPermanently, res.StatusCode)
	assert.Equal(t, "/ci/", res.Header.Get("Location"))
}

// TestServer_StopWithStreams: open event streams end when the master
// stops; they do not hold its stop.
func TestServer_StopWithStreams(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := testConfig()
	cfg.BaseDir = t.TempDir()
	cfg.Services = append(cfg.Services, &webui.Server{Listener: ln})
	m, err := ci.NewMaster(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(ctx) }()
	<-m.Ready()

	res, err := http.Get("http://" + ln.Addr().String() + "/live")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	first := make([]byte, len("retry: 1000\n\n"))
	_, err = io.ReadFull(res.Body, first)
	require.NoError(t, err)
	assert.Equal(t, "retry: 1000\n\n", string(first), "browsers reconnect within a second")
	read := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, res.Body)
		read <- err
	}()

	cancel()
	select {
	case err := <-runErr:
		require.NoError(t, err)
	case <-time.After(time.Second):
		t.Fatal("the master's Run did not return within 1 s of its stop, with an event stream open")
	}
	select {
	case err := <-read:
		assert.NoError(t, err, "the stream ends cleanly")
	case <-time.After(time.Minute):
		t.Fatal("the stream did not end")
	}
}
