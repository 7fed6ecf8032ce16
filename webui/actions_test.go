package webui_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/webui"
)

func TestForceAPI(t *testing.T) {
	t.Parallel()
	u := startUI(t, uiOptions{authz: admin})
	ctx := context.Background()
	countID, ok := u.m.BuilderID("count")
	require.True(t, ok)

	t.Run("Anonymous", func(t *testing.T) {
		res, ans := u.jsonrpc(t, "api/v2/forceschedulers/force", "force", map[string]any{"builderid": countID}, false)
		assert.Equal(t, http.StatusUnauthorized, res.code)
		assert.Contains(t, res.header.Get("WWW-Authenticate"), `Basic realm="Ideascube <&>"`)
		assert.Equal(t, float64(-32600), ans["error"].(map[string]any)["code"])
		assert.Contains(t, ans["error"].(map[string]any)["message"], "forcing builds needs a login")
	})
	t.Run("WrongPassword", func(t *testing.T) {
		res := u.do(t, req{method: "POST", path: "api/v2/forceschedulers/force", contentType: "application/json",
			body: `{"jsonrpc":"2.0","method":"force","params":{},"id":1}`, password: "guess"})
		assert.Equal(t, http.StatusUnauthorized, res.code)
		assert.Contains(t, res.body, "wrong login or password")
	})
	t.Run("OK", func(t *testing.T) {
		res, ans := u.jsonrpc(t, "api/v2/forceschedulers/force", "force", map[string]any{
			"builderid": countID, "reason": "release", "owner": "mallory", "branch": "0.9.1",
			"dist": "stretch", "lines": 2, "clean": true, "note": "<script>alert(1)</script>",
		}, true)
		require.Equal(t, http.StatusOK, res.code, res.body)
		assert.Equal(t, "2.0", ans["jsonrpc"])
		assert.Equal(t, float64(1), ans["id"])
		result := ans["result"].([]any)
		require.Len(t, result, 2)
		bsid := int64(result[0].(float64))
		brids := result[1].(map[string]any)
		require.Contains(t, brids, strconv.FormatInt(countID, 10))
		builds := u.m.WaitBuildset(t, bsid)
		require.Len(t, builds, 1)
		b := builds[0]
		reqs, _, err := u.m.Store.ListRequests(ctx, ci.RequestQuery{BuildsetID: bsid})
		require.NoError(t, err)
		require.Len(t, reqs, 1)
		assert.Equal(t, float64(reqs[0].ID), brids[strconv.FormatInt(countID, 10)], "the result names the buildset's request")
		assert.Equal(t, ci.Success, b.Results())
		assert.Equal(t, "stretch", b.Property("dist"))
		assert.Equal(t, alice, b.Property("owner"), "the owner is who logged in, whatever the call says")
		assert.Equal(t, "release", b.Property("reason"))
		assert.Equal(t, "dist=stretch\n", b.Log("hello", "stdio"))
		bs, err := u.m.Store.GetBuildset(ctx, bsid)
		require.NoError(t, err)
		assert.Equal(t, "0.9.1", bs.SourceStamps[0].Branch)
	})
	t.Run("BadParams", func(t *testing.T) {
		for _, tt := range []struct {
			params map[string]any
			msg    string
		}{
			{map[string]any{"builderid": countID, "dist": "sid"}, `"sid" is not one of the choices`},
			{map[string]any{"builderid": countID, "lines": "many"}, `"many" is not an integer`},
			{map[string]any{"builderid": countID, "sneaky": "x"}, `sneaky`},
			{map[string]any{"builderid": 9999}, "no builder 9999"},
			{map[string]any{"builderid": countID, "reason": 5}, "reason must be a string"},
		} {
			res, ans := u.jsonrpc(t, "api/v2/forceschedulers/force", "force", tt.params, true)
			assert.Equal(t, http.StatusBadRequest, res.code, res.body)
			e := ans["error"].(map[string]any)
			assert.Equal(t, float64(-32602), e["code"])
			assert.Contains(t, e["message"], tt.msg)
		}
	})
	t.Run("BadCalls", func(t *testing.T) {
		for _, tt := range []struct {
			name, path, contentType, body string
			code                          int
			msg                           string
		}{
			{"ContentType", "api/v2/forceschedulers/force", "text/plain", `{}`, 400, "invalid content-type (use application/json)"},
			{"Form", "api/v2/forceschedulers/force", "application/x-www-form-urlencoded", `a=b`, 400, "invalid content-type"},
			{"JSON", "api/v2/forceschedulers/force", "application/json", `{`, 400, "JSON parse error"},
			{"Version", "api/v2/forceschedulers/force", "application/json", `{"jsonrpc":"1.0","method":"force","params":{},"id":1}`, 400, "only JSONRPC 2.0"},
			{"Params", "api/v2/forceschedulers/force", "application/json", `{"jsonrpc":"2.0","method":"force","params":[],"id":1}`, 400, "'params' must be an object"},
			{"Method", "api/v2/forceschedulers/force", "application/json", `{"jsonrpc":"2.0","method":"rebuild","params":{},"id":1}`, 400, `unknown method "rebuild"`},
			{"Scheduler", "api/v2/forceschedulers/nope", "application/json", `{"jsonrpc":"2.0","method":"force","params":{},"id":1}`, 404, `no force scheduler "nope"`},
		} {
			t.Run(tt.name, func(t *testing.T) {
				res := u.do(t, req{method: "POST", path: tt.path, contentType: tt.contentType, body: tt.body, login: true})
				assert.Equal(t, tt.code, res.code, res.body)
				var ans struct {
					Error struct{ Message string } `json:"error"`
				}
				require.NoError(t, json.Unmarshal([]byte(res.body), &ans))
				assert.Contains(t, ans.Error.Message, tt.msg)
			})
		}
	})
	t.Run("CrossOrigin", func(t *testing.T) {
		res := u.do(t, req{method: "POST", path: "api/v2/forceschedulers/force", contentType: "application/json",
			body: `{"jsonrpc":"2.0","method":"force","params":{},"id":1}`, login: true, fetchSite: "cross-site"})
		assert.Equal(t, http.StatusForbidden, res.code)
		assert.Contains(t, res.body, "cross-origin request refused")
		res = u.do(t, req{method: "POST", path: "api/v2/forceschedulers/force", contentType: "application/json",
			body: `{"jsonrpc":"2.0","method":"force","params":{},"id":1}`, login: true, origin: "https://evil.example"})
		assert.Equal(t, http.StatusForbidden, res.code)
		// The public URL's origin is trusted (a proxy's Host may differ).
		res, _ = u.jsonrpc(t, "api/v2/forceschedulers/force", "force", map[string]any{"builderid": countID, "lines": 0}, true)
		assert.Equal(t, http.StatusOK, res.code)
	})
}

func TestForceForm(t *testing.T) {
	t.Parallel()
	u := startUI(t, uiOptions{authz: admin})
	form := url.Values{"scheduler": {"force"}, "reason": {"from the form"}, "dist": {"stretch"}, "lines": {"1"}, "clean": {"true"}}
	post := func(r req) resp {
		r.method, r.path, r.body, r.contentType = "POST", "builders/count/force", form.Encode(), "application/x-www-form-urlencoded"
		return u.do(t, r)
	}
	res := post(req{})
	assert.Equal(t, http.StatusUnauthorized, res.code)
	assert.NotEmpty(t, res.header.Get("WWW-Authenticate"))
	assert.Contains(t, res.header.Get("Content-Type"), "text/html")
	assert.Contains(t, res.body, "forcing builds needs a login")

	res = post(req{login: true, fetchSite: "cross-site"})
	assert.Equal(t, http.StatusForbidden, res.code)
	assert.Contains(t, res.body, "cross-origin request refused")

	// The user lands on the new build's page.
	res = post(req{login: true, fetchSite: "same-origin"})
	require.Equal(t, http.StatusSeeOther, res.code, res.body)
	assert.Equal(t, subPath+"builders/count/builds/1", res.header.Get("Location"))
	reqs, _, err := u.m.Store.ListRequests(context.Background(), ci.RequestQuery{})
	require.NoError(t, err)
	require.Len(t, reqs, 1)
	b := u.m.WaitBuildset(t, reqs[0].BuildsetID)[0]
	assert.Equal(t, "stretch", b.Property("dist"))
	assert.Equal(t, true, b.Property("clean"))
	assert.Equal(t, "from the form", b.Property("reason"))

	form.Set("lines", "x")
	res = post(req{login: true})
	assert.Equal(t, http.StatusBadRequest, res.code)
	assert.Contains(t, res.body, `&#34;x&#34; is not an integer`)

	// With every worker busy, the user lands on the builder's page, where
	// the request waits.
	for range 2 {
		waitRunning(t, u, u.m.Submit(t, citest_Request("count", map[string]any{"lines": 600})))
	}
	t.Cleanup(func() {
		for _, id := range u.m.RunningBuilds() {
			u.m.StopBuild(context.Background(), id, "the test ended")
		}
	})
	form.Set("lines", "1")
	res = post(req{login: true})
	require.Equal(t, http.StatusSeeOther, res.code, res.body)
	assert.Equal(t, subPath+"builders/count", res.header.Get("Location"))
	page := u.do(t, req{path: "builders/count"}).body
	assert.Contains(t, page, "Pending build requests")
}

func TestForceForm_Messages(t *testing.T) {
	t.Parallel()
	// What the builder's page says of forcing is what forcing does.
	for _, tt := range []struct {
		name       string
		authz      webui.Authz
		users      bool
		login      bool
		form       bool
		say, never []string
	}{
		{"Off", webui.Authz{}, true, true, false, []string{"Forcing builds is turned off", "<code>webui.Options.Authz.Force</code>"}, []string{"needs a login"}},
		{"Anyone", webui.Authz{Force: webui.Anyone}, true, false, true, nil, []string{"needs a login", "turned off"}},
		{"LoggedInAnonymous", webui.Authz{Force: webui.LoggedIn}, true, false, true, []string{"Forcing needs a login"}, []string{"turned off"}},
		{"LoggedIn", webui.Authz{Force: webui.LoggedIn}, true, true, true, nil, []string{"needs a login", "turned off"}},
		{"NoUsers", webui.Authz{Force: webui.LoggedIn}, false, false, false, []string{"no users are configured", "<code>webui.Options.Auth</code>"}, []string{"turned off"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := startUI(t, uiOptions{authz: tt.authz})
			var opts webui.Options
			if tt.users {
				hash, err := bcrypt.GenerateFromPassword([]byte(alicePW), bcrypt.MinCost)
				require.NoError(t, err)
				opts.Auth = &webui.BasicAuth{Users: map[string]string{alice: string(hash)}}
			}
			opts.Authz = tt.authz
			h, err := webui.NewHandler(u.m.Master, &opts)
			require.NoError(t, err)
			r := httptest.NewRequest("GET", subPath+"builders/count", nil)
			if tt.login {
				r.SetBasicAuth(alice, alicePW)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.Equal(t, http.StatusOK, w.Code)
			page := w.Body.String()
			assert.Equal(t, tt.form, strings.Contains(page, `class="force-form"`), "the form shows")
			for _, s := range tt.say {
				assert.Contains(t, page, s)
			}
			for _, s := range tt.never {
				assert.NotContains(t, page, s)
			}
		})
	}
}

func TestStopAndCancel(t *testing.T) {
	u := startUI(t, uiOptions{authz: admin})
	ctx := context.Background()
	// A long build on w1 and w2 (count runs on either), then a request that
	// waits for a worker.
	long := u.m.Submit(t, citest_Request("count", map[string]any{"lines": 600}))
	long2 := u.m.Submit(t, citest_Request("count", map[string]any{"lines": 600}))
	waiting := u.m.Submit(t, citest_Request("pass", nil))
	_ = long2
	build := waitRunning(t, u, long)

	t.Run("StopAnonymous", func(t *testing.T) {
		res, _ := u.jsonrpc(t, "api/v2/builds/"+strconv.FormatInt(build.ID, 10), "stop", map[string]any{"reason": "why"}, false)
		assert.Equal(t, http.StatusUnauthorized, res.code)
	})
	t.Run("Cancel", func(t *testing.T) {
		reqs, _, err := u.m.Store.ListRequests(ctx, ci.RequestQuery{BuildsetID: waiting})
		require.NoError(t, err)
		id := strconv.FormatInt(reqs[0].ID, 10)
		res, _ := u.jsonrpc(t, "api/v2/buildrequests/"+id, "cancel", map[string]any{}, false)
		assert.Equal(t, http.StatusUnauthorized, res.code)
		res, ans := u.jsonrpc(t, "api/v2/buildrequests/"+id, "cancel", map[string]any{}, true)
		require.Equal(t, http.StatusOK, res.code, res.body)
		assert.Contains(t, ans, "result")
		assert.Nil(t, ans["result"])
		br, err := u.m.Store.GetRequest(ctx, reqs[0].ID)
		require.NoError(t, err)
		assert.Equal(t, ci.Cancelled, br.Results)
		res, ans = u.jsonrpc(t, "api/v2/buildrequests/"+id, "cancel", map[string]any{}, true)
		assert.Equal(t, http.StatusConflict, res.code, res.body)
		assert.Contains(t, ans["error"].(map[string]any)["message"], "not pending")
	})
	t.Run("Stop", func(t *testing.T) {
		res, _ := u.jsonrpc(t, "api/v2/builders/count/builds/"+strconv.Itoa(build.Number), "stop", map[string]any{"reason": "enough"}, true)
		require.Equal(t, http.StatusOK, res.code, res.body)
		b := u.m.WaitBuildset(t, long)[0]
		assert.Equal(t, ci.Cancelled, b.Results())
		res, _ = u.jsonrpc(t, "api/v2/builds/"+strconv.FormatInt(build.ID, 10), "stop", map[string]any{}, true)
		assert.Equal(t, http.StatusConflict, res.code, res.body)
	})
	t.Run("StopForm", func(t *testing.T) {
		b := waitRunning(t, u, long2)
		path := "builders/count/builds/" + strconv.Itoa(b.Number) + "/stop"
		res := u.do(t, req{method: "POST", path: path, contentType: "application/x-www-form-urlencoded", body: "reason=form"})
		assert.Equal(t, http.StatusUnauthorized, res.code)
		res = u.do(t, req{method: "POST", path: path, contentType: "application/x-www-form-urlencoded", body: "reason=form", login: true})
		require.Equal(t, http.StatusSeeOther, res.code, res.body)
		assert.Equal(t, subPath+path[:len(path)-len("/stop")], res.header.Get("Location"))
		assert.Equal(t, ci.Cancelled, u.m.WaitBuildset(t, long2)[0].Results())
	})
}

func TestAuthz(t *testing.T) {
	t.Run("ZeroValueIsReadOnly", func(t *testing.T) {
		u := startUI(t, uiOptions{})
		res, ans := u.jsonrpc(t, "api/v2/forceschedulers/force", "force", map[string]any{}, true)
		assert.Equal(t, http.StatusForbidden, res.code)
		assert.Contains(t, ans["error"].(map[string]any)["message"], "forcing builds is turned off")
		page := u.do(t, req{path: "builders/count"})
		assert.Equal(t, http.StatusOK, page.code)
		assert.NotContains(t, page.body, `<form method="post"`)
		assert.Contains(t, page.body, "Forcing builds is turned off")
	})
	t.Run("Anyone", func(t *testing.T) {
		u := startUI(t, uiOptions{authz: webui.Authz{Force: webui.Anyone}})
		res, ans := u.jsonrpc(t, "api/v2/forceschedulers/force", "force", map[string]any{"builderid": mustID(t, u, "pass")}, false)
		require.Equal(t, http.StatusOK, res.code, res.body)
		bsid := int64(ans["result"].([]any)[0].(float64))
		b := u.m.WaitBuildset(t, bsid)[0]
		assert.Equal(t, "anonymous", b.Property("owner"))
	})
}

func TestBasicAuthConfig(t *testing.T) {
	m := startUI(t, uiOptions{}).m.Master
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	require.NoError(t, err)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	require.NoError(t, os.WriteFile(good, []byte("# users\nbob:"+string(hash)+"\n\n"), 0o600))
	md5 := filepath.Join(dir, "md5")
	require.NoError(t, os.WriteFile(md5, []byte("bob:$apr1$abc$def\n"), 0o600))
	for _, tt := range []struct {
		name string
		auth webui.BasicAuth
		err  string
	}{
		{"Bcrypt", webui.BasicAuth{Users: map[string]string{"a": string(hash)}}, ""},
		{"Htpasswd", webui.BasicAuth{HtpasswdFile: good}, ""},
		{"PlainRefused", webui.BasicAuth{Users: map[string]string{"a": "pw"}}, `the password of user "a" is not a bcrypt hash`},
		{"PlainAllowed", webui.BasicAuth{Users: map[string]string{"a": "pw"}, AllowPlain: true}, ""},
		{"HtpasswdMD5", webui.BasicAuth{HtpasswdFile: md5}, "is not bcrypt"},
		{"HtpasswdMissing", webui.BasicAuth{HtpasswdFile: filepath.Join(dir, "none")}, "no such file"},
		{"BadLogin", webui.BasicAuth{Users: map[string]string{"a:b": string(hash)}}, "holds ':'"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webui.NewHandler(m, &webui.Options{Auth: &tt.auth})
			if tt.err == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tt.err)
			}
		})
	}
}

func TestLogin(t *testing.T) {
	u := startUI(t, uiOptions{authz: admin})
	res := u.do(t, req{path: "login?next=" + url.QueryEscape(subPath+"builders/pass")})
	assert.Equal(t, http.StatusUnauthorized, res.code)
	assert.Contains(t, res.header.Get("WWW-Authenticate"), "Basic ")
	res = u.do(t, req{path: "login?next=" + url.QueryEscape(subPath+"builders/pass"), login: true})
	assert.Equal(t, http.StatusSeeOther, res.code)
	assert.Equal(t, subPath+"builders/pass", res.header.Get("Location"))
	// Only back into the application.
	for _, next := range []string{"https://evil.example/", "//evil.example/ci/", "/elsewhere"} {
		res = u.do(t, req{path: "login?next=" + url.QueryEscape(next), login: true})
		assert.Equal(t, subPath, res.header.Get("Location"), next)
	}
	page := u.do(t, req{path: "", login: true})
	assert.Contains(t, page.body, `logged in as <b class="user">alice</b>`)
	page = u.do(t, req{path: "", password: "wrong"})
	assert.NotContains(t, page.body, "logged in as")
}

func TestRebuild(t *testing.T) {
	t.Parallel()
	// A build whose step sets a property of its own, made for a change.
	u := startUI(t, uiOptions{authz: admin, changeCfg: func(cfg *ci.MasterConfig) {
		sets := ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
			s.SetProperty("made", "by the step", "sets")
			return ci.Success, nil
		})
		cfg.Builders = append(cfg.Builders, ci.BuilderConfig{Name: "sets", Workers: []string{"w1"},
			Steps: []ci.Step{ci.WithOptions(ci.StepOptions{Name: "sets"}, sets)}})
	}})
	ctx := context.Background()
	c := &ci.Change{Author: "dev", Branch: "0.9.1", Revision: "abc123", Repository: "https://example.org/r", When: time.Now()}
	_, err := u.m.Master.AddChange(ctx, c)
	require.NoError(t, err)
	u.m.Build(t, citest_Request("sets", nil))
	orig := u.m.Build(t, citest.Request{Builder: "sets", SourceStamp: ci.SourceStamp{ID: c.SourceStampID},
		Properties: map[string]any{"dist": "stretch", "note": "<b>kept</b>"}, Reason: "the original"})
	require.Equal(t, "by the step", orig.Property("made"))
	path := "api/v2/builds/" + itoa(orig.Record.ID)

	t.Run("Refused", func(t *testing.T) {
		res, _ := u.jsonrpc(t, path, "rebuild", map[string]any{}, false)
		assert.Equal(t, http.StatusUnauthorized, res.code, "as forcing, it needs a login")
		res = u.do(t, req{method: "POST", path: path, contentType: "application/json", login: true, origin: "https://evil.example",
			body: `{"jsonrpc": "2.0", "method": "rebuild", "params": {}, "id": 1}`})
		assert.Equal(t, http.StatusForbidden, res.code, "cross-site")
		res = u.do(t, req{method: "POST", path: path, contentType: "application/x-www-form-urlencoded", login: true,
			body: `{"jsonrpc": "2.0", "method": "rebuild", "params": {}, "id": 1}`})
		assert.Equal(t, http.StatusBadRequest, res.code, "not JSON")
		off := startUI(t, uiOptions{authz: webui.Authz{Stop: webui.LoggedIn}})
		b := off.m.Build(t, citest_Request("pass", nil))
		res, ans := off.jsonrpc(t, "api/v2/builds/"+itoa(b.Record.ID), "rebuild", map[string]any{}, true)
		assert.Equal(t, http.StatusForbidden, res.code)
		assert.Contains(t, ans["error"].(map[string]any)["message"], "forcing builds is turned off")
		page := off.do(t, req{path: "builders/pass/builds/1", login: true}).body
		assert.NotContains(t, page, "rebuild-form", "no rebuild button where forcing is off")
	})
	t.Run("API", func(t *testing.T) {
		res, ans := u.jsonrpc(t, path, "rebuild", map[string]any{}, true)
		require.Equal(t, http.StatusOK, res.code, res.body)
		result := ans["result"].([]any)
		require.Len(t, result, 2)
		bsid := int64(result[0].(float64))
		assert.Contains(t, result[1].(map[string]any), itoa(mustID(t, u, "sets")))
		bs, err := u.m.Store.GetBuildset(ctx, bsid)
		require.NoError(t, err)
		assert.Equal(t, "rebuild of build #2", bs.Reason)
		require.Len(t, bs.SourceStamps, 1)
		assert.Equal(t, c.SourceStampID, bs.SourceStamps[0].ID, "the same stored source stamp")
		assert.Equal(t, []int64{c.ID}, bs.SourceStamps[0].Changes)
		assert.Equal(t, "stretch", bs.Properties.String("dist"))
		assert.Equal(t, "<b>kept</b>", bs.Properties.String("note"))
		assert.Equal(t, alice, bs.Properties.String("owner"))
		_, set := bs.Properties.Get("made")
		assert.False(t, set, "not the properties the steps set")
		b := u.m.WaitBuildset(t, bsid)[0]
		assert.Equal(t, ci.Success, b.Results())
		assert.Equal(t, "0.9.1", b.Property("branch"))
		assert.Equal(t, "abc123", b.Property("revision"))
		// One more build of the change.
		builds := u.do(t, req{path: "api/v2/changes/" + itoa(c.ID) + "/builds"})
		assert.Contains(t, builds.body, `"meta":{"total":2}`)
	})
	t.Run("Form", func(t *testing.T) {
		page := u.do(t, req{path: "builders/sets/builds/2", login: true}).body
		assert.Contains(t, page, `<form method="post" action="/ci/builders/sets/builds/2/rebuild" class="rebuild-form">`)
		res := u.do(t, req{method: "POST", path: "builders/sets/builds/2/rebuild", contentType: "application/x-www-form-urlencoded"})
		assert.Equal(t, http.StatusUnauthorized, res.code)
		res = u.do(t, req{method: "POST", path: "builders/sets/builds/2/rebuild", contentType: "application/x-www-form-urlencoded",
			login: true, fetchSite: "cross-site"})
		assert.Equal(t, http.StatusForbidden, res.code)
		res = u.do(t, req{method: "POST", path: "builders/sets/builds/2/rebuild", contentType: "application/x-www-form-urlencoded",
			login: true, fetchSite: "same-origin"})
		require.Equal(t, http.StatusSeeOther, res.code, res.body)
		assert.Equal(t, subPath+"builders/sets/builds/4", res.header.Get("Location"), "the new build's page")
	})
}
