package steps_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/scheduler"
)

const triggerURL = "https://ci.example.org/"

// triggerConfig has a builder "parent" whose build sets got_revision and
// a property "foo", then runs the trigger step, then "after"; triggerable
// schedulers start the builders "ok" (echoes what it got), "fails",
// "waits" (until the file "release" exists in dir) and "queued" (on the
// parent's worker, which runs one build at a time).
func triggerConfig(dir string, trigger ci.Step) ci.MasterConfig {
	setrev := ci.WithOptions(ci.StepOptions{Name: "setrev"}, ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
		s.SetProperty("got_revision", "abc123", "Git")
		s.SetProperty("foo", "bar", "test")
		return ci.Success, nil
	}))
	echo := func(name string, cmd ...string) ci.Step {
		return &steps.ShellCommand{StepOptions: ci.StepOptions{Name: name}, Command: cmd}
	}
	return ci.MasterConfig{
		PublicURL: triggerURL,
		Workers:   []ci.WorkerConfig{{Name: "w", MaxBuilds: 1}, {Name: "w2"}},
		Builders: []ci.BuilderConfig{
			{Name: "parent", Workers: []string{"w"}, Steps: []ci.Step{setrev, trigger, echo("after", "true")}},
			{Name: "ok", Workers: []string{"w2"}, Steps: []ci.Step{&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "echo"},
				Command: []any{"echo", ci.Interpolate("%(prop:x)s|%(prop:foo)s|%(prop:unset)s|%(src::branch)s|%(src::revision)s")}}}},
			{Name: "fails", Workers: []string{"w2"}, Steps: []ci.Step{echo("false", "false")}},
			{Name: "waits", Workers: []string{"w2"}, Steps: []ci.Step{echo("wait", "sh", "-c", `while [ ! -e "$1/release" ]; do sleep 0.01; done`, "sh", dir)}},
			{Name: "queued", Workers: []string{"w"}, Steps: []ci.Step{echo("true", "true")}},
		},
		Schedulers: []ci.Scheduler{
			&scheduler.Triggerable{Name: "t-ok", Builders: []string{"ok"}},
			&scheduler.Triggerable{Name: "t-fail", Builders: []string{"fails"}},
			&scheduler.Triggerable{Name: "t-wait", Builders: []string{"waits"}},
			&scheduler.Triggerable{Name: "t-queued", Builders: []string{"queued"}},
			&scheduler.Force{Name: "force", Builders: []string{"parent"}},
		},
	}
}

// children returns the buildsets a build triggered.
func children(t *testing.T, m *citest.Master, parent int64) []*ci.Buildset {
	t.Helper()
	ctx := context.Background()
	reqs, _, err := m.Store.ListRequests(ctx, ci.RequestQuery{})
	require.NoError(t, err)
	seen := map[int64]bool{}
	var out []*ci.Buildset
	for _, r := range reqs {
		if seen[r.BuildsetID] {
			continue
		}
		seen[r.BuildsetID] = true
		bs, err := m.Store.GetBuildset(ctx, r.BuildsetID)
		require.NoError(t, err)
		if bs.ParentBuildID == parent {
			out = append(out, bs)
		}
	}
	return out
}

var parentSource = ci.SourceStamp{Branch: "main", Revision: "orig", Repository: "app.git"}

func TestTrigger_Results(t *testing.T) {
	tests := []struct {
		name    string
		trigger *steps.Trigger
		step    ci.Result
		build   ci.Result
		state   string
		urls    []ci.StepURL
	}{
		{"WaitSuccess", &steps.Trigger{SchedulerNames: []string{"t-ok"}, WaitForFinish: true}, ci.Success, ci.Success,
			"triggered t-ok: 1 success", []ci.StepURL{{Name: "success: ok #1", URL: triggerURL + "builders/ok/builds/1"}}},
		{"WaitFailure", &steps.Trigger{SchedulerNames: []string{"t-ok", "t-fail"}, WaitForFinish: true}, ci.Failure, ci.Failure,
			"triggered t-ok, t-fail: 1 success, 1 failure", []ci.StepURL{
				{Name: "success: ok #1", URL: triggerURL + "builders/ok/builds/1"},
				{Name: "failure: fails #1", URL: triggerURL + "builders/fails/builds/1"},
			}},
		{"Unimportant", &steps.Trigger{SchedulerNames: []string{"t-ok", "t-fail"}, UnimportantSchedulerNames: []string{"t-fail"}, WaitForFinish: true},
			ci.Success, ci.Success, "triggered t-ok, t-fail: 1 success, 1 failure", nil},
		{"NoWait", &steps.Trigger{SchedulerNames: []string{"t-fail"}}, ci.Success, ci.Success, "triggered t-fail", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := citest.Start(t, triggerConfig(t.TempDir(), tt.trigger))
			b := m.Build(t, citest.Request{Builder: "parent", SourceStamp: parentSource})
			assert.Equal(t, tt.build, b.Results())
			step := b.Step("trigger")
			assert.Equal(t, tt.step, step.Results)
			assert.Equal(t, tt.state, strings.TrimSuffix(step.StateString, " (failure)"))
			if tt.urls != nil {
				assert.Equal(t, tt.urls, step.URLs)
			}
			kids := children(t, m, b.Record.ID)
			require.Len(t, kids, len(tt.trigger.SchedulerNames))
			for _, bs := range kids {
				m.WaitBuildset(t, bs.ID)
			}
		})
	}
}

func TestTrigger_SourceAndProperties(t *testing.T) {
	tests := []struct {
		name    string
		trigger *steps.Trigger
		want    string // the child's echo: x|foo|unset|branch|revision
		keepsSS bool   // the child's source stamp is the parent's own
	}{
		{"GotRevision", &steps.Trigger{}, "|||main|abc123", false},
		{"KeepRevision", &steps.Trigger{KeepRevision: true}, "|||main|orig", true},
		{"AlwaysUseLatest", &steps.Trigger{AlwaysUseLatest: true}, "||||", false},
		{"SourceStamps", &steps.Trigger{SourceStamps: []ci.SourceStamp{{Branch: "dev", Revision: "explicit"}}}, "|||dev|explicit", false},
		{"Properties", &steps.Trigger{
			SetProperties:  map[string]any{"x": ci.Interpolate("from %(prop:buildername)s"), "foo": "set"},
			CopyProperties: []string{"foo", "unset"},
		}, "from parent|bar||main|abc123", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.trigger.SchedulerNames = []string{"t-ok"}
			tt.trigger.WaitForFinish = true
			m := citest.Start(t, triggerConfig(t.TempDir(), tt.trigger))
			b := m.Build(t, citest.Request{Builder: "parent", SourceStamp: parentSource})
			require.Equal(t, ci.Success, b.Results())
			kids := children(t, m, b.Record.ID)
			require.Len(t, kids, 1)
			child := kids[0]
			assert.Equal(t, "The Triggerable scheduler named 't-ok' triggered this build", child.Reason)
			assert.Equal(t, "t-ok", child.Scheduler)
			builds := m.WaitBuildset(t, child.ID)
			require.Len(t, builds, 1)
			assert.Equal(t, tt.want+"\n", builds[0].Log("echo", "stdio"))
			parentSS, err := m.Store.GetBuildset(context.Background(), mustRequest(t, m, b.Record.BuildRequestID).BuildsetID)
			require.NoError(t, err)
			assert.Equal(t, tt.keepsSS, child.SourceStamps[0].ID == parentSS.SourceStamps[0].ID)
			if tt.name == "Properties" {
				assert.Equal(t, "Trigger", builds[0].Record.Properties["x"].Source)
				assert.Equal(t, "Trigger", builds[0].Record.Properties["foo"].Source)
				_, set := builds[0].Record.Properties["unset"]
				assert.False(t, set, "a property the parent does not have is not copied")
			}
		})
	}
}

func mustRequest(t *testing.T, m *citest.Master, id int64) *ci.BuildRequest {
	t.Helper()
	r, err := m.Store.GetRequest(context.Background(), id)
	require.NoError(t, err)
	return r
}

func TestTrigger_ReasonProperty(t *testing.T) {
	m := citest.Start(t, triggerConfig(t.TempDir(), &steps.Trigger{SchedulerNames: []string{"t-ok"}, WaitForFinish: true,
		SetProperties: map[string]any{"reason": ci.Interpolate("release of %(src::branch)s")}}))
	b := m.Build(t, citest.Request{Builder: "parent", SourceStamp: parentSource})
	require.Equal(t, ci.Success, b.Results())
	kids := children(t, m, b.Record.ID)
	require.Len(t, kids, 1)
	assert.Equal(t, "release of main", kids[0].Reason)
}

// TestTrigger_StopWhileWaiting stops the triggering build while it waits:
// the triggered build running is stopped, the triggered request pending is
// cancelled.
func TestTrigger_StopWhileWaiting(t *testing.T) {
	tests := []struct {
		name      string
		scheduler string
		builder   string
		running   bool
	}{
		{"Running", "t-wait", "waits", true},
		{"Pending", "t-queued", "queued", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			m := citest.Start(t, triggerConfig(dir, &steps.Trigger{SchedulerNames: []string{tt.scheduler}, WaitForFinish: true}))
			bs := m.Submit(t, citest.Request{Builder: "parent"})
			parent := m.WaitRunning(t, "parent")
			if tt.running {
				m.WaitRunning(t, tt.builder)
			} else {
				waitChildren(t, m, parent)
			}
			require.NoError(t, m.StopBuild(context.Background(), parent, "no more"))
			builds := m.WaitBuildset(t, bs)
			require.Len(t, builds, 1)
			b := builds[0]
			assert.Equal(t, ci.Cancelled, b.Results())
			assert.Equal(t, ci.Cancelled, b.Step("trigger").Results)
			assert.Equal(t, "interrupted (cancelled)", b.Step("trigger").StateString)

			kids := children(t, m, parent)
			require.Len(t, kids, 1)
			kidBuilds := m.WaitBuildset(t, kids[0].ID)
			bsNow, err := m.Store.GetBuildset(context.Background(), kids[0].ID)
			require.NoError(t, err)
			assert.Equal(t, ci.Cancelled, bsNow.Results)
			if tt.running {
				require.Len(t, kidBuilds, 1)
				assert.Equal(t, ci.Cancelled, kidBuilds[0].Results())
			} else {
				assert.Empty(t, kidBuilds, "the pending request was cancelled before it was built")
			}
			require.NoError(t, os.WriteFile(filepath.Join(dir, "release"), nil, 0o644))
		})
	}
}

// waitChildren waits until a build has triggered a buildset.
func waitChildren(t *testing.T, m *citest.Master, parent int64) {
	t.Helper()
	sub := m.Subscribe(256)
	defer sub.Close()
	timeout := time.After(citest.DefaultTimeout)
	for len(children(t, m, parent)) == 0 {
		select {
		case <-sub.C:
		case <-timeout:
			t.Fatal("timed out waiting for the triggered buildset")
		}
	}
}

func TestTrigger_UnknownSchedulerAtRunTime(t *testing.T) {
	tests := []struct {
		name  string
		names []string
		want  string
	}{
		{"Unknown", []string{"t-ok", "ghost"}, `trigger: unknown scheduler "ghost": the configuration has no scheduler of that name`},
		{"NotTriggerable", []string{"force"}, `trigger: scheduler "force" is not triggerable (it is a *scheduler.Force); a Trigger step needs a scheduler.Triggerable`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A step the configuration check cannot see through.
			hidden := ci.WithOptions(ci.StepOptions{Name: "trigger"}, ci.StepFunc(func(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
				return (&steps.Trigger{SchedulerNames: tt.names}).Run(ctx, s)
			}))
			m := citest.Start(t, triggerConfig(t.TempDir(), hidden))
			b := m.Build(t, citest.Request{Builder: "parent"})
			assert.Equal(t, ci.Exception, b.Results())
			assert.Equal(t, ci.Exception, b.Step("trigger").Results)
			assert.Contains(t, b.Log("trigger", "err.text"), tt.want)
			assert.Empty(t, children(t, m, b.Record.ID), "nothing triggered")
		})
	}
}

func TestTrigger_Config(t *testing.T) {
	_, err := ci.NewMaster(triggerConfig(t.TempDir(), &steps.Trigger{SchedulerNames: []string{"t-ok", "ghost", "force"}}))
	require.ErrorIs(t, err, ci.ErrInvalidConfig)
	assert.ErrorContains(t, err, `builder "parent": Steps[1] (trigger): SchedulerNames: unknown scheduler "ghost": the configuration has no scheduler of that name`)
	assert.ErrorContains(t, err, `builder "parent": Steps[1] (trigger): SchedulerNames: scheduler "force" is not triggerable (it is a *scheduler.Force)`)
}

func TestTrigger_Validate(t *testing.T) {
	tests := []struct {
		name    string
		trigger steps.Trigger
		want    []string
	}{
		{"OK", steps.Trigger{SchedulerNames: []string{"a"}, SetProperties: map[string]any{"x": ci.Interpolate("%(prop:y)s")}}, nil},
		{"NoSchedulers", steps.Trigger{}, []string{"SchedulerNames is empty: name the schedulers to trigger"}},
		{"Unimportant", steps.Trigger{SchedulerNames: []string{"a"}, UnimportantSchedulerNames: []string{"b"}},
			[]string{`UnimportantSchedulerNames: "b" is not one of SchedulerNames`}},
		{"SourceChoices", steps.Trigger{SchedulerNames: []string{"a"}, KeepRevision: true, AlwaysUseLatest: true},
			[]string{"set at most one of KeepRevision, AlwaysUseLatest and SourceStamps"}},
		{"SourceStampsAndKeep", steps.Trigger{SchedulerNames: []string{"a"}, KeepRevision: true, SourceStamps: []ci.SourceStamp{{}}},
			[]string{"set at most one of KeepRevision, AlwaysUseLatest and SourceStamps"}},
		{"Codebases", steps.Trigger{SchedulerNames: []string{"a"}, SourceStamps: []ci.SourceStamp{{Codebase: "x"}, {Codebase: "x"}}},
			[]string{`SourceStamps: codebase "x" is given twice`}},
		{"Properties", steps.Trigger{SchedulerNames: []string{"a"}, SetProperties: map[string]any{"x": ci.Interpolate("%(prop:y")}},
			[]string{`SetProperties["x"]: interpolate`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.trigger.Validate()
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			for _, w := range tt.want {
				assert.ErrorContains(t, err, w)
			}
		})
	}
}
