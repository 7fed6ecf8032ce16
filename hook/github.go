package hook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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
	// Skips are regular expressions: a branch push whose head commit's
	// message matches one gives no change, nor does a pull request whose
	// head commit's does (read through GitHub's API: only with Token).
	// Nil means DefaultSkips; an empty list, none. Tags are built
	// whatever their commit says.
	Skips []string
	// PayloadProperties selects fields of the payload given to every
	// change as properties named "github." and the field's path, dots
	// between the keys ("github.repository.name"): Buildbot's
	// github_property_whitelist. The patterns are path.Match's, where "*"
	// matches dots too. For a pull request, the fields are those of the
	// payload's pull_request object ("github.head.ref"), as in Buildbot.
	PayloadProperties []string
	// Token is a GitHub API token (from a secret). With one, the changes
	// of a pull request list the files it touches, and its head commit's
	// message is checked for Skips. Without one, the hook never calls
	// GitHub.
	Token string
	// APIURL is the base URL of GitHub's REST API, for GitHub Enterprise
	// ("https://github.example.org/api/v3/"); GitHub's own if empty.
	APIURL string
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
	if _, err := newSkipper(h.Skips); err != nil {
		errs = append(errs, err)
	}
	if err := checkPatterns(h.PayloadProperties); err != nil {
		errs = append(errs, err)
	}
	if h.APIURL != "" {
		if _, err := newGitHubAPI(h.Token, h.APIURL); err != nil {
			errs = append(errs, err)
		}
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
	skips, _ := newSkipper(h.Skips) // checked by Validate
	var api *githubAPI
	if h.Token != "" {
		api, _ = newGitHubAPI(h.Token, h.APIURL)
	}
	props := h.PayloadProperties
	log := m.Logger().With("hook", h.Dialect())
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
		ev, e, err := parseGitHubEvent(event, payload)
		if err != nil {
			return nil, badRequest("%v", err)
		}
		if len(ev.Changes) > 0 {
			ev = githubSkip(event, e, ev, skips)
		}
		if len(ev.Changes) > 0 && event == "pull_request" && api != nil {
			ev = api.pullRequest(r.Context(), log, e, ev, skips)
		}
		if len(ev.Changes) > 0 && len(props) > 0 {
			object := json.RawMessage(payload)
			if event == "pull_request" {
				object = e.PullRequest.raw
			}
			extra, err := payloadProperties("github", object, props)
			if err != nil {
				return nil, badRequest("%v", err)
			}
			for i := range ev.Changes {
				ev.Changes[i].Properties = withProperties(ev.Changes[i].Properties, extra)
			}
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
	ev, _, err := parseGitHubEvent(event, body)
	return ev, err
}

// parseGitHubEvent is ParseGitHubEvent, with the payload as read.
func parseGitHubEvent(event string, body []byte) (Event, *ghEvent, error) {
	switch event {
	case "push", "create", "delete", "pull_request", "ping":
	default:
		return Event{Ignored: fmt.Sprintf("GitHub's %q events start no build (push, create, delete and pull_request do)", event)}, nil, nil
	}
	var e ghEvent
	if err := json.Unmarshal(body, &e); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return Event{}, nil, fmt.Errorf("invalid %s payload: %s is a JSON %s, which the hook cannot read as %s", event, te.Field, te.Value, te.Type)
		}
		return Event{}, nil, fmt.Errorf("invalid %s payload: %w", event, err)
	}
	var ev Event
	var err error
	switch event {
	case "push":
		ev, err = githubPush(&e)
	case "create":
		ev, err = githubCreate(&e)
	case "delete":
		ev, err = githubDelete(&e)
	case "pull_request":
		ev, err = githubPullRequest(&e)
	default:
		ev = Event{Ignored: "ping: the hook is set up"}
	}
	return ev, &e, err
}

// githubSkip drops the changes of a branch push whose head commit asks,
// in its message, to be skipped.
func githubSkip(event string, e *ghEvent, ev Event, skips skipper) Event {
	if event != "push" || !strings.HasPrefix(e.Ref, "refs/heads/") {
		return ev
	}
	head := e.HeadCommit
	if head == nil && len(e.Commits) > 0 {
		head = e.Commits[len(e.Commits)-1]
	}
	if head == nil {
		return ev
	}
	if m := skips.match(head.Message); m != "" {
		return Event{Ignored: fmt.Sprintf("push to %q skipped: its head commit's message says %s", strings.TrimPrefix(e.Ref, "refs/heads/"), m)}
	}
	return ev
}

// withProperties returns props with extra added (a new map).
func withProperties(props, extra map[string]any) map[string]any {
	out := make(map[string]any, len(props)+len(extra))
	for k, v := range props {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// githubNewTag is the change for a tag created in a repository, the same
// whether GitHub told of it with a create or a push event, so that the
// first one to arrive is stored and the other recognised (TagKey).
func githubNewTag(repo *ghRepository, tag, sender string) ci.Change {
	c := ci.Change{
		Author:     sender,
		Comments:   "Tag " + tag + " created",
		Branch:     tag,
		Revision:   tag,
		Category:   CategoryNewTag,
		Repository: repo.cloneURL(),
		Project:    repo.FullName,
	}
	if u := repo.HTMLURL; u != "" {
		c.RevLink = u + "/tree/" + url.PathEscape(tag)
	}
	c.DedupKey = TagKey(c.Repository, tag)
	return c
}

func githubCreate(e *ghEvent) (Event, error) {
	if e.RefType != "tag" {
		return Event{Ignored: fmt.Sprintf("%s %q created: only a tag's creation gives a change (a branch's commits come with push events)", e.RefType, e.Ref)}, nil
	}
	if e.Ref == "" {
		return Event{}, errors.New("create event without ref")
	}
	if e.Repository.cloneURL() == "" {
		return Event{}, errors.New("create event without repository.clone_url or repository.html_url")
	}
	// The create event names the tag without its refs/tags/ prefix.
	tag := strings.TrimPrefix(e.Ref, "refs/tags/")
	return Event{Changes: []ci.Change{githubNewTag(&e.Repository, tag, e.Sender.Login)}}, nil
}

// githubDelete records the deletion of a tag, so that a tag created again
// under its name is built again.
func githubDelete(e *ghEvent) (Event, error) {
	ref := strings.TrimPrefix(e.Ref, "refs/tags/")
	if e.RefType != "tag" || ref == "" || e.Repository.cloneURL() == "" {
		return Event{Ignored: fmt.Sprintf("%s %q deleted", e.RefType, e.Ref)}, nil
	}
	return Event{
		Ignored:     fmt.Sprintf("tag %q deleted: a tag created again under that name is built again", ref),
		DeletedTags: []string{TagKey(e.Repository.cloneURL(), ref)},
	}, nil
}

func githubPush(e *ghEvent) (Event, error) {
	changes, deleted, why, err := githubPushChanges(e)
	ev := Event{Changes: changes, Ignored: why}
	if deleted != "" {
		ev.DeletedTags = []string{deleted}
	}
	return ev, err
}

func githubPushChanges(e *ghEvent) (changes []ci.Change, deletedTag, ignored string, err error) {
	repo := &e.Repository
	if repo.cloneURL() == "" {
		return nil, "", "", errors.New("push event without repository.clone_url or repository.html_url")
	}
	ref := e.Ref
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
	if e.Deleted {
		if isTag {
			return nil, TagKey(repo.cloneURL(), branch), fmt.Sprintf("tag %q deleted: a tag created again under that name is built again", branch), nil
		}
		return nil, "", fmt.Sprintf("branch %q deleted", branch), nil
	}
	if isTag && e.Created {
		return []ci.Change{githubNewTag(repo, branch, e.Sender.Login)}, "", "", nil
	}
	commits := e.Commits
	if isTag || e.Created || len(commits) == 0 {
		// A moved tag or a new branch: build its head, not the commits
		// that led there.
		commits = nil
		if e.HeadCommit != nil && e.HeadCommit.id() != "" {
			commits = []*ghCommit{e.HeadCommit}
		}
	}
	category := ""
	if isTag {
		category = CategoryTag
	}
	for _, hc := range commits {
		if hc == nil || hc.id() == "" {
			continue
		}
		var files []string
		files = append(files, hc.Added...)
		files = append(files, hc.Modified...)
		files = append(files, hc.Removed...)
		changes = append(changes, ci.Change{
			Author:     person(hc.Author.Name, hc.Author.Email),
			Committer:  person(hc.Committer.Name, hc.Committer.Email),
			Comments:   hc.Message,
			Branch:     branch,
			Revision:   hc.id(),
			RevLink:    hc.URL,
			When:       utc(hc.Timestamp.Time),
			Category:   category,
			Repository: repo.cloneURL(),
			Project:    repo.FullName,
			Files:      files,
			Properties: map[string]any{"event": "push", "github_distinct": hc.Distinct == nil || *hc.Distinct},
		})
	}
	if len(changes) == 0 && isTag && e.After != "" {
		changes = append(changes, ci.Change{
			Author: e.Sender.Login, Comments: "Tag " + branch + " moved",
			Branch: branch, Revision: e.After, Category: CategoryTag,
			Repository: repo.cloneURL(), Project: repo.FullName,
			Properties: map[string]any{"event": "push"},
		})
	}
	if len(changes) == 0 {
		return nil, "", fmt.Sprintf("push to %q without commits", branch), nil
	}
	return changes, "", "", nil
}

func githubPullRequest(e *ghEvent) (Event, error) {
	switch e.Action {
	case "opened", "synchronize", "reopened":
	default:
		return Event{Ignored: fmt.Sprintf("pull request %s: only opened, reopened and synchronize give changes", e.Action)}, nil
	}
	pr := e.PullRequest
	if pr == nil {
		return Event{}, errors.New("pull_request event without pull_request")
	}
	number := e.Number
	if number == 0 {
		number = pr.Number
	}
	sha := pr.Head.SHA
	if number == 0 || sha == "" {
		return Event{}, errors.New("pull_request event without number or head sha")
	}
	repo := &e.Repository
	if repo.cloneURL() == "" {
		repo = pr.Base.Repo
	}
	if repo.cloneURL() == "" {
		return Event{}, errors.New("pull_request event without repository.clone_url or repository.html_url")
	}
	plural := "s"
	if pr.Commits == 1 {
		plural = ""
	}
	when := pr.UpdatedAt.Time
	if when.IsZero() {
		when = pr.CreatedAt.Time
	}
	return Event{Changes: []ci.Change{{
		Author:   e.Sender.Login,
		Comments: fmt.Sprintf("GitHub Pull Request #%d (%d commit%s)\n%s\n%s", number, pr.Commits, plural, pr.Title, pr.Body),
		// The head of the pull request, fetchable from the base repository
		// even when it comes from a fork.
		Branch:     fmt.Sprintf("refs/pull/%d/head", number),
		Revision:   sha,
		RevLink:    pr.HTMLURL,
		When:       utc(when),
		Category:   CategoryPull,
		Repository: repo.cloneURL(),
		Project:    repo.FullName,
		Properties: map[string]any{
			"event":          "pull_request",
			"pullrequesturl": pr.HTMLURL,
			"basename":       pr.Base.Ref,
			"headname":       pr.Head.Ref,
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
