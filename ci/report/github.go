package report

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/google/go-github/v60/github"

	"github.com/kilnci/kiln/ci"
)

// DefaultGitHubAPI is GitHub's API, GitHubStatus's default BaseURL.
const DefaultGitHubAPI = "https://api.github.com/"

// GitHubStatus sets a commit status on GitHub for each build, as
// Buildbot's GitHubStatusPush: "pending" when the build starts, then
// "success" (SUCCESS, WARNINGS, SKIPPED), "failure" (FAILURE) or "error"
// (EXCEPTION, CANCELLED; RETRY stays "pending") when it finishes. The
// status links to the build's page and has one context per builder.
//
// The repository comes from each source stamp's repository URL (https,
// ssh or git form) on RepoHost; source stamps of other hosts are skipped.
// The commit is the build's got_revision property, else the source stamp's
// revision; a status needs a full commit ID, so a build of a tag name
// gets its status once its checkout has set got_revision. A failed request
// is returned as an error, and the master tries again.
type GitHubStatus struct {
	// Token is a GitHub token allowed to write statuses (repo:status).
	// Required.
	Token string
	// BaseURL is the API's address: DefaultGitHubAPI if empty;
	// https://HOST/api/v3/ for GitHub Enterprise Server.
	BaseURL string
	// RepoHost is the host of the repositories to report on: github.com
	// with the default BaseURL, else BaseURL's host without "api.".
	RepoHost string
	// Context names the status of a build; "kiln/<builder>" if nil.
	Context func(r *ci.Report) string
	// HTTPClient sends the requests; http.DefaultClient if nil.
	HTTPClient *http.Client

	once   sync.Once
	client *github.Client
	host   string
	err    error
}

var _ ci.Reporter = (*GitHubStatus)(nil)

// Validate reports configuration errors; the master calls it when it
// starts.
func (g *GitHubStatus) Validate() error {
	var errs []error
	if g.Token == "" {
		errs = append(errs, errors.New("Token is empty"))
	}
	if g.BaseURL != "" {
		if u, err := url.Parse(g.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("BaseURL %q is not an http(s) URL", g.BaseURL))
		}
	}
	return errors.Join(errs...)
}

func (g *GitHubStatus) setup() error {
	g.once.Do(func() {
		if err := g.Validate(); err != nil {
			g.err = err
			return
		}
		c := github.NewClient(g.HTTPClient).WithAuthToken(g.Token)
		base := g.BaseURL
		if base == "" {
			base = DefaultGitHubAPI
		}
		if !strings.HasSuffix(base, "/") {
			base += "/"
		}
		u, err := url.Parse(base)
		if err != nil {
			g.err = err
			return
		}
		c.BaseURL = u
		g.client = c
		g.host = g.RepoHost
		if g.host == "" {
			g.host = strings.TrimPrefix(u.Hostname(), "api.")
		}
	})
	return g.err
}

// Report implements ci.Reporter.
func (g *GitHubStatus) Report(ctx context.Context, r *ci.Report) error {
	if err := g.setup(); err != nil {
		return fmt.Errorf("github status: %w", err)
	}
	status := &github.RepoStatus{
		State:       github.String(githubState(r)),
		Description: github.String(truncate(githubDescription(r), 140)),
		Context:     github.String(g.context(r)),
	}
	if r.URL != "" {
		status.TargetURL = github.String(r.URL)
	}
	var errs []error
	for _, ss := range r.SourceStamps {
		host, owner, repo, ok := parseRepoURL(ss.Repository)
		if !ok || !strings.EqualFold(host, g.host) {
			continue
		}
		sha := revisionOf(r, ss)
		if !isCommitID(sha) {
			continue
		}
		if _, _, err := g.client.Repositories.CreateStatus(ctx, owner, repo, sha, status); err != nil {
			errs = append(errs, fmt.Errorf("github status of %s/%s@%.12s: %w", owner, repo, sha, err))
		}
	}
	return errors.Join(errs...)
}

func (g *GitHubStatus) context(r *ci.Report) string {
	if g.Context != nil {
		return g.Context(r)
	}
	return "kiln/" + builderName(r)
}

func githubState(r *ci.Report) string {
	if r.Event != ci.BuildFinished {
		return "pending"
	}
	switch r.Build.Results {
	case ci.Success, ci.Warnings, ci.Skipped:
		return "success"
	case ci.Failure:
		return "failure"
	case ci.Retry:
		return "pending"
	}
	return "error"
}

func githubDescription(r *ci.Report) string {
	if r.Event != ci.BuildFinished {
		return fmt.Sprintf("Build #%d started.", r.Build.Number)
	}
	d := fmt.Sprintf("Build #%d %s", r.Build.Number, describeResult(r.Build.Results))
	if r.Build.Results != ci.Success && r.Build.StateString != "" {
		return d + ": " + oneLine(r.Build.StateString)
	}
	return d + "."
}

// parseRepoURL finds the host, owner and name of a repository in its URL:
// https://host/owner/name.git, ssh://git@host/owner/name,
// git@host:owner/name.git, git://host/owner/name.git.
func parseRepoURL(repo string) (host, owner, name string, ok bool) {
	var path string
	if u, err := url.Parse(repo); err == nil && u.Scheme != "" && u.Host != "" {
		host, path = u.Hostname(), u.Path
	} else if at, rest, found := strings.Cut(repo, "@"); found && !strings.Contains(at, "/") {
		// scp-like syntax: user@host:owner/name
		h, p, found := strings.Cut(rest, ":")
		if !found {
			return "", "", "", false
		}
		host, path = h, p
	} else {
		return "", "", "", false
	}
	path = strings.TrimSuffix(strings.Trim(path, "/"), ".git")
	parts := strings.Split(path, "/")
	if len(parts) < 2 || parts[len(parts)-2] == "" || parts[len(parts)-1] == "" {
		return "", "", "", false
	}
	return host, parts[len(parts)-2], parts[len(parts)-1], true
}
