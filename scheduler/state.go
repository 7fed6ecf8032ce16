package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"

	"github.com/kilnci/kiln/ci"
)

// State keys. Every scheduler keeps its state in the master's StateStore
// under the object "scheduler:<name>", in one JSON document whose key says
// which kind of scheduler wrote it, so that each write is atomic.
const (
	stateKeyTreeStable = "tree-stable" // AnyBranch, SingleBranch
	stateKeyTimed      = "timed"       // Periodic, Nightly
	stateKeyDependent  = "dependent"   // Dependent
)

func stateObject(name string) string { return "scheduler:" + name }

// loadState reads the scheduler's document into v; a missing document
// leaves v as it is and returns found == false.
func loadState(ctx context.Context, st ci.StateStore, name, key string, v any) (found bool, err error) {
	b, err := st.GetState(ctx, stateObject(name), key)
	if errors.Is(err, ci.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load state of scheduler %q: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("load state of scheduler %q: %s: %w", name, key, err)
	}
	return true, nil
}

func saveState(ctx context.Context, st ci.StateStore, name, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("save state of scheduler %q: %w", name, err)
	}
	if err := st.SetState(ctx, stateObject(name), key, b); err != nil {
		return fmt.Errorf("save state of scheduler %q: %w", name, err)
	}
	return nil
}

// A classified change is a change a scheduler keeps for a later build,
// with whether it is important (see FileIsImportant).
type classified struct {
	ID        int64 `json:"id"`
	Important bool  `json:"important"`
}

// An intent records, before a scheduler submits a buildset, what it is
// about to submit: a restart finding an intent looks for the buildset
// (submitted with the intent's token as its ExternalID, among the buildsets
// newer than After) and submits it only if it is missing. A buildset is so
// submitted exactly once even if the master stops between recording its
// cause and submitting it.
type intent struct {
	Token string `json:"token"`
	// After is the newest buildset ID when the intent was recorded.
	After int64 `json:"after"`
	// Changes are the changes to build (AnyBranch, SingleBranch, timed
	// schedulers with changes).
	Changes []int64 `json:"changes,omitempty"`
	// Upstream is the upstream buildset whose success is built (Dependent).
	Upstream int64 `json:"upstream,omitempty"`
}

// lastBuildsetID returns the newest buildset's ID (0 if none): every
// buildset has at least one request, and requests and buildsets are
// numbered in the same order.
func lastBuildsetID(ctx context.Context, st ci.Store) (int64, error) {
	reqs, _, err := st.ListRequests(ctx, ci.RequestQuery{Query: ci.Query{Limit: 1, Desc: true}})
	if err != nil {
		return 0, fmt.Errorf("find the newest buildset: %w", err)
	}
	if len(reqs) == 0 {
		return 0, nil
	}
	return reqs[0].BuildsetID, nil
}

// buildsetsAfter calls fn for each buildset newer than after, newest
// first, until fn returns false.
func buildsetsAfter(ctx context.Context, st ci.Store, after int64, fn func(*ci.Buildset) (bool, error)) error {
	const page = 200
	seen := map[int64]bool{}
	for offset := 0; ; offset += page {
		reqs, _, err := st.ListRequests(ctx, ci.RequestQuery{Query: ci.Query{Limit: page, Offset: offset, Desc: true}})
		if err != nil {
			return fmt.Errorf("list buildsets after %d: %w", after, err)
		}
		for _, r := range reqs {
			if r.BuildsetID <= after {
				return nil
			}
			if seen[r.BuildsetID] {
				continue
			}
			seen[r.BuildsetID] = true
			bs, err := st.GetBuildset(ctx, r.BuildsetID)
			if err != nil {
				return fmt.Errorf("list buildsets after %d: %w", after, err)
			}
			more, err := fn(bs)
			if err != nil || !more {
				return err
			}
		}
		if len(reqs) < page {
			return nil
		}
	}
}

// submitted reports whether the intent's buildset exists.
func submitted(ctx context.Context, st ci.Store, in intent) (bool, error) {
	found := false
	err := buildsetsAfter(ctx, st, in.After, func(bs *ci.Buildset) (bool, error) {
		found = bs.ExternalID == in.Token
		return !found, nil
	})
	return found, err
}

// newIntent returns an intent with token, marked with the newest buildset.
func newIntent(ctx context.Context, st ci.Store, token string) (intent, error) {
	after, err := lastBuildsetID(ctx, st)
	return intent{Token: token, After: after}, err
}

// builds says what every scheduler's submissions share.
type builds struct {
	name       string
	builders   []string
	reason     string
	properties map[string]any
	priority   int
}

// submission returns a submission of the scheduler's builders with its
// properties (source "Scheduler").
func (b builds) submission() ci.Submission {
	props := ci.Properties{}
	props.SetAll(b.properties, ci.SourceScheduler)
	return ci.Submission{
		Builders:   slices.Clone(b.builders),
		Reason:     b.reason,
		Properties: props,
		Priority:   b.priority,
		Scheduler:  b.name,
	}
}

// forChanges returns a submission building changes (any order): for each
// codebase, the newest change's source with every change of that codebase
// linked to it; the changes' properties (source "Change") override the
// scheduler's, newer changes' those of older ones.
func (b builds) forChanges(changes []*ci.Change) ci.Submission {
	s := b.submission()
	changes = slices.Clone(changes)
	slices.SortFunc(changes, func(x, y *ci.Change) int { return cmp.Compare(x.ID, y.ID) })
	byCodebase := map[string][]*ci.Change{}
	for _, c := range changes {
		byCodebase[c.Codebase] = append(byCodebase[c.Codebase], c)
		s.Properties.SetAll(c.Properties, ci.SourceChange)
	}
	for _, cb := range slices.Sorted(maps.Keys(byCodebase)) {
		cs := byCodebase[cb]
		newest := cs[len(cs)-1]
		if len(cs) == 1 && newest.SourceStampID != 0 {
			// The change's own source stamp, which links it.
			s.SourceStamps = append(s.SourceStamps, ci.SourceStamp{ID: newest.SourceStampID})
			continue
		}
		ss := newest.SourceStamp()
		for _, c := range cs {
			ss.Changes = append(ss.Changes, c.ID)
		}
		s.SourceStamps = append(s.SourceStamps, ss)
	}
	return s
}

// loadChanges reads changes by ID, skipping (and logging) those that are
// gone; cache holds changes already known.
func loadChanges(ctx context.Context, m *ci.Master, name string, ids []int64, cache map[int64]*ci.Change) ([]*ci.Change, error) {
	st, err := m.Store(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*ci.Change, 0, len(ids))
	for _, id := range ids {
		if c, ok := cache[id]; ok {
			out = append(out, c)
			continue
		}
		c, err := st.GetChange(ctx, id)
		if errors.Is(err, ci.ErrNotFound) {
			m.Logger().Warn("scheduler: a change it kept is gone; building without it", "scheduler", name, "change", id)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load change %d: %w", id, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// important calls a FileIsImportant function, taking a panic for "not
// important" (and logging it) as Buildbot ignores a change whose check
// raised.
func important(m *ci.Master, name string, fn func(*ci.Change) bool, c *ci.Change) (imp, ok bool) {
	if fn == nil {
		return true, true
	}
	defer func() {
		if p := recover(); p != nil {
			m.Logger().Error("scheduler: FileIsImportant panicked; ignoring the change", "scheduler", name, "change", c.ID, "panic", p, "stack", string(debug.Stack()))
			imp, ok = false, false
		}
	}()
	return fn(c), true
}

// matches calls a change filter, taking a panic in its Fn for "no match".
func matches(m *ci.Master, name string, f *ChangeFilter, c *ci.Change) bool {
	if f.Fn == nil {
		return f.Match(c)
	}
	return matchesFn(m, name, f, c)
}

func matchesFn(m *ci.Master, name string, f *ChangeFilter, c *ci.Change) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			m.Logger().Error("scheduler: ChangeFilter.Fn panicked; ignoring the change", "scheduler", name, "change", c.ID, "panic", p)
			ok = false
		}
	}()
	return f.Match(c)
}
