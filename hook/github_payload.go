package hook

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The parts of GitHub's payloads the hook reads. They are read into these
// types, not go-github's, so that a field the hook never reads cannot cost
// a delivery: go-github types every field, and a payload with, say,
// "private": 1 fails whole. A field the hook reads, of the wrong type, is
// refused, named by the decoder's message.
type (
	ghRepository struct {
		CloneURL string `json:"clone_url"`
		HTMLURL  string `json:"html_url"`
		FullName string `json:"full_name"`
	}
	ghUser struct {
		Login string `json:"login"`
	}
	ghPerson struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	ghCommit struct {
		ID        string   `json:"id"`
		SHA       string   `json:"sha"` // older payloads' name for ID
		Message   string   `json:"message"`
		Timestamp ghTime   `json:"timestamp"`
		URL       string   `json:"url"`
		Author    ghPerson `json:"author"`
		Committer ghPerson `json:"committer"`
		Added     []string `json:"added"`
		Modified  []string `json:"modified"`
		Removed   []string `json:"removed"`
		Distinct  *bool    `json:"distinct"`
	}
	ghRef struct {
		Ref  string        `json:"ref"`
		SHA  string        `json:"sha"`
		Repo *ghRepository `json:"repo"`
	}
	ghPullRequest struct {
		Number    int    `json:"number"`
		Title     string `json:"title"`
		Body      string `json:"body"`
		HTMLURL   string `json:"html_url"`
		Commits   int    `json:"commits"`
		CreatedAt ghTime `json:"created_at"`
		UpdatedAt ghTime `json:"updated_at"`
		Head      ghRef  `json:"head"`
		Base      ghRef  `json:"base"`
		// raw is the object as sent: payload properties come from it.
		raw json.RawMessage
	}
	// ghEvent holds the fields of every event the hook reads; each event
	// has some of them.
	ghEvent struct {
		Ref         string         `json:"ref"`
		RefType     string         `json:"ref_type"`
		Created     bool           `json:"created"`
		Deleted     bool           `json:"deleted"`
		After       string         `json:"after"`
		Commits     []*ghCommit    `json:"commits"`
		HeadCommit  *ghCommit      `json:"head_commit"`
		Repository  ghRepository   `json:"repository"`
		Sender      ghUser         `json:"sender"`
		Action      string         `json:"action"`
		Number      int            `json:"number"`
		PullRequest *ghPullRequest `json:"pull_request"`
	}
)

// id is the commit's ID, whichever name the payload gives it.
func (c *ghCommit) id() string {
	if c.ID != "" {
		return c.ID
	}
	return c.SHA
}

// cloneURL is the URL the changes name the repository by: its clone URL,
// or, in a payload without one, its page's URL, which Buildbot uses.
func (r *ghRepository) cloneURL() string {
	if r == nil {
		return ""
	}
	if r.CloneURL != "" {
		return r.CloneURL
	}
	return r.HTMLURL
}

// ghTime is a time in a GitHub payload: RFC 3339 text, or seconds since
// the epoch (the push event's repository has both kinds).
type ghTime struct{ time.Time }

func (t *ghTime) UnmarshalJSON(b []byte) error {
	s := string(b)
	switch {
	case s == "null" || s == `""`:
		return nil
	case strings.HasPrefix(s, `"`):
		var text string
		if err := json.Unmarshal(b, &text); err != nil {
			return err
		}
		v, err := time.Parse(time.RFC3339, text)
		if err != nil {
			return fmt.Errorf("time %q: %w", text, err)
		}
		t.Time = v
	default:
		var sec int64
		if err := json.Unmarshal(b, &sec); err != nil {
			return fmt.Errorf("time %s: neither RFC 3339 text nor seconds", s)
		}
		t.Time = time.Unix(sec, 0)
	}
	return nil
}

// UnmarshalJSON reads a pull request and keeps its text, read once.
func (p *ghPullRequest) UnmarshalJSON(b []byte) error {
	type fields ghPullRequest // without this method
	if err := json.Unmarshal(b, (*fields)(p)); err != nil {
		return err
	}
	p.raw = append(json.RawMessage(nil), b...)
	return nil
}
