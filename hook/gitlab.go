package hook

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// GitLab headers.
const (
	gitlabEventHeader       = "X-Gitlab-Event"
	gitlabTokenHeader       = "X-Gitlab-Token"
	gitlabEventUUIDHeader   = "X-Gitlab-Event-UUID"
	gitlabIdempotencyHeader = "Idempotency-Key"
)

// GitLab is the change hook for GitLab's webhooks (dialect "gitlab"), as
// Buildbot's gitlab hook. Configure the webhook on GitLab with the URL
// <public URL>/change_hook/gitlab, the same secret token as Secret, and
// the push, tag push and merge request events as needed. The zero value is
// not valid: Secret is required.
type GitLab struct {
	// Secret is the webhook's secret token. GitLab sends it as is in
	// X-Gitlab-Token; a request without it, or with another, is refused
	// with 403. It is compared in constant time. An empty Secret is a
	// configuration error.
	Secret string
	// Codebase is given to every change (Buildbot's codebase option). A
	// webhook URL ending in ?codebase=NAME gives its own, as in Buildbot,
	// and ?project=NAME the changes' project.
	Codebase string
	// MaxBodyBytes bounds the request body; DefaultMaxBodyBytes if zero.
	MaxBodyBytes int64
	// Skips are regular expressions: a branch push whose head commit's
	// message matches one gives no change, nor does a merge request
	// whose last commit's does. Nil means DefaultSkips; an empty list,
	// none. Tags are built whatever their commit says.
	Skips []string
}

var _ ci.ChangeHook = (*GitLab)(nil)

// Dialect implements ci.ChangeHook.
func (h *GitLab) Dialect() string { return "gitlab" }

// Validate reports configuration errors; the master calls it when it
// starts.
func (h *GitLab) Validate() error {
	var errs []error
	if h.Secret == "" {
		errs = append(errs, errors.New("Secret is empty: set the webhook's secret token (GitLab sends it with every delivery)"))
	}
	if h.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxBodyBytes is negative (%d)", h.MaxBodyBytes))
	}
	if _, err := newSkipper(h.Skips); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Handler implements ci.ChangeHook, answering as GitHub's handler does.
func (h *GitLab) Handler(m *ci.Master) http.Handler {
	// Hashing both sides gives equal lengths, so that the comparison takes
	// the same time whatever the token sent.
	want := sha256.Sum256([]byte(h.Secret))
	empty := h.Secret == ""
	codebase := h.Codebase
	skips, _ := newSkipper(h.Skips) // checked by Validate
	// The token is a header: a request without the right one is refused
	// before its body is read.
	authenticate := func(r *http.Request, _ io.Reader) error {
		if empty {
			return forbidden("the hook has no secret configured")
		}
		token, ok := r.Header[http.CanonicalHeaderKey(gitlabTokenHeader)]
		if !ok || len(token) != 1 {
			return forbidden("no token (%s)", gitlabTokenHeader)
		}
		got := sha256.Sum256([]byte(token[0]))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return forbidden("wrong token (%s)", gitlabTokenHeader)
		}
		return nil
	}
	return newEndpoint(m, h.Dialect(), h.MaxBodyBytes, authenticate, func(r *http.Request, body []byte) (*delivery, error) {
		event := r.Header.Get(gitlabEventHeader)
		if event == "" {
			return nil, badRequest("no %s header", gitlabEventHeader)
		}
		if t := mediaType(r.Header.Get("Content-Type")); t != "application/json" {
			return nil, badRequest("unsupported content type %q (want application/json)", r.Header.Get("Content-Type"))
		}
		ev, err := ParseGitLabEvent(event, body)
		if err != nil {
			return nil, badRequest("%v", err)
		}
		if len(ev.Changes) > 0 {
			ev = gitlabSkip(event, body, ev, skips)
		}
		q := r.URL.Query()
		cb, project := codebase, q.Get("project")
		if v := q.Get("codebase"); v != "" {
			cb = v
		}
		for i := range ev.Changes {
			if ev.Changes[i].Codebase == "" {
				ev.Changes[i].Codebase = cb
			}
			if project != "" {
				ev.Changes[i].Project = project
			}
		}
		// Idempotency-Key stays the same when GitLab retries a delivery;
		// older GitLab versions send only the event's UUID.
		id := r.Header.Get(gitlabIdempotencyHeader)
		if id == "" {
			id = r.Header.Get(gitlabEventUUIDHeader)
		}
		return &delivery{event: event, id: id, Event: ev}, nil
	})
}

// The parts of GitLab's payloads the hook reads.
type (
	gitlabProject struct {
		Name              string `json:"name"`
		WebURL            string `json:"web_url"`
		GitHTTPURL        string `json:"git_http_url"`
		GitSSHURL         string `json:"git_ssh_url"`
		PathWithNamespace string `json:"path_with_namespace"`
	}
	gitlabAuthor struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	gitlabCommit struct {
		ID        string       `json:"id"`
		Message   string       `json:"message"`
		Timestamp string       `json:"timestamp"`
		URL       string       `json:"url"`
		Author    gitlabAuthor `json:"author"`
		Added     []string     `json:"added"`
		Modified  []string     `json:"modified"`
		Removed   []string     `json:"removed"`
	}
	gitlabPush struct {
		ObjectKind   string        `json:"object_kind"`
		Before       string        `json:"before"`
		After        string        `json:"after"`
		Ref          string        `json:"ref"`
		CheckoutSHA  *string       `json:"checkout_sha"`
		UserName     string        `json:"user_name"`
		UserUsername string        `json:"user_username"`
		Project      gitlabProject `json:"project"`
		Repository   struct {
			URL        string `json:"url"`
			GitHTTPURL string `json:"git_http_url"`
		} `json:"repository"`
		Commits []gitlabCommit `json:"commits"`
	}
	gitlabMergeRequest struct {
		ObjectKind string `json:"object_kind"`
		User       struct {
			Username string `json:"username"`
		} `json:"user"`
		Project          gitlabProject                `json:"project"`
		ObjectAttributes gitlabMergeRequestAttributes `json:"object_attributes"`
	}
	gitlabMergeRequestAttributes struct {
		IID             int           `json:"iid"`
		Title           string        `json:"title"`
		Description     string        `json:"description"`
		State           string        `json:"state"`
		Action          string        `json:"action"`
		OldRev          *string       `json:"oldrev"`
		URL             string        `json:"url"`
		SourceBranch    string        `json:"source_branch"`
		TargetBranch    string        `json:"target_branch"`
		SourceProjectID int           `json:"source_project_id"`
		TargetProjectID int           `json:"target_project_id"`
		Source          gitlabProject `json:"source"`
		Target          gitlabProject `json:"target"`
		LastCommit      gitlabCommit  `json:"last_commit"`
	}
	gitlabNote struct {
		ObjectKind       string        `json:"object_kind"`
		Project          gitlabProject `json:"project"`
		ObjectAttributes struct {
			Note         string `json:"note"`
			NoteableType string `json:"noteable_type"`
			URL          string `json:"url"`
		} `json:"object_attributes"`
		MergeRequest *gitlabMergeRequestAttributes `json:"merge_request"`
	}
)

// repoURL is the URL of the pushed repository: the project's HTTP clone
// URL, or, in payloads without it, the repository's (Buildbot's choice).
func (p *gitlabPush) repoURL() string {
	for _, u := range []string{p.Project.GitHTTPURL, p.Repository.GitHTTPURL, p.Repository.URL} {
		if u != "" {
			return u
		}
	}
	return ""
}

// zeroSHA is the revision GitLab gives a ref that did not exist before a
// push, or no longer exists after it.
func zeroSHA(s string) bool { return s != "" && strings.Trim(s, "0") == "" }

// ParseGitLabEvent is ParseGitLab, with the reason an event gives no
// change and the tags it deleted.
func ParseGitLabEvent(event string, body []byte) (Event, error) {
	changes, err := ParseGitLab(event, body)
	if err != nil || len(changes) > 0 {
		return Event{Changes: changes}, err
	}
	switch event {
	case "Push Hook", "Tag Push Hook":
		var p gitlabPush
		if err := json.Unmarshal(body, &p); err != nil {
			return Event{}, fmt.Errorf("invalid JSON: %w", err)
		}
		tag, isTag := strings.CutPrefix(p.Ref, "refs/tags/")
		switch {
		case isTag && tag != "" && zeroSHA(p.After):
			return Event{
				Ignored:     fmt.Sprintf("tag %q deleted: a tag created again under that name is built again", tag),
				DeletedTags: []string{TagKey(p.repoURL(), tag)},
			}, nil
		case zeroSHA(p.After):
			return Event{Ignored: fmt.Sprintf("%q deleted", p.Ref)}, nil
		}
		return Event{Ignored: fmt.Sprintf("push to %q without commits, or to neither a branch nor a tag", p.Ref)}, nil
	case "Merge Request Hook":
		return Event{Ignored: "merge request closed, merged, or changed without new code"}, nil
	case "Note Hook":
		return Event{Ignored: "comment on something other than a merge request"}, nil
	}
	return Event{Ignored: fmt.Sprintf("GitLab's %q events start no build (Push Hook, Tag Push Hook, Merge Request Hook and Note Hook do)", event)}, nil
}

// ParseGitLab turns the JSON payload of a GitLab webhook event (the value
// of X-Gitlab-Event, and the body) into changes: "Push Hook", "Tag Push
// Hook", "Merge Request Hook" and "Note Hook" (a comment on a merge
// request: a change of category "note", as in Buildbot, so that a
// scheduler can rebuild on request). Other events give no change and no
// error. As ParseGitHub, only changes for created tags have a DedupKey.
func ParseGitLab(event string, body []byte) ([]ci.Change, error) {
	switch event {
	case "Push Hook", "Tag Push Hook":
		var p gitlabPush
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		return gitlabPushChanges(event, &p)
	case "Merge Request Hook":
		var p gitlabMergeRequest
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		return gitlabMergeRequestChanges(&p)
	case "Note Hook":
		var p gitlabNote
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		return gitlabNoteChanges(&p)
	}
	return nil, nil
}

func gitlabPushChanges(event string, p *gitlabPush) ([]ci.Change, error) {
	repo := p.repoURL()
	if repo == "" {
		return nil, fmt.Errorf("%s without project.git_http_url or repository.git_http_url or repository.url", event)
	}
	project := p.Project.PathWithNamespace
	var branch string
	isTag := false
	switch {
	case strings.HasPrefix(p.Ref, "refs/heads/"):
		branch = strings.TrimPrefix(p.Ref, "refs/heads/")
	case strings.HasPrefix(p.Ref, "refs/tags/"):
		branch = strings.TrimPrefix(p.Ref, "refs/tags/")
		isTag = true
	default:
		return nil, nil
	}
	if branch == "" || zeroSHA(p.After) {
		return nil, nil // deleted
	}
	author := p.UserUsername
	if author == "" {
		author = p.UserName
	}
	if isTag {
		if zeroSHA(p.Before) {
			c := ci.Change{
				Author: author, Comments: "Tag " + branch + " created",
				Branch: branch, Revision: branch, Category: CategoryNewTag,
				Repository: repo, Project: project,
			}
			if p.Project.WebURL != "" {
				c.RevLink = p.Project.WebURL + "/-/tree/" + url.PathEscape(branch)
			}
			c.DedupKey = TagKey(repo, branch)
			return []ci.Change{c}, nil
		}
		return []ci.Change{{
			Author: author, Comments: "Tag " + branch + " moved",
			Branch: branch, Revision: p.After, Category: CategoryTag,
			Repository: repo, Project: project,
			Properties: map[string]any{"event": "tag_push"},
		}}, nil
	}
	var changes []ci.Change
	for _, c := range p.Commits {
		var files []string
		files = append(files, c.Added...)
		files = append(files, c.Modified...)
		files = append(files, c.Removed...)
		changes = append(changes, ci.Change{
			Author:     person(c.Author.Name, c.Author.Email),
			Comments:   c.Message,
			Branch:     branch,
			Revision:   c.ID,
			RevLink:    c.URL,
			When:       parseTime(c.Timestamp),
			Category:   CategoryPush,
			Repository: repo,
			Project:    project,
			Files:      files,
			Properties: map[string]any{"event": "push"},
		})
	}
	if len(changes) == 0 {
		// A branch pushed without new commits: build its head.
		changes = append(changes, ci.Change{
			Author: author, Comments: "Branch " + branch + " pushed",
			Branch: branch, Revision: p.After, Category: CategoryPush,
			Repository: repo, Project: project,
			Properties: map[string]any{"event": "push"},
		})
	}
	return changes, nil
}

func gitlabMergeRequestChanges(p *gitlabMergeRequest) ([]ci.Change, error) {
	a := &p.ObjectAttributes
	switch a.State {
	case "closed", "merged":
		return nil, nil
	}
	switch {
	case a.Action == "open", a.Action == "reopen":
	case a.Action == "update" && a.OldRev != nil:
		// An update that pushed code; other updates change only text.
	default:
		return nil, nil
	}
	c, err := gitlabMergeRequestChange(a, &p.Project)
	if err != nil {
		return nil, err
	}
	return []ci.Change{c}, nil
}

// gitlabNoteChanges makes a change of the merge request commented on.
func gitlabNoteChanges(p *gitlabNote) ([]ci.Change, error) {
	if p.ObjectAttributes.NoteableType != "MergeRequest" || p.MergeRequest == nil {
		return nil, nil
	}
	c, err := gitlabMergeRequestChange(p.MergeRequest, &p.Project)
	if err != nil {
		return nil, fmt.Errorf("note on a %w", err)
	}
	c.Category = CategoryNote
	c.Properties["event"] = "note"
	c.Properties["comments"] = p.ObjectAttributes.Note
	return []ci.Change{c}, nil
}

// gitlabMergeRequestChange is the change of a merge request's last
// commit, in the project that receives it.
func gitlabMergeRequestChange(a *gitlabMergeRequestAttributes, project *gitlabProject) (ci.Change, error) {
	repo := a.Target.GitHTTPURL
	if repo == "" {
		repo = project.GitHTTPURL
	}
	if repo == "" || a.IID == 0 || a.LastCommit.ID == "" {
		return ci.Change{}, errors.New("merge request without target.git_http_url, iid or last_commit.id")
	}
	name := a.Target.PathWithNamespace
	if name == "" {
		name = project.PathWithNamespace
	}
	return ci.Change{
		Author:   person(a.LastCommit.Author.Name, a.LastCommit.Author.Email),
		Comments: fmt.Sprintf("MR#%d: %s\n\n%s", a.IID, a.Title, a.Description),
		// The merge request's head, fetchable from the target repository
		// even when it comes from a fork.
		Branch:     fmt.Sprintf("refs/merge-requests/%d/head", a.IID),
		Revision:   a.LastCommit.ID,
		RevLink:    a.URL,
		When:       parseTime(a.LastCommit.Timestamp),
		Category:   CategoryMergeRequest,
		Repository: repo,
		Project:    name,
		Properties: map[string]any{
			"event":              "merge_request",
			"source_branch":      a.SourceBranch,
			"target_branch":      a.TargetBranch,
			"source_repository":  a.Source.GitHTTPURL,
			"target_repository":  a.Target.GitHTTPURL,
			"source_git_ssh_url": a.Source.GitSSHURL,
			"target_git_ssh_url": a.Target.GitSSHURL,
			"source_project_id":  float64(a.SourceProjectID),
			"target_project_id":  float64(a.TargetProjectID),
			"merge_request_iid":  float64(a.IID),
		},
	}, nil
}

// gitlabSkip drops the changes of a branch push whose head commit, or of
// a merge request whose last commit, asks in its message to be skipped.
func gitlabSkip(event string, body []byte, ev Event, skips skipper) Event {
	var msg, what string
	switch event {
	case "Push Hook":
		var p gitlabPush
		if json.Unmarshal(body, &p) != nil || !strings.HasPrefix(p.Ref, "refs/heads/") || len(p.Commits) == 0 {
			return ev
		}
		// GitLab lists the commits oldest first; the head is the one
		// pushed last, or the one checked out.
		head := p.Commits[len(p.Commits)-1]
		for _, c := range p.Commits {
			if p.CheckoutSHA != nil && c.ID == *p.CheckoutSHA {
				head = c
			}
		}
		msg, what = head.Message, fmt.Sprintf("push to %q", strings.TrimPrefix(p.Ref, "refs/heads/"))
	case "Merge Request Hook":
		var p gitlabMergeRequest
		if json.Unmarshal(body, &p) != nil {
			return ev
		}
		msg, what = p.ObjectAttributes.LastCommit.Message, fmt.Sprintf("merge request !%d", p.ObjectAttributes.IID)
	default:
		return ev
	}
	if m := skips.match(msg); m != "" {
		return Event{Ignored: fmt.Sprintf("%s skipped: its head commit's message says %s", what, m)}
	}
	return ev
}

// parseTime reads a forge's timestamp (RFC 3339); the zero time if it
// cannot, so that the master uses the time of arrival.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}
