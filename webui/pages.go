package webui

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

func staticHandler() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	fsrv := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fsrv.ServeHTTP(w, r)
	})
}

// pageSet holds each page's template, parsed with the layout.
type pageSet map[string]*template.Template

// pageFunc computes a page: the name of its template and its data.
type pageFunc func(r *http.Request, st ci.Store, v *view) (string, any, error)

// view is what every page's layout shows.
type view struct {
	Title    string // the master's title
	TitleURL string
	Base     string // the application's path, ending in "/"
	Page     string // this page's title
	User     string // the logged-in user, if any
	CanLogIn bool
	LoginURL string
	// Live is the event stream the page follows to reload when what it
	// shows changes; "" for none.
	Live string
	Nav  string // the navigation entry to mark
	// Now is the master's time as the page is made, in Unix milliseconds:
	// the page's script counts running durations from it, whatever the
	// browser's clock says.
	Now  int64
	Data any
}

// parsePages parses the templates; now tells the time the pages show
// ages and running durations against (the master's clock).
func parsePages(now func() time.Time) (pageSet, error) {
	ago := func(t time.Time) string { return ago(now(), t) }
	duration := func(start, end time.Time) string { return duration(now(), start, end) }
	funcs := template.FuncMap{
		"pathEscape":  url.PathEscape,
		"queryEscape": url.QueryEscape,
		"resultClass": resultClass,
		"resultName":  resultName,
		"buildClass":  buildClass,
		"buildState":  buildState,
		"ago":         ago,
		"when":        when,
		"duration":    duration,
		"elapsed":     func(start, end time.Time) template.HTML { return elapsed(now(), start, end) },
		"started":     func(t time.Time) template.HTML { return started(now(), t) },
		"short":       short,
		"firstLine":   firstLine,
		"value":       formatValue,
		"seq":         func(n int) []int { return make([]int, n) },
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	set := pageSet{}
	for _, path := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(path, "templates/"), ".html")
		if name == "layout" || name == "parts" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, path)
		if err != nil {
			return nil, err
		}
		set[name] = t
	}
	return set, nil
}

// page adapts a page function: it waits for the store, fills the layout
// and renders the page, or an error page.
func (a *app) page(fn pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		st, err := a.store(ctx)
		if err != nil {
			a.pageError(w, r, err)
			return
		}
		v := a.newView(r)
		name, data, err := fn(r, st, v)
		if err != nil {
			a.pageError(w, r, err)
			return
		}
		v.Data = data
		a.render(w, r, http.StatusOK, name, v)
	})
}

func (a *app) newView(r *http.Request) *view {
	cfg := a.m.Config()
	v := &view{Title: cfg.Title, TitleURL: cfg.TitleURL, Base: a.base, CanLogIn: a.auth.canLogIn(), Now: a.m.Now().UnixMilli()}
	if v.Title == "" {
		v.Title = "Kiln"
	}
	if login, ok := a.auth.pageUser(r); ok {
		v.User = login
	}
	v.LoginURL = a.base + "login?next=" + url.QueryEscape(a.base+strings.TrimPrefix(r.URL.Path, "/"))
	return v
}

func (a *app) render(w http.ResponseWriter, r *http.Request, code int, name string, v *view) {
	var buf bytes.Buffer
	if err := a.pages[name].ExecuteTemplate(&buf, "layout.html", v); err != nil {
		a.log.Error("rendering a page failed", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		w.Write(showControls(buf.Bytes()))
	}
}

// pageError answers an error with a page saying it in one line.
func (a *app) pageError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := a.errorText(r, err)
	a.challenge(w, code, err)
	v := a.newView(r)
	v.Page = http.StatusText(code)
	v.Data = struct {
		Code    int
		Status  string
		Message string
	}{code, http.StatusText(code), msg}
	a.render(w, r, code, "error", v)
}

// Formatting helpers of the templates.

func resultName(r ci.Result) string { return r.String() }

func resultClass(r ci.Result) string { return "r-" + r.String() }

// buildClass is the colour class of a build: its result, or running.
func buildClass(b *ci.Build) string {
	if b == nil {
		return "r-none"
	}
	if !b.Complete {
		return "r-running"
	}
	return resultClass(b.Results)
}

func buildState(b *ci.Build) string {
	if !b.Complete {
		return "running"
	}
	return b.Results.String()
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// duration formats the time from start to end (or to now when end is
// zero).
func duration(now, start, end time.Time) string {
	if start.IsZero() {
		return ""
	}
	if end.IsZero() {
		end = now
	}
	d := end.Sub(start).Round(time.Second)
	if d < 0 {
		d = 0
	}
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh %02dm %02ds", h, m, s)
	case m > 0:
		return fmt.Sprintf("%dm %02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// preciseDuration formats a finished duration: under ten seconds to the
// tenth of a second ("4.2 s") or the millisecond ("850 ms"), above as
// duration does.
func preciseDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%d ms", max(d, 0).Milliseconds())
	case d.Round(100*time.Millisecond) < 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Round(100*time.Millisecond).Seconds())
	}
	return duration(time.Time{}, time.Unix(0, 0), time.Unix(0, 0).Add(d))
}

// elapsed renders the time from start to end: precisely once finished,
// and in whole seconds while it runs, counted on by the page's script
// from data-start (Unix milliseconds).
func elapsed(now, start, end time.Time) template.HTML {
	if start.IsZero() {
		return ""
	}
	if end.IsZero() {
		return template.HTML(fmt.Sprintf(`<span class="dur" data-start="%d">%s</span>`, start.UnixMilli(), duration(now, start, end)))
	}
	return template.HTML(`<span class="dur">` + preciseDuration(end.Sub(start)) + `</span>`)
}

// started renders when something started: how long ago, with the exact
// time when the pointer rests on it.
func started(now, t time.Time) template.HTML {
	if t.IsZero() {
		return ""
	}
	return template.HTML(fmt.Sprintf(`<time datetime="%s" title="%s">%s</time>`,
		t.UTC().Format(time.RFC3339), when(t), ago(now, t)))
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func formatValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// Rows the pages list.

// A buildRow is a build as the lists show it: with its source (branch or
// tag and revision, from its properties), who asked for it and why.
type buildRow struct {
	Build    *ci.Build
	Builder  string
	Worker   string
	URL      string
	Branch   string
	Revision string
	Owner    string
	Reason   string // the buildset's
}

// A buildList is a table of builds; Builder and Worker say whether it has
// those columns (a builder's page lists its own builds, a worker's page
// the builds it ran).
type buildList struct {
	Rows            []buildRow
	Builder, Worker bool
}

type requestRow struct {
	Request   *ci.BuildRequest
	Builder   string
	Reason    string
	Owner     string
	CanCancel bool
	CancelURL string
}

// names resolves builder and worker IDs to names, and requests to their
// buildsets, reading each once.
type names struct {
	ctx       context.Context
	st        ci.Store
	builders  map[int64]string
	workers   map[int64]string
	buildsets map[int64]*ci.Buildset // by request; nil if unreadable
}

func newNames(ctx context.Context, st ci.Store) *names {
	return &names{ctx: ctx, st: st, builders: map[int64]string{}, workers: map[int64]string{}, buildsets: map[int64]*ci.Buildset{}}
}

// buildset returns the buildset of a request, or nil.
func (n *names) buildset(requestID int64) *ci.Buildset {
	if bs, ok := n.buildsets[requestID]; ok {
		return bs
	}
	var bs *ci.Buildset
	if r, err := n.st.GetRequest(n.ctx, requestID); err == nil {
		for _, known := range n.buildsets {
			if known != nil && known.ID == r.BuildsetID {
				bs = known
			}
		}
		if bs == nil {
			bs, _ = n.st.GetBuildset(n.ctx, r.BuildsetID)
		}
	}
	n.buildsets[requestID] = bs
	return bs
}

// prefetch reads the buildsets of the builds' requests that n does not
// know yet, in two reads rather than two per build: a page lists tens of
// builds.
func (n *names) prefetch(builds ...*ci.Build) {
	var reqs []int64
	for _, b := range builds {
		if _, ok := n.buildsets[b.BuildRequestID]; !ok && b.BuildRequestID != 0 && !slices.Contains(reqs, b.BuildRequestID) {
			reqs = append(reqs, b.BuildRequestID)
		}
	}
	if len(reqs) == 0 {
		return
	}
	list, _, err := n.st.ListRequests(n.ctx, ci.RequestQuery{IDs: reqs, Query: ci.Query{NoTotal: true}})
	if err != nil {
		return // buildset tries again, one by one
	}
	var ids []int64
	for _, r := range list {
		if !slices.Contains(ids, r.BuildsetID) {
			ids = append(ids, r.BuildsetID)
		}
	}
	sets, _, err := n.st.ListBuildsets(n.ctx, ci.BuildsetQuery{IDs: ids, Query: ci.Query{NoTotal: true}})
	if err != nil {
		return
	}
	byID := make(map[int64]*ci.Buildset, len(sets))
	for _, bs := range sets {
		byID[bs.ID] = bs
	}
	for _, r := range list {
		if bs, ok := byID[r.BuildsetID]; ok {
			n.buildsets[r.ID] = bs
		}
	}
}

// reason returns the reason of the buildset of a request, or "".
func (n *names) reason(requestID int64) string {
	if bs := n.buildset(requestID); bs != nil {
		return bs.Reason
	}
	return ""
}

func (n *names) builder(id int64) string {
	if s, ok := n.builders[id]; ok {
		return s
	}
	b, err := n.st.GetBuilder(n.ctx, id)
	s := fmt.Sprintf("builder %d", id)
	if err == nil {
		s = b.Name
	}
	n.builders[id] = s
	return s
}

func (n *names) worker(id int64) string {
	if id == 0 {
		return ""
	}
	if s, ok := n.workers[id]; ok {
		return s
	}
	w, err := n.st.GetWorker(n.ctx, id)
	s := fmt.Sprintf("worker %d", id)
	if err == nil {
		s = w.Name
	}
	n.workers[id] = s
	return s
}

func (a *app) builderURL(name string) string { return a.base + "builders/" + url.PathEscape(name) }

// buildURL is the path of a build's page: that of Master.BuildURL.
func (a *app) buildURL(builder string, number int) string {
	return a.builderURL(builder) + "/builds/" + strconv.Itoa(number)
}

func (a *app) buildRow(n *names, b *ci.Build) buildRow {
	name := n.builder(b.BuilderID)
	return buildRow{Build: b, Builder: name, Worker: n.worker(b.WorkerID), URL: a.buildURL(name, b.Number),
		Branch: b.Properties.String("branch"), Revision: b.Properties.String("revision"),
		Owner: b.Properties.String("owner"), Reason: n.reason(b.BuildRequestID)}
}

// runningBuilds returns the builds running now, oldest first.
func (a *app) runningBuilds(ctx context.Context, st ci.Store, n *names) []buildRow {
	ids := a.m.RunningBuilds()
	slices.Sort(ids)
	var builds []*ci.Build
	for _, id := range ids {
		b, err := st.GetBuild(ctx, id)
		if err != nil || b.Complete {
			continue
		}
		builds = append(builds, b)
	}
	n.prefetch(builds...)
	var out []buildRow
	for _, b := range builds {
		out = append(out, a.buildRow(n, b))
	}
	return out
}

// pendingRequests returns the requests waiting for a build (of one
// builder if builderID is set), at most limit of them, oldest first.
func (a *app) pendingRequests(r *http.Request, st ci.Store, n *names, builderID int64, limit int) ([]requestRow, int, error) {
	ctx := r.Context()
	reqs, total, err := st.ListRequests(ctx, ci.RequestQuery{BuilderID: builderID, Claimed: ptr(false), Complete: ptr(false), Query: ci.Query{Limit: limit}})
	if err != nil {
		return nil, 0, err
	}
	canCancel := a.can(r, actCancel)
	sets := map[int64]*ci.Buildset{}
	var out []requestRow
	for _, br := range reqs {
		row := requestRow{Request: br, Builder: n.builder(br.BuilderID), CanCancel: canCancel,
			CancelURL: a.base + "buildrequests/" + strconv.FormatInt(br.ID, 10) + "/cancel"}
		bs, ok := sets[br.BuildsetID]
		if !ok {
			bs, _ = st.GetBuildset(ctx, br.BuildsetID)
			sets[br.BuildsetID] = bs
		}
		if bs != nil {
			row.Reason = bs.Reason
			row.Owner = bs.Properties.String("owner")
		}
		out = append(out, row)
	}
	return out, total, nil
}

func ptr[T any](v T) *T { return &v }

// Home.

type builderRow struct {
	Builder *ci.Builder
	URL     string
	Last    *buildRow
	Running int
	Workers []workerDot
}

type workerDot struct {
	Name      string
	Connected bool
}

type homeData struct {
	Builders     []builderRow
	Running      buildList
	Pending      []requestRow
	PendingTotal int
}

func (a *app) home(r *http.Request, st ci.Store, v *view) (string, any, error) {
	ctx := r.Context()
	v.Page, v.Nav = "Builders", "home"
	v.Live = a.liveURL(ctx, st, url.Values{})
	n := newNames(ctx, st)
	builders, err := a.configuredBuilders(ctx, st)
	if err != nil {
		return "", nil, err
	}
	d := &homeData{Running: buildList{Builder: true, Worker: true}}
	d.Running.Rows = a.runningBuilds(ctx, st, n)
	connected := map[string]bool{}
	for _, w := range a.m.Workers() {
		connected[w.Name] = w.Connected
	}
	lasts := make([]*ci.Build, len(builders))
	for i, b := range builders {
		n.builders[b.ID] = b.Name
		last, _, err := st.ListBuilds(ctx, ci.BuildQuery{BuilderID: b.ID, Query: ci.Query{Desc: true, Limit: 1, NoTotal: true}})
		if err != nil {
			return "", nil, err
		}
		if len(last) > 0 {
			lasts[i] = last[0]
		}
	}
	n.prefetch(slices.DeleteFunc(slices.Clone(lasts), func(b *ci.Build) bool { return b == nil })...)
	for i, b := range builders {
		row := builderRow{Builder: b, URL: a.builderURL(b.Name)}
		if last := lasts[i]; last != nil {
			br := a.buildRow(n, last)
			row.Last = &br
		}
		for _, rb := range d.Running.Rows {
			if rb.Build.BuilderID == b.ID {
				row.Running++
			}
		}
		for _, w := range a.m.Config().Builders[i].Workers {
			row.Workers = append(row.Workers, workerDot{Name: w, Connected: connected[w]})
		}
		d.Builders = append(d.Builders, row)
	}
	if d.Pending, d.PendingTotal, err = a.pendingRequests(r, st, n, 0, 100); err != nil {
		return "", nil, err
	}
	return "home", d, nil
}

// Builder.

type forceForm struct {
	Scheduler string
	Action    string
	Fields    []forceField
}

type builderData struct {
	Builder   *ci.Builder
	Builds    buildList
	Total     int
	PageNum   int
	Pages     int
	NewerURL  string
	OlderURL  string
	Pending   []requestRow
	Forces    []forceForm
	Force     actionForm
	Workers   []workerDot
	Running   int
	APIURL    string
	BuilderID int64
}

func (a *app) builderPage(r *http.Request, st ci.Store, v *view) (string, any, error) {
	ctx := r.Context()
	name := r.PathValue("builder")
	id, ok := a.m.BuilderID(name)
	if !ok {
		return "", nil, fmt.Errorf("%w: no builder %q", errNotFound, name)
	}
	b, err := st.GetBuilder(ctx, id)
	if err != nil {
		return "", nil, err
	}
	pageNum := 1
	if s := r.URL.Query().Get("page"); s != "" {
		if pageNum, err = strconv.Atoi(s); err != nil || pageNum < 1 {
			return "", nil, fmt.Errorf("%w: page %q is not a page number", errBadRequest, s)
		}
	}
	size := a.opts.PageSize
	v.Page = b.Name
	v.Live = a.liveURL(ctx, st, url.Values{"builder": {strconv.FormatInt(id, 10)}})
	builds, total, err := st.ListBuilds(ctx, ci.BuildQuery{BuilderID: id, Query: ci.Query{Desc: true, Limit: size, Offset: (pageNum - 1) * size}})
	if err != nil {
		return "", nil, err
	}
	n := newNames(ctx, st)
	n.builders[id] = b.Name
	d := &builderData{Builder: b, Total: total, PageNum: pageNum, Pages: max(1, (total+size-1)/size), BuilderID: id,
		APIURL: a.base + "api/v2/builders/" + strconv.FormatInt(id, 10) + "/builds?order=-number&limit=" + strconv.Itoa(size)}
	d.Builds.Worker = true
	n.prefetch(builds...)
	for _, build := range builds {
		d.Builds.Rows = append(d.Builds.Rows, a.buildRow(n, build))
		if !build.Complete {
			d.Running++
		}
	}
	self := a.builderURL(b.Name)
	if pageNum > 1 {
		d.NewerURL = self + "?page=" + strconv.Itoa(pageNum-1)
	}
	if pageNum < d.Pages {
		d.OlderURL = self + "?page=" + strconv.Itoa(pageNum+1)
	}
	if d.Pending, _, err = a.pendingRequests(r, st, n, id, 100); err != nil {
		return "", nil, err
	}
	d.Force = a.actionForm(r, actForce)
	for _, f := range a.forceSchedulers(b.Name) {
		d.Forces = append(d.Forces, forceForm{Scheduler: f.SchedulerName(), Action: self + "/force", Fields: forceFields(f)})
	}
	connected := map[string]bool{}
	for _, w := range a.m.Workers() {
		connected[w.Name] = w.Connected
	}
	for _, bc := range a.m.Config().Builders {
		if bc.Name == b.Name {
			for _, w := range bc.Workers {
				d.Workers = append(d.Workers, workerDot{Name: w, Connected: connected[w]})
			}
		}
	}
	return "builder", d, nil
}

// Build.

type propRow struct {
	Name, Value, Source string
}

type stepRow struct {
	Step *ci.StepRecord
	Logs []logView
}

type buildData struct {
	Builder      *ci.Builder
	BuilderURL   string
	Build        *ci.Build
	Worker       string
	Reason       string
	Owner        string
	SourceStamps []ci.SourceStamp
	Changes      []*ci.Change
	Props        []propRow
	Steps        []stepRow
	CanStop      bool
	StopURL      string
	// Rebuild says whether the page offers to build again (as forcing
	// does), and RebuildURL is where its form posts.
	Rebuild    actionForm
	RebuildURL string
	APIURL     string
	Prev, Next string
	// Silent is set while the build runs on a silent worker.
	Silent *silence
}

// A silence is a silent worker: since when nothing has been heard from
// it, when it will be declared lost, and how long until then.
type silence struct {
	Since, LostAt time.Time
	In            string
}

func newSilence(w ci.WorkerStatus, now time.Time) *silence {
	return &silence{Since: w.SilentSince, LostAt: w.LostAt, In: max(w.LostAt.Sub(now), 0).Round(time.Second).String()}
}

// maxInline is how many lines of each log the build page shows (the
// last ones); the log's own page and the raw download have all.
const maxInline = 1000

func (a *app) findPageBuild(r *http.Request, st ci.Store) (*ci.Builder, *ci.Build, error) {
	name := r.PathValue("builder")
	id, ok := a.m.BuilderID(name)
	if !ok {
		return nil, nil, fmt.Errorf("%w: no builder %q", errNotFound, name)
	}
	b, err := st.GetBuilder(r.Context(), id)
	if err != nil {
		return nil, nil, err
	}
	num, err := strconv.Atoi(r.PathValue("number"))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: build number %q is not a number", errBadRequest, r.PathValue("number"))
	}
	build, err := st.FindBuild(r.Context(), id, num)
	if err != nil {
		return nil, nil, notFound(err, "no build %d of builder %q", num, name)
	}
	return b, a.current(build), nil
}

func (a *app) buildPage(r *http.Request, st ci.Store, v *view) (string, any, error) {
	ctx := r.Context()
	b, build, err := a.findPageBuild(r, st)
	if err != nil {
		return "", nil, err
	}
	// The page's script fetches the page again when the build changes,
	// with ?patch=1, and adds the logs it does not show yet, reading their
	// lines from their live streams: logs come without their lines.
	patch := r.URL.Query().Get("patch") != ""
	n := newNames(ctx, st)
	d := &buildData{Builder: b, BuilderURL: a.builderURL(b.Name), Build: build, Worker: n.worker(build.WorkerID),
		APIURL: a.base + "api/v2/builds/" + strconv.FormatInt(build.ID, 10)}
	v.Page = fmt.Sprintf("%s #%d", b.Name, build.Number)
	self := a.buildURL(b.Name, build.Number)
	if !build.Complete {
		d.CanStop = a.can(r, actStop)
		d.StopURL = self + "/stop"
		if w, ok := a.silentWorkers()[build.WorkerID]; ok {
			d.Silent = newSilence(w, a.m.Now())
		}
	}
	d.Rebuild = a.actionForm(r, actForce)
	d.RebuildURL = self + "/rebuild"
	if build.Number > 1 {
		d.Prev = a.buildURL(b.Name, build.Number-1)
	}
	if _, err := st.FindBuild(ctx, b.ID, build.Number+1); err == nil {
		d.Next = a.buildURL(b.Name, build.Number+1)
	}
	if req, err := st.GetRequest(ctx, build.BuildRequestID); err == nil {
		if bs, err := st.GetBuildset(ctx, req.BuildsetID); err == nil {
			d.Reason, d.Owner = bs.Reason, bs.Properties.String("owner")
			for _, ss := range bs.SourceStamps {
				if ss.Codebase != "" || ss.Repository != "" || ss.Branch != "" || ss.Revision != "" || ss.Project != "" {
					d.SourceStamps = append(d.SourceStamps, ss)
				}
			}
			seen := map[int64]bool{}
			for _, ss := range bs.SourceStamps {
				for _, cid := range ss.Changes {
					if seen[cid] || len(d.Changes) >= 50 {
						continue
					}
					seen[cid] = true
					if c, err := st.GetChange(ctx, cid); err == nil {
						d.Changes = append(d.Changes, c)
					}
				}
			}
		}
	}
	for _, name := range build.Properties.Names() {
		p := build.Properties[name]
		d.Props = append(d.Props, propRow{Name: name, Value: formatValue(p.Value), Source: p.Source})
	}
	steps, err := st.ListSteps(ctx, build.ID)
	if err != nil {
		return "", nil, err
	}
	running := 0 // logs of running steps
	for _, s := range steps {
		row := stepRow{Step: s}
		logs, err := st.ListLogs(ctx, s.ID)
		if err != nil {
			return "", nil, err
		}
		for _, l := range logs {
			var lv logView
			if patch {
				lv, err = a.patchLogView(ctx, st, b.Name, build, s, l, maxInline)
			} else {
				lv, err = a.logView(ctx, st, b.Name, build, s, l, maxInline)
			}
			if err != nil {
				return "", nil, err
			}
			// Open the logs of running and failed steps.
			lv.Open = !s.Complete || s.Results != ci.Success && s.Results != ci.Skipped
			row.Logs = append(row.Logs, lv)
			if !s.Complete {
				running++
			}
		}
		d.Steps = append(d.Steps, row)
	}
	if !build.Complete {
		// The stamp of what the page shows: this build, these steps and
		// these logs.
		v.Live = a.liveURLStamp(url.Values{"build": {strconv.FormatInt(build.ID, 10)}}, a.buildStamp(build, steps, running))
	}
	return "build", d, nil
}

// Log.

// maxLogPage is how many lines a log's page shows (the last ones).
const maxLogPage = 20000

type logData struct {
	Builder    *ci.Builder
	Build      *ci.Build
	BuildURL   string
	Step       *ci.StepRecord
	View       logView
	Total      int
	BuilderURL string
}

func (a *app) logPage(r *http.Request, st ci.Store, v *view) (string, any, error) {
	ctx := r.Context()
	b, build, err := a.findPageBuild(r, st)
	if err != nil {
		return "", nil, err
	}
	steps, err := st.ListSteps(ctx, build.ID)
	if err != nil {
		return "", nil, err
	}
	var step *ci.StepRecord
	for _, s := range steps {
		if strconv.Itoa(s.Number) == r.PathValue("step") || s.Name == r.PathValue("step") {
			step = s
		}
	}
	if step == nil {
		return "", nil, fmt.Errorf("%w: build %d of %q has no step %q", errNotFound, build.Number, b.Name, r.PathValue("step"))
	}
	logs, err := st.ListLogs(ctx, step.ID)
	if err != nil {
		return "", nil, err
	}
	for _, l := range logs {
		if l.Slug != r.PathValue("log") {
			continue
		}
		d := &logData{Builder: b, Build: build, BuildURL: a.buildURL(b.Name, build.Number), Step: step,
			Total: l.NumLines, BuilderURL: a.builderURL(b.Name)}
		if d.View, err = a.logView(ctx, st, b.Name, build, step, l, maxLogPage); err != nil {
			return "", nil, err
		}
		d.View.Open, d.View.Page, d.View.Anchor = true, true, "L"
		v.Page = fmt.Sprintf("%s #%d: %s: %s", b.Name, build.Number, step.Name, l.Name)
		return "log", d, nil
	}
	return "", nil, fmt.Errorf("%w: step %q has no log %q", errNotFound, step.Name, r.PathValue("log"))
}

// Workers.

type infoRow struct{ Key, Value string }

type workerRow struct {
	Name      string
	URL       string // the worker's page
	Connected bool
	// Paused and Stopping say what was asked of the worker (pause, stop
	// gracefully): it starts no build.
	Paused      bool
	PauseReason string
	Stopping    bool
	// Control says whether the page offers the worker control buttons
	// (Authz.Workers); Back is the page they return to ("workers" for the
	// list, "" for the worker's page).
	Control   actionForm
	Back      string
	Since     time.Time
	Info      []infoRow
	Builders  []string
	MaxBuilds int
	Running   []buildRow
	LastBuild time.Time
	Silent    *silence
}

// shownInfo lists the worker info keys shown, in order: what the worker
// says of its admin, host and software, never its environment.
var shownInfo = []string{"admin", "host", "version", "system", "os_name", "os_release", "basedir", "numcpus", "access_uri"}

func (a *app) workersPage(r *http.Request, st ci.Store, v *view) (string, any, error) {
	ctx := r.Context()
	v.Page, v.Nav = "Workers", "workers"
	v.Live = a.liveURL(ctx, st, url.Values{})
	byName, err := storedWorkers(ctx, st)
	if err != nil {
		return "", nil, err
	}
	n := newNames(ctx, st)
	running := a.runningBuilds(ctx, st, n)
	var rows []workerRow
	control := a.actionForm(r, actWorker)
	on := a.builderNames()
	for _, ws := range a.m.Workers() {
		row := a.workerRow(ws, byName[ws.Name], running, on[ws.Name])
		row.Control, row.Back = control, "workers"
		rows = append(rows, row)
	}
	return "workers", rows, nil
}

// storedWorkers returns the stored workers by name.
func storedWorkers(ctx context.Context, st ci.Store) (map[string]*ci.Worker, error) {
	stored, err := st.ListWorkers(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]*ci.Worker{}
	for _, w := range stored {
		byName[w.Name] = w
	}
	return byName, nil
}

// builderNames returns the names of the builders each worker is
// configured on, by worker name.
func (a *app) builderNames() map[string][]string {
	return configuredOn(a.m, func(b ci.BuilderConfig) (string, bool) { return b.Name, true })
}

// workerRow describes a worker from its status, its stored record (nil if
// none), the names of the builders it is configured on and the running
// builds.
func (a *app) workerRow(ws ci.WorkerStatus, w *ci.Worker, running []buildRow, builders []string) workerRow {
	row := workerRow{Name: ws.Name, URL: a.base + "workers/" + url.PathEscape(ws.Name), Connected: ws.Connected, LastBuild: ws.LastBuild,
		Paused: ws.Paused, PauseReason: ws.PauseReason, Stopping: ws.Graceful}
	if !ws.LostAt.IsZero() {
		row.Silent = newSilence(ws, a.m.Now())
	}
	if cfg, ok := a.m.WorkerConfig(ws.Name); ok {
		row.MaxBuilds = cfg.MaxBuilds
	}
	if w != nil {
		row.Since = w.ChangedAt
		info := safeInfo(w.Info)
		for _, k := range shownInfo {
			if val, ok := info[k]; ok && val != nil && val != "" {
				row.Info = append(row.Info, infoRow{Key: k, Value: strings.TrimSpace(formatValue(val))})
			}
		}
	}
	row.Builders = builders
	for _, rb := range running {
		if rb.Build.WorkerID == ws.ID {
			row.Running = append(row.Running, rb)
		}
	}
	return row
}

type workerData struct {
	Worker   workerRow
	Builds   buildList
	Total    int
	PageNum  int
	Pages    int
	NewerURL string
	OlderURL string
	APIURL   string
}

// workerPage shows a worker and the builds it ran, newest first.
func (a *app) workerPage(r *http.Request, st ci.Store, v *view) (string, any, error) {
	ctx := r.Context()
	name := r.PathValue("worker")
	i := slices.IndexFunc(a.m.Workers(), func(w ci.WorkerStatus) bool { return w.Name == name })
	if i < 0 {
		return "", nil, fmt.Errorf("%w: no worker %q", errNotFound, name)
	}
	ws := a.m.Workers()[i]
	pageNum := 1
	var err error
	if s := r.URL.Query().Get("page"); s != "" {
		if pageNum, err = strconv.Atoi(s); err != nil || pageNum < 1 {
			return "", nil, fmt.Errorf("%w: page %q is not a page number", errBadRequest, s)
		}
	}
	v.Page, v.Nav = "Worker "+name, "workers"
	v.Live = a.liveURL(ctx, st, url.Values{})
	byName, err := storedWorkers(ctx, st)
	if err != nil {
		return "", nil, err
	}
	n := newNames(ctx, st)
	d := &workerData{Worker: a.workerRow(ws, byName[name], a.runningBuilds(ctx, st, n), a.builderNames()[name]), PageNum: pageNum,
		Builds: buildList{Builder: true}, APIURL: a.base + "api/v2/workers/" + url.PathEscape(name)}
	d.Worker.Control = a.actionForm(r, actWorker)
	size := a.opts.PageSize
	builds, total, err := st.ListBuilds(ctx, ci.BuildQuery{WorkerID: ws.ID, Query: ci.Query{Desc: true, Limit: size, Offset: (pageNum - 1) * size}})
	if err != nil {
		return "", nil, err
	}
	n.prefetch(builds...)
	for _, b := range builds {
		d.Builds.Rows = append(d.Builds.Rows, a.buildRow(n, a.current(b)))
	}
	d.Total, d.Pages = total, max(1, (total+size-1)/size)
	if pageNum > 1 {
		d.NewerURL = d.Worker.URL + "?page=" + strconv.Itoa(pageNum-1)
	}
	if pageNum < d.Pages {
		d.OlderURL = d.Worker.URL + "?page=" + strconv.Itoa(pageNum+1)
	}
	return "worker", d, nil
}

// Changes.

type changesData struct {
	Changes  []*ci.Change
	Total    int
	PageNum  int
	Pages    int
	NewerURL string
	OlderURL string
}

func (a *app) changesPage(r *http.Request, st ci.Store, v *view) (string, any, error) {
	v.Page, v.Nav = "Changes", "changes"
	v.Live = a.liveURL(r.Context(), st, url.Values{})
	pageNum := 1
	var err error
	if s := r.URL.Query().Get("page"); s != "" {
		if pageNum, err = strconv.Atoi(s); err != nil || pageNum < 1 {
			return "", nil, fmt.Errorf("%w: page %q is not a page number", errBadRequest, s)
		}
	}
	size := a.opts.PageSize
	cs, total, err := st.ListChanges(r.Context(), ci.Query{Desc: true, Limit: size, Offset: (pageNum - 1) * size})
	if err != nil {
		return "", nil, err
	}
	d := &changesData{Changes: cs, Total: total, PageNum: pageNum, Pages: max(1, (total+size-1)/size)}
	if pageNum > 1 {
		d.NewerURL = a.base + "changes?page=" + strconv.Itoa(pageNum-1)
	}
	if pageNum < d.Pages {
		d.OlderURL = a.base + "changes?page=" + strconv.Itoa(pageNum+1)
	}
	return "changes", d, nil
}

// Grid.

type gridCell struct {
	Build *ci.Build
	URL   string
}

// A gridRow is a change and the builds made for it or, as Buildbot's
// console shows them, the builds of one source made for no change (forced
// builds, say): Source is then set.
type gridRow struct {
	Change *ci.Change
	Source *buildRow // the newest build of the row's source
	When   time.Time
	Cells  []gridCell
}

type gridData struct {
	Builders    []*ci.Builder
	BuilderURLs []string
	Rows        []gridRow
	Limit       int
	Builds      int // how many recent builds the page looks at for builds of no change
}

// maxGridBuilds bounds the builds read for one change, and the recent
// builds read for builds made for no change.
const maxGridBuilds = 200

func (a *app) gridPage(r *http.Request, st ci.Store, v *view) (string, any, error) {
	ctx := r.Context()
	v.Page, v.Nav = "Grid", "grid"
	v.Live = a.liveURL(ctx, st, url.Values{})
	limit := a.opts.GridChanges
	if s := r.URL.Query().Get("changes"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxGridChanges {
			return "", nil, fmt.Errorf("%w: changes %q is not a number from 1 to %d", errBadRequest, s, maxGridChanges)
		}
		limit = n
	}
	builders, err := a.configuredBuilders(ctx, st)
	if err != nil {
		return "", nil, err
	}
	sort.SliceStable(builders, func(i, j int) bool { return builders[i].Name < builders[j].Name })
	d := &gridData{Builders: builders, Limit: limit, Builds: maxGridBuilds}
	col := map[int64]int{}
	for i, b := range builders {
		col[b.ID] = i
		d.BuilderURLs = append(d.BuilderURLs, a.builderURL(b.Name))
	}
	changes, _, err := st.ListChanges(ctx, ci.Query{Desc: true, Limit: limit, NoTotal: true})
	if err != nil {
		return "", nil, err
	}
	// A change's row, by revision: where builds of that revision made
	// for no change go.
	byRevision := map[string]int{}
	for _, c := range changes {
		row := gridRow{Change: c, When: c.When, Cells: make([]gridCell, len(builders))}
		builds, _, err := st.ListBuilds(ctx, ci.BuildQuery{ChangeID: c.ID, Query: ci.Query{Desc: true, Limit: maxGridBuilds, NoTotal: true}})
		if err != nil {
			return "", nil, err
		}
		for _, b := range builds { // newest first: the first of each builder wins
			i, ok := col[b.BuilderID]
			if !ok || row.Cells[i].Build != nil {
				continue
			}
			row.Cells[i] = gridCell{Build: b, URL: a.buildURL(builders[i].Name, b.Number)}
		}
		if _, seen := byRevision[c.Revision]; c.Revision != "" && !seen {
			byRevision[c.Revision] = len(d.Rows)
		}
		d.Rows = append(d.Rows, row)
	}
	// Builds made for no change, among the recent ones: under their
	// revision's change if the grid shows it, else in a row of their
	// revision (or branch).
	recent, _, err := st.ListBuilds(ctx, ci.BuildQuery{Query: ci.Query{Desc: true, Limit: maxGridBuilds, NoTotal: true}})
	if err != nil {
		return "", nil, err
	}
	n := newNames(ctx, st)
	n.prefetch(recent...)
	bySource := map[string]int{}
	var oldest time.Time // of the changes shown, when the grid is full
	if len(changes) == limit {
		oldest = changes[len(changes)-1].When
	}
	for _, b := range recent { // newest first
		i, ok := col[b.BuilderID]
		if !ok || forChange(n.buildset(b.BuildRequestID)) {
			continue
		}
		cell := gridCell{Build: b, URL: a.buildURL(builders[i].Name, b.Number)}
		rev, branch := b.Properties.String("revision"), b.Properties.String("branch")
		if k, ok := byRevision[rev]; ok && rev != "" {
			if d.Rows[k].Cells[i].Build == nil {
				d.Rows[k].Cells[i] = cell
			}
			continue
		}
		key := "revision " + rev
		if rev == "" {
			key = "branch " + branch
		}
		k, ok := bySource[key]
		if !ok {
			if b.StartedAt.Before(oldest) {
				continue // older than the rows shown
			}
			src := a.buildRow(n, b)
			k = len(d.Rows)
			bySource[key] = k
			d.Rows = append(d.Rows, gridRow{Source: &src, When: b.StartedAt, Cells: make([]gridCell, len(builders))})
		}
		if d.Rows[k].Cells[i].Build == nil {
			d.Rows[k].Cells[i] = cell
		}
	}
	sort.SliceStable(d.Rows, func(i, j int) bool { return d.Rows[i].When.After(d.Rows[j].When) })
	return "grid", d, nil
}

// forChange reports whether a buildset was made for changes.
func forChange(bs *ci.Buildset) bool {
	if bs == nil {
		return false
	}
	for _, ss := range bs.SourceStamps {
		if len(ss.Changes) > 0 {
			return true
		}
	}
	return false
}

// Login.

// login asks the browser for credentials (401) until it sends valid
// ones, then sends it back where it came from. Browsers then send the
// credentials with every request under the application's path.
func (a *app) login(w http.ResponseWriter, r *http.Request) {
	next := safeNext(a.base, r.URL.Query().Get("next"))
	if !a.auth.canLogIn() {
		a.pageError(w, r, fmt.Errorf("%w: no users are configured", errForbidden))
		return
	}
	_, present, err := a.auth.user(r)
	switch {
	case err != nil && errors.Is(err, errTooMany):
		a.pageError(w, r, err)
		return
	case err == nil && present:
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	a.pageError(w, r, fmt.Errorf("%w: log in with your login and password", errUnauthorized))
}

// safeNext returns next if it is a path of the application's own (under
// base), base otherwise: the login page must not send a browser to
// another site. Browsers drop tabs and newlines from a URL and read "\"
// as "/", so "/\t/evil.example" would be "//evil.example", another host:
// any control character or backslash is refused, and so is anything with
// a scheme or a host.
func safeNext(base, next string) string {
	if next == "" || strings.ContainsAny(next, "\\") || strings.ContainsFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return base
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return base
	}
	if !strings.HasPrefix(u.Path, base) || strings.HasPrefix(next, "//") || strings.HasPrefix(u.Path, "//") {
		return base
	}
	return u.RequestURI()
}
