package webui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/webui"
)

// The test users' logins and passwords.
const (
	alice    = "alice"
	alicePW  = "correct horse"
	subPath  = "/ci/"
	liveStep = "count"
)

// ui is a master with its web application served at subPath of a local
// server, as behind a proxy.
type ui struct {
	m    *citest.Master
	root string // the server's address, without the sub-path
	url  string // the application's public URL, ending in "/"
	srv  *httptest.Server
}

type uiOptions struct {
	authz    webui.Authz
	pageSize int
	// changeCfg edits the configuration before the master starts.
	changeCfg func(cfg *ci.MasterConfig)
	// public overrides the public URL (the proxy's); the server's address
	// with subPath if empty.
	public func(serverURL string) string
}

// testForce is the force scheduler of the test master.
func testForce() *scheduler.Force {
	return &scheduler.Force{
		Name:     "force",
		Builders: []string{"pass", "fail", "count"},
		Properties: []scheduler.Param{
			scheduler.ChoiceParam{Name: "dist", Label: "Distribution", Choices: []string{"jessie", "stretch"}, Default: "jessie"},
			scheduler.IntParam{Name: "lines", Label: "Lines", Default: 3},
			scheduler.BoolParam{Name: "clean", Label: "Clean build"},
			scheduler.StringParam{Name: "note", Label: "Note"},
		},
	}
}

func testConfig() ci.MasterConfig {
	shell := func(name string, cmd ...any) ci.Step {
		return &steps.ShellCommand{StepOptions: ci.StepOptions{Name: name}, Command: cmd}
	}
	return ci.MasterConfig{
		Title:    "Ideascube <&>",
		TitleURL: "https://github.com/ideascube",
		Workers:  []ci.WorkerConfig{{Name: "w1", MaxBuilds: 1}, {Name: "w2", MaxBuilds: 1}},
		Builders: []ci.BuilderConfig{
			{Name: "pass", Description: "always passes", Tags: []string{"deb"}, Workers: []string{"w1"},
				Steps: []ci.Step{shell("colours", "printf", `\033[1;32mgreen\033[0m <b>bold</b> %s\n`, ci.Interpolate("%(prop:note)s"))}},
			{Name: "fail", Workers: []string{"w2"}, Steps: []ci.Step{shell("false", "false")}},
			// count prints a line per tenth of a second, ?lines of them.
			{Name: "count", Workers: []string{"w1", "w2"}, Steps: []ci.Step{
				shell("hello", "echo", ci.Interpolate("dist=%(prop:dist)s")),
				shell(liveStep, "sh", "-c", `i=0; while [ $i -lt "$1" ]; do i=$((i+1)); echo "line $i"; sleep 0.1; done`, "sh",
					ci.Interpolate("%(prop:lines:-3)s")),
			}},
		},
		Schedulers: []ci.Scheduler{testForce()},
	}
}

// startUI starts a master and its web application.
func startUI(t testing.TB, o uiOptions) *ui {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	root := "http://" + ln.Addr().String()
	cfg := testConfig()
	cfg.PublicURL = root + subPath
	if o.public != nil {
		cfg.PublicURL = o.public(root)
	}
	if o.changeCfg != nil {
		o.changeCfg(&cfg)
	}
	m := citest.Start(t, cfg)
	hash, err := bcrypt.GenerateFromPassword([]byte(alicePW), bcrypt.MinCost)
	require.NoError(t, err)
	h, err := webui.NewHandler(m.Master, &webui.Options{
		Auth:     &webui.BasicAuth{Users: map[string]string{alice: string(hash)}},
		Authz:    o.authz,
		PageSize: o.pageSize,
	})
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return &ui{m: m, root: root, url: root + subPath, srv: srv}
}

// admin is the authorization of the tests that act: every action needs
// a login.
var admin = webui.Authz{Force: webui.LoggedIn, Stop: webui.LoggedIn, Cancel: webui.LoggedIn}

// req is an HTTP request of a test.
type req struct {
	method, path string // path is relative to the application's URL
	body         string
	contentType  string
	login        bool   // send alice's credentials
	password     string // a wrong password to send instead
	origin       string // an Origin header
	fetchSite    string // a Sec-Fetch-Site header
}

type resp struct {
	code   int
	header http.Header
	body   string
}

func (u *ui) do(t testing.TB, r req) resp {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodGet
	}
	hr, err := http.NewRequestWithContext(context.Background(), r.method, u.url+r.path, strings.NewReader(r.body))
	require.NoError(t, err)
	if r.contentType != "" {
		hr.Header.Set("Content-Type", r.contentType)
	}
	if r.login {
		hr.SetBasicAuth(alice, alicePW)
	}
	if r.password != "" {
		hr.SetBasicAuth(alice, r.password)
	}
	if r.origin != "" {
		hr.Header.Set("Origin", r.origin)
	}
	if r.fetchSite != "" {
		hr.Header.Set("Sec-Fetch-Site", r.fetchSite)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(hr)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return resp{code: res.StatusCode, header: res.Header, body: string(body)}
}

// jsonrpc posts a JSON-RPC call to an API path.
func (u *ui) jsonrpc(t testing.TB, path, method string, params map[string]any, login bool) (resp, map[string]any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
	require.NoError(t, err)
	res := u.do(t, req{method: http.MethodPost, path: path, body: string(body), contentType: "application/json", login: login})
	var ans map[string]any
	require.NoError(t, json.NewDecoder(bytes.NewReader([]byte(res.body))).Decode(&ans), res.body)
	return res, ans
}

// citest_Request asks for a build of one builder with properties.
func citest_Request(builder string, props map[string]any) citest.Request {
	return citest.Request{Builder: builder, Properties: props}
}

func mustID(t testing.TB, u *ui, builder string) int64 {
	t.Helper()
	id, ok := u.m.BuilderID(builder)
	require.True(t, ok, "no builder %q", builder)
	return id
}

// waitRunning waits until the build of a buildset's (first) request has
// started, and returns it.
func waitRunning(t testing.TB, u *ui, bsid int64) *ci.Build {
	t.Helper()
	sub := u.m.Subscribe(1024)
	defer sub.Close()
	ctx := context.Background()
	deadline := time.After(time.Minute)
	for {
		reqs, _, err := u.m.Store.ListRequests(ctx, ci.RequestQuery{BuildsetID: bsid})
		require.NoError(t, err)
		if len(reqs) > 0 && reqs[0].BuildID != 0 {
			b, err := u.m.Store.GetBuild(ctx, reqs[0].BuildID)
			require.NoError(t, err)
			return b
		}
		select {
		case <-sub.C:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("buildset %d did not start", bsid)
		}
	}
}
