package ci

import (
	"context"
	"fmt"
	"time"
)

// A Reporter tells the outside world about builds: a commit status on
// GitHub, a line on IRC, an e-mail. Package ci/report has Kiln's.
//
// The master calls Report from a goroutine of the reporter's own, one
// report at a time, in the order the builds started and finished; a slow
// or failing reporter never delays builds or other reporters. When Report
// returns an error the master retries the same report with growing delays
// (ReporterRetries times at most), then drops it with a log line. Report
// must return when ctx ends.
type Reporter interface {
	Report(ctx context.Context, r *Report) error
}

// ReportEvent says what a report is about.
type ReportEvent string

// Report events.
const (
	BuildStarted  ReportEvent = "started"
	BuildFinished ReportEvent = "finished"
)

// A Report describes a build that started or finished. It is shared by the
// reporters and must not be changed.
type Report struct {
	Event   ReportEvent
	Build   *Build
	Builder *Builder
	// Worker is the name of the build's worker.
	Worker string
	// Steps are the build's steps (empty when it starts).
	Steps        []*StepRecord
	Buildset     *Buildset
	SourceStamps []SourceStamp
	// URL is the build's page (Master.BuildURL), "" without a public URL.
	URL string
	// Title is the master's title.
	Title string
}

// Reporter retry policy.
const (
	// ReporterRetries is how many times a failed report is tried again.
	ReporterRetries = 5
	// reporterFirstDelay is the delay before the first retry; it doubles
	// each time.
	reporterFirstDelay = time.Second
	// reporterQueue is how many reports may wait for a slow reporter
	// before the oldest is dropped.
	reporterQueue = 1000
)

// runReporters feeds the configured reporters with the events of sub (made
// before the master was ready, so that no build is missed) until ctx ends.
func (m *Master) runReporters(ctx context.Context, sub *Subscription) {
	defer sub.Close()
	if len(m.cfg.Reporters) == 0 {
		return
	}
	queues := make([]chan *Report, len(m.cfg.Reporters))
	done := make(chan struct{})
	for i, r := range m.cfg.Reporters {
		q := make(chan *Report, reporterQueue)
		queues[i] = q
		go func() {
			defer func() { done <- struct{}{} }()
			m.feedReporter(ctx, r, q)
		}()
	}
	defer func() {
		for range queues {
			<-done
		}
	}()
	for {
		var e Event
		select {
		case <-ctx.Done():
			return
		case e = <-sub.C:
		}
		if e.Type != EventBuildStarted && e.Type != EventBuildFinished {
			continue
		}
		if e.MasterID != m.masterID {
			continue // another master's build: that master reports it
		}
		rep, err := m.makeReport(ctx, e)
		if err != nil {
			m.log.Error("could not prepare a build report", "build", e.BuildID, "err", err)
			continue
		}
		for i, q := range queues {
			select {
			case q <- rep:
			default:
				m.log.Warn("a reporter is too slow: dropping a report", "reporter", fmt.Sprintf("%T", m.cfg.Reporters[i]), "build", e.BuildID)
			}
		}
	}
}

// feedReporter gives one reporter its reports, retrying failures.
func (m *Master) feedReporter(ctx context.Context, r Reporter, q <-chan *Report) {
	log := m.log.With("reporter", fmt.Sprintf("%T", r))
	for {
		var rep *Report
		select {
		case <-ctx.Done():
			return
		case rep = <-q:
		}
		delay := reporterFirstDelay
		for attempt := 0; ; attempt++ {
			err := r.Report(ctx, rep)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if attempt >= ReporterRetries {
				log.Error("report failed; giving up on it", "build", rep.Build.ID, "event", rep.Event, "attempts", attempt+1, "err", err)
				break
			}
			log.Warn("report failed; retrying", "build", rep.Build.ID, "event", rep.Event, "in", delay, "err", err)
			if Sleep(ctx, m.clock, delay) != nil {
				return
			}
			delay *= 2
		}
	}
}

// makeReport reads what a report says from the store.
func (m *Master) makeReport(ctx context.Context, e Event) (*Report, error) {
	b, err := m.store.GetBuild(ctx, e.BuildID)
	if err != nil {
		return nil, err
	}
	builder, err := m.store.GetBuilder(ctx, b.BuilderID)
	if err != nil {
		return nil, err
	}
	rep := &Report{Build: b, Builder: builder, URL: m.BuildURL(builder.Name, b.Number), Title: m.cfg.Title}
	if w, err := m.store.GetWorker(ctx, b.WorkerID); err == nil {
		rep.Worker = w.Name
	}
	if req, err := m.store.GetRequest(ctx, b.BuildRequestID); err == nil {
		if bs, err := m.store.GetBuildset(ctx, req.BuildsetID); err == nil {
			rep.Buildset = bs
			rep.SourceStamps = bs.SourceStamps
		}
	}
	if e.Type == EventBuildFinished {
		rep.Event = BuildFinished
		if rep.Steps, err = m.store.ListSteps(ctx, b.ID); err != nil {
			return nil, err
		}
	} else {
		rep.Event = BuildStarted
		if p, ok := m.BuildProperties(b.ID); ok {
			b.Properties = p
		}
	}
	return rep, nil
}
