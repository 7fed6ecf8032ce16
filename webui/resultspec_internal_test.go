package webui

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

// specItem has a field of each kind a result spec knows.
type specItem struct {
	ID       int64    `json:"id"`
	Number   int      `json:"number"`
	Name     string   `json:"name"`
	Complete bool     `json:"complete"`
	Results  *int     `json:"results"`
	Revision any      `json:"revision"`
	Tags     []string `json:"tags"`
	Props    struct{} `json:"props"`
	Hidden   string   `json:"-"`
}

func specItems() []specItem {
	r := func(n int) *int { return &n }
	return []specItem{
		{ID: 1, Number: 3, Name: "alpha", Complete: true, Results: r(0), Revision: "abc", Tags: []string{"deb"}},
		{ID: 2, Number: 1, Name: "beta", Complete: true, Results: r(2), Tags: []string{"deb", "arm"}},
		{ID: 3, Number: 2, Name: "gamma", Complete: false, Revision: "def", Tags: []string{}},
		{ID: 4, Number: 2, Name: "alphabet", Complete: true, Results: r(0), Revision: "abd"},
	}
}

func TestResultSpec(t *testing.T) {
	for _, tt := range []struct {
		query string
		ids   []int64
		total int
	}{
		{"", []int64{1, 2, 3, 4}, 4},
		{"limit=2", []int64{1, 2}, 4},
		{"limit=2&offset=3", []int64{4}, 4},
		{"offset=9", []int64{}, 4},
		{"limit=0", []int64{1, 2, 3, 4}, 4},
		{"order=-id", []int64{4, 3, 2, 1}, 4},
		{"order=number", []int64{2, 3, 4, 1}, 4},
		{"order=-number&order=name", []int64{1, 4, 3, 2}, 4},
		{"order=-number&order=-name&limit=2&offset=1", []int64{3, 4}, 4},
		{"order=results", []int64{3, 1, 4, 2}, 4}, // null first
		{"order=-results", []int64{2, 1, 4, 3}, 4},
		{"order=complete", []int64{3, 1, 2, 4}, 4},
		{"number=2", []int64{3, 4}, 2},
		{"number__eq=2", []int64{3, 4}, 2},
		{"number=2&number=3", []int64{1, 3, 4}, 3},
		{"number__ne=2", []int64{1, 2}, 2},
		{"number__lt=2", []int64{2}, 1},
		{"number__le=2", []int64{2, 3, 4}, 3},
		{"number__gt=2", []int64{1}, 1},
		{"number__ge=2", []int64{1, 3, 4}, 3},
		{"number__in=1,3", []int64{1, 2}, 2},
		{"number__in=1&number__in=3", []int64{1, 2}, 2},
		{"number__notin=1,3", []int64{3, 4}, 2},
		{"name__contains=alpha", []int64{1, 4}, 2},
		{"name__contains=ph&name__contains=mm", []int64{1, 3, 4}, 3},
		{"name__gt=b", []int64{2, 3}, 2},
		{"name=beta", []int64{2}, 1},
		{"complete=true", []int64{1, 2, 4}, 3},
		{"complete=false", []int64{3}, 1},
		{"complete=0", []int64{3}, 1},
		{"complete__ne=true", []int64{3}, 1},
		{"results=0", []int64{1, 4}, 2},
		{"results__ne=0", []int64{2, 3}, 2}, // null is not 0
		{"results__lt=5", []int64{1, 2, 4}, 3},
		{"results__notin=0,2", []int64{3}, 1},
		{"revision=abc", []int64{1}, 1},
		{"revision__gt=abc", []int64{3, 4}, 2},
		{"tags=deb", []int64{1, 2}, 2},
		{"tags__contains=arm", []int64{2}, 1},
		{"tags__contains=arm&tags__contains=deb", []int64{1, 2}, 2},
		{"complete=true&number__gt=1&order=-id", []int64{4, 1}, 2},
		{"complete=true&limit=1&offset=1", []int64{2}, 3},
		{"property=x&number=1", []int64{2}, 1},
	} {
		t.Run(tt.query, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/v2/items?"+tt.query, nil)
			spec, err := parseSpec[specItem](r, "items")
			require.NoError(t, err)
			c, err := spec.apply(list("items", specItems(), 0))
			require.NoError(t, err)
			assert.Equal(t, tt.total, c.total)
			assert.Equal(t, tt.ids, ids(t, c))

			// A list the store pages answers the same.
			spec, err = parseSpec[specItem](r, "items")
			require.NoError(t, err)
			c, err = fromStore(spec, "items", []string{"id"}, storePages(specItems()), func(x specItem) specItem { return x })
			require.NoError(t, err)
			assert.Equal(t, tt.total, c.total)
			assert.Equal(t, tt.ids, ids(t, c))
		})
	}
}

// storePages is a store's list of items ordered by ID: a page of them and
// how many there are.
func storePages(items []specItem) func(ci.Query) ([]specItem, int, error) {
	return func(q ci.Query) ([]specItem, int, error) {
		all := append([]specItem(nil), items...)
		if q.Desc {
			for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
				all[i], all[j] = all[j], all[i]
			}
		}
		total := len(all)
		lo := min(q.Offset, len(all))
		hi := len(all)
		if q.Limit > 0 {
			hi = min(lo+q.Limit, hi)
		}
		return all[lo:hi], total, nil
	}
}

func ids(t *testing.T, c collection) []int64 {
	t.Helper()
	raw, err := json.Marshal(c.items)
	require.NoError(t, err)
	var items []struct {
		ID int64 `json:"id"`
	}
	require.NoError(t, json.Unmarshal(raw, &items))
	out := []int64{}
	for _, it := range items {
		out = append(out, it.ID)
	}
	return out
}

func TestResultSpec_Fields(t *testing.T) {
	r := httptest.NewRequest("GET", "/api/v2/items?field=id&field=results&order=-id&limit=2", nil)
	spec, err := parseSpec[specItem](r, "items")
	require.NoError(t, err)
	c, err := spec.apply(list("items", specItems(), 0))
	require.NoError(t, err)
	raw, err := json.Marshal(c)
	require.NoError(t, err)
	assert.JSONEq(t, `{"items": [{"id": 4, "results": 0}, {"id": 3, "results": null}], "meta": {"total": 4}}`, string(raw))

	// A single record: fields apply, filters and paging do not; meta is {}.
	r = httptest.NewRequest("GET", "/api/v2/items/1?field=name&limit=0&offset=3&name=x", nil)
	spec, err = parseSpec[specItem](r, "items")
	require.NoError(t, err)
	c, err = spec.apply(one("items", specItems()[0]))
	require.NoError(t, err)
	raw, err = json.Marshal(c)
	require.NoError(t, err)
	assert.JSONEq(t, `{"items": [{"name": "alpha"}], "meta": {}}`, string(raw))
}

func TestResultSpec_Errors(t *testing.T) {
	for _, tt := range []struct{ query, msg string }{
		{"limit=-1", `limit "-1" is not a non-negative number`},
		{"offset=x", `offset "x" is not a non-negative number`},
		{"order=colour", `cannot order items by "colour": no such field`},
		{"order=-tags", `cannot order items by "-tags": not a number, string or boolean`},
		{"order=Hidden", `no such field`},
		{"field=colour", `items have no field "colour"`},
		{"colour=1", `cannot filter items by "colour": no such field`},
		{"props=1", `cannot filter items by "props"`},
		{"number__like=1", `filter "number__like": no operator "like"`},
		{"number=x", `number "x" is not a number`},
		{"number__in=1,x", `number "x" is not a number`},
		{"complete=maybe", `complete "maybe" is not true or false`},
	} {
		t.Run(tt.query, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/v2/items?"+tt.query, nil)
			_, err := parseSpec[specItem](r, "items")
			require.Error(t, err)
			assert.True(t, errors.Is(err, errBadRequest), err)
			assert.Contains(t, err.Error(), tt.msg)
		})
	}
}

// TestResultSpec_Window: a list the store cannot order is read whole, but
// only the requested window is kept.
func TestResultSpec_Window(t *testing.T) {
	var items []specItem
	for i := range 3*MaxListLimit + 7 {
		items = append(items, specItem{ID: int64(i + 1), Number: (i * 7919) % 1000, Name: fmt.Sprint(i)})
	}
	r := httptest.NewRequest("GET", "/api/v2/items?order=-number&order=id&number__ge=10&limit=3&offset=2", nil)
	spec, err := parseSpec[specItem](r, "items")
	require.NoError(t, err)
	c, err := fromStore(spec, "items", []string{"id"}, storePages(items), func(x specItem) specItem { return x })
	require.NoError(t, err)
	var want []specItem
	for _, x := range items {
		if x.Number >= 10 {
			want = append(want, x)
		}
	}
	slices.SortStableFunc(want, func(a, b specItem) int { return cmp.Or(cmp.Compare(b.Number, a.Number), cmp.Compare(a.ID, b.ID)) })
	assert.Equal(t, len(want), c.total)
	assert.Equal(t, []int64{want[2].ID, want[3].ID, want[4].ID}, ids(t, c))

	r = httptest.NewRequest("GET", fmt.Sprintf("/api/v2/items?order=number&offset=%d", maxSpecWindow), nil)
	spec, err = parseSpec[specItem](r, "items")
	require.NoError(t, err)
	_, err = fromStore(spec, "items", []string{"id"}, storePages(items), func(x specItem) specItem { return x })
	assert.ErrorIs(t, err, errBadRequest)
}
