package scheduler_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/scheduler"
)

func TestForce(t *testing.T) {
	force := &scheduler.Force{
		Name:       "force",
		Builders:   []string{"a", "b"},
		Properties: []scheduler.Param{scheduler.StringParam{Name: "dist", Default: "jessie"}},
	}
	echo := &steps.ShellCommand{StepOptions: ci.StepOptions{Name: "echo"}, Command: []any{"echo", ci.Interpolate("%(prop:dist)s %(prop:owner)s %(src::branch)s %(src::revision)s")}}
	m := citest.Start(t, ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{
			{Name: "a", Workers: []string{"w"}, Steps: []ci.Step{echo}},
			{Name: "b", Workers: []string{"w"}, Steps: []ci.Step{echo}},
			{Name: "other", Workers: []string{"w"}, Steps: []ci.Step{echo}},
		},
		Schedulers: []ci.Scheduler{force},
	})
	ctx := context.Background()

	t.Run("AllBuilders", func(t *testing.T) {
		bs, reqs, err := force.Force(ctx, m.Master, ci.ForceRequest{Owner: "alice", Reason: "release", Branch: "0.9.1", Revision: "0.9.1", Properties: map[string]any{"dist": "stretch"}})
		require.NoError(t, err)
		assert.Equal(t, "A build was forced by 'alice': release", bs.Reason)
		stored, _, err := m.Store.ListRequests(ctx, ci.RequestQuery{BuildsetID: bs.ID})
		require.NoError(t, err)
		require.Len(t, reqs, 2, "one request per builder")
		for i, r := range reqs {
			assert.Equal(t, stored[i].ID, r.ID, "the requests returned are the stored ones")
			assert.Equal(t, stored[i].BuilderID, r.BuilderID)
			assert.Equal(t, bs.ID, r.BuildsetID)
		}
		builds := m.WaitBuildset(t, bs.ID)
		require.Len(t, builds, 2)
		for _, b := range builds {
			assert.Equal(t, ci.Success, b.Results())
			assert.Equal(t, "stretch alice 0.9.1 0.9.1\n", b.Log("echo", "stdio"))
			assert.Equal(t, ci.SourceForce, b.Record.Properties["owner"].Source)
			assert.Equal(t, "release", b.Property("reason"))
			assert.Equal(t, "force", b.Property("scheduler"))
		}
	})
	t.Run("SomeBuildersAndDefaults", func(t *testing.T) {
		bs, _, err := force.Force(ctx, m.Master, ci.ForceRequest{Builders: []string{"b"}})
		require.NoError(t, err)
		assert.Equal(t, scheduler.DefaultForceReason, bs.Reason)
		builds := m.WaitBuildset(t, bs.ID)
		require.Len(t, builds, 1)
		assert.Equal(t, "jessie   \n", builds[0].Log("echo", "stdio"))
	})
	t.Run("BadRequests", func(t *testing.T) {
		_, _, err := force.Force(ctx, m.Master, ci.ForceRequest{Builders: []string{"other"}})
		assert.ErrorIs(t, err, ci.ErrInvalidForce)
		assert.ErrorContains(t, err, `builder "other" is not one of this scheduler's builders`)
		_, _, err = force.Force(ctx, m.Master, ci.ForceRequest{Properties: map[string]any{"sneaky": "x"}})
		assert.ErrorIs(t, err, ci.ErrInvalidForce)
		assert.ErrorContains(t, err, `unknown property "sneaky"`)
		n, _, err := m.Store.ListRequests(ctx, ci.RequestQuery{})
		require.NoError(t, err)
		assert.Len(t, n, 3, "refused requests store nothing")
	})
}

// typedForce has a parameter of every kind.
func typedForce() *scheduler.Force {
	return &scheduler.Force{
		Name:     "force",
		Builders: []string{"a"},
		Reason:   scheduler.StringParam{Required: true, Label: "Why"},
		Branch:   scheduler.StringParam{Default: "master", Regexp: `[\w./-]+`},
		Revision: scheduler.StringParam{Hidden: true},
		Project:  scheduler.StringParam{Default: "ideascube", Fixed: true},
		Properties: []scheduler.Param{
			scheduler.IntParam{Name: "count", Default: 2},
			scheduler.IntParam{Name: "needed", Required: true},
			scheduler.BoolParam{Name: "clean", Label: "Clean first"},
			scheduler.ChoiceParam{Name: "dist", Choices: []string{"jessie", "stretch", "buster"}, Default: "jessie"},
			scheduler.ChoiceParam{Name: "archs", Choices: []string{"amd64", "armhf", "i386"}, Multiple: true, Defaults: []string{"amd64"}},
			scheduler.StringParam{Name: "tag", Regexp: `v\d+(\.\d+)*`, MaxLength: 12},
		},
	}
}

func TestForce_Params(t *testing.T) {
	params := typedForce().ForceParams()
	var names []string
	for _, p := range params {
		names = append(names, p.Name)
	}
	assert.Equal(t, []string{"reason", "branch", "revision", "repository", "project", "count", "needed", "clean", "dist", "archs", "tag"}, names)
	byName := map[string]ci.ForceParam{}
	for _, p := range params {
		byName[p.Name] = p
	}
	assert.Equal(t, ci.ForceParam{ParamSpec: ci.ParamSpec{Name: "reason", Type: "text", Label: "Why", Default: "", Required: true}}, byName["reason"])
	assert.Equal(t, "force build", typedForceDefaultReason(), "an optional reason defaults to Buildbot's")
	assert.Equal(t, "fixed", byName["project"].Type)
	assert.True(t, byName["project"].Hidden)
	assert.True(t, byName["revision"].Hidden)
	assert.False(t, byName["branch"].Property)
	assert.Equal(t, ci.ForceParam{ParamSpec: ci.ParamSpec{Name: "count", Type: "int", Label: "count", Default: 2}, Property: true}, byName["count"])
	assert.Equal(t, ci.ForceParam{ParamSpec: ci.ParamSpec{Name: "archs", Type: "list", Label: "archs", Default: []string{"amd64"},
		Choices: []string{"amd64", "armhf", "i386"}, Multiple: true}, Property: true}, byName["archs"])

	b, err := json.Marshal(byName["dist"])
	require.NoError(t, err)
	assert.JSONEq(t, `{"name":"dist","type":"list","label":"dist","default":"jessie","required":false,"hide":false,
		"choices":["jessie","stretch","buster"],"multiple":false,"property":true}`, string(b))
}

func typedForceDefaultReason() string {
	for _, p := range (&scheduler.Force{}).ForceParams() {
		if p.Name == "reason" {
			return p.Default.(string)
		}
	}
	return ""
}

func TestForce_Values(t *testing.T) {
	force := typedForce()
	m := citest.Start(t, ci.MasterConfig{
		Workers:    []ci.WorkerConfig{{Name: "w"}},
		Builders:   []ci.BuilderConfig{{Name: "a", Workers: []string{"w"}, Steps: []ci.Step{&steps.ShellCommand{Command: "true"}}}},
		Schedulers: []ci.Scheduler{force},
	}, citest.Options{NoWorkers: true})
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		tests := []struct {
			name   string
			req    ci.ForceRequest
			reason string
			ss     ci.SourceStamp
			props  map[string]any
		}{{
			name:   "Defaults",
			req:    ci.ForceRequest{Reason: "r", Properties: map[string]any{"needed": "1"}},
			reason: "r",
			ss:     ci.SourceStamp{Branch: "master", Project: "ideascube"},
			props:  map[string]any{"reason": "r", "count": 2, "needed": 1, "clean": false, "dist": "jessie", "archs": []string{"amd64"}, "tag": ""},
		}, {
			name: "FormStrings",
			req: ci.ForceRequest{Owner: "bob", Reason: " r ", Branch: "release/1.0", Revision: "abc", Project: "ideascube",
				Properties: map[string]any{"count": "7", "needed": []string{"3"}, "clean": "on", "dist": "buster", "archs": []string{"armhf", "i386"}, "tag": "v1.2"}},
			reason: "A build was forced by 'bob': r",
			ss:     ci.SourceStamp{Branch: "release/1.0", Revision: "abc", Project: "ideascube"},
			props:  map[string]any{"reason": "r", "owner": "bob", "count": 7, "needed": 3, "clean": true, "dist": "buster", "archs": []string{"armhf", "i386"}, "tag": "v1.2"},
		}, {
			name: "JSONValues",
			req: ci.ForceRequest{Reason: "r",
				Properties: map[string]any{"count": float64(9), "needed": json.Number("4"), "clean": true, "archs": []any{"i386"}}},
			reason: "r",
			ss:     ci.SourceStamp{Branch: "master", Project: "ideascube"},
			props:  map[string]any{"reason": "r", "count": 9, "needed": 4, "clean": true, "dist": "jessie", "archs": []string{"i386"}, "tag": ""},
		}}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				bs, _, err := force.Force(ctx, m.Master, tt.req)
				require.NoError(t, err)
				assert.Equal(t, tt.reason, bs.Reason)
				require.Len(t, bs.SourceStamps, 1)
				ss := bs.SourceStamps[0]
				assert.Equal(t, tt.ss, ci.SourceStamp{Branch: ss.Branch, Revision: ss.Revision, Repository: ss.Repository, Project: ss.Project, Codebase: ss.Codebase})
				got := map[string]any{}
				for k, p := range bs.Properties {
					got[k] = p.Value
					assert.Equal(t, ci.SourceForce, p.Source, k)
				}
				assert.Equal(t, tt.props, got)
			})
		}
	})

	t.Run("Refused", func(t *testing.T) {
		before, _, err := m.Store.ListRequests(ctx, ci.RequestQuery{})
		require.NoError(t, err)
		tests := []struct {
			name string
			req  ci.ForceRequest
			want []string
		}{
			{"ReasonRequired", ci.ForceRequest{Properties: map[string]any{"needed": 1}}, []string{"reason is required"}},
			{"NotAnInteger", ci.ForceRequest{Reason: "r", Properties: map[string]any{"needed": 1, "count": "x"}}, []string{`property "count": "x" is not an integer`}},
			{"FloatNotAnInteger", ci.ForceRequest{Reason: "r", Properties: map[string]any{"needed": 1.5}}, []string{`property "needed": 1.5 is not an integer`}},
			{"IntRequired", ci.ForceRequest{Reason: "r"}, []string{`property "needed" is required`}},
			{"NotABoolean", ci.ForceRequest{Reason: "r", Properties: map[string]any{"needed": 1, "clean": "maybe"}}, []string{`property "clean": "maybe" is not a boolean`}},
			{"NotAChoice", ci.ForceRequest{Reason: "r", Properties: map[string]any{"needed": 1, "dist": "sid"}}, []string{`property "dist": "sid" is not one of the choices (jessie, stretch, buster)`}},
			{"OneChoiceOnly", ci.ForceRequest{Reason: "r", Properties: map[string]any{"needed": 1, "dist": []string{"jessie", "buster"}}}, []string{`property "dist": takes one value, not 2`}},
			{"RegexpWhole", ci.ForceRequest{Reason: "r", Properties: map[string]any{"needed": 1, "tag": "v1.2-rc1"}}, []string{`property "tag": "v1.2-rc1" does not match v\d+(\.\d+)*`}},
			{"TooLong", ci.ForceRequest{Reason: "r", Properties: map[string]any{"needed": 1, "tag": "v1.2.3.4.5.6.7"}}, []string{`property "tag": is 14 bytes long, more than 12`}},
			{"BranchPattern", ci.ForceRequest{Reason: "r", Branch: "a b", Properties: map[string]any{"needed": 1}}, []string{`branch: "a b" does not match`}},
			{"Fixed", ci.ForceRequest{Reason: "r", Project: "other", Properties: map[string]any{"needed": 1}}, []string{`project: is fixed to "ideascube", not "other"`}},
			{"WrongType", ci.ForceRequest{Reason: "r", Properties: map[string]any{"needed": 1, "tag": 3}}, []string{`property "tag": is a int, not a string`}},
			{"EveryProblem", ci.ForceRequest{Builders: []string{"ghost"}, Properties: map[string]any{"count": "x", "nope": 1}},
				[]string{`builder "ghost" is not one of this scheduler's builders`, "reason is required", `property "count": "x" is not an integer`, `property "needed" is required`, `unknown property "nope"`}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, _, err := force.Force(ctx, m.Master, tt.req)
				require.ErrorIs(t, err, ci.ErrInvalidForce)
				for _, w := range tt.want {
					assert.ErrorContains(t, err, w)
				}
			})
		}
		after, _, err := m.Store.ListRequests(ctx, ci.RequestQuery{})
		require.NoError(t, err)
		assert.Equal(t, len(before), len(after), "refused requests store nothing")
	})
}

func TestForce_Validate(t *testing.T) {
	tests := []struct {
		name  string
		force scheduler.Force
		want  []string
	}{
		{"OK", *typedForce(), nil},
		{"BadRegexp", scheduler.Force{Branch: scheduler.StringParam{Regexp: "("}}, []string{`Branch: Regexp "(": error parsing regexp`}},
		{"DefaultMismatch", scheduler.Force{Branch: scheduler.StringParam{Regexp: `\d+`, Default: "main"}}, []string{`Branch: Default "main" does not match Regexp \d+`}},
		{"Properties", scheduler.Force{Properties: []scheduler.Param{
			nil,
			scheduler.IntParam{},
			scheduler.StringParam{Name: "owner"},
			scheduler.BoolParam{Name: "x"},
			scheduler.BoolParam{Name: "x"},
			scheduler.ChoiceParam{Name: "c", Default: "z"},
			scheduler.ChoiceParam{Name: "d", Choices: []string{"a"}, Defaults: []string{"b"}},
		}}, []string{
			"Properties[0] is nil",
			"Properties[1]: Name is empty",
			`Properties[2] ("owner"): the name is reserved`,
			`Properties[4] ("x"): a parameter of that name comes earlier`,
			`Properties[5] ("c"): Choices is empty`,
			`Properties[5] ("c"): Default "z" is not one of Choices`,
			`Properties[6] ("d"): Defaults: "b" is not one of Choices`,
			`Properties[6] ("d"): Defaults is for Multiple choices; use Default`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.force.Validate()
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

func TestForce_Config(t *testing.T) {
	_, err := ci.NewMaster(ci.MasterConfig{
		Workers:  []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{{Name: "a", Workers: []string{"w"}, Steps: []ci.Step{&steps.ShellCommand{Command: "true"}}}},
		Schedulers: []ci.Scheduler{&scheduler.Force{Name: "force", Builders: []string{"a", "ghost"},
			Properties: []scheduler.Param{scheduler.StringParam{Name: "v", Regexp: "["}}}},
	})
	assert.ErrorContains(t, err, `scheduler "force": unknown builder "ghost"`)
	assert.ErrorContains(t, err, `scheduler "force": Properties[0] ("v"): Regexp "[": error parsing regexp`)
}
