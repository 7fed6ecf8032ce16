package ci

import (
	"context"
	"errors"
	"time"
)

// Errors a Store returns, wrapped with what was being done. Test them with
// errors.Is.
var (
	// ErrNotFound: the record asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the record is not in the state the operation needs (a
	// request already claimed, completed or cancelled).
	ErrConflict = errors.New("conflict")
	// ErrDuplicate: a record with the same key exists; the operation
	// returns it instead of storing another.
	ErrDuplicate = errors.New("already stored")
)

// A Builder is the stored record of a configured builder.
type Builder struct {
	ID          int64    `json:"builderid"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Tags        []string `json:"tags"`
}

// A Worker is the stored record of a configured worker.
type Worker struct {
	ID   int64  `json:"workerid"`
	Name string `json:"name"`
	// Info is what the worker said of itself when it last connected
	// (get_worker_info: admin, host, version, os and so on).
	Info map[string]any `json:"workerinfo"`
	// Connected is true while the worker is attached to this master.
	Connected bool `json:"connected"`
	// ChangedAt is when the worker last connected or disconnected.
	ChangedAt time.Time `json:"-"`
}

// A Buildset is a set of build requests submitted together, one per builder,
// for the same source stamps and properties.
type Buildset struct {
	ID           int64         `json:"bsid"`
	ExternalID   string        `json:"external_idstring"`
	Reason       string        `json:"reason"`
	SubmittedAt  time.Time     `json:"submitted_at"`
	Complete     bool          `json:"complete"`
	CompleteAt   time.Time     `json:"complete_at"`
	Results      Result        `json:"results"`
	SourceStamps []SourceStamp `json:"sourcestamps"`
	Properties   Properties    `json:"-"`
	// ParentBuildID is the build that triggered this buildset, if any.
	ParentBuildID int64 `json:"parent_buildid"`
	// Scheduler names the scheduler that submitted the buildset.
	Scheduler string `json:"-"`
}

// A BuildRequest asks for one build of one builder. It is pending until a
// build claims it, and complete when that build finishes (or when it is
// cancelled before being claimed).
type BuildRequest struct {
	ID          int64     `json:"buildrequestid"`
	BuildsetID  int64     `json:"buildsetid"`
	BuilderID   int64     `json:"builderid"`
	Priority    int       `json:"priority"`
	SubmittedAt time.Time `json:"submitted_at"`
	Claimed     bool      `json:"claimed"`
	ClaimedAt   time.Time `json:"claimed_at"`
	Complete    bool      `json:"complete"`
	CompleteAt  time.Time `json:"complete_at"`
	Results     Result    `json:"results"`
	WaitedFor   bool      `json:"waited_for"`
	// BuildID is the build that serves (or served) the request, 0 if none.
	BuildID int64 `json:"-"`
}

// A Build is the stored record of one build.
type Build struct {
	ID             int64      `json:"buildid"`
	Number         int        `json:"number"`
	BuilderID      int64      `json:"builderid"`
	BuildRequestID int64      `json:"buildrequestid"`
	WorkerID       int64      `json:"workerid"`
	StartedAt      time.Time  `json:"started_at"`
	CompleteAt     time.Time  `json:"complete_at"`
	Complete       bool       `json:"complete"`
	StateString    string     `json:"state_string"`
	Results        Result     `json:"results"`
	Properties     Properties `json:"-"`
	// MasterID is the master running the build, among masters sharing a
	// database (ClusterStore); 0 on a store of one master, which does not
	// record it.
	MasterID int64 `json:"masterid"`
}

// A StepRecord is the stored record of one step of a build.
type StepRecord struct {
	ID          int64     `json:"stepid"`
	BuildID     int64     `json:"buildid"`
	Number      int       `json:"number"`
	Name        string    `json:"name"`
	StartedAt   time.Time `json:"started_at"`
	CompleteAt  time.Time `json:"complete_at"`
	Complete    bool      `json:"complete"`
	StateString string    `json:"state_string"`
	Results     Result    `json:"results"`
	Hidden      bool      `json:"hidden"`
	URLs        []StepURL `json:"urls"`
}

// A StepURL is a link a step attaches to itself.
type StepURL struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// Log types, as Buildbot stores them.
const (
	// LogStream holds the output of a command; each stored line starts with
	// a letter saying which stream it came from ('o' stdout, 'e' stderr,
	// 'h' header).
	LogStream = "s"
	// LogText holds plain text.
	LogText = "t"
	// LogHTML holds an HTML fragment (never shown unescaped by Kiln).
	LogHTML = "h"
)

// A Log is the stored record of one log of a step.
type Log struct {
	ID       int64  `json:"logid"`
	StepID   int64  `json:"stepid"`
	Name     string `json:"name"`
	Slug     string `json:"slug"`
	Type     string `json:"type"`
	NumLines int    `json:"num_lines"`
	Complete bool   `json:"complete"`
}

// A Query pages through a list ordered by ID.
type Query struct {
	// Limit is the most records to return; 0 means no limit.
	Limit int
	// Offset skips that many records first.
	Offset int
	// Desc orders newest (highest ID) first.
	Desc bool
	// NoTotal skips counting the records selected, for callers that need
	// only the page (the newest build, say): the total returned is -1.
	NoTotal bool
}

// A BuildQuery selects builds. Zero fields do not filter.
type BuildQuery struct {
	Query
	BuilderID int64
	WorkerID  int64
	// Complete, when set, keeps only finished (true) or running (false)
	// builds.
	Complete *bool
	// ChangeID keeps the builds made for a change: those serving a
	// request of a buildset whose source stamps list the change.
	ChangeID int64
}

// A BuildsetQuery selects buildsets. Zero fields do not filter.
type BuildsetQuery struct {
	Query
	// IDs, when not empty, keeps only the buildsets with these IDs.
	IDs []int64
	// Complete, when set, keeps only complete (true) or incomplete (false)
	// buildsets.
	Complete *bool
}

// A RequestQuery selects build requests. Zero fields do not filter.
type RequestQuery struct {
	Query
	// IDs, when not empty, keeps only the requests with these IDs.
	IDs        []int64
	BuilderID  int64
	BuildsetID int64
	// Complete, when set, keeps only finished (true) or unfinished (false)
	// requests.
	Complete *bool
	// Claimed, when set, keeps only claimed (true) or unclaimed (false)
	// requests.
	Claimed *bool
}

// ChangeStore stores changes and their source stamps.
type ChangeStore interface {
	// AddChange stores c and a source stamp for it, and sets c.ID,
	// c.SourceStampID. When c.DedupKey is set and a change with that key
	// exists, nothing is stored, c is filled from the existing change, and
	// added is false.
	AddChange(ctx context.Context, c *Change) (added bool, err error)
	GetChange(ctx context.Context, id int64) (*Change, error)
	// ChangesAfter returns up to limit changes with IDs above id, in ID
	// order.
	ChangesAfter(ctx context.Context, id int64, limit int) ([]*Change, error)
	ListChanges(ctx context.Context, q Query) ([]*Change, int, error)
	// GetSourceStamp returns a stored source stamp (a change's, or one a
	// buildset was submitted with) with the IDs of its changes.
	GetSourceStamp(ctx context.Context, id int64) (SourceStamp, error)
	// ListSourceStamps returns a page of the stored source stamps, by ID,
	// with the IDs of their changes, and how many there are in all.
	ListSourceStamps(ctx context.Context, q Query) ([]SourceStamp, int, error)
}

// RequestStore stores buildsets and build requests.
type RequestStore interface {
	// AddBuildset stores bs with its source stamps (whose IDs it sets) and
	// one pending request per builder, in one transaction, and returns the
	// requests. bs.ID is set. ExternalID, when set, is an idempotency key:
	// if a buildset with the same ExternalID exists, nothing is stored, bs
	// is filled from the existing one, its requests are returned, and the
	// error wraps ErrDuplicate. A source stamp that already has an ID (that
	// of a change, say) refers to the stored one, and is filled from it.
	AddBuildset(ctx context.Context, bs *Buildset, builderIDs []int64, priority int) ([]*BuildRequest, error)
	GetBuildset(ctx context.Context, id int64) (*Buildset, error)
	// ListBuildsets returns a page of the buildsets q selects, by ID, with
	// their source stamps, and how many it selects in all.
	ListBuildsets(ctx context.Context, q BuildsetQuery) ([]*Buildset, int, error)
	GetRequest(ctx context.Context, id int64) (*BuildRequest, error)
	ListRequests(ctx context.Context, q RequestQuery) ([]*BuildRequest, int, error)
	// PendingRequests returns the unclaimed, incomplete requests, highest
	// priority first, then oldest first.
	PendingRequests(ctx context.Context) ([]*BuildRequest, error)
	// CancelRequest completes a pending request with result CANCELLED, and
	// its buildset if that was its last incomplete request. It returns
	// ErrConflict if the request is claimed or complete.
	CancelRequest(ctx context.Context, id int64, at time.Time) error
}

// BuildStore stores builds and their steps.
type BuildStore interface {
	// StartBuild claims the requests for a new build and stores b, in one
	// transaction. It sets b.ID and b.Number (the builder's next number);
	// b.BuildRequestID is requestIDs[0]. It returns ErrConflict, storing
	// nothing, if any request is no longer pending.
	StartBuild(ctx context.Context, b *Build, requestIDs []int64) error
	// FinishBuild records the end of a build, in one transaction: its
	// results, state string and properties; its unfinished steps and logs
	// are closed with the same results. Its requests complete with the
	// build's results, or, when resubmit is true, go back to pending to be
	// built again. Buildsets whose requests are now all complete are
	// completed with the worst of their results; their IDs are returned.
	// It returns ErrConflict if the build is already finished.
	FinishBuild(ctx context.Context, b *Build, resubmit bool) (completedBuildsets []int64, err error)
	SetBuildState(ctx context.Context, id int64, state string) error
	GetBuild(ctx context.Context, id int64) (*Build, error)
	// FindBuild returns the build of a builder by number.
	FindBuild(ctx context.Context, builderID int64, number int) (*Build, error)
	ListBuilds(ctx context.Context, q BuildQuery) ([]*Build, int, error)
	// UnfinishedBuilds returns the builds that were started but never
	// finished: those a master was running when it stopped.
	UnfinishedBuilds(ctx context.Context) ([]*Build, error)

	// AddStep stores s, setting s.ID.
	AddStep(ctx context.Context, s *StepRecord) error
	// UpdateStep stores the state string, results, completion, hidden flag
	// and URLs of s.
	UpdateStep(ctx context.Context, s *StepRecord) error
	GetStep(ctx context.Context, id int64) (*StepRecord, error)
	ListSteps(ctx context.Context, buildID int64) ([]*StepRecord, error)
}

// LogStore stores the logs of steps, in chunks of whole lines.
type LogStore interface {
	// AddLog stores l, setting l.ID; its slug is made from its name, unique
	// within the step.
	AddLog(ctx context.Context, l *Log) error
	// AppendLog adds lines to a log: text is one or more whole lines, each
	// ending in "\n". It returns the numbers of the first and last line
	// added (counting from 0). Appended lines can be read at once. It
	// returns ErrConflict if the log is complete. The store does not keep
	// text once it returns (LogWriter writes the next lines over its
	// memory): what it needs later, it copies.
	AppendLog(ctx context.Context, logID int64, text string) (first, last int, err error)
	// FinishLog appends the last lines of a log (text may be empty) and
	// marks it complete, in one transaction; first and last are -1 when
	// text is empty. Finishing a complete log with no text does nothing.
	// As with AppendLog, text is not kept.
	FinishLog(ctx context.Context, logID int64, text string) (first, last int, err error)
	GetLog(ctx context.Context, id int64) (*Log, error)
	ListLogs(ctx context.Context, stepID int64) ([]*Log, error)
	// LogLines returns lines first to last (inclusive, counting from 0) of
	// a log, each ending in "\n"; last < 0 means to the end.
	LogLines(ctx context.Context, logID int64, first, last int) (string, error)
}

// WorkerStore stores the configured builders and workers, and whether
// workers are connected.
type WorkerStore interface {
	// EnsureBuilder returns the builder called name, storing it first if
	// needed, with the given description and tags (which replace those of
	// an existing builder).
	EnsureBuilder(ctx context.Context, name, description string, tags []string) (*Builder, error)
	GetBuilder(ctx context.Context, id int64) (*Builder, error)
	ListBuilders(ctx context.Context) ([]*Builder, error)
	// EnsureWorker returns the worker called name, storing it first if
	// needed.
	EnsureWorker(ctx context.Context, name string) (*Worker, error)
	// SetWorkerConnected records a worker connecting (with its info) or
	// disconnecting (info nil keeps the last known info).
	SetWorkerConnected(ctx context.Context, id int64, connected bool, info map[string]any, at time.Time) error
	GetWorker(ctx context.Context, id int64) (*Worker, error)
	ListWorkers(ctx context.Context) ([]*Worker, error)
}

// StateStore keeps small values that schedulers and other parts of the
// master need across restarts, keyed by an object name and a key.
type StateStore interface {
	// GetState returns the value stored under (object, key), or
	// ErrNotFound.
	GetState(ctx context.Context, object, key string) ([]byte, error)
	SetState(ctx context.Context, object, key string, value []byte) error
}

// A RetentionQuery selects finished builds whose logs are still stored,
// for the janitor. Zero fields do not filter.
type RetentionQuery struct {
	// BuilderID keeps builds of that builder only.
	BuilderID int64
	// CompletedBefore keeps builds that finished before that time.
	CompletedBefore time.Time
	// KeepLast leaves out the builder's newest KeepLast builds (needs
	// BuilderID).
	KeepLast int
	// Limit is the most builds returned (required).
	Limit int
}

// RetentionStore lets the janitor bound the store's size: it deletes old
// logs and old builds in small transactions and gives space back.
type RetentionStore interface {
	// LogBytes returns the space the stored log lines take.
	LogBytes(ctx context.Context) (int64, error)
	// BuildsWithLogs returns finished builds whose logs are still stored,
	// oldest first, as q selects.
	BuildsWithLogs(ctx context.Context, q RetentionQuery) ([]int64, error)
	// BuildLogBytes returns the space the stored lines of the builds' logs
	// take.
	BuildLogBytes(ctx context.Context, buildIDs []int64) (int64, error)
	// DeleteBuildLogs deletes the stored lines of the builds' logs in one
	// transaction. The logs stay listed, with type LogDeleted and no lines.
	// It returns the space freed.
	DeleteBuildLogs(ctx context.Context, buildIDs []int64) (int64, error)
	// FinishedBuildsBefore returns up to limit finished builds that
	// completed before t, oldest first.
	FinishedBuildsBefore(ctx context.Context, t time.Time, limit int) ([]int64, error)
	// DeleteBuilds deletes finished builds with their steps, logs and
	// test results, in one transaction; their complete requests and
	// buildsets go too once no build refers to them. It returns the log
	// space freed.
	DeleteBuilds(ctx context.Context, buildIDs []int64) (int64, error)
	// Compact gives up to pages pages of free space back to the file
	// system, and returns how many it gave.
	Compact(ctx context.Context, pages int) (int, error)
}

// LogDeleted is the type of a log whose lines the janitor deleted.
const LogDeleted = "d"

// A Store is everything the master keeps on disk. Implementations are safe
// for concurrent use. Every method that changes records is one transaction:
// when it returns nil, the change is visible to every later read of the
// store, and durable. An implementation may make the records of a running
// build's progress (StartBuild, steps, logs, SetBuildState) durable a few
// milliseconds later, with its next write, as long as a crash loses only
// that last progress and never a change the caller acknowledged: a
// build whose start is lost leaves its request pending (ci/sqlite does
// this, ci/postgres does not).
// Records returned are the caller's to change. Times are kept to the
// millisecond at least and returned in UTC; the zero time stays zero.
type Store interface {
	ChangeStore
	RequestStore
	BuildStore
	LogStore
	WorkerStore
	StateStore
	RetentionStore
	TestResultStore
	// Close releases the store. No method may be called after it.
	Close() error
}
