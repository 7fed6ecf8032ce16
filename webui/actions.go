package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/kilnci/kiln/ci"
)

// The actions of the pages' forms (force, stop, cancel, worker control;
// rebuild is in rebuild.go): each checks the user's right, acts through the master and
// sends the browser to the page that shows the outcome. The pages
// themselves are rendered in pages.go.

// form adapts an action of a page's form: errors get an error page (a
// 401 makes the browser ask for credentials and send the form again).
func (a *app) form(fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := fn(w, r); err != nil {
			a.pageError(w, r, err)
		}
	})
}

func (a *app) forceForm(w http.ResponseWriter, r *http.Request) error {
	owner, err := a.authorize(r, actForce)
	if err != nil {
		return err
	}
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	builder := r.PathValue("builder")
	if _, ok := a.m.BuilderID(builder); !ok {
		return fmt.Errorf("%w: no builder %q", errNotFound, builder)
	}
	scheds := a.forceSchedulers(builder)
	name := r.PostForm.Get("scheduler")
	if name == "" && len(scheds) == 1 {
		name = scheds[0].SchedulerName()
	}
	i := slices.IndexFunc(scheds, func(f ci.ForceScheduler) bool { return f.SchedulerName() == name })
	if i < 0 {
		return fmt.Errorf("%w: no force scheduler %q for builder %q", errBadRequest, name, builder)
	}
	values := map[string]any{}
	for _, f := range forceFields(scheds[i]) {
		switch {
		case f.Type == "fixed":
		case f.Type == "bool":
			// An unchecked box sends nothing; a visible one means false.
			if !f.Hidden {
				values[f.Name] = r.PostForm.Get(f.Name) != ""
			}
		case f.Multiple:
			if vals, ok := r.PostForm[f.Name]; ok {
				values[f.Name] = vals
			}
		default:
			if vals, ok := r.PostForm[f.Name]; ok {
				values[f.Name] = vals[0]
			}
		}
	}
	bs, reqs, err := a.force(r.Context(), scheds[i], owner, []string{builder}, values)
	if err != nil {
		return err
	}
	a.log.Info("build forced from the web", "builder", builder, "owner", owner, "buildset", bs.ID)
	st, err := a.store(r.Context())
	if err != nil {
		return err
	}
	http.Redirect(w, r, a.landing(r.Context(), st, builder, reqs), http.StatusSeeOther)
	return nil
}

func (a *app) stopForm(w http.ResponseWriter, r *http.Request) error {
	who, err := a.authorize(r, actStop)
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
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if err := a.stop(r.Context(), st, build, who, r.PostForm.Get("reason")); err != nil {
		return err
	}
	http.Redirect(w, r, a.buildURL(b.Name, build.Number), http.StatusSeeOther)
	return nil
}

func (a *app) cancelForm(w http.ResponseWriter, r *http.Request) error {
	who, err := a.authorize(r, actCancel)
	if err != nil {
		return err
	}
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	st, err := a.store(r.Context())
	if err != nil {
		return err
	}
	br, err := a.cancel(r.Context(), st, id, who)
	if err != nil {
		return err
	}
	n := newNames(r.Context(), st)
	http.Redirect(w, r, a.builderURL(n.builder(br.BuilderID)), http.StatusSeeOther)
	return nil
}

// stop stops a running build for who.
func (a *app) stop(ctx context.Context, st ci.Store, b *ci.Build, who, reason string) error {
	if b.Complete {
		return fmt.Errorf("%w: build %d is finished", ci.ErrConflict, b.ID)
	}
	why := "stopped by " + who
	if reason != "" {
		why += ": " + reason
	}
	if err := a.m.StopBuild(ctx, b.ID, why); err != nil {
		if errors.Is(err, ci.ErrBuildNotRunning) {
			return fmt.Errorf("%w: build %d is not running", ci.ErrConflict, b.ID)
		}
		return err
	}
	a.log.Info("build stopped from the web", "build", b.ID, "by", who)
	return nil
}

// cancel cancels a pending request for who.
func (a *app) cancel(ctx context.Context, st ci.Store, id int64, who string) (*ci.BuildRequest, error) {
	br, err := st.GetRequest(ctx, id)
	if err != nil {
		return nil, notFound(err, "no build request %d", id)
	}
	if err := a.m.CancelRequest(ctx, id); err != nil {
		return nil, err
	}
	a.log.Info("build request cancelled from the web", "request", id, "by", who)
	return br, nil
}

// workerActions are the controls of a worker, as its JSON-RPC methods.
var workerActions = []string{"pause", "unpause", "stop", "kill"}

// controlWorker pauses, unpauses, stops (gracefully) or kills the worker
// called name for who.
func (a *app) controlWorker(name, action, who, reason string) error {
	a.log.Info("worker control", "worker", name, "method", action, "by", who, "reason", reason)
	switch action {
	case "pause":
		if reason == "" {
			reason = "paused by " + who
		}
		return a.m.PauseWorker(name, reason)
	case "unpause":
		return a.m.UnpauseWorker(name)
	case "stop":
		return a.m.StopWorker(name)
	case "kill":
		return a.m.KillWorker(name)
	}
	return fmt.Errorf("%w: no worker action %q", errNotFound, action)
}

// workerForm controls a worker from the workers' pages, and sends the
// browser back to the page the form was on.
func (a *app) workerForm(w http.ResponseWriter, r *http.Request) error {
	action := r.PathValue("action")
	if !slices.Contains(workerActions, action) {
		return fmt.Errorf("%w: no worker action %q", errNotFound, action)
	}
	name := r.PathValue("worker")
	if _, ok := a.m.WorkerConfig(name); !ok {
		return fmt.Errorf("%w: no worker %q", errNotFound, name)
	}
	who, err := a.authorize(r, actWorker)
	if err != nil {
		return err
	}
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if err := a.controlWorker(name, action, who, r.PostForm.Get("reason")); err != nil {
		return err
	}
	back := a.base + "workers/" + url.PathEscape(name)
	if r.PostForm.Get("back") == "workers" {
		back = a.base + "workers"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
	return nil
}
