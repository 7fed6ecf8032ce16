// Package janitor bounds the size of a master's store: its Janitor, a
// ci.Service, deletes old build logs and whole builds on a schedule. It uses
// only the master's public API (ci.Master.Store, Clock, Logger), as any
// service of one's own may.
package janitor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kilnci/kiln/ci"
)

// Janitor defaults.
const (
	DefaultInterval = time.Hour
	DefaultBatch    = 50
	// compactPages is how many pages one Compact call gives back: small,
	// so that writers are not held up long.
	compactPages = 2000
)

// Retention says how long a builder's build logs are kept: a build's logs
// are deleted once it finished longer ago than LogAge and is not among the
// builder's last LogCount builds. A zero field does not keep anything by
// itself: with LogAge alone, age decides; with LogCount alone, the count;
// with neither, logs are not deleted by this rule.
type Retention struct {
	LogAge   time.Duration
	LogCount int
}

func (r Retention) active() bool { return r.LogAge > 0 || r.LogCount > 0 }

// A Janitor bounds the size of a master's store, as a service: on a
// schedule it deletes old build logs (by age and count per builder, then
// the oldest beyond a total size budget) and whole builds beyond a horizon,
// in small transactions so that the master stays responsive, and gives the
// space back to the file system. With DryRun it only logs what it would
// delete.
type Janitor struct {
	// Logs applies to every builder not in Builders.
	Logs Retention
	// Builders overrides Logs for some builders, by name.
	Builders map[string]Retention
	// LogBudget bounds the space all logs take: beyond it, the logs of the
	// oldest builds are deleted first. Zero means no budget.
	LogBudget int64
	// BuildHorizon deletes whole builds (steps, logs and test results, and
	// their requests and buildsets once unused) that finished longer ago.
	// Zero keeps them.
	BuildHorizon time.Duration
	// Interval is the time between passes (DefaultInterval if zero);
	// the first pass runs at start.
	Interval time.Duration
	// Batch is how many builds one transaction handles
	// (DefaultBatch if zero).
	Batch int
	// DryRun logs what a pass would delete and deletes nothing.
	DryRun bool
}

// A Report says what one pass deleted, or would delete.
type Report struct {
	DryRun bool
	// LogBuilds are the builds whose logs were deleted.
	LogBuilds []int64
	// Builds are the builds deleted whole.
	Builds []int64
	// Bytes is the log space freed.
	Bytes int64
	// Pages is how many pages of the database file were given back.
	Pages int
}

// Validate checks the janitor's settings.
func (j *Janitor) Validate() error {
	var errs []error
	check := func(where string, r Retention) {
		if r.LogAge < 0 || r.LogCount < 0 {
			errs = append(errs, fmt.Errorf("%s: LogAge and LogCount may not be negative", where))
		}
	}
	check("Logs", j.Logs)
	for name, r := range j.Builders {
		check(fmt.Sprintf("Builders[%q]", name), r)
	}
	if j.LogBudget < 0 || j.BuildHorizon < 0 || j.Interval < 0 || j.Batch < 0 {
		errs = append(errs, errors.New("LogBudget, BuildHorizon, Interval and Batch may not be negative"))
	}
	return errors.Join(errs...)
}

// ValidateConfig checks that the builders named exist.
func (j *Janitor) ValidateConfig(c *ci.MasterConfig) error {
	var errs []error
	for name := range j.Builders {
		found := false
		for _, b := range c.Builders {
			found = found || b.Name == name
		}
		if !found {
			errs = append(errs, fmt.Errorf("Builders: unknown builder %q", name))
		}
	}
	return errors.Join(errs...)
}

// Run implements ci.Service: a pass at start, then one every Interval on the
// master's clock, until ctx ends.
func (j *Janitor) Run(ctx context.Context, m *ci.Master) error {
	interval := j.Interval
	if interval == 0 {
		interval = DefaultInterval
	}
	for {
		if _, err := j.Clean(ctx, m); err != nil && ctx.Err() == nil {
			m.Logger().Error("janitor pass failed; trying again at the next one", "err", err)
		}
		if ci.Sleep(ctx, m.Clock(), interval) != nil {
			return nil
		}
	}
}

// Clean runs one pass and reports what it deleted (or would delete).
func (j *Janitor) Clean(ctx context.Context, m *ci.Master) (*Report, error) {
	st, err := m.Store(ctx)
	if err != nil {
		return nil, err
	}
	batch := j.Batch
	if batch == 0 {
		batch = DefaultBatch
	}
	rep := &Report{DryRun: j.DryRun}
	seen := map[int64]bool{} // in a dry run, what would already be gone
	now := m.Now()
	deleteLogs := func(ids []int64) (int64, error) {
		var fresh []int64
		for _, id := range ids {
			if !seen[id] {
				fresh = append(fresh, id)
				seen[id] = true
			}
		}
		if len(fresh) == 0 {
			return 0, nil
		}
		var n int64
		var err error
		if j.DryRun {
			n, err = st.BuildLogBytes(ctx, fresh)
		} else {
			n, err = st.DeleteBuildLogs(ctx, fresh)
		}
		if err != nil {
			return 0, err
		}
		rep.LogBuilds = append(rep.LogBuilds, fresh...)
		rep.Bytes += n
		return n, nil
	}

	// Logs by age and count, builder by builder.
	for _, b := range m.Config().Builders {
		r, ok := j.Builders[b.Name]
		if !ok {
			r = j.Logs
		}
		if !r.active() {
			continue
		}
		id, ok := m.BuilderID(b.Name)
		if !ok {
			return rep, fmt.Errorf("janitor: builder %q: %w", b.Name, ci.ErrNotRunning)
		}
		q := ci.RetentionQuery{BuilderID: id, KeepLast: r.LogCount, Limit: batch}
		if r.LogAge > 0 {
			q.CompletedBefore = now.Add(-r.LogAge)
		}
		for {
			ids, err := st.BuildsWithLogs(ctx, q)
			if err != nil {
				return rep, fmt.Errorf("janitor: %w", err)
			}
			if len(ids) == 0 {
				break
			}
			if _, err := deleteLogs(ids); err != nil {
				return rep, fmt.Errorf("janitor: delete logs of builder %q: %w", b.Name, err)
			}
			if j.DryRun {
				// Nothing changes: take the rest in one go.
				if len(ids) < batch {
					break
				}
				q.Limit += batch
				continue
			}
			if err := ctx.Err(); err != nil {
				return rep, err
			}
		}
	}

	// The budget: the oldest builds' logs first, a batch at a time while a
	// whole batch fits in the excess, then build by build.
	if j.LogBudget > 0 {
		total, err := st.LogBytes(ctx)
		if err != nil {
			return rep, fmt.Errorf("janitor: %w", err)
		}
		if j.DryRun {
			total -= rep.Bytes
		}
		offset := 0 // in a dry run, the builds already counted
		for total > j.LogBudget {
			ids, err := st.BuildsWithLogs(ctx, ci.RetentionQuery{Limit: offset + batch})
			if err != nil {
				return rep, fmt.Errorf("janitor: %w", err)
			}
			var fresh []int64
			for _, id := range ids {
				if !seen[id] {
					fresh = append(fresh, id)
				}
			}
			if len(fresh) == 0 {
				break
			}
			size, err := st.BuildLogBytes(ctx, fresh)
			if err != nil {
				return rep, fmt.Errorf("janitor: %w", err)
			}
			if total-size >= j.LogBudget {
				n, err := deleteLogs(fresh)
				if err != nil {
					return rep, fmt.Errorf("janitor: delete logs over the budget: %w", err)
				}
				total -= n
			} else {
				for _, id := range fresh {
					if total <= j.LogBudget {
						break
					}
					n, err := deleteLogs([]int64{id})
					if err != nil {
						return rep, fmt.Errorf("janitor: delete logs over the budget: %w", err)
					}
					total -= n
				}
			}
			if j.DryRun {
				offset += batch
			}
			if err := ctx.Err(); err != nil {
				return rep, err
			}
		}
	}

	// Whole builds beyond the horizon.
	if j.BuildHorizon > 0 {
		before := now.Add(-j.BuildHorizon)
		limit := batch
		for {
			ids, err := st.FinishedBuildsBefore(ctx, before, limit)
			if err != nil {
				return rep, fmt.Errorf("janitor: %w", err)
			}
			if j.DryRun {
				rep.Builds = ids
				if n, err := st.BuildLogBytes(ctx, ids); err == nil {
					rep.Bytes += n
				}
				if len(ids) < limit {
					break
				}
				limit += batch
				continue
			}
			if len(ids) == 0 {
				break
			}
			n, err := st.DeleteBuilds(ctx, ids)
			if err != nil {
				return rep, fmt.Errorf("janitor: delete builds: %w", err)
			}
			rep.Builds = append(rep.Builds, ids...)
			rep.Bytes += n
			if err := ctx.Err(); err != nil {
				return rep, err
			}
		}
	}

	if !j.DryRun && (len(rep.LogBuilds) > 0 || len(rep.Builds) > 0) {
		for {
			n, err := st.Compact(ctx, compactPages)
			if err != nil {
				return rep, fmt.Errorf("janitor: %w", err)
			}
			rep.Pages += n
			if n < compactPages || ctx.Err() != nil {
				break
			}
		}
	}
	if j.DryRun {
		m.Logger().Info("janitor dry run: would delete", "log_builds", len(rep.LogBuilds), "builds", len(rep.Builds), "bytes", rep.Bytes, "log_build_ids", rep.LogBuilds, "build_ids", rep.Builds)
	} else if len(rep.LogBuilds) > 0 || len(rep.Builds) > 0 {
		m.Logger().Info("janitor deleted", "log_builds", len(rep.LogBuilds), "builds", len(rep.Builds), "bytes", rep.Bytes, "pages", rep.Pages)
	}
	return rep, nil
}
