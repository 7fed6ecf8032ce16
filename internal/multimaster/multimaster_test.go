//go:build unix

package multimaster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/internal/pgtest"
	"github.com/kilnci/kiln/internal/testenv"
)

// The cluster: three masters, six workers. Master c is killed mid-run;
// its workers hold a build each (the "hold" builder) so that it surely
// runs builds when it dies. The "live" builder runs on w3, on master b.
var workers = []workerSpec{
	{"w1", "kiln-worker", "a"},
	{"w2", "buildbot-worker", "a"},
	{"w3", "kiln-worker", "b"},
	{"w4", "buildbot-worker", "b"},
	{"w5", "kiln-worker", "c"},
	{"w6", "kiln-worker", "c"},
}

// stuckTimeout bounds a wait for what needs another master: a request
// submitted on one built by the workers of another, a dead master's
// builds retried (the masters notice a death within 30 s).
const stuckTimeout = time.Minute

// The masters' heartbeat, and the age of a heartbeat that makes a master
// dead to the others: shorter than the defaults (10 s and 30 s), so that
// the kill's consequences come soon, long enough for a loaded machine.
const (
	heartbeat = 2 * time.Second
	deadAfter = 15 * time.Second
)

const (
	killed   = "c"
	liveOn   = "w3"
	followOn = "a"
)

// Results of builds, as stored.
const (
	success = 0
	retry   = 5
)

var resultNames = map[int]string{0: "SUCCESS", 1: "WARNINGS", 2: "FAILURE", 3: "SKIPPED", 4: "EXCEPTION", 5: "RETRY", 6: "CANCELLED"}

func resultName(r *int) string {
	if r == nil {
		return "running"
	}
	if s, ok := resultNames[*r]; ok {
		return s
	}
	return fmt.Sprint(*r)
}

// TestCluster runs three masters on one database with six workers and
// sends them the load (see the package documentation).
func TestCluster(t *testing.T) {
	testenv.NeedTool(t, "buildbot-worker")
	dbURL := pgtest.NewDatabase(t)
	total, period := 1000, 5*time.Second
	if testing.Short() {
		total, period = 150, 3*time.Second
	}
	dir := t.TempDir()
	masterProg, workerProg := buildPrograms(t, dir)
	holdFile := filepath.Join(dir, "never") // never made: held builds wait until their master dies
	liveDir := filepath.Join(dir, "live")
	require.NoError(t, os.Mkdir(liveDir, 0o755))

	var names, holdOn []string
	masterOf := map[string]string{}
	for _, w := range workers {
		names = append(names, w.name)
		masterOf[w.name] = w.master
		if w.master == killed {
			holdOn = append(holdOn, w.name)
		}
	}
	args := masterArgs{
		"-worker-names", strings.Join(names, ","),
		"-periodic", period.String(),
		"-heartbeat", heartbeat.String(), "-dead-after", deadAfter.String(),
		"-hold-workers", strings.Join(holdOn, ","), "-hold-file", holdFile,
		"-live-workers", liveOn, "-live-dir", liveDir,
	}

	// The three masters start at once on the new database.
	t0 := time.Now()
	masters := make([]*master, 3)
	byName := map[string]*master{}
	var wg sync.WaitGroup
	for i, name := range []string{"a", "b", "c"} {
		wg.Go(func() { masters[i] = startMaster(t, masterProg, dir, name, dbURL, args) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, m := range masters {
		byName[m.name] = m
	}
	for _, w := range workers {
		startWorker(t, workerProg, dir, w, byName[w.master])
	}

	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	d := &db{conn: conn}

	connected := func() []string {
		var got []string
		require.NoError(t, d.each(ctx, `SELECT name FROM workers WHERE connected ORDER BY name`, nil, func(r pgx.Rows) error {
			var n string
			got = append(got, n)
			return r.Scan(&got[len(got)-1])
		}))
		return got
	}
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("workers connected: %v, want all of %v", connected(), names) },
		func() bool { return len(connected()) == len(workers) })

	builderIDs := map[string]int64{}
	require.NoError(t, d.each(ctx, `SELECT name, id FROM builders`, nil, func(r pgx.Rows) error {
		var n string
		var id int64
		err := r.Scan(&n, &id)
		builderIDs[n] = id
		return err
	}))
	for _, b := range []string{"build", "hold", "live", "periodic"} {
		require.Contains(t, builderIDs, b, "the builders table has no %q", b)
	}

	// Builds held on the workers of the master to be killed: hold
	// requests are sent until one runs on each of them.
	held := heldBuilds(t, d, byName, builderIDs["hold"], holdOn)

	// The load.
	before := d.stats(t)
	ownBefore := d.xacts
	start := time.Now()
	s := &sender{masters: masters, builderID: builderIDs["build"]}
	reqs := make([]*request, total)
	for i := range reqs {
		r := &request{n: i + 1, kind: "force"}
		if i%2 == 1 {
			r.kind = "push"
			r.revision = revision(r.n)
			r.delivery = fmt.Sprintf("load-%d", r.n)
		}
		reqs[i] = r
	}
	var next atomic.Int64
	var senders sync.WaitGroup
	for range 6 {
		senders.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(reqs) {
					return
				}
				s.send(reqs[i])
			}
		})
	}

	// Master c dies once a third of the load is built.
	builtOK := func() int {
		return d.count(t, `SELECT count(*) FROM builds WHERE builder_id = $1 AND complete AND results = 0`, builderIDs["build"])
	}
	waitFor(t, waitTimeout, func() string {
		return fmt.Sprintf("%d builds of the load succeeded, want %d before the kill", builtOK(), total/3)
	},
		func() bool { return builtOK() >= total/3 })
	killedAt := time.Now()
	byName[killed].kill()
	t.Logf("master %s killed (SIGKILL) after %d of %d builds; it held builds %v", killed, builtOK(), total, held)
	onKilled := runningOn(t, d, holdOn)

	// A log followed on master a while master b runs the build.
	t.Run("LiveLog", func(t *testing.T) {
		followLive(t, d, byName[followOn], byName, liveDir, builderIDs["live"], masterOf)
	})

	senders.Wait()
	for _, f := range s.failures {
		t.Errorf("%s", f)
	}

	// Every buildset ends: the test waits as long as some end.
	incomplete := func() int { return d.count(t, `SELECT count(*) FROM buildsets WHERE NOT complete`) }
	left, progress := incomplete(), time.Now()
	for left > 0 && time.Since(progress) < stuckTimeout {
		time.Sleep(100 * time.Millisecond)
		if n := incomplete(); n < left {
			left, progress = n, time.Now()
		}
	}
	if left > 0 {
		t.Errorf("%d buildsets never completed (none did for %v); the first ones:\n%s", left, stuckTimeout, describeIncomplete(t, d, masterOf))
	}
	elapsedLoad := lastBuildEnd(t, d, builderIDs["build"]).Sub(start)

	t.Run("MastersAPI", func(t *testing.T) { checkMastersAPI(t, byName[followOn], killed) })

	// The living masters stop, so that their connections' counters reach
	// pg_stat_database.
	for _, m := range masters {
		if !m.dead.Load() {
			assert.True(t, m.stop(), "master %s did not stop within %v of SIGTERM", m.name, waitTimeout)
		}
	}
	elapsedAll := time.Since(t0)
	after := d.stats(t)
	own := int64(d.xacts - ownBefore)

	// What the database holds.
	t.Run("Load", func(t *testing.T) { checkLoad(t, d, reqs, builderIDs["build"], masterOf) })
	var rebuilt time.Duration
	t.Run("Retry", func(t *testing.T) { rebuilt = checkRetried(t, d, held, onKilled, killedAt, masterOf) })
	t.Run("Periodic", func(t *testing.T) { checkPeriodic(t, d, period, elapsedAll) })

	// Figures.
	builds := d.count(t, `SELECT count(*) FROM builds WHERE started_at >= $1`, start)
	t.Logf("machine: %d CPUs; load average %s", runtime.NumCPU(), loadavg())
	t.Logf("load: %d requests (%d forced, %d pushed) built in %.1f s: %.1f builds/s (first request sent to last build's end)",
		total, total-total/2, total/2, elapsedLoad.Seconds(), float64(total)/elapsedLoad.Seconds())
	t.Logf("forces that may have been stored though not acknowledged (sent again elsewhere): %d", s.maybe)
	if builds > 0 {
		xacts := after.xacts - before.xacts - own
		t.Logf("database, from pg_stat_database over the load (%d builds of every builder, retries included; the test's own %d transactions taken out):"+
			" %.1f transactions/build, rows %.1f inserted, %.1f updated, %.1f deleted per build",
			builds, own, float64(xacts)/float64(builds), float64(after.inserted-before.inserted)/float64(builds),
			float64(after.updated-before.updated)/float64(builds), float64(after.deleted-before.deleted)/float64(builds))
	}
	if rebuilt > 0 {
		t.Logf("kill of master %s: its held builds rebuilt elsewhere %.1f s after the SIGKILL", killed, rebuilt.Seconds())
	}
}

// heldBuilds sends hold requests until a hold build runs on each worker of
// holdOn, and returns those builds.
func heldBuilds(t *testing.T, d *db, byName map[string]*master, holdID int64, holdOn []string) []int64 {
	t.Helper()
	ctx := t.Context()
	running := func() map[string]int64 {
		got := map[string]int64{}
		require.NoError(t, d.each(ctx, `SELECT w.name, b.id FROM builds b JOIN workers w ON w.id = b.worker_id
			WHERE b.builder_id = $1 AND NOT b.complete`, []any{holdID}, func(r pgx.Rows) error {
			var n string
			var id int64
			err := r.Scan(&n, &id)
			got[n] = id
			return err
		}))
		return got
	}
	for try := range 40 {
		got := running()
		var ids []int64
		for _, w := range holdOn {
			if id, ok := got[w]; ok {
				ids = append(ids, id)
			}
		}
		if len(ids) == len(holdOn) {
			return ids
		}
		m := byName[killed]
		if try%2 == 1 {
			m = byName[followOn]
		}
		bsid, _, err := force(m, holdID, "hold")
		require.NoError(t, err)
		// Wait for it to start (on a worker of any master).
		waitFor(t, stuckTimeout, func() string {
			return fmt.Sprintf("hold buildset %d (forced via master %s) never started: no master took its request", bsid, m.name)
		}, func() bool {
			return d.count(t, `SELECT count(*) FROM builds b JOIN buildrequests r ON r.id = b.buildrequest_id WHERE r.buildset_id = $1`, bsid) > 0
		})
	}
	t.Fatalf("after 40 hold requests, hold builds run on %v, want one on each of %v", running(), holdOn)
	return nil
}

// runningOn returns the builds not complete on the given workers.
func runningOn(t *testing.T, d *db, on []string) []int64 {
	t.Helper()
	var ids []int64
	require.NoError(t, d.each(t.Context(), `SELECT b.id FROM builds b JOIN workers w ON w.id = b.worker_id
		WHERE NOT b.complete AND w.name = ANY($1) ORDER BY b.id`, []any{on}, func(r pgx.Rows) error {
		var id int64
		err := r.Scan(&id)
		ids = append(ids, id)
		return err
	}))
	return ids
}

// A buildRow is a build as stored, with its worker's name.
type buildRow struct {
	id, request int64
	worker      string
	results     *int
	completeAt  *time.Time
	state       string
}

// expiredState begins the state of the builds of a master another one
// took for dead.
const expiredState = "retry: its master stopped answering"

func (b buildRow) describe(masterOf map[string]string) string {
	return fmt.Sprintf("%d (worker %s, master %s, %s)", b.id, b.worker, masterOf[b.worker], resultName(b.results))
}

// buildsOf returns the builds of the requests whose IDs are given, by
// request.
func buildsOf(t *testing.T, d *db, where string, args ...any) map[int64][]buildRow {
	t.Helper()
	out := map[int64][]buildRow{}
	require.NoError(t, d.each(t.Context(), `SELECT b.id, b.buildrequest_id, coalesce(w.name, ''), b.results, b.complete_at, b.state_string
		FROM builds b LEFT JOIN workers w ON w.id = b.worker_id WHERE `+where+` ORDER BY b.id`, args, func(r pgx.Rows) error {
		var b buildRow
		err := r.Scan(&b.id, &b.request, &b.worker, &b.results, &b.completeAt, &b.state)
		out[b.request] = append(out[b.request], b)
		return err
	}))
	return out
}

// checkLoad checks each acknowledged request: one buildset (one change
// for a push, however many masters received its delivery), one request,
// built once with SUCCESS, any other build of it a RETRY on the killed
// master's workers; and it logs the builds per master.
func checkLoad(t *testing.T, d *db, reqs []*request, buildID int64, masterOf map[string]string) {
	t.Helper()
	ctx := t.Context()
	type set struct {
		bsid     int64
		complete bool
		results  *int
	}
	forced := map[int64]set{}
	require.NoError(t, d.each(ctx, `SELECT id, complete, results FROM buildsets WHERE scheduler = 'force'`, nil, func(r pgx.Rows) error {
		var s set
		err := r.Scan(&s.bsid, &s.complete, &s.results)
		forced[s.bsid] = s
		return err
	}))
	changes := map[string][]int64{}
	require.NoError(t, d.each(ctx, `SELECT revision, id FROM changes`, nil, func(r pgx.Rows) error {
		var rev string
		var id int64
		err := r.Scan(&rev, &id)
		changes[rev] = append(changes[rev], id)
		return err
	}))
	pushed := map[string][]set{} // external ID -> buildsets
	require.NoError(t, d.each(ctx, `SELECT external_id, id, complete, results FROM buildsets WHERE scheduler <> 'force'`, nil, func(r pgx.Rows) error {
		var ext string
		var s set
		err := r.Scan(&ext, &s.bsid, &s.complete, &s.results)
		pushed[ext] = append(pushed[ext], s)
		return err
	}))
	requests := map[int64][]int64{} // buildset -> requests of the build builder
	require.NoError(t, d.each(ctx, `SELECT buildset_id, id FROM buildrequests WHERE builder_id = $1`, []any{buildID}, func(r pgx.Rows) error {
		var bs, id int64
		err := r.Scan(&bs, &id)
		requests[bs] = append(requests[bs], id)
		return err
	}))
	builds := buildsOf(t, d, `b.builder_id = $1`, buildID)

	perMaster := map[string]int{}
	var expiredLiving []string
	bad := 0
	fail := func(format string, args ...any) {
		bad++
		if bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	acked := 0
	for _, r := range reqs {
		if r.via == "" {
			continue // reported by the sender
		}
		acked++
		var bs set
		switch r.kind {
		case "force":
			var ok bool
			if bs, ok = forced[r.bsid]; !ok {
				fail("%s: no such buildset in the database", r)
				continue
			}
		case "push":
			ids := changes[r.revision]
			if len(ids) != 1 {
				fail("%s: %d changes (%v), want 1", r, len(ids), ids)
				if len(ids) == 0 {
					continue
				}
			}
			sets := pushed[fmt.Sprintf("push:change:%d", ids[0])]
			if len(sets) != 1 {
				var bsids []int64
				for _, s := range sets {
					bsids = append(bsids, s.bsid)
				}
				fail("%s: change %d has %d buildsets %v, want 1 (the push scheduler decided on several masters)", r, ids[0], len(sets), bsids)
				if len(sets) == 0 {
					continue
				}
			}
			bs = sets[0]
		}
		rqs := requests[bs.bsid]
		if len(rqs) != 1 {
			fail("%s: buildset %d has %d requests %v, want 1", r, bs.bsid, len(rqs), rqs)
			if len(rqs) == 0 {
				continue
			}
		}
		bl := builds[rqs[0]]
		var good []buildRow
		var desc []string
		for _, b := range bl {
			desc = append(desc, b.describe(masterOf))
			switch {
			case b.results == nil:
				fail("%s: request %d's build %s never ended", r, rqs[0], b.describe(masterOf))
			case *b.results == success:
				good = append(good, b)
			case *b.results == retry && masterOf[b.worker] == killed:
			case *b.results == retry && strings.HasPrefix(b.state, expiredState):
				// A living master, starved of CPU for longer than
				// DeadAfter, was taken for dead: its builds are
				// retried, as they should be.
				expiredLiving = append(expiredLiving, b.describe(masterOf))
			default:
				fail("%s: request %d's build %s (%q): only a build of a master taken for dead may be retried", r, rqs[0], b.describe(masterOf), b.state)
			}
		}
		switch {
		case len(bl) == 0:
			fail("%s: request %d never built (lost)", r, rqs[0])
		case len(good) != 1:
			fail("%s: request %d built %d times with SUCCESS: builds %s", r, rqs[0], len(good), strings.Join(desc, ", "))
		default:
			perMaster[masterOf[good[0].worker]]++
		}
		if !bs.complete || bs.results == nil || *bs.results != success {
			fail("%s: buildset %d complete=%v results %s, want complete with SUCCESS", r, bs.bsid, bs.complete, resultName(bs.results))
		}
	}
	if bad > 20 {
		t.Errorf("... and %d more", bad-20)
	}
	twice := 0
	for _, r := range reqs {
		if r.twice != "" {
			twice++
		}
	}
	t.Logf("%d requests acknowledged of %d (%d push deliveries received by two masters); successful builds per master (by the master its worker is attached to): a %d, b %d, c %d",
		acked, len(reqs), twice, perMaster["a"], perMaster["b"], perMaster["c"])
	for _, m := range []string{"a", "b"} {
		assert.Positive(t, perMaster[m], "master %s's workers built nothing of the load", m)
	}
	if len(expiredLiving) > 0 {
		t.Logf("a living master was taken for dead (its heartbeat late by more than %v): builds %s were retried", deadAfter, strings.Join(expiredLiving, ", "))
	}
}

// checkRetried checks that the builds held on the killed master, and every
// other build it ran when it died, ended as RETRY and that their requests
// were built again elsewhere, with SUCCESS. It returns the time from the
// kill to the last of those rebuilds' ends.
func checkRetried(t *testing.T, d *db, held, onKilled []int64, killedAt time.Time, masterOf map[string]string) time.Duration {
	t.Helper()
	for _, id := range held {
		assert.Contains(t, onKilled, id, "held build %d was not running when its master was killed", id)
	}
	if len(onKilled) == 0 {
		return 0
	}
	var reqIDs []int64
	byID := map[int64]buildRow{}
	for _, bl := range buildsOf(t, d, `b.id = ANY($1)`, onKilled) {
		for _, b := range bl {
			byID[b.id] = b
			reqIDs = append(reqIDs, b.request)
		}
	}
	all := buildsOf(t, d, `b.buildrequest_id = ANY($1)`, reqIDs)
	var last time.Duration
	for _, id := range onKilled {
		b := byID[id]
		if b.results == nil || *b.results != retry {
			if slices.Contains(held, id) || b.results == nil {
				t.Errorf("build %s, running on master %s when it was killed: %s, want RETRY", b.describe(masterOf), killed, resultName(b.results))
			}
			continue // it ended just before the kill
		}
		var again []string
		ok := false
		for _, o := range all[b.request] {
			if o.id == id {
				continue
			}
			again = append(again, o.describe(masterOf))
			if o.results != nil && *o.results == success && masterOf[o.worker] != killed {
				ok = true
				if o.completeAt != nil {
					last = max(last, o.completeAt.Sub(killedAt))
				}
			}
		}
		if !ok {
			t.Errorf("request %d, whose build %d was retried when master %s died, was not built again with SUCCESS elsewhere: builds %v",
				b.request, id, killed, again)
		}
		if b.completeAt != nil {
			t.Logf("build %d (on %s) ended RETRY %.1f s after the kill", id, b.worker, b.completeAt.Sub(killedAt).Seconds())
		}
	}
	return last
}

// checkPeriodic checks that the periodic scheduler, configured on the
// three masters, built once per period: never two buildsets within half
// a period, and no more than the periods elapsed allow.
func checkPeriodic(t *testing.T, d *db, period, elapsed time.Duration) {
	t.Helper()
	var at []time.Time
	var ids []int64
	require.NoError(t, d.each(t.Context(), `SELECT id, submitted_at FROM buildsets WHERE scheduler = 'periodic' ORDER BY submitted_at, id`, nil, func(r pgx.Rows) error {
		var id int64
		var ts time.Time
		err := r.Scan(&id, &ts)
		ids, at = append(ids, id), append(at, ts)
		return err
	}))
	require.NotEmpty(t, ids, "the periodic scheduler never built")
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < period/2 {
			t.Errorf("periodic buildsets %d and %d submitted %v apart (period %v): the scheduler fired on two masters for one period", ids[i-1], ids[i], gap, period)
		}
	}
	most := int(elapsed/period) + 1
	assert.LessOrEqual(t, len(ids), most, "%d periodic buildsets in %v with a period of %v", len(ids), elapsed.Round(time.Second), period)
	t.Logf("periodic scheduler (period %v) on three masters: %d buildsets in %v (at most %d periods began)", period, len(ids), elapsed.Round(time.Second), most)
}

// describeIncomplete lists the first buildsets not complete with their
// requests and builds.
func describeIncomplete(t *testing.T, d *db, masterOf map[string]string) string {
	t.Helper()
	var sb strings.Builder
	require.NoError(t, d.each(t.Context(), `SELECT s.id, s.scheduler, s.reason, r.id, r.claimed, r.complete,
			coalesce((SELECT string_agg(b.id || ' on ' || coalesce(w.name, '?') || ' ' || coalesce(b.results::text, 'running'), ', ' ORDER BY b.id)
				FROM builds b LEFT JOIN workers w ON w.id = b.worker_id WHERE b.buildrequest_id = r.id), 'none')
		FROM buildsets s JOIN buildrequests r ON r.buildset_id = s.id WHERE NOT s.complete ORDER BY s.id LIMIT 10`, nil, func(r pgx.Rows) error {
		var bs, rq int64
		var sched, reason, builds string
		var claimed, complete bool
		if err := r.Scan(&bs, &sched, &reason, &rq, &claimed, &complete, &builds); err != nil {
			return err
		}
		fmt.Fprintf(&sb, "  buildset %d (%s, %q): request %d claimed=%v complete=%v, builds: %s\n", bs, sched, reason, rq, claimed, complete, builds)
		return nil
	}))
	return sb.String()
}

// lastBuildEnd is the end of the last build of the builder.
func lastBuildEnd(t *testing.T, d *db, builderID int64) time.Time {
	t.Helper()
	var end *time.Time
	require.NoError(t, d.queryRow(t.Context(), `SELECT max(complete_at) FROM builds WHERE builder_id = $1`, builderID).Scan(&end))
	if end == nil {
		return time.Now()
	}
	return *end
}

// checkMastersAPI checks /api/v2/masters of m: the three masters, the
// killed one not active.
func checkMastersAPI(t *testing.T, m *master, killed string) {
	t.Helper()
	resp, err := httpClient.Get(m.http + "api/v2/masters")
	require.NoError(t, err)
	defer resp.Body.Close()
	var ans struct {
		Masters []struct {
			Name   string `json:"name"`
			Active bool   `json:"active"`
		} `json:"masters"`
	}
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.NoError(t, json.Unmarshal(body, &ans), "%s", body)
	got := map[string]bool{}
	for _, x := range ans.Masters {
		got[x.Name] = x.Active
	}
	assert.Equal(t, map[string]bool{"a": true, "b": true, killed: false}, got, "/api/v2/masters of master %s: %s", m.name, body)
}

// An sseEvent is one Server-Sent Event.
type sseEvent struct {
	name, data string
	at         time.Time
}

// readEvents reads events from r into a channel, closed at the end.
func readEvents(r io.Reader) <-chan sseEvent {
	c := make(chan sseEvent, 1024)
	go func() {
		defer close(c)
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		var e sseEvent
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if e.name != "" || data != nil {
					e.data, e.at = strings.Join(data, "\n"), time.Now()
					c <- e
				}
				e, data = sseEvent{}, nil
			case strings.HasPrefix(line, "event:"):
				e.name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:"):
				data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
			}
		}
	}()
	return c
}

func nextEvent(t *testing.T, c <-chan sseEvent, what string) sseEvent {
	t.Helper()
	select {
	case e, ok := <-c:
		require.True(t, ok, "the stream ended while waiting for %s", what)
		return e
	case <-time.After(waitTimeout):
		t.Fatalf("no event within %v while waiting for %s", waitTimeout, what)
		return sseEvent{}
	}
}

// followLive forces a build of the live builder through m (it runs on w3,
// attached to master b), follows its log on m's live stream and m's
// /live?build= events, and lets the step write its lines one by one:
// each line must come through m while the build runs on b.
func followLive(t *testing.T, d *db, m *master, byName map[string]*master, liveDir string, liveID int64, masterOf map[string]string) {
	t.Helper()
	ctx := t.Context()
	bsid, _, err := force(m, liveID, "followed live")
	require.NoError(t, err)
	var buildID int64
	var worker string
	waitFor(t, stuckTimeout, func() string {
		return fmt.Sprintf("the live build (buildset %d, forced via master %s) did not start: its builder runs on %s only, attached to master %s, which never took the request",
			bsid, m.name, liveOn, masterOf[liveOn])
	}, func() bool {
		err := d.queryRow(ctx, `SELECT b.id, w.name FROM builds b JOIN buildrequests r ON r.id = b.buildrequest_id
			JOIN workers w ON w.id = b.worker_id WHERE r.buildset_id = $1`, bsid).Scan(&buildID, &worker)
		return err == nil
	})
	require.Equal(t, liveOn, worker)
	runner := masterOf[worker]
	require.NotEqual(t, m.name, runner)

	// The build's page events, on master m.
	pageResp, err := httpClient.Get(m.http + fmt.Sprintf("live?build=%d", buildID))
	require.NoError(t, err)
	defer pageResp.Body.Close()
	require.Equal(t, http.StatusOK, pageResp.StatusCode)
	page := readEvents(pageResp.Body)

	// The step's log, found through m's API.
	var logID int64
	waitFor(t, stuckTimeout, func() string { return fmt.Sprintf("master %s's API shows no log for build %d's step", m.name, buildID) }, func() bool {
		resp, err := httpClient.Get(m.http + fmt.Sprintf("api/v2/builds/%d/steps/live/logs", buildID))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var ans struct {
			Logs []struct {
				LogID int64 `json:"logid"`
			} `json:"logs"`
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&ans) != nil || len(ans.Logs) == 0 {
			return false
		}
		logID = ans.Logs[0].LogID
		return true
	})
	// The stream has its own client: it lasts as long as the step.
	resp, err := (&http.Client{}).Get(m.http + fmt.Sprintf("logs/%d/live", logID))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	events := readEvents(resp.Body)

	// The same log followed on the master running the build, to tell the
	// delay the relay adds from the delay of the build itself.
	local := map[string]time.Time{}
	var localMu sync.Mutex
	if rm := byName[runner]; rm != nil {
		lresp, err := (&http.Client{}).Get(rm.http + fmt.Sprintf("logs/%d/live", logID))
		require.NoError(t, err)
		defer lresp.Body.Close()
		go func() {
			for e := range readEvents(lresp.Body) {
				for i := 1; i <= 3; i++ {
					if want := fmt.Sprintf("live line %d", i); strings.Contains(e.data, want) {
						localMu.Lock()
						local[want] = e.at
						localMu.Unlock()
					}
				}
			}
		}()
	}

	var text strings.Builder
	var delays, localDelays []time.Duration
	released := time.Now()
	releasedAt := map[string]time.Time{}
	for i := 1; i <= 3; i++ {
		want := fmt.Sprintf("live line %d", i)
		for !strings.Contains(text.String(), want) {
			e := nextEvent(t, events, fmt.Sprintf("%q from master %s's stream of a build on master %s", want, m.name, runner))
			require.Equal(t, "lines", e.name, "event %s %q before %q", e.name, e.data, want)
			text.WriteString(e.data)
			if strings.Contains(e.data, want) && i > 1 {
				delays = append(delays, e.at.Sub(released))
				releasedAt[want] = released
			}
		}
		var complete bool
		require.NoError(t, d.queryRow(ctx, `SELECT complete FROM builds WHERE id = $1`, buildID).Scan(&complete))
		require.False(t, complete, "%q came through master %s only once the build was complete", want, m.name)
		released = time.Now()
		require.NoError(t, os.WriteFile(filepath.Join(liveDir, fmt.Sprintf("go%d", i)), nil, 0o644))
	}
	for {
		e := nextEvent(t, events, "the end of the live log")
		if e.name == "done" {
			break
		}
		require.Equal(t, "lines", e.name)
	}
	localMu.Lock()
	for i := 2; i <= 3; i++ {
		want := fmt.Sprintf("live line %d", i)
		if at, ok := local[want]; ok {
			localDelays = append(localDelays, at.Sub(releasedAt[want]))
		}
	}
	localMu.Unlock()

	// Master m told its page of the build's changes, made on master b:
	// the page's stream tells only events of that build.
	var kinds []string
	deadline := time.After(waitTimeout)
wait:
	for {
		select {
		case e, ok := <-page:
			if !ok {
				break wait
			}
			if e.name == "change" {
				kinds = append(kinds, e.data)
				break wait
			}
		case <-deadline:
			break wait
		}
	}
	assert.NotEmpty(t, kinds, "master %s's /live?build=%d told nothing of the build master %s ran and ended", m.name, buildID, runner)
	t.Logf("live log: build %d on master %s (worker %s) followed on master %s; delays from the step's release to its next line: on master %s %v, on master %s %v",
		buildID, runner, worker, m.name, m.name, delays, runner, localDelays)
}
