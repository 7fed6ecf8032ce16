package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// api serves /api/v2 for one master.
type api struct {
	m   *ci.Master
	log *slog.Logger
}

// Handler returns the web application of m. The master must be running (or
// about to run): requests wait for it to be ready.
func Handler(m *ci.Master) http.Handler {
	a := &api{m: m, log: m.Logger()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v2/builders", a.handle(a.builders))
	mux.HandleFunc("GET /api/v2/builders/{builder}", a.handle(a.builder))
	mux.HandleFunc("GET /api/v2/builders/{builder}/builds", a.handle(a.builderBuilds))
	mux.HandleFunc("GET /api/v2/builds", a.handle(a.builds))
	mux.HandleFunc("GET /api/v2/builds/{id}", a.handle(a.build))
	mux.HandleFunc("GET /api/v2/builds/{id}/steps", a.handle(a.steps))
	mux.HandleFunc("/api/v2/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, a.log, fmt.Errorf("%w: method %s is not allowed on %s", errMethod, r.Method, r.URL.Path))
			return
		}
		writeError(w, a.log, fmt.Errorf("%w: no API endpoint %s %s", errNotFound, r.Method, r.URL.Path))
	})
	return mux
}

// errBadRequest and errNotFound classify errors of the handlers themselves.
var (
	errBadRequest = errors.New("bad request")
	errNotFound   = errors.New("not found")
	errMethod     = errors.New("method not allowed")
)

// status decides the HTTP status of an error: the one table of it.
func status(err error) int {
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, ci.ErrUnknownBuilder), errors.Is(err, ci.ErrInvalidConfig):
		return http.StatusBadRequest
	case errors.Is(err, errNotFound), errors.Is(err, ci.ErrNotFound), errors.Is(err, ci.ErrBuildNotRunning):
		return http.StatusNotFound
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, ci.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ci.ErrNotRunning), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, log *slog.Logger, err error) {
	code := status(err)
	msg := err.Error()
	if code == http.StatusInternalServerError {
		log.Error("web request failed", "err", err)
		msg = "internal error"
	}
	writeJSON(w, code, map[string]string{"error": strings.ReplaceAll(msg, "\n", "; ")})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	enc.Encode(v)
}

// handle adapts an API function returning a value or an error.
func (a *api) handle(fn func(r *http.Request, st ci.Store) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		st, err := a.m.Store(ctx)
		if err != nil {
			writeError(w, a.log, err)
			return
		}
		v, err := fn(r.WithContext(ctx), st)
		if err != nil {
			writeError(w, a.log, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// list is a collection answer.
func list(name string, items any, total int) map[string]any {
	return map[string]any{name: items, "meta": map[string]int{"total": total}}
}

// epoch gives a time as Unix seconds, or nil for the zero time.
func epoch(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
}

type builderJSON struct {
	BuilderID   int64    `json:"builderid"`
	Name        string   `json:"name"`
	Description *string  `json:"description"`
	Tags        []string `json:"tags"`
	MasterIDs   []int64  `json:"masterids"`
}

func toBuilderJSON(b *ci.Builder) builderJSON {
	j := builderJSON{BuilderID: b.ID, Name: b.Name, Tags: b.Tags, MasterIDs: []int64{1}}
	if b.Description != "" {
		j.Description = &b.Description
	}
	if j.Tags == nil {
		j.Tags = []string{}
	}
	return j
}

func (a *api) builders(r *http.Request, st ci.Store) (any, error) {
	bs, err := st.ListBuilders(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]builderJSON, 0, len(bs))
	for _, b := range bs {
		if _, ok := a.m.BuilderID(b.Name); !ok {
			continue // no longer configured
		}
		out = append(out, toBuilderJSON(b))
	}
	return list("builders", out, len(out)), nil
}

// findBuilder resolves {builder}: an ID or a name.
func (a *api) findBuilder(r *http.Request, st ci.Store) (*ci.Builder, error) {
	key := r.PathValue("builder")
	if id, err := strconv.ParseInt(key, 10, 64); err == nil {
		b, err := st.GetBuilder(r.Context(), id)
		if errors.Is(err, ci.ErrNotFound) {
			return nil, fmt.Errorf("%w: no builder %d", errNotFound, id)
		}
		return b, err
	}
	id, ok := a.m.BuilderID(key)
	if !ok {
		return nil, fmt.Errorf("%w: no builder %q", errNotFound, key)
	}
	return st.GetBuilder(r.Context(), id)
}

func (a *api) builder(r *http.Request, st ci.Store) (any, error) {
	b, err := a.findBuilder(r, st)
	if err != nil {
		return nil, err
	}
	return list("builders", []builderJSON{toBuilderJSON(b)}, 1), nil
}

type buildJSON struct {
	BuildID        int64          `json:"buildid"`
	Number         int            `json:"number"`
	BuilderID      int64          `json:"builderid"`
	BuildRequestID int64          `json:"buildrequestid"`
	WorkerID       int64          `json:"workerid"`
	MasterID       int64          `json:"masterid"`
	StartedAt      any            `json:"started_at"`
	CompleteAt     any            `json:"complete_at"`
	Complete       bool           `json:"complete"`
	StateString    string         `json:"state_string"`
	Results        *int           `json:"results"`
	Properties     map[string]any `json:"properties"`
}

func toBuildJSON(b *ci.Build, withProps bool) buildJSON {
	j := buildJSON{
		BuildID: b.ID, Number: b.Number, BuilderID: b.BuilderID, BuildRequestID: b.BuildRequestID,
		WorkerID: b.WorkerID, MasterID: 1, StartedAt: epoch(b.StartedAt), CompleteAt: epoch(b.CompleteAt),
		Complete: b.Complete, StateString: b.StateString, Properties: map[string]any{},
	}
	if b.Complete {
		r := int(b.Results)
		j.Results = &r
	}
	if withProps {
		// Buildbot's form: name -> [value, source].
		for k, p := range b.Properties {
			j.Properties[k] = []any{p.Value, p.Source}
		}
	}
	return j
}

// buildQuery reads the list parameters of a builds request.
func buildQuery(r *http.Request) (ci.BuildQuery, bool, error) {
	var q ci.BuildQuery
	v := r.URL.Query()
	var err error
	if q.Query, err = pageQuery(v.Get("limit"), v.Get("offset"), v.Get("order"), "buildid", "number"); err != nil {
		return q, false, err
	}
	if s := v.Get("builderid"); s != "" {
		if q.BuilderID, err = strconv.ParseInt(s, 10, 64); err != nil {
			return q, false, fmt.Errorf("%w: builderid %q is not a number", errBadRequest, s)
		}
	}
	if s := v.Get("workerid"); s != "" {
		if q.WorkerID, err = strconv.ParseInt(s, 10, 64); err != nil {
			return q, false, fmt.Errorf("%w: workerid %q is not a number", errBadRequest, s)
		}
	}
	if s := v.Get("complete"); s != "" {
		c, err := strconv.ParseBool(s)
		if err != nil {
			return q, false, fmt.Errorf("%w: complete %q is not true or false", errBadRequest, s)
		}
		q.Complete = &c
	}
	props := v.Get("property") != ""
	return q, props, nil
}

// pageQuery reads limit, offset and order.
func pageQuery(limit, offset, order string, fields ...string) (ci.Query, error) {
	var q ci.Query
	var err error
	if limit != "" {
		if q.Limit, err = strconv.Atoi(limit); err != nil || q.Limit < 0 {
			return q, fmt.Errorf("%w: limit %q is not a non-negative number", errBadRequest, limit)
		}
	}
	if offset != "" {
		if q.Offset, err = strconv.Atoi(offset); err != nil || q.Offset < 0 {
			return q, fmt.Errorf("%w: offset %q is not a non-negative number", errBadRequest, offset)
		}
	}
	if order != "" {
		field := strings.TrimPrefix(order, "-")
		ok := false
		for _, f := range fields {
			ok = ok || f == field
		}
		if !ok {
			return q, fmt.Errorf("%w: cannot order by %q (use %s)", errBadRequest, order, strings.Join(fields, " or "))
		}
		q.Desc = strings.HasPrefix(order, "-")
	}
	return q, nil
}

func (a *api) listBuilds(r *http.Request, st ci.Store, q ci.BuildQuery, props bool) (any, error) {
	bs, total, err := st.ListBuilds(r.Context(), q)
	if err != nil {
		return nil, err
	}
	out := make([]buildJSON, 0, len(bs))
	for _, b := range bs {
		out = append(out, toBuildJSON(b, props))
	}
	return list("builds", out, total), nil
}

func (a *api) builds(r *http.Request, st ci.Store) (any, error) {
	q, props, err := buildQuery(r)
	if err != nil {
		return nil, err
	}
	return a.listBuilds(r, st, q, props)
}

func (a *api) builderBuilds(r *http.Request, st ci.Store) (any, error) {
	b, err := a.findBuilder(r, st)
	if err != nil {
		return nil, err
	}
	q, props, err := buildQuery(r)
	if err != nil {
		return nil, err
	}
	q.BuilderID = b.ID
	return a.listBuilds(r, st, q, props)
}

func pathID(r *http.Request, name string) (int64, error) {
	s := r.PathValue(name)
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is not a number", errBadRequest, name, s)
	}
	return id, nil
}

func (a *api) build(r *http.Request, st ci.Store) (any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return nil, err
	}
	b, err := st.GetBuild(r.Context(), id)
	if errors.Is(err, ci.ErrNotFound) {
		return nil, fmt.Errorf("%w: no build %d", errNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	if !b.Complete {
		if p, ok := a.m.BuildProperties(b.ID); ok {
			b.Properties = p
		}
	}
	return list("builds", []buildJSON{toBuildJSON(b, true)}, 1), nil
}

type stepJSON struct {
	StepID      int64        `json:"stepid"`
	BuildID     int64        `json:"buildid"`
	Number      int          `json:"number"`
	Name        string       `json:"name"`
	StartedAt   any          `json:"started_at"`
	CompleteAt  any          `json:"complete_at"`
	Complete    bool         `json:"complete"`
	StateString string       `json:"state_string"`
	Results     *int         `json:"results"`
	Hidden      bool         `json:"hidden"`
	URLs        []ci.StepURL `json:"urls"`
}

func (a *api) steps(r *http.Request, st ci.Store) (any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return nil, err
	}
	if _, err := st.GetBuild(r.Context(), id); errors.Is(err, ci.ErrNotFound) {
		return nil, fmt.Errorf("%w: no build %d", errNotFound, id)
	} else if err != nil {
		return nil, err
	}
	steps, err := st.ListSteps(r.Context(), id)
	if err != nil {
		return nil, err
	}
	out := make([]stepJSON, 0, len(steps))
	for _, s := range steps {
		j := stepJSON{StepID: s.ID, BuildID: s.BuildID, Number: s.Number, Name: s.Name, StartedAt: epoch(s.StartedAt),
			CompleteAt: epoch(s.CompleteAt), Complete: s.Complete, StateString: s.StateString, Hidden: s.Hidden, URLs: s.URLs}
		if j.URLs == nil {
			j.URLs = []ci.StepURL{}
		}
		if s.Complete {
			res := int(s.Results)
			j.Results = &res
		}
		out = append(out, j)
	}
	return list("steps", out, len(out)), nil
}
