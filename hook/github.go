package hook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/kilnci/kiln/ci"
)

// GitHub headers.
const (
	githubEventHeader     = "X-GitHub-Event"
	githubDeliveryHeader  = "X-GitHub-Delivery"
	githubSignatureHeader = "X-Hub-Signature-256"
	githubSHA1Header      = "X-Hub-Signature"
)

// GitHub is the change hook for GitHub's webhooks (dialect "github"),
// Buildbot's github hook with tag creation handled as Buildbot's
// GithubCreateEventHandler did. Configure the webhook on GitHub with the
// URL <public URL>/change_hook/github, content type application/json (or
// form), the same secret as Secret, and the events push, create and pull
// requests as needed. The zero value is not valid: Secret is required.
type GitHub struct {
	// Secret is the webhook's secret, as entered in GitHub's settings.
	// Every request must carry X-Hub-Signature-256, the HMAC-SHA256 of its
	// body under Secret, or it is refused with 403. An empty Secret is a
	// configuration error (see Validate).
	Secret string
	// Strict is Buildbot's option of that name: refuse requests that carry
	// no signature. Kiln's GitHub hook always does, since it always has a
	// secret; the field is kept so that Buildbot configurations translate
	// field for field.
	Strict bool
	// Codebase is given to every change (Buildbot's codebase option).
	Codebase string
	// MaxBodyBytes bounds the request body; DefaultMaxBodyBytes if zero.
	MaxBodyBytes int64
}

var _ ci.ChangeHook = (*GitHub)(nil)

// Dialect implements ci.ChangeHook.
func (h *GitHub) Dialect() string { return "github" }

// Validate reports configuration errors; the master calls it when it
// starts. go-github's ValidatePayload accepts anything when the secret is
// empty, so an empty Secret — one missing from the environment, say —
// would open the hook to anyone: it is refused here.
func (h *GitHub) Validate() error {
	var errs []error
	if h.Secret == "" {
		errs = append(errs, errors.New("Secret is empty: set the webhook's secret (GitHub signs every delivery with it)"))
	}
	if h.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxBodyBytes is negative (%d)", h.MaxBodyBytes))
	}
	return errors.Join(errs...)
}

// Handler implements ci.ChangeHook. It answers 200 once every change of
// the delivery is stored (or was already), 403 when the signature is
// missing or wrong, 400 for a body it cannot read, 413 for a body larger
// than MaxBodyBytes, and 503 when a change cannot be stored, so that the
// delivery is retried.
func (h *GitHub) Handler(m *ci.Master) http.Handler {
	secret := []byte(h.Secret)
	codebase := h.Codebase
	authenticate := func(r *http.Request, body io.Reader) error {
		if len(secret) == 0 {
			return forbidden("the hook has no secret configured")
		}
		return checkGitHubSignature(secret, r.Header, body)
	}
	return newEndpoint(m, h.Dialect(), h.MaxBodyBytes, authenticate, func(r *http.Request, body []byte) (*delivery, error) {
		event := r.Header.Get(githubEventHeader)
		if event == "" {
			return nil, badRequest("no %s header", githubEventHeader)
		}
		payload, err := githubPayload(r.Header.Get("Content-Type"), body)
		if err != nil {
			return nil, err
		}
		ev, err := ParseGitHubEvent(event, payload)
		if err != nil {
			return nil, badRequest("%v", err)
		}
		for i := range ev.Changes {
			if ev.Changes[i].Codebase == "" {
				ev.Changes[i].Codebase = codebase
			}
		}
		return &delivery{event: event, id: r.Header.Get(githubDeliveryHeader), Event: ev}, nil
	})
}

// checkGitHubSignature checks X-Hub-Signature-256 against the body, read
// as it streams; a request without a well-formed signature is refused
// before its body is read. Only SHA-256 is accepted: the SHA-1 header
// GitHub also sends is ignored, and a request that has only that one is
// refused.
func checkGitHubSignature(secret []byte, h http.Header, body io.Reader) error {
	sig := h.Get(githubSignatureHeader)
	if sig == "" {
		if h.Get(githubSHA1Header) != "" {
			return forbidden("only a SHA-1 signature (%s); a SHA-256 one (%s) is required", githubSHA1Header, githubSignatureHeader)
		}
		return forbidden("no signature (%s)", githubSignatureHeader)
	}
	algo, digest, ok := strings.Cut(sig, "=")
	if !ok || algo != "sha256" {
		return forbidden("the signature is not of the form sha256=<hex>")
	}
	got, err := hex.DecodeString(digest)
	if err != nil || len(got) != sha256.Size {
		return forbidden("the signature is not a hexadecimal SHA-256 digest")
	}
	mac := hmac.New(sha256.New, secret)
	if _, err := io.Copy(mac, body); err != nil {
		return err
	}
	if !hmac.Equal(got, mac.Sum(nil)) {
		return forbidden("the signature does not match the body")
	}
	return nil
}

// githubPayload returns the JSON document of a delivery: the body itself
// (application/json) or its payload field (application/x-www-form-urlencoded).
func githubPayload(contentType string, body []byte) ([]byte, error) {
	switch t := mediaType(contentType); t {
	case "application/json":
		return body, nil
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, badRequest("invalid form: %v", err)
		}
		p := form.Get("payload")
		if p == "" {
			return nil, badRequest("the form has no payload field")
		}
		return []byte(p), nil
	default:
		return nil, badRequest("unsupported content type %q (want application/json or application/x-www-form-urlencoded)", contentType)
	}
}

// ParseGitHub turns the JSON payload of a GitHub webhook event (the value
// of X-GitHub-Event, and the body) into changes. Events that start no
// build give none and no error: ping, create of a branch, deletions,
// closed pull requests, and every event type not listed in the package
// documentation. The changes have no DedupKey except those for created
// tags (TagKey); the handler keys the others by delivery. ParseGitHubEvent
// says also why an event gives no change, and which tags it deleted.
func ParseGitHub(event string, body []byte) ([]ci.Change, error) {
	e, err := ParseGitHubEvent(event, body)
	return e.Changes, err
}

// ParseGitHubEvent is ParseGitHub, with the reason an event gives no
// change and the tags it deleted.
func ParseGitHubEvent(event string, body []byte) (Event, error) {
	switch event {
	case "push", "create", "delete", "pull_request", "ping":
	default:
		return Event{Ignored: fmt.Sprintf("GitHub's %q events start no build (push, create, delete and pull_request do)", event)}, nil
	}
	v, err := github.ParseWebHook(event, body)
	if err != nil {
		return Event{}, fmt.Errorf("invalid %s payload: %w", event, err)
	}
	switch e := v.(type) {
	case *github.PushEvent:
		return githubPush(e)
	case *github.CreateEvent:
		return githubCreate(e)
	case *github.DeleteEvent:
		return githubDelete(e)
	case *github.PullRequestEvent:
		return githubPullRequest(e)
	}
	return Event{Ignored: "ping: the hook is set up"}, nil
}

// githubNewTag is the change for a tag created in a repository, the same
// whether GitHub told of it with a create or a push event, so that the
// first one to arrive is stored and the other recognised (TagKey).
func githubNewTag(repo *github.Repository, tag, sender string) ci.Change {
	c := ci.Change{
		Author:     sender,
		Comments:   "Tag " + tag + " created",
		Branch:     tag,
		Revision:   tag,
		Category:   CategoryNewTag,
		Repository: repo.GetCloneURL(),
		Project:    repo.GetFullName(),
	}
	if u := repo.GetHTMLURL(); u != "" {
		c.RevLink = u + "/tree/" + url.PathEscape(tag)
	}
	c.DedupKey = TagKey(c.Repository, tag)
	return c
}

func githubCreate(e *github.CreateEvent) (Event, error) {
	if e.GetRefType() != "tag" {
		return Event{Ignored: fmt.Sprintf("%s %q created: only a tag's creation gives a change (a branch's commits come with push events)", e.GetRefType(), e.GetRef())}, nil
	}
	if e.GetRef() == "" {
		return Event{}, errors.New("create event without ref")
	}
	if e.GetRepo().GetCloneURL() == "" {
		return Event{}, errors.New("create event without repository.clone_url")
	}
	// The create event names the tag without its refs/tags/ prefix.
	tag := strings.TrimPrefix(e.GetRef(), "refs/tags/")
	return Event{Changes: []ci.Change{githubNewTag(e.GetRepo(), tag, e.GetSender().GetLogin())}}, nil
}

// githubDelete records the deletion of a tag, so that a tag created again
// under its name is built again.
func githubDelete(e *github.DeleteEvent) (Event, error) {
	ref := strings.TrimPrefix(e.GetRef(), "refs/tags/")
	if e.GetRefType() != "tag" || ref == "" || e.GetRepo().GetCloneURL() == "" {
		return Event{Ignored: fmt.Sprintf("%s %q deleted", e.GetRefType(), e.GetRef())}, nil
	}
	return Event{
		Ignored:     fmt.Sprintf("tag %q deleted: a tag created again under that name is built again", ref),
		DeletedTags: []string{TagKey(e.GetRepo().GetCloneURL(), ref)},
	}, nil
}

func githubPush(e *github.PushEvent) (Event, error) {
	changes, deleted, why, err := githubPushChanges(e)
	ev := Event{Changes: changes, Ignored: why}
	if deleted != "" {
		ev.DeletedTags = []string{deleted}
	}
	return ev, err
}

func githubPushChanges(e *github.PushEvent) (changes []ci.Change, deletedTag, ignored string, err error) {
	repo := e.GetRepo()
	if repo.GetCloneURL() == "" {
		return nil, "", "", errors.New("push event without repository.clone_url")
	}
	ref := e.GetRef()
	var branch string
	isTag := false
	switch {
	case strings.HasPrefix(ref, "refs/heads/"):
		branch = strings.TrimPrefix(ref, "refs/heads/")
	case strings.HasPrefix(ref, "refs/tags/"):
		branch = strings.TrimPrefix(ref, "refs/tags/")
		isTag = true
	default:
		return nil, "", fmt.Sprintf("push to %q, neither a branch nor a tag", ref), nil // notes, other refs
	}
	if branch == "" {
		return nil, "", fmt.Sprintf("push to %q, without a name", ref), nil
	}
	if e.GetDeleted() {
		if isTag {
			return nil, TagKey(repo.GetCloneURL(), branch), fmt.Sprintf("tag %q deleted: a tag created again under that name is built again", branch), nil
		}
		return nil, "", fmt.Sprintf("branch %q deleted", branch), nil
	}
	if isTag && e.GetCreated() {
		r := &github.Repository{CloneURL: repo.CloneURL, FullName: repo.FullName, HTMLURL: repo.HTMLURL}
		return []ci.Change{githubNewTag(r, branch, e.GetSender().GetLogin())}, "", "", nil
	}
	commits := e.Commits
	if isTag || e.GetCreated() || len(commits) == 0 {
		// A moved tag or a new branch: build its head, not the commits
		// that led there.
		commits = nil
		if e.HeadCommit != nil {
			commits = []*github.HeadCommit{e.HeadCommit}
		}
	}
	category := ""
	if isTag {
		category = CategoryTag
	}
	for _, hc := range commits {
		if hc == nil {
			continue
		}
		id := hc.GetID()
		if id == "" {
			id = hc.GetSHA()
		}
		var files []string
		files = append(files, hc.Added...)
		files = append(files, hc.Modified...)
		files = append(files, hc.Removed...)
		changes = append(changes, ci.Change{
			Author:     person(hc.GetAuthor().GetName(), hc.GetAuthor().GetEmail()),
			Committer:  person(hc.GetCommitter().GetName(), hc.GetCommitter().GetEmail()),
			Comments:   hc.GetMessage(),
			Branch:     branch,
			Revision:   id,
			RevLink:    hc.GetURL(),
			When:       utc(hc.GetTimestamp().Time),
			Category:   category,
			Repository: repo.GetCloneURL(),
			Project:    repo.GetFullName(),
			Files:      files,
			Properties: map[string]any{"event": "push", "github_distinct": hc.Distinct == nil || *hc.Distinct},
		})
	}
	if len(changes) == 0 && isTag && e.GetAfter() != "" {
		changes = append(changes, ci.Change{
			Author: e.GetSender().GetLogin(), Comments: "Tag " + branch + " moved",
			Branch: branch, Revision: e.GetAfter(), Category: CategoryTag,
			Repository: repo.GetCloneURL(), Project: repo.GetFullName(),
			Properties: map[string]any{"event": "push"},
		})
	}
	if len(changes) == 0 {
		return nil, "", fmt.Sprintf("push to %q without commits", branch), nil
	}
	return changes, "", "", nil
}

func githubPullRequest(e *github.PullRequestEvent) (Event, error) {
	switch e.GetAction() {
	case "opened", "synchronize", "reopened":
	default:
		return Event{Ignored: fmt.Sprintf("pull request %s: only opened, reopened and synchronize give changes", e.GetAction())}, nil
	}
	pr := e.GetPullRequest()
	number := e.GetNumber()
	if number == 0 {
		number = pr.GetNumber()
	}
	sha := pr.GetHead().GetSHA()
	if number == 0 || sha == "" {
		return Event{}, errors.New("pull_request event without number or head sha")
	}
	repo := e.GetRepo()
	if repo.GetCloneURL() == "" {
		repo = pr.GetBase().GetRepo()
	}
	if repo.GetCloneURL() == "" {
		return Event{}, errors.New("pull_request event without repository.clone_url")
	}
	commits := pr.GetCommits()
	plural := "s"
	if commits == 1 {
		plural = ""
	}
	when := pr.GetUpdatedAt().Time
	if when.IsZero() {
		when = pr.GetCreatedAt().Time
	}
	return Event{Changes: []ci.Change{{
		Author:   e.GetSender().GetLogin(),
		Comments: fmt.Sprintf("GitHub Pull Request #%d (%d commit%s)\n%s\n%s", number, commits, plural, pr.GetTitle(), pr.GetBody()),
		// The head of the pull request, fetchable from the base repository
		// even when it comes from a fork.
		Branch:     fmt.Sprintf("refs/pull/%d/head", number),
		Revision:   sha,
		RevLink:    pr.GetHTMLURL(),
		When:       utc(when),
		Category:   CategoryPull,
		Repository: repo.GetCloneURL(),
		Project:    repo.GetFullName(),
		Properties: map[string]any{
			"event":          "pull_request",
			"pullrequesturl": pr.GetHTMLURL(),
			"basename":       pr.GetBase().GetRef(),
			"headname":       pr.GetHead().GetRef(),
			"prnumber":       float64(number),
		},
	}}}, nil
}

// person formats a name and an address as "Name <address>".
func person(name, email string) string {
	switch {
	case email == "":
		return name
	case name == "":
		return "<" + email + ">"
	}
	return name + " <" + email + ">"
}

// utc returns t in UTC, the zero time staying zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}
