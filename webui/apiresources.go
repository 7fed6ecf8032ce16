package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/kilnci/kiln/ci"
)

// The resources of Buildbot's data API beyond builds, steps, logs,
// workers, requests and changes: the master and what runs in it, source
// stamps, properties, test results, and the resources Kiln keeps none of
// (build data, change sources), which answer empty lists.

// An apiType is a resource type: its singular name, as Buildbot's spec
// names it, and the Go type of its JSON shape.
type apiType struct {
	name string
	item reflect.Type
}

// apiTypes are the resource types, by the collection (plural) names the
// answers use.
var apiTypes = map[string]apiType{
	"rootlinks":        {"rootlink", reflect.TypeFor[rootLinkJSON]()},
	"specs":            {"spec", reflect.TypeFor[specJSON]()},
	"builders":         {"builder", reflect.TypeFor[builderJSON]()},
	"builds":           {"build", reflect.TypeFor[buildJSON]()},
	"build_data":       {"build_data", reflect.TypeFor[buildDataJSON]()},
	"steps":            {"step", reflect.TypeFor[stepJSON]()},
	"logs":             {"log", reflect.TypeFor[logJSON]()},
	"logchunks":        {"logchunk", reflect.TypeFor[logChunkJSON]()},
	"workers":          {"worker", reflect.TypeFor[workerJSON]()},
	"buildrequests":    {"buildrequest", reflect.TypeFor[requestJSON]()},
	"buildsets":        {"buildset", reflect.TypeFor[buildsetJSON]()},
	"properties":       {"sourcedproperties", reflect.TypeFor[map[string]any]()},
	"changes":          {"change", reflect.TypeFor[changeJSON]()},
	"sourcestamps":     {"sourcestamp", reflect.TypeFor[sourceStampJSON]()},
	"forceschedulers":  {"forcescheduler", reflect.TypeFor[forceSchedulerJSON]()},
	"schedulers":       {"scheduler", reflect.TypeFor[schedulerJSON]()},
	"changesources":    {"changesource", reflect.TypeFor[changeSourceJSON]()},
	"masters":          {"master", reflect.TypeFor[masterJSON]()},
	"test_result_sets": {"test_result_set", reflect.TypeFor[testResultSetJSON]()},
	"test_results":     {"test_result", reflect.TypeFor[testResultJSON]()},
	"test_raw_results": {"test_raw_result", reflect.TypeFor[map[string]any]()},
	"test_names":       {"string", reflect.TypeFor[string]()},
	"test_code_paths":  {"string", reflect.TypeFor[string]()},
}

// Root links and the spec.

type rootLinkJSON struct {
	Name string `json:"name"`
}

// apiRoot answers /api/v2/: the collections at the root of the API.
func (a *app) apiRoot(r *http.Request, st ci.Store) (any, error) {
	var out []rootLinkJSON
	for _, rt := range a.getRoutes() {
		name := strings.TrimPrefix(rt.path, "/")
		if name != "" && !strings.ContainsAny(name, "/{") && !strings.Contains(name, ".") {
			out = append(out, rootLinkJSON{Name: name})
		}
	}
	return list("rootlinks", out, len(out)), nil
}

type specJSON struct {
	Path     string         `json:"path"`
	Type     string         `json:"type"`
	Plural   string         `json:"plural"`
	TypeSpec map[string]any `json:"type_spec"`
}

// idParam matches the path parameters that are numbers.
var idParam = regexp.MustCompile(`^(id|number|.*id)$`)

// apiSpec answers /application.spec: every GET endpoint, its path in
// Buildbot's notation (n: a number, i: an identifier) and the type of what
// it answers.
func (a *app) apiSpec(r *http.Request, st ci.Store) (any, error) {
	var out []specJSON
	for _, rt := range a.getRoutes() {
		var segs []string
		for seg := range strings.SplitSeq(strings.Trim(rt.path, "/"), "/") {
			if p, ok := strings.CutPrefix(seg, "{"); ok {
				p = strings.TrimSuffix(p, "}")
				if p == "$" {
					continue
				}
				if idParam.MatchString(p) {
					seg = "n:" + p
				} else {
					seg = "i:" + p
				}
			}
			segs = append(segs, seg)
		}
		t := apiTypes[rt.plural]
		out = append(out, specJSON{Path: strings.Join(segs, "/"), Type: t.name, Plural: rt.plural, TypeSpec: typeSpec(t)})
	}
	return list("specs", out, len(out)), nil
}

// typeSpec describes a type's fields and their JSON types.
func typeSpec(t apiType) map[string]any {
	kinds := fieldKinds(t.item)
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	slices.Sort(names)
	fields := []map[string]any{}
	for _, n := range names {
		typ := [...]string{kindAny: "any", kindNumber: "integer", kindBool: "boolean", kindString: "string", kindList: "list", kindObject: "object"}[kinds[n]]
		fields = append(fields, map[string]any{"name": n, "type": typ, "type_spec": map[string]any{"name": typ}})
	}
	return map[string]any{"name": t.name, "type": "entity", "fields": fields}
}

// Masters: every master recorded in the database, active or not (on a
// store of one master, this one alone, with ID 1).

type masterJSON struct {
	MasterID   int64  `json:"masterid"`
	Name       string `json:"name"`
	Active     bool   `json:"active"`
	LastActive any    `json:"last_active"`
}

func toMasterJSON(m *ci.MasterRecord) masterJSON {
	return masterJSON{MasterID: m.ID, Name: m.Name, Active: m.Active, LastActive: epoch(m.LastActive)}
}

// toMasterJSON gives the master serving the API, named as Buildbot names
// a master by default (its host and base folder) unless configured.
func (a *app) toMasterJSON() masterJSON {
	id := a.m.MasterID()
	if id == 0 {
		id = 1
	}
	return masterJSON{MasterID: id, Name: a.m.Name(), Active: true, LastActive: epoch(a.m.Now())}
}

func (a *app) apiMasters(r *http.Request, st ci.Store) (any, error) {
	masters, err := a.m.Masters(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]masterJSON, len(masters))
	for i, m := range masters {
		out[i] = toMasterJSON(m)
	}
	return list("masters", out, len(out)), nil
}

func (a *app) apiMaster(r *http.Request, st ci.Store) (any, error) {
	m, err := a.findMaster(r)
	if err != nil {
		return nil, err
	}
	return one("masters", toMasterJSON(m)), nil
}

// findMaster returns the master {masterid} names; not found if none is
// recorded.
func (a *app) findMaster(r *http.Request) (*ci.MasterRecord, error) {
	id, err := pathID(r, "masterid")
	if err != nil {
		return nil, err
	}
	m, err := a.m.GetMaster(r.Context(), id)
	if errors.Is(err, ci.ErrNotFound) {
		return nil, fmt.Errorf("%w: no master %d", errNotFound, id)
	}
	return m, err
}

// ofMaster answers fn under /masters/{masterid}, for any recorded master:
// the masters sharing a database share their builders, workers and
// schedulers.
func (a *app) ofMaster(fn apiFunc) apiFunc {
	return func(r *http.Request, st ci.Store) (any, error) {
		if _, err := a.findMaster(r); err != nil {
			return nil, err
		}
		return fn(r, st)
	}
}

func (a *app) apiBuilderMasters(r *http.Request, st ci.Store) (any, error) {
	if _, err := a.findBuilder(r, st); err != nil {
		return nil, err
	}
	return a.apiMasters(r, st)
}

func (a *app) apiBuilderMaster(r *http.Request, st ci.Store) (any, error) {
	if _, err := a.findBuilder(r, st); err != nil {
		return nil, err
	}
	return a.apiMaster(r, st)
}

// Schedulers and change sources.

type schedulerJSON struct {
	SchedulerID int64      `json:"schedulerid"`
	Name        string     `json:"name"`
	Enabled     bool       `json:"enabled"`
	Master      masterJSON `json:"master"`
}

// schedulers gives the configured schedulers; their IDs are their places
// in the configuration, from 1.
func (a *app) schedulers() []schedulerJSON {
	var out []schedulerJSON
	m := a.toMasterJSON()
	for i, s := range a.m.Config().Schedulers {
		out = append(out, schedulerJSON{SchedulerID: int64(i + 1), Name: s.SchedulerName(), Enabled: true, Master: m})
	}
	return out
}

func (a *app) apiSchedulers(r *http.Request, st ci.Store) (any, error) {
	out := a.schedulers()
	return list("schedulers", out, len(out)), nil
}

func (a *app) apiScheduler(r *http.Request, st ci.Store) (any, error) {
	id, err := pathID(r, "schedulerid")
	if err != nil {
		return nil, err
	}
	for _, s := range a.schedulers() {
		if s.SchedulerID == id {
			return one("schedulers", s), nil
		}
	}
	return nil, fmt.Errorf("%w: no scheduler %d", errNotFound, id)
}

// changeSourceJSON is Buildbot's change source. Kiln has none: changes
// come from the change hooks and from Master.AddChange.
type changeSourceJSON struct {
	ChangeSourceID int64       `json:"changesourceid"`
	Name           string      `json:"name"`
	Master         *masterJSON `json:"master"`
}

func (a *app) apiChangeSources(r *http.Request, st ci.Store) (any, error) {
	return list("changesources", []changeSourceJSON{}, 0), nil
}

func (a *app) apiChangeSource(r *http.Request, st ci.Store) (any, error) {
	id, err := pathID(r, "changesourceid")
	if err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: no change source %d", errNotFound, id)
}

// Workers of a builder; builds of a worker and of a request.

// builderWorkers gives the workers configured on the builder.
func (a *app) builderWorkers(r *http.Request, st ci.Store) ([]workerJSON, error) {
	b, err := a.findBuilder(r, st)
	if err != nil {
		return nil, err
	}
	on := map[string]bool{}
	for _, bc := range a.m.Config().Builders {
		if bc.Name == b.Name {
			for _, w := range bc.Workers {
				on[w] = true
			}
		}
	}
	ws, err := st.ListWorkers(r.Context())
	if err != nil {
		return nil, err
	}
	f := a.workerFacts()
	var out []workerJSON
	for _, w := range ws {
		if on[w.Name] {
			out = append(out, a.toWorkerJSON(w, f))
		}
	}
	return out, nil
}

func (a *app) apiBuilderWorkers(r *http.Request, st ci.Store) (any, error) {
	out, err := a.builderWorkers(r, st)
	if err != nil {
		return nil, err
	}
	return list("workers", out, len(out)), nil
}

func (a *app) apiBuilderWorker(r *http.Request, st ci.Store) (any, error) {
	out, err := a.builderWorkers(r, st)
	if err != nil {
		return nil, err
	}
	key := r.PathValue("worker")
	for _, w := range out {
		if w.Name == key || strconv.FormatInt(w.WorkerID, 10) == key {
			return one("workers", w), nil
		}
	}
	return nil, fmt.Errorf("%w: builder %q has no worker %q", errNotFound, r.PathValue("builder"), key)
}

func (a *app) apiWorkerBuilds(r *http.Request, st ci.Store) (any, error) {
	key := r.PathValue("worker")
	ws, err := st.ListWorkers(r.Context())
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(ws, func(w *ci.Worker) bool { return w.Name == key || strconv.FormatInt(w.ID, 10) == key })
	if i < 0 {
		return nil, fmt.Errorf("%w: no worker %q", errNotFound, key)
	}
	spec, q, err := buildQuery(r)
	if err != nil {
		return nil, err
	}
	q.WorkerID = ws[i].ID
	return a.listBuilds(r, st, spec, q)
}

// apiRequestBuilds answers the builds of a request: those of its builder
// that name it (a build serving several requests names the first).
func (a *app) apiRequestBuilds(r *http.Request, st ci.Store) (any, error) {
	br, err := byID("id", "build request", ci.Store.GetRequest)(r, st)
	if err != nil {
		return nil, err
	}
	spec, q, err := buildQuery(r)
	if err != nil {
		return nil, err
	}
	q.BuilderID = br.BuilderID
	id := strconv.FormatInt(br.ID, 10)
	spec.filters = append(spec.filters, &filter{field: "buildrequestid", op: "eq", values: []filterValue{{s: id, n: float64(br.ID), isNum: true}}})
	return a.listBuilds(r, st, spec, q)
}

// Changes of a build and of a source stamp; source stamps.

// changesOf answers the changes of source stamps, each once, by ID.
func changesOf(ctx context.Context, st ci.Store, sss []ci.SourceStamp) (any, error) {
	var ids []int64
	for _, ss := range sss {
		if ss.ID != 0 && len(ss.Changes) == 0 {
			stored, err := st.GetSourceStamp(ctx, ss.ID)
			if err != nil {
				return nil, err
			}
			ss = stored
		}
		ids = append(ids, ss.Changes...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	shape := changeShape(ctx, st)
	var out []changeJSON
	for _, id := range ids {
		c, err := st.GetChange(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, shape(c))
	}
	return list("changes", out, len(out)), nil
}

// apiBuildChanges answers the changes a build was made for: those of the
// source stamps of its buildset.
func (a *app) apiBuildChanges(r *http.Request, st ci.Store) (any, error) {
	b, err := a.findBuild(r, st)
	if err != nil {
		return nil, err
	}
	br, err := st.GetRequest(r.Context(), b.BuildRequestID)
	if err != nil {
		return nil, err
	}
	bs, err := st.GetBuildset(r.Context(), br.BuildsetID)
	if err != nil {
		return nil, err
	}
	return changesOf(r.Context(), st, bs.SourceStamps)
}

func (a *app) apiSourceStamps(r *http.Request, st ci.Store) (any, error) {
	spec, err := parseSpec[sourceStampJSON](r, "sourcestamps")
	if err != nil {
		return nil, err
	}
	return fromStore(spec, "sourcestamps", []string{"ssid"}, func(page ci.Query) ([]ci.SourceStamp, int, error) {
		return st.ListSourceStamps(r.Context(), page)
	}, toSourceStampJSON)
}

func (a *app) findSourceStamp(r *http.Request, st ci.Store) (ci.SourceStamp, error) {
	return byID("ssid", "source stamp", ci.Store.GetSourceStamp)(r, st)
}

func (a *app) apiSourceStamp(r *http.Request, st ci.Store) (any, error) {
	return single("sourcestamps", a.findSourceStamp, toSourceStampJSON)(r, st)
}

func (a *app) apiSourceStampChanges(r *http.Request, st ci.Store) (any, error) {
	ss, err := a.findSourceStamp(r, st)
	if err != nil {
		return nil, err
	}
	return changesOf(r.Context(), st, []ci.SourceStamp{ss})
}

// Properties.

// apiBuildProperties answers a build's properties: one object of
// name -> [value, source].
func (a *app) apiBuildProperties(r *http.Request, st ci.Store) (any, error) {
	b, err := a.findBuild(r, st)
	if err != nil {
		return nil, err
	}
	return one("properties", propsJSON(b.Properties, nil)), nil
}

// apiBuildsetProperties answers the properties a buildset was submitted
// with (its scheduler's, the force form's), part of its builds' first
// properties.
func (a *app) apiBuildsetProperties(r *http.Request, st ci.Store) (any, error) {
	bs, err := byID("id", "buildset", ci.Store.GetBuildset)(r, st)
	if err != nil {
		return nil, err
	}
	return one("properties", propsJSON(bs.Properties, nil)), nil
}

// Build data, which Kiln's steps do not record: empty lists, under
// parents that exist.

type buildDataJSON struct {
	BuildID int64  `json:"buildid"`
	Name    string `json:"name"`
	Length  int    `json:"length"`
	Source  string `json:"source"`
}

func (a *app) apiBuildData(r *http.Request, st ci.Store) (any, error) {
	if _, err := a.findBuild(r, st); err != nil {
		return nil, err
	}
	return list("build_data", []buildDataJSON{}, 0), nil
}

func (a *app) apiBuildDatum(r *http.Request, st ci.Store) (any, error) {
	b, err := a.findBuild(r, st)
	if err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: build %d has no data %q", errNotFound, b.ID, r.PathValue("name"))
}

// Test results, which steps record (steps.JUnit): Buildbot's shapes.

type testResultSetJSON struct {
	TestResultSetID int64  `json:"test_result_setid"`
	BuilderID       int64  `json:"builderid"`
	BuildID         int64  `json:"buildid"`
	StepID          int64  `json:"stepid"`
	Description     any    `json:"description"`
	Category        string `json:"category"`
	ValueUnit       string `json:"value_unit"`
	TestsPassed     *int   `json:"tests_passed"`
	TestsFailed     *int   `json:"tests_failed"`
	Complete        bool   `json:"complete"`
}

type testResultJSON struct {
	TestResultID    int64  `json:"test_resultid"`
	BuilderID       int64  `json:"builderid"`
	TestResultSetID int64  `json:"test_result_setid"`
	TestName        any    `json:"test_name"`
	TestCodePath    any    `json:"test_code_path"`
	Line            *int   `json:"line"`
	DurationNS      *int64 `json:"duration_ns"`
	Value           string `json:"value"`
}

func toTestResultSetJSON(x *ci.TestResultSet) testResultSetJSON {
	return testResultSetJSON{TestResultSetID: x.ID, BuilderID: x.BuilderID, BuildID: x.BuildID, StepID: x.StepID,
		Description: x.Description, Category: x.Category, ValueUnit: x.ValueUnit,
		TestsPassed: x.TestsPassed, TestsFailed: x.TestsFailed, Complete: x.Complete}
}

func toTestResultJSON(x *ci.TestResult) testResultJSON {
	j := testResultJSON{TestResultID: x.ID, BuilderID: x.BuilderID, TestResultSetID: x.SetID,
		TestName: orNull(x.TestName), TestCodePath: orNull(x.TestCodePath), DurationNS: x.DurationNS, Value: x.Value}
	if x.Line > 0 {
		line := x.Line
		j.Line = &line
	}
	return j
}

// A setScope narrows the test result sets to those under the path's
// parent (a builder, a build, a step), or to none for the root list.
type setScope func(r *http.Request, st ci.Store, q *ci.TestResultSetQuery) error

func (a *app) builderSets(r *http.Request, st ci.Store, q *ci.TestResultSetQuery) error {
	b, err := a.findBuilder(r, st)
	if err == nil {
		q.BuilderID = b.ID
	}
	return err
}

func (a *app) buildSets(r *http.Request, st ci.Store, q *ci.TestResultSetQuery) error {
	b, err := a.findBuild(r, st)
	if err == nil {
		q.BuildID = b.ID
	}
	return err
}

func (a *app) stepSets(r *http.Request, st ci.Store, q *ci.TestResultSetQuery) error {
	s, err := a.findStep(r, st)
	if err == nil {
		q.StepID = s.ID
	}
	return err
}

func allSets(*http.Request, ci.Store, *ci.TestResultSetQuery) error { return nil }

// testResultSets answers the test result sets under the parent scope
// resolves. Equality filters on complete and on the IDs the store selects
// by go to the store; the rest of the result spec applies as on any list.
func testResultSets(scope setScope) apiFunc {
	return func(r *http.Request, st ci.Store) (any, error) {
		var q ci.TestResultSetQuery
		if err := scope(r, st, &q); err != nil {
			return nil, err
		}
		spec, err := parseSpec[testResultSetJSON](r, "test_result_sets")
		if err != nil {
			return nil, err
		}
		q.Complete = spec.popFlag("complete")
		for _, f := range []struct {
			field string
			id    *int64
		}{{"builderid", &q.BuilderID}, {"buildid", &q.BuildID}, {"stepid", &q.StepID}} {
			if *f.id != 0 {
				continue // the path's; a filter on it applies in memory
			}
			if *f.id, err = spec.popID(f.field); err != nil {
				return nil, err
			}
		}
		return fromStore(spec, "test_result_sets", []string{"test_result_setid"}, func(page ci.Query) ([]*ci.TestResultSet, int, error) {
			q.Query = page
			return st.ListTestResultSets(r.Context(), q)
		}, toTestResultSetJSON)
	}
}

func (a *app) apiTestResultSet(r *http.Request, st ci.Store) (any, error) {
	set, err := byID("setid", "test result set", ci.Store.GetTestResultSet)(r, st)
	if err != nil {
		return nil, err
	}
	return one("test_result_sets", toTestResultSetJSON(set)), nil
}

// apiTestResults answers the results of a set: none for a set that does
// not exist, as Buildbot.
func (a *app) apiTestResults(r *http.Request, st ci.Store) (any, error) {
	id, err := pathID(r, "setid")
	if err != nil {
		return nil, err
	}
	spec, err := parseSpec[testResultJSON](r, "test_results")
	if err != nil {
		return nil, err
	}
	return fromStore(spec, "test_results", []string{"test_resultid"}, func(page ci.Query) ([]*ci.TestResult, int, error) {
		return st.ListTestResults(r.Context(), id, page)
	}, toTestResultJSON)
}

// apiTestRawResults answers the raw data of a set: none, since Kiln keeps
// the parsed results only (a JUnit step's reports stay on the worker).
func (a *app) apiTestRawResults(r *http.Request, st ci.Store) (any, error) {
	if _, err := byID("setid", "test result set", ci.Store.GetTestResultSet)(r, st); err != nil {
		return nil, err
	}
	return list("test_raw_results", []map[string]any{}, 0), nil
}

// testStrings answers a builder's distinct test names or code paths, as
// a list of strings paged by ?limit= and ?offset= (strings have no fields
// to filter or order on).
func (a *app) testStrings(name string, get func(ci.Store, context.Context, int64, ci.Query) ([]string, int, error)) apiFunc {
	return func(r *http.Request, st ci.Store) (any, error) {
		b, err := a.findBuilder(r, st)
		if err != nil {
			return nil, err
		}
		spec, err := parseSpec[string](r, name)
		if err != nil {
			return nil, err
		}
		items, total, err := get(st, r.Context(), b.ID, ci.Query{Limit: spec.limit, Offset: spec.offset})
		if err != nil {
			return nil, err
		}
		c := list(name, items, total)
		c.done = true
		return c, nil
	}
}
