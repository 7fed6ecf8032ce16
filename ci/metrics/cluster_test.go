package metrics_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/metrics"
	_ "github.com/kilnci/kiln/ci/postgres" // the masters' store
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Masters sharing a database each count their own builds, not the
// others' (whose events they also receive).
func TestCollector_Cluster(t *testing.T) {
	url := pgtest.NewDatabase(t)
	start := func(name string, col *metrics.Collector) *citest.Master {
		return citest.Start(t, ci.MasterConfig{
			Name: name, Database: url,
			Workers: []ci.WorkerConfig{{Name: name + "-w"}},
			// Each master its own builder: its builds are its own.
			Builders: []ci.BuilderConfig{{Name: "build-" + name, Workers: []string{name + "-w"},
				Steps: []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "s"}, Command: []string{"true"}}}}},
			Services: []ci.Service{col},
		})
	}
	colA, colB := &metrics.Collector{}, &metrics.Collector{}
	a := start("a", colA)
	sub := a.Subscribe(1024)
	defer sub.Close()
	b := start("b", colB)

	// A build on b, whose end a hears of, then one on a: a's collector,
	// which reads a's events in order, has had b's when it counts its own.
	bb := b.Build(t, citest.Request{Builder: "build-b"})
	require.Equal(t, b.MasterID(), bb.Record.MasterID)
	for heard := false; !heard; {
		select {
		case e := <-sub.C:
			heard = e.Type == ci.EventBuildFinished && e.BuildID == bb.Record.ID
		case <-time.After(time.Minute):
			t.Fatal("a never heard of b's build")
		}
	}
	ab := a.Build(t, citest.Request{Builder: "build-a"})
	require.Equal(t, a.MasterID(), ab.Record.MasterID)

	srvA := httptest.NewServer(colA)
	defer srvA.Close()
	deadline := time.Now().Add(time.Minute)
	var text string
	for {
		text = scrape(t, srvA.URL)
		if value(text, `kiln_builds_finished_total{builder="build-a",result="success"}`) >= 1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "metrics never caught up:\n%s", text)
		time.Sleep(20 * time.Millisecond)
	}
	assert.Equal(t, 1.0, value(text, `kiln_builds_started_total{builder="build-a"}`))
	assert.Equal(t, 1.0, value(text, `kiln_builds_finished_total{builder="build-a",result="success"}`))
	assert.Equal(t, -1.0, value(text, `kiln_builds_started_total{builder="build-b"}`), "a does not count b's build")
	assert.Equal(t, -1.0, value(text, `kiln_builds_finished_total{builder="build-b",result="success"}`))
}
