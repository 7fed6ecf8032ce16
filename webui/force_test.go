package webui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

// noteForce is a force scheduler of a user's own, not package scheduler's:
// one field, "note", which it refuses when it is "nope", and the reason.
type noteForce struct{}

var _ ci.ForceScheduler = noteForce{}

func (noteForce) SchedulerName() string  { return "notes" }
func (noteForce) BuilderNames() []string { return []string{"pass"} }
func (noteForce) ForceLabel() string     { return "Build with a note" }

func (noteForce) ForceParams() []ci.ForceParam {
	return []ci.ForceParam{
		{ParamSpec: ci.ParamSpec{Name: "reason", Type: "text", Label: "Reason", Default: "a note"}},
		{ParamSpec: ci.ParamSpec{Name: "note", Type: "text", Label: "The note", Required: true}, Property: true},
	}
}

func (noteForce) Force(ctx context.Context, m *ci.Master, r ci.ForceRequest) (*ci.Buildset, []*ci.BuildRequest, error) {
	note, _ := r.Properties["note"].(string)
	if note == "" || note == "nope" {
		return nil, nil, fmt.Errorf("notes: %w: note %q is refused", ci.ErrInvalidForce, note)
	}
	props := ci.Properties{}
	props.Set("note", note, ci.SourceForce)
	props.Set("owner", r.Owner, ci.SourceForce)
	return m.Submit(ctx, ci.Submission{Builders: []string{"pass"}, Reason: r.Reason, Properties: props, Scheduler: "notes"})
}

func TestForceForm_OwnScheduler(t *testing.T) {
	u := startUI(t, uiOptions{authz: admin, changeCfg: func(cfg *ci.MasterConfig) {
		cfg.Schedulers = []ci.Scheduler{noteForce{}}
	}})

	// The builder's page draws its form, the API describes it.
	page := u.do(t, req{path: "builders/pass", login: true}).body
	assert.Contains(t, page, `class="force-form"`)
	assert.Contains(t, page, "The note")
	assert.Contains(t, page, `value="notes"`)
	assert.NotContains(t, u.do(t, req{path: "builders/fail", login: true}).body, `class="force-form"`, "not its builder")
	res := u.do(t, req{path: "api/v2/forceschedulers/notes"})
	require.Equal(t, http.StatusOK, res.code, res.body)
	assert.Contains(t, res.body, `"button_name":"Build with a note"`)
	assert.Contains(t, res.body, `"name":"note"`)

	post := func(note string) resp {
		form := url.Values{"scheduler": {"notes"}, "reason": {"from my form"}, "note": {note}}
		return u.do(t, req{method: "POST", path: "builders/pass/force", body: form.Encode(),
			contentType: "application/x-www-form-urlencoded", login: true})
	}
	// Its refusal is a bad request, shown with its words.
	res = post("nope")
	assert.Equal(t, http.StatusBadRequest, res.code)
	assert.Contains(t, res.body, "note &#34;nope&#34; is refused")

	// Its submission builds, with what the form sent.
	res = post("hello")
	require.Equal(t, http.StatusSeeOther, res.code, res.body)
	assert.Equal(t, subPath+"builders/pass/builds/1", res.header.Get("Location"))
	reqs, _, err := u.m.Store.ListRequests(context.Background(), ci.RequestQuery{})
	require.NoError(t, err)
	require.Len(t, reqs, 1)
	b := u.m.WaitBuildset(t, reqs[0].BuildsetID)[0]
	assert.Equal(t, ci.Success, b.Results())
	assert.Equal(t, "hello", b.Property("note"))
	assert.Equal(t, alice, b.Property("owner"))

	// The JSON-RPC call reaches it too.
	res, ans := u.jsonrpc(t, "api/v2/forceschedulers/notes", "force", map[string]any{"builderid": mustID(t, u, "pass"), "note": "by the API"}, true)
	require.Equal(t, http.StatusOK, res.code, res.body)
	assert.NotNil(t, ans["result"])
}
