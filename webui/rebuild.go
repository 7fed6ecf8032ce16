package webui

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/kilnci/kiln/ci"
)

// sourceRebuild is the source of the "owner" property of a rebuilt build.
const sourceRebuild = "Rebuild"

// rebuild submits a build of b's builder again, as Buildbot's rebuild
// does: with the source stamps of b's buildset (the stored ones, so that
// the new build is one of the same changes) and that buildset's properties
// (those its scheduler or the force form gave, not those b's steps set),
// its priority and its parent. The owner is who asks. It returns the new
// buildset and its requests.
func (a *app) rebuild(ctx context.Context, st ci.Store, b *ci.Build, who string) (*ci.Buildset, []*ci.BuildRequest, error) {
	req, err := st.GetRequest(ctx, b.BuildRequestID)
	if err != nil {
		return nil, nil, fmt.Errorf("rebuild: read the request of build %d: %w", b.ID, err)
	}
	bs, err := st.GetBuildset(ctx, req.BuildsetID)
	if err != nil {
		return nil, nil, fmt.Errorf("rebuild: read the buildset of build %d: %w", b.ID, err)
	}
	builder, err := st.GetBuilder(ctx, b.BuilderID)
	if err != nil {
		return nil, nil, fmt.Errorf("rebuild: read the builder of build %d: %w", b.ID, err)
	}
	props := bs.Properties.Clone()
	props.Set("owner", who, sourceRebuild)
	nbs, reqs, err := a.m.Submit(ctx, ci.Submission{
		Builders:      []string{builder.Name},
		Reason:        fmt.Sprintf("rebuild of build #%d", b.Number),
		SourceStamps:  bs.SourceStamps,
		Properties:    props,
		Priority:      req.Priority,
		Scheduler:     "rebuild",
		ParentBuildID: bs.ParentBuildID,
	})
	if err != nil {
		return nil, nil, err
	}
	a.log.Info("build rebuilt from the web", "builder", builder.Name, "number", b.Number, "by", who, "buildset", nbs.ID)
	return nbs, reqs, nil
}

// rebuildForm rebuilds a build from its page, and sends the user to the
// new build.
func (a *app) rebuildForm(w http.ResponseWriter, r *http.Request) error {
	who, err := a.authorize(r, actForce)
	if err != nil {
		return err
	}
	st, err := a.store(r.Context())
	if err != nil {
		return err
	}
	b, build, err := a.findPageBuild(r, st)
	if err != nil {
		return err
	}
	_, reqs, err := a.rebuild(r.Context(), st, build, who)
	if err != nil {
		return err
	}
	http.Redirect(w, r, a.landing(r.Context(), st, b.Name, reqs), http.StatusSeeOther)
	return nil
}

// landWait bounds how long a form that submitted builds waits for the
// first to start, so that its user lands on the build's page rather than
// on the builder's, where the request waits when no worker is free.
const landWait = 3 * time.Second

// landing returns the page of the build of the first request once it
// started, or the builder's page (where the request is listed, pending)
// if it does not start within landWait.
func (a *app) landing(ctx context.Context, st ci.Store, builder string, reqs []*ci.BuildRequest) string {
	if len(reqs) == 0 {
		return a.builderURL(builder)
	}
	id := reqs[0].ID
	sub := a.m.Subscribe(1024)
	defer sub.Close()
	timeout := time.NewTimer(landWait)
	defer timeout.Stop()
	for {
		r, err := st.GetRequest(ctx, id)
		if err == nil && r.BuildID != 0 {
			if b, err := st.GetBuild(ctx, r.BuildID); err == nil {
				return a.buildURL(builder, b.Number)
			}
		}
		if err != nil || r.Complete {
			return a.builderURL(builder) // cancelled
		}
	wait:
		for {
			select {
			case e, ok := <-sub.C:
				if !ok {
					return a.builderURL(builder)
				}
				if e.Type == ci.EventBuildStarted || e.Type == ci.EventRequestCancelled {
					break wait
				}
			case <-timeout.C:
				return a.builderURL(builder)
			case <-ctx.Done():
				return a.builderURL(builder)
			case <-a.m.Done():
				return a.builderURL(builder)
			case <-a.closing:
				return a.builderURL(builder)
			}
		}
	}
}
