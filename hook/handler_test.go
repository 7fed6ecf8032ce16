package hook_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/hook"
	"github.com/kilnci/kiln/internal/testenv"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/webui"
)

const (
	githubSecret = "gh-s3cret-do-not-log"
	gitlabSecret = "gl-s3cret-do-not-log"
	baseSecret   = "base-s3cret-do-not-log"
)

// tagScheduler submits a build of "pkg" for every new tag, as the
// Ideascube master's AnyBranch scheduler on category "new-tag" does.
type tagScheduler struct {
	mu        sync.Mutex
	buildsets []int64
}

var _ ci.ChangeListener = (*tagScheduler)(nil)

func (s *tagScheduler) SchedulerName() string  { return "tags" }
func (s *tagScheduler) BuilderNames() []string { return []string{"pkg"} }

func (s *tagScheduler) OnChange(ctx context.Context, m *ci.Master, c *ci.Change) error {
	if c.Category != hook.CategoryNewTag {
		return nil
	}
	ss := c.SourceStamp()
	ss.ID = c.SourceStampID
	props := ci.Properties{}
	props.SetAll(c.Properties, ci.SourceChange)
	bs, _, err := m.Submit(ctx, ci.Submission{
		Builders:     []string{"pkg"},
		Reason:       "new tag " + c.Branch,
		SourceStamps: []ci.SourceStamp{ss},
		Properties:   props,
		Scheduler:    s.SchedulerName(),
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.buildsets = append(s.buildsets, bs.ID)
	s.mu.Unlock()
	return nil
}

func (s *tagScheduler) submitted() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.buildsets...)
}

// flakyStore fails AddChange while fail is set, as a full disk would.
type flakyStore struct {
	ci.Store
	fail atomic.Bool
}

func (s *flakyStore) AddChange(ctx context.Context, c *ci.Change) (bool, error) {
	if s.fail.Load() {
		return false, errors.New("sqlite: disk I/O error")
	}
	return s.Store.AddChange(ctx, c)
}

type testMaster struct {
	*citest.Master
	sched *tagScheduler
	store *flakyStore
	log   *testenv.SyncBuffer
	// URL is the web server's address.
	URL string
}

// startMaster starts a master with the three hooks, a builder "pkg" that
// echoes the branch it builds (as an argument, never through a shell),
// and the web server on a loopback port.
func startMaster(t *testing.T) *testMaster {
	t.Helper()
	return startMasterWith(t,
		&hook.GitHub{Secret: githubSecret, Strict: true, MaxBodyBytes: 1 << 20},
		&hook.GitLab{Secret: gitlabSecret},
		&hook.Base{Secret: baseSecret},
	)
}

// startMasterWith is startMaster with other hooks.
func startMasterWith(t *testing.T, hooks ...ci.ChangeHook) *testMaster {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.sqlite"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tm := &testMaster{sched: &tagScheduler{}, store: &flakyStore{Store: st}, log: &testenv.SyncBuffer{}}
	cfg := ci.MasterConfig{
		Title:   "Ideascube",
		Workers: []ci.WorkerConfig{{Name: "w1"}},
		Builders: []ci.BuilderConfig{{
			Name:    "pkg",
			Workers: []string{"w1"},
			Steps: []ci.Step{&steps.ShellCommand{
				StepOptions: ci.StepOptions{Name: "echo"},
				Command:     []any{"echo", ci.Interpolate("%(prop:branch)s")},
			}},
		}},
		Schedulers:  []ci.Scheduler{tm.sched},
		ChangeHooks: hooks,
		Services:    []ci.Service{&webui.Server{Listener: ln}},
		Store:       tm.store,
		Logger:      slog.New(slog.NewTextHandler(io.MultiWriter(tm.log, testLog{t}), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	tm.Master = citest.Start(t, cfg)
	tm.URL = "http://" + ln.Addr().String()
	return tm
}

// testLog writes the master's log to the test's.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (tm *testMaster) changes(t *testing.T) []*ci.Change {
	t.Helper()
	cs, _, err := tm.Store.ListChanges(context.Background(), ci.Query{})
	require.NoError(t, err)
	return cs
}

func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

type response struct {
	code int
	body string
}

func post(t *testing.T, url string, header http.Header, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{resp.StatusCode, string(b)}
}

// githubHeader returns the headers GitHub sends with a delivery of body.
func githubHeader(event, delivery string, body []byte) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "GitHub-Hookshot/a1b2c3d")
	h.Set("X-GitHub-Event", event)
	h.Set("X-GitHub-Delivery", delivery)
	h.Set("X-GitHub-Hook-ID", "452187903")
	h.Set("X-Hub-Signature-256", sign(githubSecret, body))
	mac := hmac.New(sha1.New, []byte(githubSecret))
	mac.Write(body)
	h.Set("X-Hub-Signature", "sha1="+hex.EncodeToString(mac.Sum(nil)))
	return h
}

// withTag returns a GitHub payload from testdata with its tag renamed.
func withTag(t *testing.T, file, tag string) []byte {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(readTestdata(t, file), &v))
	if strings.HasPrefix(v["ref"].(string), "refs/tags/") {
		v["ref"] = "refs/tags/" + tag
	} else {
		v["ref"] = tag
	}
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// TestGitHub_TagCreation is the Ideascube deployment: GitHub calls the
// master's web hook when a tag is created, and a build of the tag starts.
func TestGitHub_TagCreation(t *testing.T) {
	tm := startMaster(t)
	hookURL := tm.URL + "/change_hook/github"

	create := readTestdata(t, "github/create_tag.json")
	r := post(t, hookURL, githubHeader("create", "d1", create), create)
	require.Equal(t, http.StatusOK, r.code, r.body)
	assert.Equal(t, "ok: 1 changes added, 0 already received\n", r.body)

	cs := tm.changes(t)
	require.Len(t, cs, 1)
	c := cs[0]
	assert.Equal(t, "new-tag", c.Category)
	assert.Equal(t, "v0.42.0", c.Branch)
	assert.Equal(t, "v0.42.0", c.Revision)
	assert.Equal(t, ideascubeClone, c.Repository)
	assert.Equal(t, "bochecha", c.Author)
	assert.Equal(t, "Tag v0.42.0 created", c.Comments)
	assert.Equal(t, "ideascube/ideascube", c.Project)
	bss := tm.sched.submitted()
	require.Len(t, bss, 1, "one buildset for the new tag")

	// GitHub tells of the same tag with a push event too, another delivery.
	push := readTestdata(t, "github/push_tag.json")
	r = post(t, hookURL, githubHeader("push", "d2", push), push)
	require.Equal(t, http.StatusOK, r.code, r.body)
	assert.Equal(t, "ok: 0 changes added, 1 already received\n", r.body)
	// And redelivers the create event.
	r = post(t, hookURL, githubHeader("create", "d1", create), create)
	require.Equal(t, http.StatusOK, r.code, r.body)

	// A branch created: no change, no build.
	branch := readTestdata(t, "github/create_branch.json")
	r = post(t, hookURL, githubHeader("create", "d3", branch), branch)
	require.Equal(t, http.StatusOK, r.code, r.body)

	assert.Len(t, tm.changes(t), 1)
	assert.Equal(t, bss, tm.sched.submitted(), "still one buildset")

	builds := tm.WaitBuildset(t, bss[0])
	require.Len(t, builds, 1)
	assert.Equal(t, ci.Success, builds[0].Results())
	assert.Equal(t, "v0.42.0\n", builds[0].Log("echo", "stdio"))
}

// TestGitHub_TagPushFirst: when the push event arrives before the create
// event, the tag still gives one build.
func TestGitHub_TagPushFirst(t *testing.T) {
	tm := startMaster(t)
	hookURL := tm.URL + "/change_hook/github"
	push := readTestdata(t, "github/push_tag.json")
	create := readTestdata(t, "github/create_tag.json")
	require.Equal(t, http.StatusOK, post(t, hookURL, githubHeader("push", "p1", push), push).code)
	require.Equal(t, http.StatusOK, post(t, hookURL, githubHeader("create", "c1", create), create).code)
	cs := tm.changes(t)
	require.Len(t, cs, 1)
	assert.Equal(t, "new-tag", cs[0].Category)
	assert.Len(t, tm.sched.submitted(), 1)
}

// TestGitHub_TagConcurrent: create and push of one tag racing each other
// give one change.
func TestGitHub_TagConcurrent(t *testing.T) {
	tm := startMaster(t)
	hookURL := tm.URL + "/change_hook/github"
	push := readTestdata(t, "github/push_tag.json")
	create := readTestdata(t, "github/create_tag.json")
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Go(func() {
			body, event := create, "create"
			if i%2 == 1 {
				body, event = push, "push"
			}
			req, _ := http.NewRequest(http.MethodPost, hookURL, bytes.NewReader(body))
			req.Header = githubHeader(event, fmt.Sprintf("race-%d", i), body)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				codes[i] = resp.StatusCode
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	for _, code := range codes {
		assert.Equal(t, http.StatusOK, code)
	}
	assert.Len(t, tm.changes(t), 1)
	assert.Len(t, tm.sched.submitted(), 1)
}

// TestGitHub_Verbatim: text from outside reaches the store as it was sent,
// and a step given it as an argument does not run it.
func TestGitHub_Verbatim(t *testing.T) {
	tm := startMaster(t)
	hookURL := tm.URL + "/change_hook/github"
	// A valid Git tag name, full of shell and HTML.
	tag := "v1;touch${IFS}pwned1;`touch${IFS}pwned2`$(touch${IFS}pwned3)|touch&<b>x</b>'\"!#"
	create := withTag(t, "github/create_tag.json", tag)
	r := post(t, hookURL, githubHeader("create", "v1", create), create)
	require.Equal(t, http.StatusOK, r.code, r.body)

	// A commit message and a file name with the same.
	var push map[string]any
	require.NoError(t, json.Unmarshal(readTestdata(t, "github/push.json"), &push))
	msg := "$(touch pwned4) `touch pwned5`; rm -rf ~ <script>alert(1)</script>\n&amp;"
	commits := push["commits"].([]any)
	commits[0].(map[string]any)["message"] = msg
	commits[0].(map[string]any)["added"] = []any{"<img src=x onerror=alert(1)>;$(id).txt"}
	pushBody, err := json.Marshal(push)
	require.NoError(t, err)
	r = post(t, hookURL, githubHeader("push", "v2", pushBody), pushBody)
	require.Equal(t, http.StatusOK, r.code, r.body)

	cs := tm.changes(t)
	require.Len(t, cs, 3)
	assert.Equal(t, tag, cs[0].Branch)
	assert.Equal(t, tag, cs[0].Revision)
	assert.Equal(t, "Tag "+tag+" created", cs[0].Comments)
	assert.Equal(t, msg, cs[1].Comments)
	assert.Equal(t, []string{"<img src=x onerror=alert(1)>;$(id).txt", "ideascube/serveradmin/catalog.py"}, cs[1].Files)

	bss := tm.sched.submitted()
	require.Len(t, bss, 1)
	b := tm.WaitBuildset(t, bss[0])[0]
	require.Equal(t, ci.Success, b.Results())
	assert.Equal(t, tag+"\n", b.Log("echo", "stdio"))
	err = filepath.WalkDir(tm.Dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), "pwned") {
			t.Errorf("a command from the tag name ran: %s exists", path)
		}
		return err
	})
	require.NoError(t, err)
	cwd, _ := os.Getwd()
	for i := 1; i <= 5; i++ {
		assert.NoFileExists(t, filepath.Join(cwd, fmt.Sprintf("pwned%d", i)))
	}
}

func TestGitHub_Push(t *testing.T) {
	tm := startMaster(t)
	hookURL := tm.URL + "/change_hook/github"
	push := readTestdata(t, "github/push.json")

	r := post(t, hookURL, githubHeader("push", "72d3162e-cc78-11e3-81ab-4c9367dc0958", push), push)
	require.Equal(t, http.StatusOK, r.code, r.body)
	assert.Equal(t, "ok: 2 changes added, 0 already received\n", r.body)

	// GitHub's "Redeliver" sends the same delivery ID.
	r = post(t, hookURL, githubHeader("push", "72d3162e-cc78-11e3-81ab-4c9367dc0958", push), push)
	require.Equal(t, http.StatusOK, r.code, r.body)
	assert.Equal(t, "ok: 0 changes added, 2 already received\n", r.body)

	cs := tm.changes(t)
	require.Len(t, cs, 2)
	assert.Equal(t, "master", cs[0].Branch)
	assert.Equal(t, "3f786850e387550fdab836ed7e6dc881de23001b", cs[0].Revision)
	assert.Equal(t, "89e6c98d92887913cadf06b2adb97f26cde4849b", cs[1].Revision)
	assert.Empty(t, tm.sched.submitted(), "branch pushes are not tags")

	// As a form.
	form := []byte("payload=" + url.QueryEscape(string(push)))
	h := githubHeader("push", "form-delivery", form)
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	r = post(t, hookURL, h, form)
	require.Equal(t, http.StatusOK, r.code, r.body)
	assert.Len(t, tm.changes(t), 4)
}

func TestGitHub_Ignored(t *testing.T) {
	tm := startMaster(t)
	hookURL := tm.URL + "/change_hook/github"
	for _, tt := range []struct{ event, file, why string }{
		{"ping", "github/ping.json", "ping: the hook is set up"},
		{"pull_request", "github/pull_request_closed.json", "pull request closed: only opened, reopened and synchronize give changes"},
		{"watch", "github/ping.json", `GitHub's "watch" events start no build (push, create, delete and pull_request do)`},
		{"push", "github/push_tag_deleted.json", `tag "v0.42.0" deleted: a tag created again under that name is built again`},
	} {
		body := readTestdata(t, tt.file)
		r := post(t, hookURL, githubHeader(tt.event, "x-"+tt.file, body), body)
		assert.Equal(t, http.StatusOK, r.code, tt.event)
		assert.Equal(t, "ok: ignored: "+tt.why+"\n", r.body, "the answer says why")
	}
	assert.Empty(t, tm.changes(t))
	assert.Contains(t, tm.log.String(), "webhook event gave no change")
}

// TestGitHub_Refused: requests that must not reach the store.
func TestGitHub_Refused(t *testing.T) {
	tm := startMaster(t)
	hookURL := tm.URL + "/change_hook/github"
	create := readTestdata(t, "github/create_tag.json")
	other := readTestdata(t, "github/create_branch.json")
	sha1sig := func(body []byte) string {
		mac := hmac.New(sha1.New, []byte(githubSecret))
		mac.Write(body)
		return "sha1=" + hex.EncodeToString(mac.Sum(nil))
	}
	tests := []struct {
		name   string
		edit   func(h http.Header) http.Header
		body   []byte
		method string
		code   int
		reason string
	}{
		{name: "SignatureOfAnotherBody", edit: func(h http.Header) http.Header {
			h.Set("X-Hub-Signature-256", sign(githubSecret, other))
			return h
		}, code: 403, reason: "the signature does not match the body"},
		{name: "WrongSecret", edit: func(h http.Header) http.Header {
			h.Set("X-Hub-Signature-256", sign("guess", create))
			return h
		}, code: 403, reason: "the signature does not match the body"},
		{name: "SHA1PrefixInSHA256Header", edit: func(h http.Header) http.Header {
			h.Set("X-Hub-Signature-256", sha1sig(create))
			return h
		}, code: 403, reason: "sha256=<hex>"},
		{name: "OnlySHA1Header", edit: func(h http.Header) http.Header {
			h.Del("X-Hub-Signature-256")
			return h
		}, code: 403, reason: "only a SHA-1 signature"},
		{name: "MissingSignatureStrict", edit: func(h http.Header) http.Header {
			h.Del("X-Hub-Signature-256")
			h.Del("X-Hub-Signature")
			return h
		}, code: 403, reason: "no signature"},
		{name: "NotHex", edit: func(h http.Header) http.Header {
			h.Set("X-Hub-Signature-256", "sha256=zz")
			return h
		}, code: 403, reason: "not a hexadecimal"},
		{name: "BadJSON", body: []byte(`{"ref": "v1", "ref_type": `), code: 400, reason: "invalid create payload"},
		{name: "WrongContentType", edit: func(h http.Header) http.Header {
			h.Set("Content-Type", "text/plain")
			return h
		}, code: 400, reason: "unsupported content type"},
		{name: "NoEvent", edit: func(h http.Header) http.Header {
			h.Del("X-GitHub-Event")
			return h
		}, code: 400, reason: "no X-GitHub-Event header"},
		{name: "Get", method: http.MethodGet, code: 405, reason: "only POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := create
			if tt.body != nil {
				body = tt.body
			}
			h := githubHeader("create", "refused-"+tt.name, body)
			if tt.edit != nil {
				h = tt.edit(h)
			}
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req, err := http.NewRequest(method, hookURL, bytes.NewReader(body))
			require.NoError(t, err)
			req.Header = h
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, tt.code, resp.StatusCode, string(b))
			assert.Contains(t, string(b), tt.reason)
			assert.Equal(t, 1, strings.Count(string(b), "\n"), "one line: %q", b)
			assert.NotContains(t, string(b), githubSecret)
		})
	}
	assert.Empty(t, tm.changes(t), "nothing stored")
	assert.Empty(t, tm.sched.submitted())
	assert.Contains(t, tm.log.String(), "webhook request refused")
	assert.NotContains(t, tm.log.String(), githubSecret, "the secret is never logged")
}

func TestGitHub_TooLarge(t *testing.T) {
	tm := startMaster(t)
	hookURL := tm.URL + "/change_hook/github" // MaxBodyBytes 1 MiB
	var big map[string]any
	require.NoError(t, json.Unmarshal(readTestdata(t, "github/create_tag.json"), &big))
	big["description"] = strings.Repeat("x", 1<<20)
	body, err := json.Marshal(big)
	require.NoError(t, err)

	t.Run("ContentLength", func(t *testing.T) {
		r := post(t, hookURL, githubHeader("create", "big1", body), body)
		assert.Equal(t, http.StatusRequestEntityTooLarge, r.code, r.body)
	})
	t.Run("Chunked", func(t *testing.T) {
		// No length announced: the limit is found while reading.
		req, err := http.NewRequest(http.MethodPost, hookURL, io.MultiReader(bytes.NewReader(body)))
		require.NoError(t, err)
		req.Header = githubHeader("create", "big2", body)
		require.Equal(t, int64(0), req.ContentLength)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	})
	assert.Empty(t, tm.changes(t))
}

// TestGitHub_StoreFails: a change that cannot be stored is answered 503,
// so that GitHub's delivery is retried, and the retry works.
func TestGitHub_StoreFails(t *testing.T) {
	tm := startMaster(t)
	hookURL := tm.URL + "/change_hook/github"
	create := readTestdata(t, "github/create_tag.json")

	tm.store.fail.Store(true)
	r := post(t, hookURL, githubHeader("create", "d1", create), create)
	assert.Equal(t, http.StatusServiceUnavailable, r.code, r.body)
	assert.Equal(t, "could not store the change; try again later\n", r.body)
	assert.Empty(t, tm.sched.submitted())

	tm.store.fail.Store(false)
	r = post(t, hookURL, githubHeader("create", "d1", create), create)
	assert.Equal(t, http.StatusOK, r.code, r.body)
	assert.Len(t, tm.changes(t), 1)
	assert.Len(t, tm.sched.submitted(), 1)
}

func TestGitHub_Validate(t *testing.T) {
	assert.ErrorContains(t, (&hook.GitHub{}).Validate(), "Secret is empty")
	assert.ErrorContains(t, (&hook.GitHub{Strict: true}).Validate(), "Secret is empty")
	assert.ErrorContains(t, (&hook.GitHub{Secret: "x", MaxBodyBytes: -1}).Validate(), "MaxBodyBytes")
	assert.NoError(t, (&hook.GitHub{Secret: "x"}).Validate())
	assert.ErrorContains(t, (&hook.GitLab{}).Validate(), "Secret is empty")
	assert.NoError(t, (&hook.GitLab{Secret: "x"}).Validate())
	assert.NoError(t, (&hook.Base{}).Validate())

	// The master refuses to start with an empty secret.
	_, err := ci.NewMaster(ci.MasterConfig{
		Workers:     []ci.WorkerConfig{{Name: "w"}},
		Builders:    []ci.BuilderConfig{{Name: "b", Workers: []string{"w"}, Steps: []ci.Step{&steps.ShellCommand{Command: []string{"true"}}}}},
		ChangeHooks: []ci.ChangeHook{&hook.GitHub{Secret: os.Getenv("KILN_TEST_UNSET_SECRET")}},
	})
	require.ErrorIs(t, err, ci.ErrInvalidConfig)
	assert.ErrorContains(t, err, `change hook "github": Secret is empty`)
}

func gitlabHeader(event string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "GitLab/18.5.0")
	h.Set("X-Gitlab-Event", event)
	h.Set("X-Gitlab-Token", gitlabSecret)
	h.Set("X-Gitlab-Instance", "https://framagit.org")
	h.Set("X-Gitlab-Webhook-UUID", "2b8a5b2c-1d1c-4e36-bd2d-5d0c0f4c5a71")
	return h
}

func TestGitLab(t *testing.T) {
	tm := startMaster(t)
	hookURL := tm.URL + "/change_hook/gitlab"

	tag := readTestdata(t, "gitlab/tag_push.json")
	h := gitlabHeader("Tag Push Hook")
	h.Set("X-Gitlab-Event-UUID", "e1")
	r := post(t, hookURL, h, tag)
	require.Equal(t, http.StatusOK, r.code, r.body)
	assert.Equal(t, "ok: 1 changes added, 0 already received\n", r.body)
	require.Len(t, tm.sched.submitted(), 1)
	cs := tm.changes(t)
	require.Len(t, cs, 1)
	assert.Equal(t, "new-tag", cs[0].Category)
	assert.Equal(t, "v0.42.0", cs[0].Branch)
	assert.Equal(t, framagitClone, cs[0].Repository)

	push := readTestdata(t, "gitlab/push.json")
	h = gitlabHeader("Push Hook")
	h.Set("Idempotency-Key", "908a6d9e-45fd-46c8-97e6-c4f350f219dd")
	h.Set("X-Gitlab-Event-UUID", "e2")
	r = post(t, hookURL, h, push)
	require.Equal(t, http.StatusOK, r.code, r.body)
	assert.Equal(t, "ok: 2 changes added, 0 already received\n", r.body)
	// A retry keeps the Idempotency-Key, not the event UUID.
	h.Set("X-Gitlab-Event-UUID", "e3")
	r = post(t, hookURL, h, push)
	assert.Equal(t, "ok: 0 changes added, 2 already received\n", r.body)
	// Without Idempotency-Key (older GitLab), the event UUID.
	h = gitlabHeader("Push Hook")
	h.Set("X-Gitlab-Event-UUID", "e4")
	post(t, hookURL, h, push)
	r = post(t, hookURL, h, push)
	assert.Equal(t, "ok: 0 changes added, 2 already received\n", r.body)

	mr := readTestdata(t, "gitlab/merge_request_open.json")
	r = post(t, hookURL, gitlabHeader("Merge Request Hook"), mr)
	assert.Equal(t, http.StatusOK, r.code, r.body)
	assert.Len(t, tm.changes(t), 6)

	for _, tt := range []struct {
		name   string
		edit   func(http.Header)
		body   []byte
		code   int
		reason string
	}{
		{"NoToken", func(h http.Header) { h.Del("X-Gitlab-Token") }, push, 403, "no token"},
		{"WrongToken", func(h http.Header) { h.Set("X-Gitlab-Token", gitlabSecret+"x") }, push, 403, "wrong token"},
		{"EmptyToken", func(h http.Header) { h.Set("X-Gitlab-Token", "") }, push, 403, "wrong token"},
		{"WrongContentType", func(h http.Header) { h.Set("Content-Type", "application/x-www-form-urlencoded") }, push, 400, "unsupported content type"},
		{"BadJSON", nil, []byte("{"), 400, "invalid JSON"},
		{"NoEvent", func(h http.Header) { h.Del("X-Gitlab-Event") }, push, 400, "no X-Gitlab-Event"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := gitlabHeader("Push Hook")
			h.Set("X-Gitlab-Event-UUID", "refused-"+tt.name)
			if tt.edit != nil {
				tt.edit(h)
			}
			r := post(t, hookURL, h, tt.body)
			assert.Equal(t, tt.code, r.code, r.body)
			assert.Contains(t, r.body, tt.reason)
		})
	}
	assert.Len(t, tm.changes(t), 6, "nothing more stored")
	assert.NotContains(t, tm.log.String(), gitlabSecret)

	tm.store.fail.Store(true)
	h = gitlabHeader("Push Hook")
	h.Set("X-Gitlab-Event-UUID", "e9")
	r = post(t, hookURL, h, readTestdata(t, "gitlab/push.json"))
	assert.Equal(t, http.StatusServiceUnavailable, r.code)
}

func TestBase(t *testing.T) {
	tm := startMaster(t)
	hookURL := tm.URL + "/change_hook/base"
	form := []byte(url.Values{
		"author":     {"script <ci@example.org>"},
		"revision":   {"abc123"},
		"branch":     {"main"},
		"category":   {"new-tag"},
		"repository": {"https://example.org/r.git"},
		"comments":   {"$(reboot); <b>x</b>"},
		"properties": {`{"release": true}`},
	}.Encode())
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("Authorization", "Bearer "+baseSecret)
	h.Set("Idempotency-Key", "k1")
	r := post(t, hookURL, h, form)
	require.Equal(t, http.StatusOK, r.code, r.body)
	r = post(t, hookURL, h, form)
	assert.Equal(t, "ok: 0 changes added, 1 already received\n", r.body)
	cs := tm.changes(t)
	require.Len(t, cs, 1)
	assert.Equal(t, "$(reboot); <b>x</b>", cs[0].Comments)
	assert.Equal(t, map[string]any{"release": true}, cs[0].Properties)
	assert.Len(t, tm.sched.submitted(), 1)

	// A long key is kept short in the store, and still recognised.
	h.Set("Idempotency-Key", strings.Repeat("k", 5000))
	require.Equal(t, "ok: 1 changes added, 0 already received\n", post(t, hookURL, h, form).body)
	require.Equal(t, "ok: 0 changes added, 1 already received\n", post(t, hookURL, h, form).body)

	h.Set("Authorization", "Bearer nope")
	assert.Equal(t, http.StatusForbidden, post(t, hookURL, h, form).code)
	h.Del("Authorization")
	assert.Equal(t, http.StatusForbidden, post(t, hookURL, h, form).code)
	h.Set("Authorization", "Bearer "+baseSecret)
	h.Set("Content-Type", "text/plain")
	assert.Equal(t, http.StatusBadRequest, post(t, hookURL, h, form).code)
	assert.NotContains(t, tm.log.String(), baseSecret)
}

// TestHandler_WithoutWebServer: a hook's handler serves on its own too.
func TestHandler_WithoutWebServer(t *testing.T) {
	tm := startMaster(t)
	srv := httptest.NewServer((&hook.GitHub{Secret: "other"}).Handler(tm.Master.Master))
	defer srv.Close()
	create := readTestdata(t, "github/create_tag.json")
	h := githubHeader("create", "d", create)
	h.Set("X-Hub-Signature-256", sign("other", create))
	r := post(t, srv.URL, h, create)
	require.Equal(t, http.StatusOK, r.code, r.body)
	assert.Len(t, tm.sched.submitted(), 1)
}

// TestGitHub_IdeascubeScheduler: the Ideascube configuration with the real
// AnyBranch scheduler on category "new-tag": one buildset per tag, though
// GitHub tells of it twice, none for a branch.
func TestGitHub_IdeascubeScheduler(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	m := citest.Start(t, ci.MasterConfig{
		Title:   "Ideascube",
		Workers: []ci.WorkerConfig{{Name: "slave-amd64"}},
		Builders: []ci.BuilderConfig{{
			Name:    "build-amd64-pkg",
			Workers: []string{"slave-amd64"},
			Steps: []ci.Step{&steps.ShellCommand{
				StepOptions: ci.StepOptions{Name: "echo"},
				Command:     []any{"echo", ci.Interpolate("%(prop:branch)s")},
			}},
		}},
		Schedulers: []ci.Scheduler{
			&scheduler.Force{Name: "force", Builders: []string{"build-amd64-pkg"}},
			&scheduler.AnyBranch{
				Name:         "tags",
				ChangeFilter: scheduler.ChangeFilter{Category: []string{"new-tag"}},
				Builders:     []string{"build-amd64-pkg"},
			},
		},
		ChangeHooks: []ci.ChangeHook{&hook.GitHub{Secret: githubSecret, Strict: true}},
		Services:    []ci.Service{&webui.Server{Listener: ln}},
	})
	hookURL := "http://" + ln.Addr().String() + "/change_hook/github"
	deliveries := []struct{ event, file, id string }{
		{"create", "github/create_tag.json", "1"},
		{"push", "github/push_tag.json", "2"},
		{"create", "github/create_branch.json", "3"},
		{"push", "github/push.json", "4"},
		{"create", "github/create_tag.json", "1"},
	}
	for _, d := range deliveries {
		body := readTestdata(t, d.file)
		r := post(t, hookURL, githubHeader(d.event, d.id, body), body)
		require.Equal(t, http.StatusOK, r.code, r.body)
	}
	reqs, total, err := m.Store.ListRequests(context.Background(), ci.RequestQuery{})
	require.NoError(t, err)
	require.Equal(t, 1, total, "one build request")
	builds := m.WaitBuildset(t, reqs[0].BuildsetID)
	require.Len(t, builds, 1)
	assert.Equal(t, ci.Success, builds[0].Results())
	assert.Equal(t, "v0.42.0\n", builds[0].Log("echo", "stdio"))
	assert.Equal(t, "v0.42.0", builds[0].Property("branch"))
}

// TestGitLab_RefusedBeforeBody: a request without the right token is
// refused from its headers, without waiting for its body.
func TestGitLab_RefusedBeforeBody(t *testing.T) {
	tm := startMaster(t)
	c, err := net.Dial("tcp", strings.TrimPrefix(tm.URL, "http://"))
	require.NoError(t, err)
	defer c.Close()
	fmt.Fprintf(c, "POST /change_hook/gitlab HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Gitlab-Event: Tag Push Hook\r\n"+
		"X-Gitlab-Token: wrong\r\nContent-Length: 20000000\r\n\r\n{")
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err, "answered before the body came")
	assert.Equal(t, "HTTP/1.1 403 Forbidden\r\n", line)
	assert.Empty(t, tm.changes(t))
}

// TestGitHub_TagRecreated: a tag deleted and created again under the same
// name is built again (while the create and push events of one creation,
// and redeliveries, still give one change).
func TestGitHub_TagRecreated(t *testing.T) {
	tm := startMaster(t)
	hookURL := tm.URL + "/change_hook/github"
	create := readTestdata(t, "github/create_tag.json")
	var ev struct {
		Ref  string `json:"ref"`
		Repo struct {
			CloneURL string `json:"clone_url"`
		} `json:"repository"`
	}
	require.NoError(t, json.Unmarshal(create, &ev))
	send := func(event, delivery string, body []byte) response {
		t.Helper()
		r := post(t, hookURL, githubHeader(event, delivery, body), body)
		require.Equal(t, http.StatusOK, r.code, r.body)
		return r
	}
	send("create", "d1", create)
	send("create", "d1-again", create) // the same creation, told twice
	require.Len(t, tm.changes(t), 1)

	del, err := json.Marshal(map[string]any{"ref": ev.Ref, "ref_type": "tag", "pusher_type": "user",
		"repository": map[string]any{"clone_url": ev.Repo.CloneURL, "full_name": "o/r"}, "sender": map[string]any{"login": "alice"}})
	require.NoError(t, err)
	r := send("delete", "d2", del)
	assert.Equal(t, "ok: ignored: tag \""+ev.Ref+"\" deleted: a tag created again under that name is built again\n", r.body)
	send("create", "d3", create)
	send("create", "d3-again", create)
	assert.Len(t, tm.changes(t), 2, "created again: a new change, once")
	assert.Len(t, tm.sched.submitted(), 2, "built again")
}
