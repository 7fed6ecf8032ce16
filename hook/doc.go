// Package hook turns the webhooks of forges into changes: the change hooks
// a master serves at /change_hook/<dialect>, Buildbot's paths, so that
// existing webhook settings keep working.
//
//	cfg.ChangeHooks = []ci.ChangeHook{
//		&hook.GitHub{Secret: os.Getenv("GITHUB_WEBHOOK_SECRET")},
//	}
//
// Each dialect is a pure parse function, tested on recorded payloads
// (ParseGitHub, ParseGitLab, ParseBase), behind a thin handler that
// authenticates the request, reads it, parses it and hands the changes to
// Master.AddChange.
//
// # What every hook does
//
//   - Only POST is accepted (405 otherwise).
//   - The body is read through http.MaxBytesReader: a body larger than
//     MaxBodyBytes (DefaultMaxBodyBytes, 25 MiB, GitHub's own cap, if
//     zero) is refused with 413 before it is read whole.
//   - Unauthenticated input costs little: a request whose credentials are
//     headers (GitLab's token, the base hook's bearer token) is refused
//     before its body is read; GitHub's signature is checked as the body
//     streams in, the body held in memory up to 1 MiB and in a temporary
//     file beyond, until it is authenticated. At most MaxConcurrentBodies
//     bodies are read at once (beyond, 503 with Retry-After at once), and
//     a body that has not arrived within BodyTimeout is cut (408). Forty
//     unsigned 25 MiB bodies sent at once grow the heap by under 10 MiB.
//   - The request is authenticated before anything else is done with it,
//     and nothing is stored for a request that is not: 403, with a
//     one-line reason. Secrets never appear in logs or answers.
//   - A body that is not what the dialect expects (content type, JSON,
//     missing fields) is refused with 400 and a one-line reason.
//   - The answer is 2xx only once Master.AddChange has returned nil for
//     every change of the request: the changes, and the buildsets the
//     schedulers made of them, are then on disk. When a change cannot be
//     stored the answer is 503, so that the sender retries.
//   - Events that start no build are answered 200, the answer and a log
//     line saying why ("ok: ignored: ping: the hook is set up").
//   - A delivery sent again (GitHub's X-GitHub-Delivery, GitLab's
//     Idempotency-Key or X-Gitlab-Event-UUID, the base hook's
//     Idempotency-Key) adds no change the second time: each change's
//     ci.Change.DedupKey is "<dialect>:<delivery>:<index>", and the store
//     keeps one change per key.
//
// Names, messages and every other text from the request are stored as
// they come. They are data: Kiln never puts them in a shell string, and
// steps get them as arguments or properties.
//
// # Tags
//
// The creation of a tag gives one change whatever event tells of it, with
// category "new-tag" (CategoryNewTag), branch and revision set to the tag
// name, the author the user who pushed it, the comments "Tag <name>
// created", the repository the clone URL and the project the repository's
// full name. Its DedupKey is TagKey(repository, tag), not the delivery's:
// GitHub tells of a new tag twice, with a create event and a push event,
// each its own delivery, and whichever arrives first is stored while the
// other is recognised, so one tag gives one set of builds. A key derived
// from the payload rather than a rule in a scheduler keeps the guarantee
// for every scheduler, survives restarts (it is in the store), and covers
// redeliveries of either event as well. A tag's deletion (GitHub's delete
// event, or a push that deletes it; GitLab's tag push to the zero
// revision) is counted in the master's state, and the key of a tag's next
// creation carries the count: a tag deleted and created again under the
// same name is a new change, built again.
//
// A push that moves an existing tag gives one change for the new head,
// with category "tag" (CategoryTag) and the commit's revision. Deleted
// branches and tags give none.
//
// # GitHub (dialect "github")
//
// Every request must be signed with the webhook's secret: X-Hub-Signature-256
// is checked here, with HMAC-SHA256 in constant time. The SHA-1
// X-Hub-Signature is never accepted. GitHub.Validate refuses an empty
// Secret, since go-github's ValidatePayload accepts anything with one.
// Bodies are application/json or a form with a payload field. Payloads
// are read into the hook's own types, holding only the fields it reads: a
// surprise elsewhere in a payload (GitHub adds fields, and some change
// type) never refuses a delivery; a field it reads, malformed, is named in
// the 400 answer. Events:
//
//   - ping: no change.
//   - push to a branch: one change per commit (only the head commit for a
//     new branch), branch from the ref, no category (as Buildbot), author
//     and committer "Name <email>", files added, modified and removed,
//     property github_distinct. To a tag: see Tags. A push without
//     commits and without a head commit: no change.
//   - create of a tag: see Tags. Of a branch: no change (its push event
//     gives the changes).
//   - delete of a tag, or a push that deletes one: no change; see Tags.
//   - pull_request opened, synchronize or reopened: one change on the
//     head, category "pull", branch refs/pull/<n>/head (fetchable from the
//     base repository even for a fork), revision the head's sha, properties
//     pullrequesturl, basename, headname and prnumber. Other actions: no
//     change.
//   - anything else: no change.
//
// Repositories are named by their clone URL (https://github.com/o/r.git),
// or their page's URL (Buildbot's name) in a payload without one, and
// projects by their full name (o/r).
//
// As in Buildbot, a branch push whose head commit's message says
// "[ci skip]" or "[skip ci]" gives no change (GitHub.Skips chooses the
// patterns); tags are built whatever their commit says. With an API
// Token, a pull request's head commit is read from GitHub's API and
// checked too, and its change lists the files the pull request touches;
// when the API fails, the change is kept without them. PayloadProperties
// gives selected fields of the payload as github.* properties (Buildbot's
// github_property_whitelist).
//
// # GitLab (dialect "gitlab")
//
// X-Gitlab-Token must equal Secret (compared in constant time); Validate
// refuses an empty Secret. Bodies are application/json. Events, from
// X-Gitlab-Event:
//
//   - Push Hook: one change per commit listed (GitLab lists the newest 20),
//     category "push" (as Buildbot), or one for the head when the push
//     brought no commit.
//   - Tag Push Hook: a created tag (before is all zeros) as in Tags; a moved
//     tag gives a "tag" change; a deleted one nothing.
//   - Merge Request Hook, actions open, reopen, and update with new code
//     (oldrev set): one change on the head, category "merge_request",
//     branch refs/merge-requests/<iid>/head, with Buildbot's properties
//     (source_branch, target_branch, source_repository...).
//   - Note Hook, a comment on a merge request: the same change for its
//     last commit, category "note" (CategoryNote), with the comment as
//     property comments. Comments on anything else: no change.
//   - anything else: no change.
//
// Repositories are named by their HTTP clone URL (git_http_url; in a push
// payload without one, the repository's URL, which Buildbot uses) and
// projects by their path with namespace. As in Buildbot, a webhook URL
// ending in ?codebase=NAME gives the changes that codebase, and
// ?project=NAME that project. Skips work as for GitHub, on a branch push's
// head commit and a merge request's last commit.
//
// # Base (dialect "base")
//
// A script posts Buildbot's change fields as a form or JSON (see
// ParseBase). With Base.Secret set the request must carry it as a bearer
// token; without, anyone who reaches the URL may add changes, as with
// Buildbot: restrict it at the reverse proxy.
package hook
