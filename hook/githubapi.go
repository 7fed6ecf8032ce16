package hook

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"
)

// githubAPIFiles bounds the files listed for a pull request: GitHub's API
// lists 3,000 at most, 100 per page.
const githubAPIFiles = 3000

// githubAPITimeout bounds the API calls made for one delivery: GitHub
// waits 10 s for an answer.
const githubAPITimeout = 8 * time.Second

// githubAPI reads what a pull request's payload does not say: its files
// and its head commit's message.
type githubAPI struct {
	client *github.Client
}

func newGitHubAPI(token, base string) (*githubAPI, error) {
	c := github.NewClient(&http.Client{Timeout: githubAPITimeout})
	if token != "" {
		c = c.WithAuthToken(token)
	}
	if base != "" {
		if !strings.HasSuffix(base, "/") {
			base += "/"
		}
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("APIURL %q is not an http(s) URL", base)
		}
		c.BaseURL = u
	}
	return &githubAPI{client: c}, nil
}

// pullRequest completes the change of a pull request with its files, and
// drops it if its head commit's message asks to be skipped. When GitHub
// cannot be read, the change is kept as the payload gives it, and the
// problem logged: a build without its file list is better than none.
func (a *githubAPI) pullRequest(ctx context.Context, log *slog.Logger, e *ghEvent, ev Event, skips skipper) Event {
	ctx, cancel := context.WithTimeout(ctx, githubAPITimeout)
	defer cancel()
	owner, repo, ok := strings.Cut(ev.Changes[0].Project, "/")
	if !ok {
		return ev
	}
	number := e.Number
	if number == 0 {
		number = e.PullRequest.Number
	}
	sha := e.PullRequest.Head.SHA
	commit, _, err := a.client.Repositories.GetCommit(ctx, owner, repo, sha, nil)
	if err != nil {
		log.Warn("could not read a pull request's head commit", "pull", number, "commit", sha, "err", err)
	} else if m := skips.match(commit.GetCommit().GetMessage()); m != "" {
		return Event{Ignored: fmt.Sprintf("pull request #%d skipped: its head commit's message says %s", number, m)}
	}
	var files []string
	opts := &github.ListOptions{PerPage: 100}
	for len(files) < githubAPIFiles {
		page, res, err := a.client.PullRequests.ListFiles(ctx, owner, repo, number, opts)
		if err != nil {
			log.Warn("could not list a pull request's files", "pull", number, "err", err)
			return ev
		}
		for _, f := range page {
			files = append(files, f.GetFilename())
		}
		if res.NextPage == 0 {
			break
		}
		opts.Page = res.NextPage
	}
	for i := range ev.Changes {
		ev.Changes[i].Files = files
	}
	return ev
}
