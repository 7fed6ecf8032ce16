package webui

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// apiFunc answers an API request with a value to encode, or an error.
type apiFunc func(r *http.Request, st ci.Store) (any, error)

// An apiRoute is one GET endpoint of the API: its path under /api/v2, the
// collection it answers (the plural of a type of apiTypes), and its
// function. /application.spec lists them.
type apiRoute struct {
	path, plural string
	fn           apiFunc
}

// getRoutes are the API's GET endpoints, as Buildbot 3.7's spec/api.raml
// lists them (but for the force schedulers' and the logs' raw text, below).
func (a *app) getRoutes() []apiRoute {
	return []apiRoute{
		{"/{$}", "rootlinks", a.apiRoot},
		{"/application.spec", "specs", a.apiSpec},

		{"/builders", "builders", a.apiBuilders},
		{"/builders/{builder}", "builders", single("builders", a.findBuilder, toBuilderJSON)},
		{"/builders/{builder}/builds", "builds", a.apiBuilderBuilds},
		{"/builders/{builder}/builds/{number}", "builds", a.apiBuilderBuild},
		{"/builders/{builder}/builds/{number}/changes", "changes", a.apiBuildChanges},
		{"/builders/{builder}/builds/{number}/properties", "properties", a.apiBuildProperties},
		{"/builders/{builder}/builds/{number}/data", "build_data", a.apiBuildData},
		{"/builders/{builder}/builds/{number}/steps", "steps", a.apiSteps()},
		{"/builders/{builder}/builds/{number}/steps/{step}", "steps", single("steps", a.findStep, toStepJSON)},
		{"/builders/{builder}/builds/{number}/steps/{step}/logs", "logs", a.apiLogs()},
		{"/builders/{builder}/builds/{number}/steps/{step}/logs/{log}", "logs", single("logs", a.findLog, toLogJSON)},
		{"/builders/{builder}/builds/{number}/steps/{step}/logs/{log}/contents", "logchunks", a.apiLogContents},
		{"/builders/{builder}/buildrequests", "buildrequests", a.apiBuilderRequests},
		{"/builders/{builder}/forceschedulers", "forceschedulers", a.apiBuilderForceSchedulers},
		{"/builders/{builder}/workers", "workers", a.apiBuilderWorkers},
		{"/builders/{builder}/workers/{worker}", "workers", a.apiBuilderWorker},
		{"/builders/{builder}/masters", "masters", a.apiBuilderMasters},
		{"/builders/{builder}/masters/{masterid}", "masters", a.apiBuilderMaster},
		{"/builders/{builder}/builds/{number}/steps/{step}/test_result_sets", "test_result_sets", testResultSets(a.stepSets)},
		{"/builders/{builder}/test_result_sets", "test_result_sets", testResultSets(a.builderSets)},
		{"/builders/{builder}/test_code_paths", "test_code_paths", a.testStrings("test_code_paths", ci.Store.TestCodePaths)},
		{"/builders/{builder}/test_names", "test_names", a.testStrings("test_names", ci.Store.TestNames)},

		{"/builds", "builds", a.apiBuilds},
		{"/builds/{id}", "builds", a.apiBuild},
		{"/builds/{id}/changes", "changes", a.apiBuildChanges},
		{"/builds/{id}/properties", "properties", a.apiBuildProperties},
		{"/builds/{id}/data", "build_data", a.apiBuildData},
		{"/builds/{id}/data/{name}", "build_data", a.apiBuildDatum},
		{"/builds/{id}/data/{name}/value", "build_data", a.apiBuildDatum},
		{"/builds/{id}/test_result_sets", "test_result_sets", testResultSets(a.buildSets)},
		{"/builds/{id}/steps", "steps", a.apiSteps()},
		{"/builds/{id}/steps/{step}", "steps", single("steps", a.findStep, toStepJSON)},
		{"/builds/{id}/steps/{step}/logs", "logs", a.apiLogs()},
		{"/builds/{id}/steps/{step}/logs/{log}", "logs", single("logs", a.findLog, toLogJSON)},
		{"/builds/{id}/steps/{step}/logs/{log}/contents", "logchunks", a.apiLogContents},
		{"/builds/{id}/steps/{step}/test_result_sets", "test_result_sets", testResultSets(a.stepSets)},

		{"/steps/{stepid}", "steps", single("steps", a.findStep, toStepJSON)},
		{"/steps/{stepid}/logs", "logs", a.apiLogs()},
		{"/steps/{stepid}/logs/{log}", "logs", single("logs", a.findLog, toLogJSON)},
		{"/steps/{stepid}/logs/{log}/contents", "logchunks", a.apiLogContents},
		{"/steps/{stepid}/test_result_sets", "test_result_sets", testResultSets(a.stepSets)},
		{"/logs/{logid}", "logs", single("logs", a.findLog, toLogJSON)},
		{"/logs/{logid}/contents", "logchunks", a.apiLogContents},

		{"/test_result_sets", "test_result_sets", testResultSets(allSets)},
		{"/test_result_sets/{setid}", "test_result_sets", a.apiTestResultSet},
		{"/test_result_sets/{setid}/results", "test_results", a.apiTestResults},
		{"/test_result_sets/{setid}/raw_results", "test_raw_results", a.apiTestRawResults},

		{"/workers", "workers", a.apiWorkers},
		{"/workers/{worker}", "workers", a.apiWorker},
		{"/workers/{worker}/builds", "builds", a.apiWorkerBuilds},
		{"/buildrequests", "buildrequests", a.apiRequests},
		{"/buildrequests/{id}", "buildrequests", single("buildrequests", byID("id", "build request", ci.Store.GetRequest), toRequestJSON)},
		{"/buildrequests/{id}/builds", "builds", a.apiRequestBuilds},
		{"/buildsets", "buildsets", a.apiBuildsets},
		{"/buildsets/{id}", "buildsets", single("buildsets", byID("id", "buildset", ci.Store.GetBuildset), toBuildsetJSON)},
		{"/buildsets/{id}/properties", "properties", a.apiBuildsetProperties},
		{"/changes", "changes", a.apiChanges},
		{"/changes/{id}", "changes", a.apiChange},
		{"/changes/{id}/builds", "builds", a.apiChangeBuilds},
		{"/sourcestamps", "sourcestamps", a.apiSourceStamps},
		{"/sourcestamps/{ssid}", "sourcestamps", a.apiSourceStamp},
		{"/sourcestamps/{ssid}/changes", "changes", a.apiSourceStampChanges},
		{"/forceschedulers", "forceschedulers", a.apiForceSchedulers},
		{"/forceschedulers/{name}", "forceschedulers", a.apiForceScheduler},
		{"/schedulers", "schedulers", a.apiSchedulers},
		{"/schedulers/{schedulerid}", "schedulers", a.apiScheduler},
		{"/changesources", "changesources", a.apiChangeSources},
		{"/changesources/{changesourceid}", "changesources", a.apiChangeSource},

		{"/masters", "masters", a.apiMasters},
		{"/masters/{masterid}", "masters", a.apiMaster},
		{"/masters/{masterid}/builders", "builders", a.ofMaster(a.apiBuilders)},
		{"/masters/{masterid}/builders/{builder}", "builders", a.ofMaster(single("builders", a.findBuilder, toBuilderJSON))},
		{"/masters/{masterid}/builders/{builder}/workers", "workers", a.ofMaster(a.apiBuilderWorkers)},
		{"/masters/{masterid}/builders/{builder}/workers/{worker}", "workers", a.ofMaster(a.apiBuilderWorker)},
		{"/masters/{masterid}/workers", "workers", a.ofMaster(a.apiWorkers)},
		{"/masters/{masterid}/workers/{worker}", "workers", a.ofMaster(a.apiWorker)},
		{"/masters/{masterid}/schedulers", "schedulers", a.ofMaster(a.apiSchedulers)},
		{"/masters/{masterid}/schedulers/{schedulerid}", "schedulers", a.ofMaster(a.apiScheduler)},
		{"/masters/{masterid}/changesources", "changesources", a.ofMaster(a.apiChangeSources)},
		{"/masters/{masterid}/changesources/{changesourceid}", "changesources", a.ofMaster(a.apiChangeSource)},
	}
}

func (a *app) apiRoutes(mux *http.ServeMux) {
	for _, rt := range a.getRoutes() {
		mux.Handle("GET /api/v2"+rt.path, a.api(rt.fn))
	}
	// A log's text, to download (raw) or to read in the browser (raw_inline).
	for _, prefix := range []string{"/builds/{id}/steps/{step}", "/builders/{builder}/builds/{number}/steps/{step}", "/steps/{stepid}"} {
		mux.Handle("GET /api/v2"+prefix+"/logs/{log}/raw", a.rawLog(false))
		mux.Handle("GET /api/v2"+prefix+"/logs/{log}/raw_inline", a.rawLog(true))
	}
	mux.Handle("GET /api/v2/logs/{logid}/raw", a.rawLog(false))
	mux.Handle("GET /api/v2/logs/{logid}/raw_inline", a.rawLog(true))

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
		if c, ok := v.(collection); ok && !c.done {
			spec, err := parseSpecOf(r, c.name, reflect.TypeOf(c.items).Elem())
			if err == nil {
				v, err = spec.apply(c)
			}
			if err != nil {
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

// A collection is an answer {"<name>": [...], "meta": {"total": N}}, or,
// for a single record, {"<name>": [record], "meta": {}}, as Buildbot's.
type collection struct {
	name  string
	items any // a slice
	total int
	// single is set for the answer of one record.
	single bool
	// done is set once the list's result spec (filters, order, page) is
	// applied: by the endpoint (a list the store pages), or by api.
	done bool
}

func (c collection) MarshalJSON() ([]byte, error) {
	meta := map[string]int{}
	if !c.single {
		meta["total"] = c.total
	}
	return json.Marshal(map[string]any{c.name: c.items, "meta": meta})
}

// list is the answer of a list held whole in memory; api applies the
// request's result spec to it.
func list[T any](name string, items []T, total int) collection {
	if items == nil {
		items = []T{}
	}
	return collection{name: name, items: items, total: total}
}

// one is the answer for a single record: Buildbot answers a list of one.
func one[T any](name string, item T) collection {
	c := list(name, []T{item}, 1)
	c.single = true
	return c
}

// epoch gives a time as Unix seconds, or nil for the zero time.
func epoch(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
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
	bs, err := a.configuredBuilders(r.Context(), st)
	if err != nil {
		return nil, err
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].ID < bs[j].ID })
	out := toJSON(bs, toBuilderJSON)
	return list("builders", out, len(out)), nil
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
		WorkerID: b.WorkerID, MasterID: cmp.Or(b.MasterID, 1), StartedAt: epoch(b.StartedAt), CompleteAt: epoch(b.CompleteAt),
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

// buildQuery reads the result spec of a builds request, and pops the
// filters the store applies into a query.
func buildQuery(r *http.Request) (*resultSpec, ci.BuildQuery, error) {
	var q ci.BuildQuery
	spec, err := parseSpec[buildJSON](r, "builds")
	if err != nil {
		return nil, q, err
	}
	if q.BuilderID, err = spec.popID("builderid"); err != nil {
		return nil, q, err
	}
	if q.WorkerID, err = spec.popID("workerid"); err != nil {
		return nil, q, err
	}
	q.Complete = spec.popFlag("complete")
	return spec, q, nil
}

func (a *app) listBuilds(r *http.Request, st ci.Store, spec *resultSpec, q ci.BuildQuery) (any, error) {
	keep := propertyFilter(r.URL.Query())
	silent := a.silentWorkers()
	idFields := []string{"buildid"}
	if q.BuilderID != 0 {
		idFields = append(idFields, "number")
	}
	return fromStore(spec, "builds", idFields, func(page ci.Query) ([]*ci.Build, int, error) {
		q.Query = page
		return st.ListBuilds(r.Context(), q)
	}, func(b *ci.Build) buildJSON {
		j := toBuildJSON(a.current(b), keep)
		markSilent(&j, b, silent)
		return j
	})
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
	spec, q, err := buildQuery(r)
	if err != nil {
		return nil, err
	}
	return a.listBuilds(r, st, spec, q)
}

func (a *app) apiBuilderBuilds(r *http.Request, st ci.Store) (any, error) {
	b, err := a.findBuilder(r, st)
	if err != nil {
		return nil, err
	}
	spec, q, err := buildQuery(r)
	if err != nil {
		return nil, err
	}
	q.BuilderID = b.ID
	return a.listBuilds(r, st, spec, q)
}

func (a *app) apiChangeBuilds(r *http.Request, st ci.Store) (any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return nil, err
	}
	if _, err := st.GetChange(r.Context(), id); err != nil {
		return nil, notFound(err, "no change %d", id)
	}
	spec, q, err := buildQuery(r)
	if err != nil {
		return nil, err
	}
	q.ChangeID = id
	return a.listBuilds(r, st, spec, q)
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
	// Lines are counted apart from list items: up to MaxLogChunk.
	offset, limit := 0, MaxLogChunk
	v := r.URL.Query()
	if s := v.Get("offset"); s != "" {
		if offset, err = strconv.Atoi(s); err != nil || offset < 0 {
			return nil, fmt.Errorf("%w: offset %q is not a non-negative number", errBadRequest, s)
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: limit %q is not a non-negative number", errBadRequest, s)
		}
		if n > 0 {
			limit = min(n, MaxLogChunk)
		}
	}
	last := offset + limit - 1
	text := ""
	if offset < l.NumLines {
		if text, err = st.LogLines(r.Context(), l.ID, offset, last); err != nil {
			return nil, err
		}
	}
	return one("logchunks", logChunkJSON{LogID: l.ID, FirstLine: offset, Content: text}), nil
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
		// In pieces of about rawPiece bytes, so that a long log is never
		// held whole: the lines of a piece are as many as that many bytes
		// held in the piece before.
		piece := 256
		var stripped []byte // a stream log's piece without its letters
		for first := 0; first < l.NumLines; {
			text, err := st.LogLines(ctx, l.ID, first, first+piece-1)
			if err != nil {
				a.log.Error("reading a log to download failed", "log", l.ID, "err", err)
				return
			}
			first += piece
			if text != "" {
				piece = max(16, min(50_000, piece*rawPiece/len(text)))
			}
			if l.Type == ci.LogStream {
				stripped = appendStripped(stripped[:0], text)
				_, err = w.Write(stripped)
			} else {
				_, err = io.WriteString(w, text)
			}
			if err != nil {
				return
			}
		}
	})
}

// rawPiece is about how many bytes of a log a download reads at once.
const rawPiece = 1 << 20

// appendStripped appends the lines of a stream log's text to dst without
// the stream letter that starts each.
func appendStripped(dst []byte, text string) []byte {
	dst = slices.Grow(dst, len(text))
	for text != "" {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			i = len(text) - 1
		}
		dst = append(dst, text[1:i+1]...)
		text = text[i+1:]
	}
	return dst
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

// workerFacts is what the master knows of its workers beyond the store,
// gathered once for a listing rather than once for each worker (with
// 1,000 workers, once for each made a listing copy the master's list a
// thousand times).
type workerFacts struct {
	status map[int64]ci.WorkerStatus // by worker ID
	on     map[string][]int64        // the IDs of the builders each is configured on, by worker name
}

func (a *app) workerFacts() workerFacts {
	f := workerFacts{status: map[int64]ci.WorkerStatus{}, on: configuredOn(a.m, func(b ci.BuilderConfig) (int64, bool) { return a.m.BuilderID(b.Name) })}
	for _, s := range a.m.Workers() {
		f.status[s.ID] = s
	}
	return f
}

// configuredOn returns, by worker name, what key gives of each builder the
// worker is configured on (a builder skipped when key's second result is
// false), in configuration order.
func configuredOn[T any](m *ci.Master, key func(ci.BuilderConfig) (T, bool)) map[string][]T {
	out := map[string][]T{}
	for _, b := range m.Config().Builders {
		k, ok := key(b)
		if !ok {
			continue
		}
		for _, w := range b.Workers { // listed once each: the configuration is checked
			out[w] = append(out[w], k)
		}
	}
	return out
}

func (a *app) toWorkerJSON(w *ci.Worker, f workerFacts) workerJSON {
	j := workerJSON{WorkerID: w.ID, Name: w.Name, WorkerInfo: safeInfo(w.Info), ConnectedTo: []map[string]any{}, ConfiguredOn: []map[string]any{}}
	if w.Connected {
		j.ConnectedTo = append(j.ConnectedTo, map[string]any{"masterid": 1})
	}
	if s, ok := f.status[w.ID]; ok {
		if !s.LostAt.IsZero() {
			j.SilentSince, j.LostAt = epoch(s.SilentSince), epoch(s.LostAt)
		}
		j.Paused, j.Graceful = s.Paused, s.Graceful
	}
	for _, id := range f.on[w.Name] {
		j.ConfiguredOn = append(j.ConfiguredOn, map[string]any{"builderid": id, "masterid": 1})
	}
	return j
}

func (a *app) apiWorkers(r *http.Request, st ci.Store) (any, error) {
	ws, err := st.ListWorkers(r.Context())
	if err != nil {
		return nil, err
	}
	f := a.workerFacts()
	var out []workerJSON
	for _, w := range ws {
		if _, ok := a.m.WorkerConfig(w.Name); !ok {
			continue // no longer configured
		}
		out = append(out, a.toWorkerJSON(w, f))
	}
	return list("workers", out, len(out)), nil
}

func (a *app) apiWorker(r *http.Request, st ci.Store) (any, error) {
	key := r.PathValue("worker")
	ws, err := st.ListWorkers(r.Context())
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		if w.Name == key || strconv.FormatInt(w.ID, 10) == key {
			return one("workers", a.toWorkerJSON(w, a.workerFacts())), nil
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

// requestQuery reads the result spec of a build requests request, and
// pops the filters the store applies into a query.
func requestQuery(r *http.Request) (*resultSpec, ci.RequestQuery, error) {
	var q ci.RequestQuery
	spec, err := parseSpec[requestJSON](r, "build requests")
	if err != nil {
		return nil, q, err
	}
	if q.BuilderID, err = spec.popID("builderid"); err != nil {
		return nil, q, err
	}
	if q.BuildsetID, err = spec.popID("buildsetid"); err != nil {
		return nil, q, err
	}
	q.Complete = spec.popFlag("complete")
	q.Claimed = spec.popFlag("claimed")
	return spec, q, nil
}

func (a *app) listRequests(r *http.Request, st ci.Store, spec *resultSpec, q ci.RequestQuery) (any, error) {
	return fromStore(spec, "buildrequests", []string{"buildrequestid"}, func(page ci.Query) ([]*ci.BuildRequest, int, error) {
		q.Query = page
		return st.ListRequests(r.Context(), q)
	}, toRequestJSON)
}

func (a *app) apiRequests(r *http.Request, st ci.Store) (any, error) {
	spec, q, err := requestQuery(r)
	if err != nil {
		return nil, err
	}
	return a.listRequests(r, st, spec, q)
}

func (a *app) apiBuilderRequests(r *http.Request, st ci.Store) (any, error) {
	b, err := a.findBuilder(r, st)
	if err != nil {
		return nil, err
	}
	spec, q, err := requestQuery(r)
	if err != nil {
		return nil, err
	}
	q.BuilderID = b.ID
	return a.listRequests(r, st, spec, q)
}

type sourceStampJSON struct {
	SSID       int64  `json:"ssid"`
	Branch     any    `json:"branch"`
	Codebase   string `json:"codebase"`
	Project    string `json:"project"`
	Repository string `json:"repository"`
	Revision   any    `json:"revision"`
	CreatedAt  any    `json:"created_at"`
	Patch      any    `json:"patch"`
}

func toSourceStampJSON(ss ci.SourceStamp) sourceStampJSON {
	return sourceStampJSON{SSID: ss.ID, Branch: orNull(ss.Branch), Codebase: ss.Codebase, Project: ss.Project,
		Repository: ss.Repository, Revision: orNull(ss.Revision), CreatedAt: epoch(ss.CreatedAt)}
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
	spec, err := parseSpec[buildsetJSON](r, "buildsets")
	if err != nil {
		return nil, err
	}
	q := ci.BuildsetQuery{Complete: spec.popFlag("complete")}
	return fromStore(spec, "buildsets", []string{"bsid"}, func(page ci.Query) ([]*ci.Buildset, int, error) {
		q.Query = page
		return st.ListBuildsets(r.Context(), q)
	}, toBuildsetJSON)
}

// Changes.

// changeJSON is a change as Buildbot shows it: what the change does not
// say (author, committer, branch, revision, revlink, category) is null.
type changeJSON struct {
	ChangeID        int64           `json:"changeid"`
	Author          any             `json:"author"`
	Committer       any             `json:"committer"`
	Comments        string          `json:"comments"`
	Branch          any             `json:"branch"`
	Revision        any             `json:"revision"`
	RevLink         any             `json:"revlink"`
	WhenTimestamp   any             `json:"when_timestamp"`
	Category        any             `json:"category"`
	Repository      string          `json:"repository"`
	Codebase        string          `json:"codebase"`
	Project         string          `json:"project"`
	Files           []string        `json:"files"`
	Properties      map[string]any  `json:"properties"`
	SourceStamp     sourceStampJSON `json:"sourcestamp"`
	ParentChangeIDs []int64         `json:"parent_changeids"`
}

// orNull gives a string, or nil (null) for the empty string.
func orNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// toChangeJSON shapes a change with its stored source stamp ss.
func toChangeJSON(c *ci.Change, ss ci.SourceStamp) changeJSON {
	j := changeJSON{ChangeID: c.ID, Author: orNull(c.Author), Committer: orNull(c.Committer), Comments: c.Comments,
		Branch: orNull(c.Branch), Revision: orNull(c.Revision), RevLink: orNull(c.RevLink), WhenTimestamp: epoch(c.When),
		Category: orNull(c.Category), Repository: c.Repository, Codebase: c.Codebase, Project: c.Project, Files: c.Files,
		Properties: map[string]any{}, ParentChangeIDs: []int64{}}
	if j.Files == nil {
		j.Files = []string{}
	}
	for k, v := range c.Properties {
		j.Properties[k] = []any{v, ci.SourceChange}
	}
	j.SourceStamp = toSourceStampJSON(ss)
	return j
}

// changeShape returns the shape of changes read from st: each with its
// stored source stamp (for its creation time), or, if that cannot be read,
// the one the change describes (without it: a shape cannot fail).
func changeShape(ctx context.Context, st ci.Store) func(*ci.Change) changeJSON {
	return func(c *ci.Change) changeJSON {
		ss, err := st.GetSourceStamp(ctx, c.SourceStampID)
		if err != nil {
			ss = c.SourceStamp()
			ss.ID = c.SourceStampID
		}
		return toChangeJSON(c, ss)
	}
}

func (a *app) apiChange(r *http.Request, st ci.Store) (any, error) {
	c, err := byID("id", "change", ci.Store.GetChange)(r, st)
	if err != nil {
		return nil, err
	}
	return one("changes", changeShape(r.Context(), st)(c)), nil
}

func (a *app) apiChanges(r *http.Request, st ci.Store) (any, error) {
	spec, err := parseSpec[changeJSON](r, "changes")
	if err != nil {
		return nil, err
	}
	return fromStore(spec, "changes", []string{"changeid"}, func(page ci.Query) ([]*ci.Change, int, error) {
		return st.ListChanges(r.Context(), page)
	}, changeShape(r.Context(), st))
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
