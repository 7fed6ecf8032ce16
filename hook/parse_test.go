package hook_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/hook"
)

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(tb, err)
	return b
}

const (
	ideascubeClone = "https://github.com/ideascube/ideascube.git"
	framagitClone  = "https://framagit.org/ideascube/ideascube.git"
)

// newTagChange is the change every event telling of tag v0.42.0 on GitHub
// gives.
var newTagChange = ci.Change{
	Author:     "bochecha",
	Comments:   "Tag v0.42.0 created",
	Branch:     "v0.42.0",
	Revision:   "v0.42.0",
	RevLink:    "https://github.com/ideascube/ideascube/tree/v0.42.0",
	Category:   "new-tag",
	Repository: ideascubeClone,
	Project:    "ideascube/ideascube",
	DedupKey:   "tag https://github.com/ideascube/ideascube.git v0.42.0",
}

func TestParseGitHub(t *testing.T) {
	tests := []struct {
		name  string
		event string
		file  string
		want  []ci.Change
	}{
		{name: "CreateTag", event: "create", file: "github/create_tag.json", want: []ci.Change{newTagChange}},
		{name: "CreateBranch", event: "create", file: "github/create_branch.json", want: nil},
		{name: "Ping", event: "ping", file: "github/ping.json", want: nil},
		{name: "PushTag", event: "push", file: "github/push_tag.json", want: []ci.Change{newTagChange}},
		{name: "PushTagDeleted", event: "push", file: "github/push_tag_deleted.json", want: nil},
		{name: "PushTagMoved", event: "push", file: "github/push_tag_moved.json", want: []ci.Change{{
			Author:     "Mathieu Bridon <bochecha@example.org>",
			Committer:  "GitHub <noreply@github.com>",
			Comments:   "Release 0.42.0",
			Branch:     "v0.42.0",
			Revision:   "d670460b4b4aece5915caf5c68d12f560a9fe3e4",
			RevLink:    "https://github.com/ideascube/ideascube/commit/d670460b4b4aece5915caf5c68d12f560a9fe3e4",
			When:       time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC),
			Category:   "tag",
			Repository: ideascubeClone,
			Project:    "ideascube/ideascube",
			Files:      []string{"CHANGELOG.rst", "setup.py"},
			Properties: map[string]any{"event": "push", "github_distinct": true},
		}}},
		{name: "Push", event: "push", file: "github/push.json", want: []ci.Change{{
			Author:     "Mathieu Bridon <bochecha@example.org>",
			Committer:  "GitHub <noreply@github.com>",
			Comments:   "serve: do not crash on an empty catalog\n\nThe catalog can be empty on a fresh box.",
			Branch:     "master",
			Revision:   "3f786850e387550fdab836ed7e6dc881de23001b",
			RevLink:    "https://github.com/ideascube/ideascube/commit/3f786850e387550fdab836ed7e6dc881de23001b",
			When:       time.Date(2026, 11, 21, 9, 2, 13, 0, time.UTC),
			Repository: ideascubeClone,
			Project:    "ideascube/ideascube",
			Files:      []string{"ideascube/serveradmin/tests/test_catalog.py", "ideascube/serveradmin/catalog.py"},
			Properties: map[string]any{"event": "push", "github_distinct": true},
		}, {
			Author:     "Mathieu Bridon <bochecha@example.org>",
			Committer:  "GitHub <noreply@github.com>",
			Comments:   "Update translations",
			Branch:     "master",
			Revision:   "89e6c98d92887913cadf06b2adb97f26cde4849b",
			RevLink:    "https://github.com/ideascube/ideascube/commit/89e6c98d92887913cadf06b2adb97f26cde4849b",
			When:       time.Date(2026, 11, 21, 9, 5, 40, 0, time.UTC),
			Repository: ideascubeClone,
			Project:    "ideascube/ideascube",
			Files:      []string{"ideascube/locale/fr/LC_MESSAGES/django.po", "ideascube/locale/xx/LC_MESSAGES/django.po"},
			Properties: map[string]any{"event": "push", "github_distinct": false},
		}}},
		{name: "PullRequestOpened", event: "pull_request", file: "github/pull_request_opened.json", want: []ci.Change{{
			Author:     "contributor",
			Comments:   "GitHub Pull Request #731 (2 commits)\nHandle <empty> catalogs; `rm -rf $HOME`\nFixes #730.\n\n<script>alert(1)</script> $(touch /tmp/pwned)",
			Branch:     "refs/pull/731/head",
			Revision:   "e83c5163316f89bfbde7d9ab23ca2e25604af290",
			RevLink:    "https://github.com/ideascube/ideascube/pull/731",
			When:       time.Date(2026, 11, 21, 12, 0, 5, 0, time.UTC),
			Category:   "pull",
			Repository: ideascubeClone,
			Project:    "ideascube/ideascube",
			Properties: map[string]any{
				"event":          "pull_request",
				"pullrequesturl": "https://github.com/ideascube/ideascube/pull/731",
				"basename":       "master",
				"headname":       "empty-catalog",
				"prnumber":       float64(731),
			},
		}}},
		{name: "PullRequestClosed", event: "pull_request", file: "github/pull_request_closed.json", want: nil},
		{name: "UnknownEvent", event: "star", file: "github/ping.json", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hook.ParseGitHub(tt.event, readTestdata(t, tt.file))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}

	t.Run("PullRequestSynchronize", func(t *testing.T) {
		got, err := hook.ParseGitHub("pull_request", readTestdata(t, "github/pull_request_synchronize.json"))
		require.NoError(t, err)
		require.Len(t, got, 1)
		assert.Equal(t, "0b9d7e2f8c1a3e4d5f6a7b8c9d0e1f2a3b4c5d6e", got[0].Revision)
		assert.Equal(t, "refs/pull/731/head", got[0].Branch)
		assert.Contains(t, got[0].Comments, "(3 commits)")
	})

	t.Run("CreateAndPushOfATagAgree", func(t *testing.T) {
		create, err := hook.ParseGitHub("create", readTestdata(t, "github/create_tag.json"))
		require.NoError(t, err)
		push, err := hook.ParseGitHub("push", readTestdata(t, "github/push_tag.json"))
		require.NoError(t, err)
		assert.Equal(t, create, push)
		assert.Equal(t, hook.TagKey(ideascubeClone, "v0.42.0"), create[0].DedupKey)
	})

	errTests := []struct {
		name, event, body string
	}{
		{"NotJSON", "push", "{not json"},
		{"Truncated", "create", `{"ref": "v1", "ref_type": "tag"`},
		{"WrongType", "push", `{"ref": 42}`},
		{"CreateWithoutRepository", "create", `{"ref": "v1", "ref_type": "tag"}`},
		{"PushWithoutRepository", "push", `{"ref": "refs/heads/master"}`},
		{"PullRequestWithoutHead", "pull_request", `{"action": "opened", "number": 3, "repository": {"clone_url": "x"}}`},
	}
	for _, tt := range errTests {
		t.Run("Err"+tt.name, func(t *testing.T) {
			_, err := hook.ParseGitHub(tt.event, []byte(tt.body))
			require.Error(t, err)
		})
	}
}

func TestParseGitLab(t *testing.T) {
	glTag := ci.Change{
		Author:     "bochecha",
		Comments:   "Tag v0.42.0 created",
		Branch:     "v0.42.0",
		Revision:   "v0.42.0",
		RevLink:    "https://framagit.org/ideascube/ideascube/-/tree/v0.42.0",
		Category:   "new-tag",
		Repository: framagitClone,
		Project:    "ideascube/ideascube",
		DedupKey:   "tag https://framagit.org/ideascube/ideascube.git v0.42.0",
	}
	mrProps := map[string]any{
		"event":              "merge_request",
		"source_branch":      "empty-catalog",
		"target_branch":      "master",
		"source_repository":  "https://framagit.org/contributor/ideascube.git",
		"target_repository":  framagitClone,
		"source_git_ssh_url": "git@framagit.org:contributor/ideascube.git",
		"target_git_ssh_url": "git@framagit.org:ideascube/ideascube.git",
		"source_project_id":  float64(3120),
		"target_project_id":  float64(2417),
		"merge_request_iid":  float64(17),
	}
	tests := []struct {
		name  string
		event string
		file  string
		want  []ci.Change
	}{
		{name: "Push", event: "Push Hook", file: "gitlab/push.json", want: []ci.Change{{
			Author:     "Mathieu Bridon <bochecha@example.org>",
			Comments:   "Fix the catalog cache\n\nSee https://framagit.org/ideascube/ideascube/-/issues/12 for more information",
			Branch:     "master",
			Revision:   "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
			RevLink:    "https://framagit.org/ideascube/ideascube/-/commit/b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
			When:       time.Date(2026, 11, 21, 12, 27, 31, 0, time.UTC),
			Category:   "push",
			Repository: framagitClone,
			Project:    "ideascube/ideascube",
			Files:      []string{"CHANGELOG", "ideascube/serveradmin/catalog.py"},
			Properties: map[string]any{"event": "push"},
		}, {
			Author:     "Marc <marc@example.org>",
			Comments:   "fixed readme",
			Branch:     "master",
			Revision:   "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
			RevLink:    "https://framagit.org/ideascube/ideascube/-/commit/da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
			When:       time.Date(2026, 11, 21, 12, 36, 29, 0, time.UTC),
			Category:   "push",
			Repository: framagitClone,
			Project:    "ideascube/ideascube",
			Files:      []string{"README.md", "docs/old.md"},
			Properties: map[string]any{"event": "push"},
		}}},
		{name: "TagPush", event: "Tag Push Hook", file: "gitlab/tag_push.json", want: []ci.Change{glTag}},
		{name: "TagPushDeleted", event: "Tag Push Hook", file: "gitlab/tag_push_deleted.json", want: nil},
		{name: "MergeRequestOpen", event: "Merge Request Hook", file: "gitlab/merge_request_open.json", want: []ci.Change{{
			Author:     "A Contributor <contributor@example.org>",
			Comments:   "MR#17: Handle empty catalogs\n\nFixes #12.",
			Branch:     "refs/merge-requests/17/head",
			Revision:   "e83c5163316f89bfbde7d9ab23ca2e25604af290",
			RevLink:    "https://framagit.org/ideascube/ideascube/-/merge_requests/17",
			When:       time.Date(2026, 11, 21, 12, 20, 0, 0, time.UTC),
			Category:   "merge_request",
			Repository: framagitClone,
			Project:    "ideascube/ideascube",
			Properties: mrProps,
		}}},
		{name: "MergeRequestTitleEdited", event: "Merge Request Hook", file: "gitlab/merge_request_update_title.json", want: nil},
		{name: "UnknownEvent", event: "Wiki Page Hook", file: "gitlab/push.json", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hook.ParseGitLab(tt.event, readTestdata(t, tt.file))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}

	t.Run("MergeRequestPushedTo", func(t *testing.T) {
		got, err := hook.ParseGitLab("Merge Request Hook", readTestdata(t, "gitlab/merge_request_update.json"))
		require.NoError(t, err)
		require.Len(t, got, 1)
		assert.Equal(t, "0b9d7e2f8c1a3e4d5f6a7b8c9d0e1f2a3b4c5d6e", got[0].Revision)
	})

	for _, tt := range []struct{ name, event, body string }{
		{"NotJSON", "Push Hook", "nope"},
		{"NoProject", "Tag Push Hook", `{"ref": "refs/tags/v1", "before": "0000000000000000000000000000000000000000", "after": "ab"}`},
		{"MergeRequestNoCommit", "Merge Request Hook", `{"object_attributes": {"action": "open", "iid": 3, "target": {"git_http_url": "x"}}}`},
	} {
		t.Run("Err"+tt.name, func(t *testing.T) {
			_, err := hook.ParseGitLab(tt.event, []byte(tt.body))
			require.Error(t, err)
		})
	}
}

func TestParseBase(t *testing.T) {
	want := ci.Change{
		Author:     "alice <alice@example.org>",
		Committer:  "bob",
		Comments:   "fix; $(reboot) <b>bold</b>",
		Revision:   "abc123",
		Branch:     "main",
		Category:   "script",
		RevLink:    "https://example.org/c/abc123",
		Repository: "https://example.org/r.git",
		Project:    "r",
		Codebase:   "app",
		When:       time.Unix(1700000000, 500000000).UTC(),
		Files:      []string{"a.go", "b/c.go"},
		Properties: map[string]any{"ticket": "T-1", "n": float64(3)},
	}
	form := "author=alice+%3Calice%40example.org%3E&committer=bob&comments=fix%3B+%24%28reboot%29+%3Cb%3Ebold%3C%2Fb%3E" +
		"&revision=abc123&branch=main&category=script&revlink=https%3A%2F%2Fexample.org%2Fc%2Fabc123" +
		"&repository=https%3A%2F%2Fexample.org%2Fr.git&project=r&codebase=app&when=1700000000.5" +
		"&files=%5B%22a.go%22%2C%22b%2Fc.go%22%5D&properties=%7B%22ticket%22%3A%22T-1%22%2C%22n%22%3A3%7D"
	jsonBody := `{"author": "alice <alice@example.org>", "committer": "bob", "comments": "fix; $(reboot) <b>bold</b>",
		"revision": "abc123", "branch": "main", "category": "script", "revlink": "https://example.org/c/abc123",
		"repository": "https://example.org/r.git", "project": "r", "codebase": "app", "when_timestamp": 1700000000.5,
		"files": ["a.go", "b/c.go"], "properties": {"ticket": "T-1", "n": 3}}`
	multipart := "--XX\r\nContent-Disposition: form-data; name=\"who\"\r\n\r\nalice <alice@example.org>\r\n" +
		"--XX\r\nContent-Disposition: form-data; name=\"revision\"\r\n\r\nabc123\r\n--XX--\r\n"

	tests := []struct {
		name        string
		contentType string
		body        string
		want        []ci.Change
	}{
		{"Form", "application/x-www-form-urlencoded", form, []ci.Change{want}},
		{"JSON", "application/json; charset=utf-8", jsonBody, []ci.Change{want}},
		{"JSONList", "application/json", "[" + jsonBody + `, {"revision": "def"}]`, []ci.Change{want, {Revision: "def"}}},
		{"Multipart", "multipart/form-data; boundary=XX", multipart, []ci.Change{{Author: "alice <alice@example.org>", Revision: "abc123"}}},
		{"WhoAndWhenAsStrings", "application/json", `{"who": "carol", "when": "12"}`, []ci.Change{{Author: "carol", When: time.Unix(12, 0).UTC()}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hook.ParseBase(tt.contentType, []byte(tt.body))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}

	for _, tt := range []struct{ name, contentType, body string }{
		{"ContentType", "text/plain", "author=x"},
		{"NoContentType", "", "author=x"},
		{"BadJSON", "application/json", "{"},
		{"FilesNotAList", "application/json", `{"files": {"a": 1}}`},
		{"PropertiesNotAnObject", "application/x-www-form-urlencoded", "properties=%5B1%5D"},
		{"WhenNotANumber", "application/json", `{"when": "yesterday"}`},
		{"AuthorNotAString", "application/json", `{"author": 3}`},
		{"MultipartWithoutBoundary", "multipart/form-data", "x"},
	} {
		t.Run("Err"+tt.name, func(t *testing.T) {
			_, err := hook.ParseBase(tt.contentType, []byte(tt.body))
			require.Error(t, err)
		})
	}
}
