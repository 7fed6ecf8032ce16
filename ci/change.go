package ci

import "time"

// A Change is one event in a repository that may start builds: a commit, a
// pushed tag, a pull request. Change hooks produce them; Master.AddChange
// stores them and hands them to the schedulers. The fields are Buildbot's.
type Change struct {
	ID         int64     `json:"changeid"`
	Author     string    `json:"author"`
	Committer  string    `json:"committer"`
	Comments   string    `json:"comments"`
	Branch     string    `json:"branch"`
	Revision   string    `json:"revision"`
	RevLink    string    `json:"revlink"`
	When       time.Time `json:"when_timestamp"`
	Category   string    `json:"category"`
	Repository string    `json:"repository"`
	Codebase   string    `json:"codebase"`
	Project    string    `json:"project"`
	Files      []string  `json:"files"`
	// Properties come with the change and are given to the builds it starts,
	// with source "Change".
	Properties map[string]any `json:"properties"`

	// DedupKey, when set, identifies the delivery the change came from (a
	// webhook delivery ID): a second change with the same key is not
	// stored again, and AddChange returns the first one.
	DedupKey string `json:"-"`

	// SourceStampID is the source stamp stored for the change.
	SourceStampID int64 `json:"-"`
}

// SourceStamp returns the source stamp the change describes.
func (c *Change) SourceStamp() SourceStamp {
	return SourceStamp{
		Codebase:   c.Codebase,
		Repository: c.Repository,
		Branch:     c.Branch,
		Revision:   c.Revision,
		Project:    c.Project,
	}
}

// A SourceStamp says which source a build uses for one codebase: repository,
// branch and revision (an empty revision means the branch's newest).
type SourceStamp struct {
	ID         int64     `json:"ssid"`
	Codebase   string    `json:"codebase"`
	Repository string    `json:"repository"`
	Branch     string    `json:"branch"`
	Revision   string    `json:"revision"`
	Project    string    `json:"project"`
	CreatedAt  time.Time `json:"created_at"`
	// Changes lists the IDs of the changes that led to this source stamp,
	// newest last.
	Changes []int64 `json:"-"`
}

// SameSource reports whether a and b name the same codebase, repository,
// branch and project: requests for such source stamps may collapse into one
// build. Revisions are not compared: the newest request's revision is built.
func SameSource(a, b SourceStamp) bool {
	return a.Codebase == b.Codebase && a.Repository == b.Repository &&
		a.Branch == b.Branch && a.Project == b.Project
}
