package hook_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/hook"
)

// edit returns a testdata payload changed by f.
func edit(t *testing.T, file string, f func(v map[string]any)) []byte {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(readTestdata(t, file), &v))
	f(v)
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func object(v map[string]any, key string) map[string]any { return v[key].(map[string]any) }

// TestParseGitHub_Lenient: a delivery is refused only for a field the hook
// reads; surprises elsewhere cost nothing.
func TestParseGitHub_Lenient(t *testing.T) {
	want, err := hook.ParseGitHub("push", readTestdata(t, "github/push.json"))
	require.NoError(t, err)
	odd := edit(t, "github/push.json", func(v map[string]any) {
		object(v, "repository")["private"] = 1
		object(v, "repository")["pushed_at"] = "yesterday"
		object(v, "repository")["owner"] = "not an object"
		v["forced"] = "no"
		v["pusher"] = []any{1, 2}
	})
	got, err := hook.ParseGitHub("push", odd)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// A field the hook reads, malformed: refused, named.
	bad := edit(t, "github/push.json", func(v map[string]any) { v["commits"] = 5 })
	_, err = hook.ParseGitHub("push", bad)
	assert.EqualError(t, err, "invalid push payload: commits is a JSON number, which the hook cannot read as []*hook.ghCommit")
	bad = edit(t, "github/pull_request_opened.json", func(v map[string]any) { object(v, "pull_request")["commits"] = "two" })
	_, err = hook.ParseGitHub("pull_request", bad)
	assert.ErrorContains(t, err, "invalid pull_request payload: pull_request.commits is a JSON string")

	// Without clone_url, the repository's page, as Buildbot names it.
	for _, tc := range []struct{ event, file string }{
		{"push", "github/push.json"}, {"create", "github/create_tag.json"}, {"pull_request", "github/pull_request_opened.json"},
	} {
		body := edit(t, tc.file, func(v map[string]any) { delete(object(v, "repository"), "clone_url") })
		got, err := hook.ParseGitHub(tc.event, body)
		require.NoError(t, err, tc.event)
		require.NotEmpty(t, got, tc.event)
		assert.Equal(t, "https://github.com/ideascube/ideascube", got[0].Repository, tc.event)
	}
	body := edit(t, "github/push.json", func(v map[string]any) {
		delete(object(v, "repository"), "clone_url")
		delete(object(v, "repository"), "html_url")
	})
	_, err = hook.ParseGitHub("push", body)
	assert.EqualError(t, err, "push event without repository.clone_url or repository.html_url")
}

// TestParseGitHub_EmptyPush: a push without commits and without a head
// commit makes no change (it used to make one without a revision).
func TestParseGitHub_EmptyPush(t *testing.T) {
	for name, head := range map[string]any{"Missing": nil, "Null": "null", "Empty": map[string]any{}} {
		t.Run(name, func(t *testing.T) {
			body := edit(t, "github/push.json", func(v map[string]any) {
				v["commits"] = []any{}
				delete(v, "head_commit")
				if head == "null" {
					v["head_commit"] = nil
				} else if head != nil {
					v["head_commit"] = head
				}
			})
			ev, err := hook.ParseGitHubEvent("push", body)
			require.NoError(t, err)
			assert.Empty(t, ev.Changes)
			assert.Equal(t, `push to "master" without commits`, ev.Ignored)
		})
	}
}

// TestGitHub_Skips: "[ci skip]" in a branch push's head commit skips it,
// as in Buildbot; tags are built whatever their commit says; Skips
// chooses other patterns, or none.
func TestGitHub_Skips(t *testing.T) {
	tm := startMasterWith(t,
		&hook.GitHub{Secret: githubSecret},
	)
	hookURL := tm.URL + "/change_hook/github"
	for i, msg := range []string{"Update translations [ci skip]", "[skip ci] docs", "typo [ Skip CI ]"} {
		body := edit(t, "github/push.json", func(v map[string]any) { object(v, "head_commit")["message"] = msg })
		r := post(t, hookURL, githubHeader("push", fmt.Sprint("skip-", i), body), body)
		require.Equal(t, http.StatusOK, r.code)
		if i < 2 {
			assert.Regexp(t, `^ok: ignored: push to "master" skipped: its head commit's message says \[(ci skip|skip ci)\]\n$`, r.body, msg)
		} else {
			assert.Equal(t, "ok: 2 changes added, 0 already received\n", r.body, "the patterns are Buildbot's, case included")
		}
	}
	assert.Len(t, tm.changes(t), 2)

	// A tag pointing at a skipped commit is built.
	tag := edit(t, "github/push_tag.json", func(v map[string]any) {
		if hc, ok := v["head_commit"].(map[string]any); ok {
			hc["message"] = "Release 0.42 [ci skip]"
		}
	})
	r := post(t, hookURL, githubHeader("push", "tag", tag), tag)
	assert.Equal(t, "ok: 1 changes added, 0 already received\n", r.body)

	other := startMasterWith(t, &hook.GitHub{Secret: githubSecret, Skips: []string{`(?i)\bwip\b`}})
	for i, msg := range []string{"WIP: half done", "Update translations [ci skip]"} {
		body := edit(t, "github/push.json", func(v map[string]any) { object(v, "head_commit")["message"] = msg })
		r := post(t, other.URL+"/change_hook/github", githubHeader("push", fmt.Sprint("o-", i), body), body)
		if i == 0 {
			assert.Equal(t, "ok: ignored: push to \"master\" skipped: its head commit's message says WIP\n", r.body)
		} else {
			assert.Equal(t, "ok: 2 changes added, 0 already received\n", r.body, "Skips replaces the default patterns")
		}
	}
	err := (&hook.GitHub{Secret: "s", Skips: []string{"[unclosed"}}).Validate()
	assert.ErrorContains(t, err, "Skips: error parsing regexp")
}

// fakeGitHubAPI serves the two API calls made for a pull request.
type fakeGitHubAPI struct {
	message string
	fail    bool
	calls   atomic.Int32
	auth    atomic.Value
}

func (f *fakeGitHubAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	f.auth.Store(r.Header.Get("Authorization"))
	if f.fail {
		http.Error(w, `{"message": "Server Error"}`, http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/repos/ideascube/ideascube/commits/e83c5163316f89bfbde7d9ab23ca2e25604af290":
		json.NewEncoder(w).Encode(map[string]any{"sha": "e83c5163316f89bfbde7d9ab23ca2e25604af290", "commit": map[string]any{"message": f.message}})
	case r.URL.Path == "/repos/ideascube/ideascube/pulls/731/files" && r.URL.Query().Get("page") == "":
		w.Header().Set("Link", fmt.Sprintf(`<http://%s%s?page=2&per_page=100>; rel="next"`, r.Host, r.URL.Path))
		json.NewEncoder(w).Encode([]map[string]any{{"filename": "ideascube/serveradmin/catalog.py"}, {"filename": "docs/catalog.rst"}})
	case r.URL.Path == "/repos/ideascube/ideascube/pulls/731/files" && r.URL.Query().Get("page") == "2":
		json.NewEncoder(w).Encode([]map[string]any{{"filename": "CHANGELOG.rst"}})
	default:
		http.NotFound(w, r)
	}
}

// TestGitHub_PullRequestAPI: with a token, a pull request's change lists
// its files (every page) and its head commit's message is checked for
// skips; GitHub's API failing costs the file list, not the change.
func TestGitHub_PullRequestAPI(t *testing.T) {
	api := &fakeGitHubAPI{message: "Handle empty catalogs"}
	srv := httptest.NewServer(api)
	defer srv.Close()
	tm := startMasterWith(t, &hook.GitHub{Secret: githubSecret, Token: "ghp-api-token", APIURL: srv.URL})
	hookURL := tm.URL + "/change_hook/github"
	body := readTestdata(t, "github/pull_request_opened.json")

	r := post(t, hookURL, githubHeader("pull_request", "pr-1", body), body)
	require.Equal(t, "ok: 1 changes added, 0 already received\n", r.body)
	cs := tm.changes(t)
	require.Len(t, cs, 1)
	assert.Equal(t, []string{"ideascube/serveradmin/catalog.py", "docs/catalog.rst", "CHANGELOG.rst"}, cs[0].Files)
	assert.Equal(t, "Bearer ghp-api-token", api.auth.Load())
	assert.NotContains(t, tm.log.String(), "ghp-api-token")

	api.message = "Handle empty catalogs\n\n[skip ci]"
	r = post(t, hookURL, githubHeader("pull_request", "pr-2", body), body)
	assert.Equal(t, "ok: ignored: pull request #731 skipped: its head commit's message says [skip ci]\n", r.body)

	api.fail = true
	r = post(t, hookURL, githubHeader("pull_request", "pr-3", body), body)
	assert.Equal(t, "ok: 1 changes added, 0 already received\n", r.body)
	cs = tm.changes(t)
	require.Len(t, cs, 2)
	assert.Empty(t, cs[1].Files)
	assert.Contains(t, tm.log.String(), "could not list a pull request's files")

	// Without a token, GitHub is never called.
	calls := api.calls.Load()
	quiet := startMasterWith(t, &hook.GitHub{Secret: githubSecret, APIURL: srv.URL})
	r = post(t, quiet.URL+"/change_hook/github", githubHeader("pull_request", "pr-4", body), body)
	assert.Equal(t, "ok: 1 changes added, 0 already received\n", r.body)
	assert.Equal(t, calls, api.calls.Load())
}

// TestGitHub_PayloadProperties: Buildbot's github_property_whitelist.
func TestGitHub_PayloadProperties(t *testing.T) {
	tm := startMasterWith(t, &hook.GitHub{Secret: githubSecret, PayloadProperties: []string{"github.repository.name", "github.pusher.*", "github.head.ref", "github.labels"}})
	hookURL := tm.URL + "/change_hook/github"
	push := readTestdata(t, "github/push.json")
	r := post(t, hookURL, githubHeader("push", "p", push), push)
	require.Equal(t, http.StatusOK, r.code, r.body)
	pr := edit(t, "github/pull_request_opened.json", func(v map[string]any) {
		object(v, "pull_request")["labels"] = []any{map[string]any{"name": "bug"}}
	})
	r = post(t, hookURL, githubHeader("pull_request", "pr", pr), pr)
	require.Equal(t, http.StatusOK, r.code, r.body)
	cs := tm.changes(t)
	require.Len(t, cs, 3)
	var pushed map[string]any
	require.NoError(t, json.Unmarshal(readTestdata(t, "github/push.json"), &pushed))
	assert.Equal(t, "ideascube", cs[0].Properties["github.repository.name"])
	for k, v := range object(pushed, "pusher") {
		assert.Equal(t, v, cs[0].Properties["github.pusher."+k])
	}
	assert.Equal(t, true, cs[0].Properties["github_distinct"], "the hook's own properties stay")
	for k := range cs[0].Properties {
		assert.True(t, k == "event" || k == "github_distinct" || strings.HasPrefix(k, "github.repository.name") || strings.HasPrefix(k, "github.pusher."), k)
	}
	assert.Equal(t, "empty-catalog", cs[2].Properties["github.head.ref"], "a pull request's fields are its pull_request object's")
	assert.Equal(t, []any{map[string]any{"name": "bug"}}, cs[2].Properties["github.labels"])
	assert.Nil(t, cs[2].Properties["github.repository.name"])

	err := (&hook.GitHub{Secret: "s", PayloadProperties: []string{"github.[x"}}).Validate()
	assert.ErrorContains(t, err, `PayloadProperties: pattern "github.[x"`)
}

var _ ci.ChangeHook = (*hook.GitHub)(nil)

// TestParseGitLab_Note: a comment on a merge request makes a change of
// its last commit, category "note", as in Buildbot; on anything else,
// none.
func TestParseGitLab_Note(t *testing.T) {
	mr, err := hook.ParseGitLab("Merge Request Hook", readTestdata(t, "gitlab/merge_request_open.json"))
	require.NoError(t, err)
	require.Len(t, mr, 1)
	got, err := hook.ParseGitLab("Note Hook", readTestdata(t, "gitlab/note_merge_request.json"))
	require.NoError(t, err)
	require.Len(t, got, 1)
	want := mr[0]
	want.Category = hook.CategoryNote
	want.Properties = withProps(want.Properties, map[string]any{"event": "note", "comments": "Rebuild please: the mirror was down."})
	assert.Equal(t, want, got[0])

	ev, err := hook.ParseGitLabEvent("Note Hook", readTestdata(t, "gitlab/note_commit.json"))
	require.NoError(t, err)
	assert.Empty(t, ev.Changes)
	assert.Equal(t, "comment on something other than a merge request", ev.Ignored)

	bad := edit(t, "gitlab/note_merge_request.json", func(v map[string]any) { delete(object(v, "merge_request"), "last_commit") })
	_, err = hook.ParseGitLab("Note Hook", bad)
	assert.EqualError(t, err, "note on a merge request without target.git_http_url, iid or last_commit.id")
}

func withProps(props, extra map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range props {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// TestParseGitLab_RepositoryURL: a push payload without the project's
// HTTP URL names the repository by the URL Buildbot uses.
func TestParseGitLab_RepositoryURL(t *testing.T) {
	body := edit(t, "gitlab/push.json", func(v map[string]any) { delete(object(v, "project"), "git_http_url") })
	got, err := hook.ParseGitLab("Push Hook", body)
	require.NoError(t, err)
	require.NotEmpty(t, got)
	var v map[string]any
	require.NoError(t, json.Unmarshal(body, &v))
	repo := object(v, "repository")
	want := repo["git_http_url"]
	if want == nil {
		want = repo["url"]
	}
	require.NotNil(t, want)
	assert.Equal(t, want, got[0].Repository)

	body = edit(t, "gitlab/push.json", func(v map[string]any) {
		delete(object(v, "project"), "git_http_url")
		delete(v, "repository")
	})
	_, err = hook.ParseGitLab("Push Hook", body)
	assert.EqualError(t, err, "Push Hook without project.git_http_url or repository.git_http_url or repository.url")
}

// TestGitLab_Buildbot: ?codebase= and ?project= in the webhook's URL,
// notes, and skips, through the handler.
func TestGitLab_Buildbot(t *testing.T) {
	tm := startMasterWith(t, &hook.GitLab{Secret: gitlabSecret, Codebase: "main"})
	hookURL := tm.URL + "/change_hook/gitlab"
	push := readTestdata(t, "gitlab/push.json")
	h := gitlabHeader("Push Hook")
	h.Set("Idempotency-Key", "p1")
	r := post(t, hookURL+"?codebase=ideascube&project=ideascube-box", h, push)
	require.Equal(t, "ok: 2 changes added, 0 already received\n", r.body)
	h.Set("Idempotency-Key", "p2")
	r = post(t, hookURL, h, push)
	require.Equal(t, "ok: 2 changes added, 0 already received\n", r.body)
	cs := tm.changes(t)
	require.Len(t, cs, 4)
	assert.Equal(t, "ideascube", cs[0].Codebase)
	assert.Equal(t, "ideascube-box", cs[0].Project)
	assert.Equal(t, "main", cs[2].Codebase, "the hook's own codebase otherwise")
	assert.Equal(t, "ideascube/ideascube", cs[2].Project)

	note := readTestdata(t, "gitlab/note_merge_request.json")
	h = gitlabHeader("Note Hook")
	h.Set("Idempotency-Key", "n1")
	r = post(t, hookURL, h, note)
	require.Equal(t, "ok: 1 changes added, 0 already received\n", r.body)
	cs = tm.changes(t)
	require.Len(t, cs, 5)
	assert.Equal(t, "note", cs[4].Category)
	assert.Equal(t, "Rebuild please: the mirror was down.", cs[4].Properties["comments"])

	skipped := edit(t, "gitlab/push.json", func(v map[string]any) {
		commits := v["commits"].([]any)
		head := commits[len(commits)-1].(map[string]any)
		if sha, ok := v["checkout_sha"].(string); ok {
			for _, c := range commits {
				if c.(map[string]any)["id"] == sha {
					head = c.(map[string]any)
				}
			}
		}
		head["message"] = "Update the docs [ci skip]\n"
	})
	h = gitlabHeader("Push Hook")
	h.Set("Idempotency-Key", "p3")
	r = post(t, hookURL, h, skipped)
	assert.Equal(t, "ok: ignored: push to \"master\" skipped: its head commit's message says [ci skip]\n", r.body)
	mr := edit(t, "gitlab/merge_request_open.json", func(v map[string]any) {
		object(object(v, "object_attributes"), "last_commit")["message"] = "WIP [skip ci]"
	})
	h = gitlabHeader("Merge Request Hook")
	h.Set("Idempotency-Key", "m1")
	r = post(t, hookURL, h, mr)
	assert.Regexp(t, `^ok: ignored: merge request !\d+ skipped: its head commit's message says \[skip ci\]\n$`, r.body)
	assert.Len(t, tm.changes(t), 5)
}
