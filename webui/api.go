package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// apiFunc answers an API request with a value to encode, or an error.
type apiFunc func(r *http.Request, st ci.Store) (any, error)

func (a *app) apiRoutes(mux *http.ServeMux) {
	get := func(pattern string, fn apiFunc) { mux.Handle("GET /api/v2"+pattern, a.api(fn)) }
	get("/builders", a.apiBuilders)
	get("/builders/{builder}", single("builders", a.findBuilder, toBuilderJSON))
	get("/builders/{builder}/builds", a.apiBuilderBuilds)
	get("/builders/{builder}/builds/{number}", a.apiBuilderBuild)
	get("/builders/{builder}/builds/{number}/steps", a.apiSteps())
	get("/builders/{builder}/buildrequests", a.apiBuilderRequests)
	get("/builders/{builder}/forceschedulers", a.apiBuilderForceSchedulers)
	get("/builds", a.apiBuilds)
	get("/builds/{id}", a.apiBuild)
	get("/builds/{id}/steps", a.apiSteps())
	get("/builds/{id}/steps/{step}", single("steps", a.findStep, toStepJSON))
	get("/builds/{id}/steps/{step}/logs", a.apiLogs())
	get("/builds/{id}/steps/{step}/logs/{log}", single("logs", a.findLog, toLogJSON))
	get("/builds/{id}/steps/{step}/logs/{log}/contents", a.apiLogContents)
	mux.Handle("GET /api/v2/builds/{id}/steps/{step}/logs/{log}/raw", a.rawLog(false))
	mux.Handle("GET /api/v2/builds/{id}/steps/{step}/logs/{log}/raw_inline", a.rawLog(true))
	get("/steps/{stepid}", single("steps", a.findStep, toStepJSON))
	get("/steps/{stepid}/logs", a.apiLogs())
	get("/logs/{logid}", single("logs", a.findLog, toLogJSON))
	get("/logs/{logid}/contents", a.apiLogContents)
	mux.Handle("GET /api/v2/logs/{logid}/raw", a.rawLog(false))
	mux.Handle("GET /api/v2/logs/{logid}/raw_inline", a.rawLog(true))
	get("/workers", a.apiWorkers)
	get("/workers/{worker}", a.apiWorker)
	get("/buildrequests", a.apiRequests)
	get("/buildrequests/{id}", single("buildrequests", byID("id", "build request", ci.Store.GetRequest), toRequestJSON))
	get("/buildsets", a.apiBuildsets)
	get("/buildsets/{id}", single("buildsets", byID("id", "buildset", ci.Store.GetBuildset), toBuildsetJSON))
	get("/changes", a.apiChanges)
	get("/changes/{id}", single("changes", byID("id", "change", ci.Store.GetChange), toChangeJSON))
	get("/changes/{id}/builds", a.apiChangeBuilds)
	get("/forceschedulers", a.apiForceSchedulers)
	get("/forceschedulers/{name}", a.apiForceScheduler)

	rpc := func(pattern string, fn rpcFunc) { mux.Handle("POST /api/v2"+pattern, a.rpc(fn)) }
	rpc("/forceschedulers/{name}", a.rpcForce)
	rpc("/builds/{id}", a.rpcBuild)
	rpc("/builders/{builder}/builds/{number}", a.rpcBuild)
	rpc("/buildrequests/{id}", a.rpcRequest)
	rpc("/workers/{worker}", a.rpcWorker)

	mux.HandleFunc("/api/v2/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			a.apiError(w, r, fmt.Errorf("%w: method %s is not allowed on %s", errMethod, r.Method, r.URL.Path))
			return
		}
		a.apiError(w, r, fmt.Errorf("%w: no API endpoint %s %s", errNotFound, r.Method, r.URL.Path))
	})
}

// api adapts an API function: it waits for the store, bounds the request's
// time, and encodes the answer or the error.
func (a *app) api(fn apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		st, err := a.store(ctx)
		if err != nil {
			a.apiError(w, r, err)
			return
		}
		v, err := fn(r, st)
		if err != nil {
			a.apiError(w, r, err)
			return
		}
		if fields := r.URL.Query()["field"]; len(fields) > 0 {
			if v, err = selectFields(v, fields); err != nil {
				a.apiError(w, r, err)
				return
			}
		}
		writeJSON(w, http.StatusOK, v)
	})
}

func (a *app) apiError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := a.errorText(r, err)
	a.challenge(w, code, err)
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	enc.Encode(v)
}

// A collection is an answer {"<name>": [...], "meta": {"total": N}}.
type collection struct {
	name  string
	items any
	total int
}

func (c collection) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{c.name: c.items, "meta": map[string]int{"total": c.total}})
}

func list[T any](name string, items []T, total int) collection {
	if items == nil {
		items = []T{}
	}
	return collection{name: name, items: items, total: total}
}

// one is the answer for a single record: Buildbot answers a list of one.
func one[T any](name string, item T) collection { return list(name, []T{item}, 1) }

// selectFields keeps only the named fields of each item of a collection
// (Buildbot's ?field=).
func selectFields(v any, fields []string) (any, error) {
	c, ok := v.(collection)
	if !ok {
		return v, nil
	}
	raw, err := json.Marshal(c.items)
	if err != nil {
		return nil, err
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	for i, it := range items {
		kept := make(map[string]json.RawMessage, len(fields))
		for _, f := range fields {
			if val, ok := it[f]; ok {
				kept[f] = val
			}
		}
		items[i] = kept
	}
	c.items = items
	return c, nil
}

// epoch gives a time as Unix seconds, or nil for the zero time.
func epoch(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
}

// listParams are the parameters of a list request: paging, order and
// filters (Buildbot's field=value and field__eq=value).
type listParams struct {
	q       ci.Query
	filters map[string]string
}

// The page size of API lists: DefaultListLimit items when the request
// gives no ?limit=, never more than MaxListLimit (a larger limit is cut to
// it; meta.total still counts them all, so that a client can page). A
// request then costs the master a bounded amount of memory, whoever asks.
const (
	DefaultListLimit = 200
	MaxListLimit     = 1000
	// MaxLogChunk bounds the lines of a log's /contents in one answer,
	// with or without ?limit= (the whole log is /raw, streamed).
	MaxLogChunk = 20000
)

// reserved query parameters, which are not filters.
var reserved = map[string]bool{"limit": true, "offset": true, "order": true, "field": true, "property": true}

// parseList reads the list parameters of r. idField names the field lists
// are ordered by (the only order a store keeps), aliases are fields with the
// same order; filters lists the fields that may be filtered on.
func parseList(r *http.Request, kind string, orderFields []string, filters ...string) (listParams, error) {
	var p listParams
	v := r.URL.Query()
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return p, fmt.Errorf("%w: limit %q is not a non-negative number", errBadRequest, s)
		}
		p.q.Limit = n
	}
	if p.q.Limit == 0 {
		p.q.Limit = DefaultListLimit
	}
	p.q.Limit = min(p.q.Limit, MaxListLimit)
	if s := v.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return p, fmt.Errorf("%w: offset %q is not a non-negative number", errBadRequest, s)
		}
		p.q.Offset = n
	}
	if order := v.Get("order"); order != "" {
		if !slices.Contains(orderFields, strings.TrimPrefix(order, "-")) {
			return p, fmt.Errorf("%w: cannot order %s by %q (use %s)", errBadRequest, kind, order, strings.Join(orderFields, " or "))
		}
		p.q.Desc = strings.HasPrefix(order, "-")
	}
	p.filters = map[string]string{}
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if reserved[k] {
			continue
		}
		field, op, hasOp := strings.Cut(k, "__")
		if hasOp && op != "eq" {
			return p, fmt.Errorf("%w: filter %q: only equality filters are supported", errBadRequest, k)
		}
		if !slices.Contains(filters, field) {
			if len(filters) == 0 {
				return p, fmt.Errorf("%w: %s cannot be filtered (got %q)", errBadRequest, kind, field)
			}
			return p, fmt.Errorf("%w: cannot filter %s by %q (use %s)", errBadRequest, kind, field, strings.Join(filters, ", "))
		}
		p.filters[field] = v.Get(k)
	}
	return p, nil
}

func (p listParams) id(name string) (int64, error) {
	s, ok := p.filters[name]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: %s %q is not an ID", errBadRequest, name, s)
	}
	return n, nil
}

func (p listParams) flag(name string) (*bool, error) {
	s, ok := p.filters[name]
	if !ok {
		return nil, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %q is not true or false", errBadRequest, name, s)
	}
	return &b, nil
}

// page applies limit and offset to a list held in memory (builders and
// workers, which are few) and returns the page.
func page[T any](items []T, q ci.Query) []T {
	if q.Desc {
		items = slices.Clone(items)
		slices.Reverse(items)
	}
	if q.Offset >= len(items) {
		return nil
	}
	items = items[q.Offset:]
	if q.Limit > 0 && q.Limit < len(items) {
		items = items[:q.Limit]
	}
	return items
}

func pathID(r *http.Request, name string) (int64, error) {
	s := r.PathValue(name)
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is not a number", errBadRequest, name, s)
	}
	return id, nil
}

// notFound turns a store's not-found error into one naming what was asked.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, ci.ErrNotFound) {
		return fmt.Errorf("%w: %s", errNotFound, fmt.Sprintf(format, args...))
	}
	return err
}

// The resources. Each is found one way (a find function, or byID for a
// record found by an ID of its path) and shown in one JSON shape (its
// to...JSON function); the routes pair them with single, for one record,
// or children, for the records under one.

// single answers the record find resolves, shaped by shape, as the
// collection name.
func single[T, J any](name string, find func(*http.Request, ci.Store) (T, error), shape func(T) J) apiFunc {
	return func(r *http.Request, st ci.Store) (any, error) {
		x, err := find(r, st)
		if err != nil {
			return nil, err
		}
		return one(name, shape(x)), nil
	}
}

// children answers the records under gives of the record find resolves,
// each shaped by shape, as the collection name.
func children[P, T, J any](name string, find func(*http.Request, ci.Store) (P, error), under func(context.Context, ci.Store, P) ([]T, error), shape func(T) J) apiFunc {
	return func(r *http.Request, st ci.Store) (any, error) {
		parent, err := find(r, st)
		if err != nil {
			return nil, err
		}
		items, err := under(r.Context(), st, parent)
		if err != nil {
			return nil, err
		}
		out := toJSON(items, shape)
		return list(name, out, len(out)), nil
	}
}

// byID returns the find function of a record by the ID in the path
// parameter param; what names the record when there is none.
func byID[T any](param, what string, get func(ci.Store, context.Context, int64) (T, error)) func(*http.Request, ci.Store) (T, error) {
	return func(r *http.Request, st ci.Store) (T, error) {
		id, err := pathID(r, param)
		if err != nil {
			var zero T
			return zero, err
		}
		x, err := get(st, r.Context(), id)
		return x, notFound(err, "no %s %d", what, id)
	}
}

// toJSON shapes every item.
func toJSON[T, J any](items []T, shape func(T) J) []J {
	out := make([]J, 0, len(items))
	for _, x := range items {
		out = append(out, shape(x))
	}
	return out
}

// Builders.

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

// configuredBuilders returns the stored records of the configured builders,
// in configuration order.
func (a *app) configuredBuilders(ctx context.Context, st ci.Store) ([]*ci.Builder, error) {
	all, err := st.ListBuilders(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[int64]*ci.Builder{}
	for _, b := range all {
		byID[b.ID] = b
	}
	var out []*ci.Builder
	for _, bc := range a.m.Config().Builders {
		if id, ok := a.m.BuilderID(bc.Name); ok && byID[id] != nil {
			out = append(out, byID[id])
		}
	}
	return out, nil
}

func (a *app) apiBuilders(r *http.Request, st ci.Store) (any, error) {
	p, err := parseList(r, "builders", []string{"builderid"}, "name", "builderid", "tags")
	if err != nil {
		return nil, err
	}
	bs, err := a.configuredBuilders(r.Context(), st)
	if err != nil {
		return nil, err
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].ID < bs[j].ID })
	var out []builderJSON
	for _, b := range bs {
		if v, ok := p.filters["name"]; ok && b.Name != v {
			continue
		}
		if v, ok := p.filters["builderid"]; ok && strconv.FormatInt(b.ID, 10) != v {
			continue
		}
		if v, ok := p.filters["tags"]; ok && !slices.Contains(b.Tags, v) {
			continue
		}
		out = append(out, toBuilderJSON(b))
	}
	total := len(out)
	return list("builders", page(out, p.q), total), nil
}

// findBuilder resolves {builder}: an ID or a name.
func (a *app) findBuilder(r *http.Request, st ci.Store) (*ci.Builder, error) {
	key := r.PathValue("builder")
	if id, err := strconv.ParseInt(key, 10, 64); err == nil {
		b, err := st.GetBuilder(r.Context(), id)
		return b, notFound(err, "no builder %d", id)
	}
	id, ok := a.m.BuilderID(key)
	if !ok {
		return nil, fmt.Errorf("%w: no builder %q", errNotFound, key)
	}
	return st.GetBuilder(r.Context(), id)
}

// Builds.

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
	// Kiln's, set while a running build's worker is silent: since when
	// nothing has been heard from it, and when it will be declared lost,
	// the build ending as RETRY to be built again, unless it answers.
	WorkerSilentSince any `json:"worker_silent_since,omitempty"`
	RetryAt           any `json:"retry_at,omitempty"`
}

// silentWorkers returns the status of the connected workers that are
// silent now, by worker ID.
func (a *app) silentWorkers() map[int64]ci.WorkerStatus {
	var out map[int64]ci.WorkerStatus
	for _, w := range a.m.Workers() {
		if !w.LostAt.IsZero() {
			if out == nil {
				out = map[int64]ci.WorkerStatus{}
			}
			out[w.ID] = w
		}
	}
	return out
}

// markSilent sets the silence fields of j, a build, if it runs on a
// silent worker.
func markSilent(j *buildJSON, b *ci.Build, silent map[int64]ci.WorkerStatus) {
	if w, ok := silent[b.WorkerID]; ok && !b.Complete {
		j.WorkerSilentSince, j.RetryAt = epoch(w.SilentSince), epoch(w.LostAt)
	}
}

// propsJSON gives properties in Buildbot's form, name -> [value, source],
// keeping those keep accepts.
func propsJSON(p ci.Properties, keep func(string) bool) map[string]any {
	out := map[string]any{}
	for k, v := range p {
		if keep == nil || keep(k) {
			out[k] = []any{v.Value, v.Source}
		}
	}
	return out
}

func toBuildJSON(b *ci.Build, keep func(string) bool) buildJSON {
	j := buildJSON{
		BuildID: b.ID, Number: b.Number, BuilderID: b.BuilderID, BuildRequestID: b.BuildRequestID,
		WorkerID: b.WorkerID, MasterID: 1, StartedAt: epoch(b.StartedAt), CompleteAt: epoch(b.CompleteAt),
		Complete: b.Complete, StateString: b.StateString, Properties: map[string]any{},
	}
	if b.Complete {
		r := int(b.Results)
		j.Results = &r
	}
	if keep != nil {
		j.Properties = propsJSON(b.Properties, keep)
	}
	return j
}

// propertyFilter reads ?property= (Buildbot's: "*" for all, or names):
// which properties builds in a list carry; nil for none.
func propertyFilter(v url.Values) func(string) bool {
	names := v["property"]
	if len(names) == 0 {
		return nil
	}
	if slices.Contains(names, "*") {
		return func(string) bool { return true }
	}
	return func(n string) bool { return slices.Contains(names, n) }
}

// buildQuery reads the list parameters of a builds request.
func buildQuery(r *http.Request) (ci.BuildQuery, error) {
	var q ci.BuildQuery
	p, err := parseList(r, "builds", []string{"buildid", "number"}, "builderid", "workerid", "complete")
	if err != nil {
		return q, err
	}
	q.Query = p.q
	if q.BuilderID, err = p.id("builderid"); err != nil {
		return q, err
	}
	if q.WorkerID, err = p.id("workerid"); err != nil {
		return q, err
	}
	if q.Complete, err = p.flag("complete"); err != nil {
		return q, err
	}
	return q, nil
}

func (a *app) listBuilds(r *http.Request, st ci.Store, q ci.BuildQuery) (any, error) {
	bs, total, err := st.ListBuilds(r.Context(), q)
	if err != nil {
		return nil, err
	}
	keep := propertyFilter(r.URL.Query())
	silent := a.silentWorkers()
	out := make([]buildJSON, 0, len(bs))
	for _, b := range bs {
		j := toBuildJSON(a.current(b), keep)
		markSilent(&j, b, silent)
		out = append(out, j)
	}
	return list("builds", out, total), nil
}

// current gives a running build its current properties.
func (a *app) current(b *ci.Build) *ci.Build {
	if !b.Complete {
		if p, ok := a.m.BuildProperties(b.ID); ok {
			b.Properties = p
		}
	}
	return b
}

func (a *app) apiBuilds(r *http.Request, st ci.Store) (any, error) {
	q, err := buildQuery(r)
	if err != nil {
		return nil, err
	}
	return a.listBuilds(r, st, q)
}

func (a *app) apiBuilderBuilds(r *http.Request, st ci.Store) (any, error) {
	b, err := a.findBuilder(r, st)
	if err != nil {
		return nil, err
	}
	q, err := buildQuery(r)
	if err != nil {
		return nil, err
	}
	q.BuilderID = b.ID
	return a.listBuilds(r, st, q)
}

func (a *app) apiChangeBuilds(r *http.Request, st ci.Store) (any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return nil, err
	}
	if _, err := st.GetChange(r.Context(), id); err != nil {
		return nil, notFound(err, "no change %d", id)
	}
	q, err := buildQuery(r)
	if err != nil {
		return nil, err
	}
	q.ChangeID = id
	return a.listBuilds(r, st, q)
}

// findBuild resolves {id} or {builder}/{number}.
func (a *app) findBuild(r *http.Request, st ci.Store) (*ci.Build, error) {
	if r.PathValue("number") != "" {
		b, err := a.findBuilder(r, st)
		if err != nil {
			return nil, err
		}
		n, err := pathID(r, "number")
		if err != nil {
			return nil, err
		}
		build, err := st.FindBuild(r.Context(), b.ID, int(n))
		if err != nil {
			return nil, notFound(err, "no build %d of builder %q", n, b.Name)
		}
		return a.current(build), nil
	}
	b, err := byID("id", "build", ci.Store.GetBuild)(r, st)
	if err != nil {
		return nil, err
	}
	return a.current(b), nil
}

func (a *app) apiBuild(r *http.Request, st ci.Store) (any, error) {
	b, err := a.findBuild(r, st)
	if err != nil {
		return nil, err
	}
	j := toBuildJSON(b, func(string) bool { return true })
	markSilent(&j, b, a.silentWorkers())
	return one("builds", j), nil
}

func (a *app) apiBuilderBuild(r *http.Request, st ci.Store) (any, error) { return a.apiBuild(r, st) }

// Steps.

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

func toStepJSON(s *ci.StepRecord) stepJSON {
	j := stepJSON{StepID: s.ID, BuildID: s.BuildID, Number: s.Number, Name: s.Name, StartedAt: epoch(s.StartedAt),
		CompleteAt: epoch(s.CompleteAt), Complete: s.Complete, StateString: s.StateString, Hidden: s.Hidden, URLs: s.URLs}
	if j.URLs == nil {
		j.URLs = []ci.StepURL{}
	}
	if s.Complete {
		res := int(s.Results)
		j.Results = &res
	}
	return j
}

// apiSteps answers the steps of a build.
func (a *app) apiSteps() apiFunc {
	return children("steps", a.findBuild, func(ctx context.Context, st ci.Store, b *ci.Build) ([]*ci.StepRecord, error) {
		return st.ListSteps(ctx, b.ID)
	}, toStepJSON)
}

// findStep resolves {stepid}, or {step} (a number or a name) of the build.
func (a *app) findStep(r *http.Request, st ci.Store) (*ci.StepRecord, error) {
	if r.PathValue("stepid") != "" {
		return byID("stepid", "step", ci.Store.GetStep)(r, st)
	}
	b, err := a.findBuild(r, st)
	if err != nil {
		return nil, err
	}
	steps, err := st.ListSteps(r.Context(), b.ID)
	if err != nil {
		return nil, err
	}
	key := r.PathValue("step")
	for _, s := range steps {
		if s.Name == key || strconv.Itoa(s.Number) == key {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: build %d has no step %q", errNotFound, b.ID, key)
}

// Logs.

type logJSON struct {
	LogID    int64  `json:"logid"`
	Name     string `json:"name"`
	Slug     string `json:"slug"`
	StepID   int64  `json:"stepid"`
	Complete bool   `json:"complete"`
	NumLines int    `json:"num_lines"`
	Type     string `json:"type"`
}

func toLogJSON(l *ci.Log) logJSON {
	return logJSON{LogID: l.ID, Name: l.Name, Slug: l.Slug, StepID: l.StepID, Complete: l.Complete, NumLines: l.NumLines, Type: l.Type}
}

// apiLogs answers the logs of a step.
func (a *app) apiLogs() apiFunc {
	return children("logs", a.findStep, func(ctx context.Context, st ci.Store, s *ci.StepRecord) ([]*ci.Log, error) {
		return st.ListLogs(ctx, s.ID)
	}, toLogJSON)
}

// findLog resolves {logid}, or {log} (a slug) of the step.
func (a *app) findLog(r *http.Request, st ci.Store) (*ci.Log, error) {
	if r.PathValue("logid") != "" {
		return byID("logid", "log", ci.Store.GetLog)(r, st)
	}
	s, err := a.findStep(r, st)
	if err != nil {
		return nil, err
	}
	logs, err := st.ListLogs(r.Context(), s.ID)
	if err != nil {
		return nil, err
	}
	key := r.PathValue("log")
	for _, l := range logs {
		if l.Slug == key {
			return l, nil
		}
	}
	return nil, fmt.Errorf("%w: step %d has no log %q", errNotFound, s.ID, key)
}

type logChunkJSON struct {
	LogID     int64  `json:"logid"`
	FirstLine int    `json:"firstline"`
	Content   string `json:"content"`
}

// apiLogContents answers the lines of a log as one chunk, with
// ?offset= (the first line) and ?limit= (how many lines), as Buildbot's
// /contents does. Stream logs keep their stream letters.
func (a *app) apiLogContents(r *http.Request, st ci.Store) (any, error) {
	l, err := a.findLog(r, st)
	if err != nil {
		return nil, err
	}
	p, err := parseList(r, "log contents", nil)
	if err != nil {
		return nil, err
	}
	// Lines are counted apart from list items: up to MaxLogChunk.
	limit := MaxLogChunk
	if s := r.URL.Query().Get("limit"); s != "" {
		n, _ := strconv.Atoi(s) // checked by parseList
		if n > 0 {
			limit = min(n, MaxLogChunk)
		}
	}
	last := p.q.Offset + limit - 1
	text := ""
	if p.q.Offset < l.NumLines {
		if text, err = st.LogLines(r.Context(), l.ID, p.q.Offset, last); err != nil {
			return nil, err
		}
	}
	return list("logchunks", []logChunkJSON{{LogID: l.ID, FirstLine: p.q.Offset, Content: text}}, 1), nil
}

// rawLog serves a log as a text file to download (/raw) or to read in the
// browser (/raw_inline): stream logs without their stream letters, as
// Buildbot's /raw does.
func (a *app) rawLog(inline bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		st, err := a.store(ctx)
		if err != nil {
			a.apiError(w, r, err)
			return
		}
		l, err := a.findLog(r, st)
		if err != nil {
			a.apiError(w, r, err)
			return
		}
		name, err := a.logFileName(ctx, st, l)
		if err != nil {
			a.apiError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		disposition := "attachment"
		if inline {
			disposition = "inline"
		}
		w.Header().Set("Content-Disposition", disposition+`; filename="`+name+`"`)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		// In pieces, so that a long log is never held whole.
		const piece = 10000
		for first := 0; first < l.NumLines; first += piece {
			text, err := st.LogLines(ctx, l.ID, first, first+piece-1)
			if err != nil {
				a.log.Error("reading a log to download failed", "log", l.ID, "err", err)
				return
			}
			if l.Type == ci.LogStream {
				text = stripStreams(text)
			}
			if _, err := w.Write([]byte(text)); err != nil {
				return
			}
		}
	})
}

// stripStreams removes the stream letter that starts each line of a
// stream log.
func stripStreams(text string) string {
	var b strings.Builder
	b.Grow(len(text))
	for line := range strings.SplitAfterSeq(text, "\n") {
		if line != "" {
			b.WriteString(line[1:])
		}
	}
	return b.String()
}

// logFileName names a downloaded log: builder_build_N_step_S_log.log, with
// anything but letters, digits, '-', '_' and '.' replaced.
func (a *app) logFileName(ctx context.Context, st ci.Store, l *ci.Log) (string, error) {
	s, err := st.GetStep(ctx, l.StepID)
	if err != nil {
		return "", err
	}
	b, err := st.GetBuild(ctx, s.BuildID)
	if err != nil {
		return "", err
	}
	builder, err := st.GetBuilder(ctx, b.BuilderID)
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s_build_%d_step_%s_%s.log", builder.Name, b.Number, s.Name, l.Slug)
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, name), nil
}

// Workers.

type workerJSON struct {
	WorkerID     int64            `json:"workerid"`
	Name         string           `json:"name"`
	WorkerInfo   map[string]any   `json:"workerinfo"`
	ConnectedTo  []map[string]any `json:"connected_to"`
	ConfiguredOn []map[string]any `json:"configured_on"`
	Paused       bool             `json:"paused"`
	Graceful     bool             `json:"graceful"`
	// Kiln's, set while the worker is connected but silent: since when
	// nothing has been heard from it, and when it will be declared lost.
	SilentSince any `json:"silent_since,omitempty"`
	LostAt      any `json:"lost_at,omitempty"`
}

// safeInfo returns what a worker said of itself, without its environment:
// environment variables may hold secrets, and are never shown.
func safeInfo(info map[string]any) map[string]any {
	out := make(map[string]any, len(info))
	for k, v := range info {
		if k != "environ" {
			out[k] = v
		}
	}
	return out
}

func (a *app) toWorkerJSON(w *ci.Worker, silent map[int64]ci.WorkerStatus) workerJSON {
	j := workerJSON{WorkerID: w.ID, Name: w.Name, WorkerInfo: safeInfo(w.Info), ConnectedTo: []map[string]any{}, ConfiguredOn: []map[string]any{}}
	if w.Connected {
		j.ConnectedTo = append(j.ConnectedTo, map[string]any{"masterid": 1})
	}
	if s, ok := silent[w.ID]; ok {
		j.SilentSince, j.LostAt = epoch(s.SilentSince), epoch(s.LostAt)
	}
	for _, s := range a.m.Workers() {
		if s.ID == w.ID {
			j.Paused, j.Graceful = s.Paused, s.Graceful
		}
	}
	for _, b := range a.m.Config().Builders {
		if slices.Contains(b.Workers, w.Name) {
			if id, ok := a.m.BuilderID(b.Name); ok {
				j.ConfiguredOn = append(j.ConfiguredOn, map[string]any{"builderid": id, "masterid": 1})
			}
		}
	}
	return j
}

func (a *app) apiWorkers(r *http.Request, st ci.Store) (any, error) {
	p, err := parseList(r, "workers", []string{"workerid"}, "name", "workerid")
	if err != nil {
		return nil, err
	}
	ws, err := st.ListWorkers(r.Context())
	if err != nil {
		return nil, err
	}
	silent := a.silentWorkers()
	var out []workerJSON
	for _, w := range ws {
		if _, ok := a.m.WorkerConfig(w.Name); !ok {
			continue // no longer configured
		}
		if v, ok := p.filters["name"]; ok && w.Name != v {
			continue
		}
		if v, ok := p.filters["workerid"]; ok && strconv.FormatInt(w.ID, 10) != v {
			continue
		}
		out = append(out, a.toWorkerJSON(w, silent))
	}
	total := len(out)
	return list("workers", page(out, p.q), total), nil
}

func (a *app) apiWorker(r *http.Request, st ci.Store) (any, error) {
	key := r.PathValue("worker")
	ws, err := st.ListWorkers(r.Context())
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		if w.Name == key || strconv.FormatInt(w.ID, 10) == key {
			return one("workers", a.toWorkerJSON(w, a.silentWorkers())), nil
		}
	}
	return nil, fmt.Errorf("%w: no worker %q", errNotFound, key)
}

// Build requests and buildsets.

type requestJSON struct {
	BuildRequestID    int64          `json:"buildrequestid"`
	BuildsetID        int64          `json:"buildsetid"`
	BuilderID         int64          `json:"builderid"`
	Priority          int            `json:"priority"`
	Claimed           bool           `json:"claimed"`
	ClaimedAt         any            `json:"claimed_at"`
	ClaimedByMasterID any            `json:"claimed_by_masterid"`
	Complete          bool           `json:"complete"`
	CompleteAt        any            `json:"complete_at"`
	Results           *int           `json:"results"`
	SubmittedAt       any            `json:"submitted_at"`
	WaitedFor         bool           `json:"waited_for"`
	Properties        map[string]any `json:"properties"`
}

func toRequestJSON(r *ci.BuildRequest) requestJSON {
	j := requestJSON{BuildRequestID: r.ID, BuildsetID: r.BuildsetID, BuilderID: r.BuilderID, Priority: r.Priority,
		Claimed: r.Claimed, ClaimedAt: epoch(r.ClaimedAt), Complete: r.Complete, CompleteAt: epoch(r.CompleteAt),
		SubmittedAt: epoch(r.SubmittedAt), WaitedFor: r.WaitedFor, Properties: map[string]any{}}
	if r.Claimed {
		j.ClaimedByMasterID = 1
	}
	if r.Complete {
		res := int(r.Results)
		j.Results = &res
	}
	return j
}

func requestQuery(r *http.Request) (ci.RequestQuery, error) {
	var q ci.RequestQuery
	p, err := parseList(r, "build requests", []string{"buildrequestid"}, "builderid", "buildsetid", "complete", "claimed")
	if err != nil {
		return q, err
	}
	q.Query = p.q
	if q.BuilderID, err = p.id("builderid"); err != nil {
		return q, err
	}
	if q.BuildsetID, err = p.id("buildsetid"); err != nil {
		return q, err
	}
	if q.Complete, err = p.flag("complete"); err != nil {
		return q, err
	}
	if q.Claimed, err = p.flag("claimed"); err != nil {
		return q, err
	}
	return q, nil
}

func (a *app) listRequests(r *http.Request, st ci.Store, q ci.RequestQuery) (any, error) {
	reqs, total, err := st.ListRequests(r.Context(), q)
	if err != nil {
		return nil, err
	}
	out := make([]requestJSON, 0, len(reqs))
	for _, br := range reqs {
		out = append(out, toRequestJSON(br))
	}
	return list("buildrequests", out, total), nil
}

func (a *app) apiRequests(r *http.Request, st ci.Store) (any, error) {
	q, err := requestQuery(r)
	if err != nil {
		return nil, err
	}
	return a.listRequests(r, st, q)
}

func (a *app) apiBuilderRequests(r *http.Request, st ci.Store) (any, error) {
	b, err := a.findBuilder(r, st)
	if err != nil {
		return nil, err
	}
	q, err := requestQuery(r)
	if err != nil {
		return nil, err
	}
	q.BuilderID = b.ID
	return a.listRequests(r, st, q)
}

type sourceStampJSON struct {
	SSID       int64  `json:"ssid"`
	Branch     string `json:"branch"`
	Codebase   string `json:"codebase"`
	Project    string `json:"project"`
	Repository string `json:"repository"`
	Revision   any    `json:"revision"`
	CreatedAt  any    `json:"created_at"`
	Patch      any    `json:"patch"`
}

func toSourceStampJSON(ss ci.SourceStamp) sourceStampJSON {
	j := sourceStampJSON{SSID: ss.ID, Branch: ss.Branch, Codebase: ss.Codebase, Project: ss.Project,
		Repository: ss.Repository, CreatedAt: epoch(ss.CreatedAt)}
	if ss.Revision != "" {
		j.Revision = ss.Revision
	}
	return j
}

type buildsetJSON struct {
	BSID               int64             `json:"bsid"`
	ExternalIDString   any               `json:"external_idstring"`
	Reason             string            `json:"reason"`
	SubmittedAt        any               `json:"submitted_at"`
	Complete           bool              `json:"complete"`
	CompleteAt         any               `json:"complete_at"`
	Results            *int              `json:"results"`
	SourceStamps       []sourceStampJSON `json:"sourcestamps"`
	ParentBuildID      any               `json:"parent_buildid"`
	ParentRelationship any               `json:"parent_relationship"`
}

func toBuildsetJSON(bs *ci.Buildset) buildsetJSON {
	j := buildsetJSON{BSID: bs.ID, Reason: bs.Reason, SubmittedAt: epoch(bs.SubmittedAt), Complete: bs.Complete,
		CompleteAt: epoch(bs.CompleteAt), SourceStamps: []sourceStampJSON{}}
	if bs.ExternalID != "" {
		j.ExternalIDString = bs.ExternalID
	}
	if bs.Complete {
		res := int(bs.Results)
		j.Results = &res
	}
	if bs.ParentBuildID != 0 {
		j.ParentBuildID = bs.ParentBuildID
	}
	for _, ss := range bs.SourceStamps {
		j.SourceStamps = append(j.SourceStamps, toSourceStampJSON(ss))
	}
	return j
}

func (a *app) apiBuildsets(r *http.Request, st ci.Store) (any, error) {
	p, err := parseList(r, "buildsets", []string{"bsid"}, "complete")
	if err != nil {
		return nil, err
	}
	q := ci.BuildsetQuery{Query: p.q}
	if q.Complete, err = p.flag("complete"); err != nil {
		return nil, err
	}
	sets, total, err := st.ListBuildsets(r.Context(), q)
	if err != nil {
		return nil, err
	}
	return list("buildsets", toJSON(sets, toBuildsetJSON), total), nil
}

// Changes.

type changeJSON struct {
	ChangeID        int64           `json:"changeid"`
	Author          string          `json:"author"`
	Committer       string          `json:"committer"`
	Comments        string          `json:"comments"`
	Branch          string          `json:"branch"`
	Revision        string          `json:"revision"`
	RevLink         string          `json:"revlink"`
	WhenTimestamp   any             `json:"when_timestamp"`
	Category        string          `json:"category"`
	Repository      string          `json:"repository"`
	Codebase        string          `json:"codebase"`
	Project         string          `json:"project"`
	Files           []string        `json:"files"`
	Properties      map[string]any  `json:"properties"`
	SourceStamp     sourceStampJSON `json:"sourcestamp"`
	ParentChangeIDs []int64         `json:"parent_changeids"`
}

func toChangeJSON(c *ci.Change) changeJSON {
	j := changeJSON{ChangeID: c.ID, Author: c.Author, Committer: c.Committer, Comments: c.Comments, Branch: c.Branch,
		Revision: c.Revision, RevLink: c.RevLink, WhenTimestamp: epoch(c.When), Category: c.Category,
		Repository: c.Repository, Codebase: c.Codebase, Project: c.Project, Files: c.Files,
		Properties: map[string]any{}, ParentChangeIDs: []int64{}}
	if j.Files == nil {
		j.Files = []string{}
	}
	for k, v := range c.Properties {
		j.Properties[k] = []any{v, ci.SourceChange}
	}
	ss := c.SourceStamp()
	ss.ID = c.SourceStampID
	j.SourceStamp = toSourceStampJSON(ss)
	return j
}

func (a *app) apiChanges(r *http.Request, st ci.Store) (any, error) {
	p, err := parseList(r, "changes", []string{"changeid"})
	if err != nil {
		return nil, err
	}
	cs, total, err := st.ListChanges(r.Context(), p.q)
	if err != nil {
		return nil, err
	}
	return list("changes", toJSON(cs, toChangeJSON), total), nil
}

// Force schedulers.

func (a *app) apiForceSchedulers(r *http.Request, st ci.Store) (any, error) {
	var out []forceSchedulerJSON
	for _, f := range a.forceSchedulers("") {
		out = append(out, toForceSchedulerJSON(f))
	}
	return list("forceschedulers", out, len(out)), nil
}

func (a *app) apiBuilderForceSchedulers(r *http.Request, st ci.Store) (any, error) {
	b, err := a.findBuilder(r, st)
	if err != nil {
		return nil, err
	}
	var out []forceSchedulerJSON
	for _, f := range a.forceSchedulers(b.Name) {
		out = append(out, toForceSchedulerJSON(f))
	}
	return list("forceschedulers", out, len(out)), nil
}

func (a *app) apiForceScheduler(r *http.Request, st ci.Store) (any, error) {
	f, err := a.forceScheduler(r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	return one("forceschedulers", toForceSchedulerJSON(f)), nil
}
