//go:build unix

package crash

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/kilnci/kiln/ci"
	_ "github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/hook"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/webui"
	"github.com/kilnci/kiln/worker/local"
)

const childEnv = "KILN_CRASH_MASTER_DIR"

// runMaster is the child process: a master with a base change hook, a tags
// scheduler, a force scheduler, an in-process worker and the web API, that
// runs until it is killed (or stopped by SIGTERM).
func runMaster(dir string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cfg := ci.MasterConfig{
		BaseDir: filepath.Join(dir, "master"),
		Workers: []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{{Name: "b", Workers: []string{"w"}, Steps: []ci.Step{
			&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "build"}, Command: []any{"echo", "built", ci.Interpolate("%(src::branch)s")}},
		}}},
		Schedulers: []ci.Scheduler{
			&scheduler.AnyBranch{Name: "tags", Builders: []string{"b"}, ChangeFilter: scheduler.ChangeFilter{Category: []string{"new-tag"}}},
			&scheduler.Force{Name: "force", Builders: []string{"b"}},
		},
		ChangeHooks:     []ci.ChangeHook{&hook.Base{}},
		ShutdownTimeout: -1,
		Services: []ci.Service{
			&local.Worker{Name: "w", Dir: filepath.Join(dir, "worker")},
			&webui.Server{Listener: ln, Options: webui.Options{Authz: webui.Authz{Force: webui.Anyone}}},
		},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	m, err := ci.NewMaster(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	go func() {
		<-m.Ready()
		tmp := filepath.Join(dir, "addr.tmp")
		os.WriteFile(tmp, []byte(ln.Addr().String()), 0o644)
		os.Rename(tmp, filepath.Join(dir, "addr"))
	}()
	return m.Run(ctx)
}

func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signalNotify(sigs)
	go func() {
		<-sigs
		cancel()
	}()
	return ctx, cancel
}

// child is a running master process.
type child struct {
	cmd  *exec.Cmd
	base string
	done chan struct{}
}

func startChild(t *testing.T, dir string) *child {
	t.Helper()
	os.Remove(filepath.Join(dir, "addr"))
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillUnderLoad$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	log, err := os.OpenFile(filepath.Join(dir, "masters.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(c.done)
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "addr")); err == nil {
			c.base = "http://" + string(b)
			return c
		}
		select {
		case <-c.done:
			t.Fatalf("the master exited at start; see %s", filepath.Join(dir, "masters.log"))
		default:
		}
		require.True(t, time.Now().Before(deadline), "the master did not start")
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *child) kill() {
	syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
}

func (c *child) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(time.Minute):
		c.kill()
	}
}

// A ledger is what the master acknowledged.
type ledger struct {
	mu         sync.Mutex
	deliveries map[string]bool // delivery key -> acknowledged
	forced     []int64         // buildsets of acknowledged forces
	acks       int             // acknowledgements of deliveries, all rounds
}

// acked returns how many deliveries were acknowledged so far.
func (l *ledger) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acks
}

var client = &http.Client{Timeout: 10 * time.Second}

// deliver posts a new-tag change for key; it reports whether the master
// acknowledged it (2xx).
func deliver(base, key string) bool {
	form := url.Values{"category": {"new-tag"}, "branch": {"tag-" + key}, "revision": {"tag-" + key}, "author": {"crash test"}}
	req, _ := http.NewRequest(http.MethodPost, base+"/change_hook/base", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode/100 == 2
}

// force asks for a build; it returns the buildset ID if acknowledged.
func force(base string) (int64, bool) {
	body := `{"jsonrpc": "2.0", "method": "force", "params": {"builderid": 1, "reason": "crash test"}, "id": 1}`
	resp, err := client.Post(base+"/api/v2/forceschedulers/force", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var ans struct {
		Result []json.RawMessage `json:"result"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&ans) != nil || len(ans.Result) == 0 {
		return 0, false
	}
	var bsid int64
	if json.Unmarshal(ans.Result[0], &bsid) != nil {
		return 0, false
	}
	return bsid, true
}

// TestKillUnderLoad kills the master process repeatedly while deliveries
// and forced builds stream in (a delivery not acknowledged is sent again,
// as GitHub does), then checks the database: every acknowledged delivery
// has its change and exactly one build, every acknowledged force its build,
// and the file is sound.
func TestKillUnderLoad(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		if err := runMaster(dir); err != nil {
			fmt.Fprintln(os.Stderr, "master:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir := t.TempDir()
	led := &ledger{deliveries: map[string]bool{}}
	rounds := 8
	if testing.Short() {
		rounds = 3
	}
	next := 0
	for round := range rounds {
		c := startChild(t, dir)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 3 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if g == 2 {
						if bsid, ok := force(c.base); ok {
							led.mu.Lock()
							led.forced = append(led.forced, bsid)
							led.mu.Unlock()
						}
						continue
					}
					// Deliveries not yet acknowledged first, then a new one.
					led.mu.Lock()
					key := ""
					for k, acked := range led.deliveries {
						if !acked {
							key = k
							break
						}
					}
					if key == "" {
						key = fmt.Sprintf("d%d", next)
						next++
						led.deliveries[key] = false
					}
					led.mu.Unlock()
					ok := deliver(c.base, key)
					led.mu.Lock()
					led.deliveries[key] = led.deliveries[key] || ok
					if ok {
						led.acks++
					}
					led.mu.Unlock()
				}
			})
		}
		// The kill comes while the load flows: after this round's first
		// acknowledgements (a loaded machine starts the master slowly),
		// then at a random moment.
		before := led.acked()
		waitUntil := time.Now().Add(2 * time.Minute)
		for led.acked() < before+2 && time.Now().Before(waitUntil) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(150+rand.IntN(500)) * time.Millisecond)
		c.kill()
		close(stop)
		wg.Wait()
		t.Logf("round %d: killed", round)
	}

	// A last master finishes the pending work; then stop it cleanly.
	c := startChild(t, dir)
	// Deliveries never acknowledged are sent once more, as a sender would.
	led.mu.Lock()
	for k, acked := range led.deliveries {
		if !acked {
			led.deliveries[k] = deliver(c.base, k)
		}
	}
	led.mu.Unlock()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var ans struct {
			Meta struct {
				Total int `json:"total"`
			} `json:"meta"`
		}
		resp, err := client.Get(c.base + "/api/v2/buildsets?complete=false")
		require.NoError(t, err)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&ans))
		resp.Body.Close()
		if ans.Meta.Total == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "%d buildsets never completed", ans.Meta.Total)
		time.Sleep(50 * time.Millisecond)
	}
	c.stop()

	db, err := sql.Open("sqlite", filepath.Join(dir, "master", "state.sqlite"))
	require.NoError(t, err)
	defer db.Close()
	var integrity string
	require.NoError(t, db.QueryRow(`PRAGMA integrity_check`).Scan(&integrity))
	assert.Equal(t, "ok", integrity)

	acked := 0
	for key, ok := range led.deliveries {
		if !ok {
			continue
		}
		acked++
		var changeID int64
		err := db.QueryRow(`SELECT id FROM changes WHERE dedup_key = ?`, "base:"+key+":0").Scan(&changeID)
		require.NoError(t, err, "acknowledged delivery %s has no change", key)
		var buildsets int
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM buildsets WHERE external_id = ?`, fmt.Sprintf("tags:change:%d", changeID)).Scan(&buildsets))
		assert.Equal(t, 1, buildsets, "delivery %s (change %d) has %d buildsets", key, changeID, buildsets)
		var good int
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM builds b JOIN buildrequests r ON r.id = b.buildrequest_id
			JOIN buildsets s ON s.id = r.buildset_id WHERE s.external_id = ? AND b.results = 0`, fmt.Sprintf("tags:change:%d", changeID)).Scan(&good))
		assert.Equal(t, 1, good, "delivery %s (change %d) has %d successful builds", key, changeID, good)
	}
	for _, bsid := range led.forced {
		var good int
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM builds b JOIN buildrequests r ON r.id = b.buildrequest_id
			WHERE r.buildset_id = ? AND b.results = 0`, bsid).Scan(&good))
		assert.Equal(t, 1, good, "forced buildset %d has %d successful builds", bsid, good)
	}
	var changes int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM changes`).Scan(&changes))
	assert.Equal(t, len(led.deliveries), changes, "one change per delivery, however often it was sent")
	t.Logf("%d rounds: %d deliveries acknowledged, %d forces acknowledged", rounds, acked, len(led.forced))
	require.Greater(t, acked, 10, "too few deliveries got through to test anything")
}
