package webui

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/kilnci/kiln/ci"
)

// A resultSpec is what a list request asks of the list, as Buildbot's
// ResultSpec: filters on any field of the item type, an order on any
// fields, a page (offset and limit), and the fields to keep. It is read
// from the request for the type of the items (the JSON shape), so that
// every list, nested ones included, takes the same parameters:
//
//	?<field>__<op>=value   op one of eq ne lt le gt ge in notin contains;
//	                   ?<field>=value is eq; a filter given several values
//	                   (repeated, or comma-separated for in and notin) keeps
//	                   an item equal to any of them (ne and notin: to none)
//	?order=-number&order=name   several orders, "-" first for descending
//	?limit= &offset=   the page
//	?field=            the fields to keep
//
// Values are read as the field's JSON type: numbers, true/false (or 1/0),
// strings. contains keeps strings holding the value and lists holding it.
// A null field matches only ne and notin, and orders before any value.
type resultSpec struct {
	kind    string // what the items are, for errors ("builds")
	fields  map[string]fieldKind
	filters []*filter
	order   []string
	limit   int
	offset  int
	keep    []string // ?field=
}

// A fieldKind is the JSON type of a field of an item type.
type fieldKind int

const (
	kindAny    fieldKind = iota // a number or a string, or null: decided by each item's value
	kindNumber                  // a number, or null
	kindBool
	kindString // a string, or null
	kindList
	kindObject // neither filtered nor ordered on
)

// A filter keeps the items whose field compares to its values by op.
type filter struct {
	field  string
	op     string
	values []filterValue
}

// A filterValue is a value of a filter, read as each JSON type it can be.
type filterValue struct {
	s      string
	n      float64
	isNum  bool
	b      bool
	isBool bool
}

var filterOps = []string{"eq", "ne", "lt", "le", "gt", "ge", "in", "notin", "contains"}

// The most items a list held in memory may keep to order them: a list the
// store cannot order is read in pages and only its first offset+limit
// items are kept, so that ?offset= too is bounded.
const maxSpecWindow = 20 * MaxListLimit

// fieldKinds returns the JSON fields of an item type and their kinds.
func fieldKinds(t reflect.Type) map[string]fieldKind {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	out := map[string]fieldKind{}
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch ft.Kind() {
		case reflect.Int, reflect.Int64, reflect.Int32, reflect.Float64, reflect.Uint, reflect.Uint64:
			out[name] = kindNumber
		case reflect.Bool:
			out[name] = kindBool
		case reflect.String:
			out[name] = kindString
		case reflect.Slice, reflect.Array:
			out[name] = kindList
		case reflect.Interface:
			out[name] = kindAny
		default:
			out[name] = kindObject
		}
	}
	return out
}

// parseSpec reads the result spec of a list request whose items have
// type J.
func parseSpec[J any](r *http.Request, kind string) (*resultSpec, error) {
	return parseSpecOf(r, kind, reflect.TypeFor[J]())
}

func parseSpecOf(r *http.Request, kind string, t reflect.Type) (*resultSpec, error) {
	s := &resultSpec{kind: kind, fields: fieldKinds(t), limit: DefaultListLimit}
	v := r.URL.Query()
	if str := v.Get("limit"); str != "" {
		n, err := strconv.Atoi(str)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: limit %q is not a non-negative number", errBadRequest, str)
		}
		if n > 0 {
			s.limit = n
		}
	}
	s.limit = min(s.limit, MaxListLimit)
	if str := v.Get("offset"); str != "" {
		n, err := strconv.Atoi(str)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: offset %q is not a non-negative number", errBadRequest, str)
		}
		s.offset = n
	}
	for _, o := range v["order"] {
		k, ok := s.fields[strings.TrimPrefix(o, "-")]
		if !ok {
			return nil, fmt.Errorf("%w: cannot order %s by %q: no such field", errBadRequest, kind, o)
		}
		if k == kindObject || k == kindList {
			return nil, fmt.Errorf("%w: cannot order %s by %q: not a number, string or boolean", errBadRequest, kind, o)
		}
		s.order = append(s.order, o)
	}
	for _, f := range v["field"] {
		if _, ok := s.fields[f]; !ok {
			return nil, fmt.Errorf("%w: %s have no field %q", errBadRequest, kind, f)
		}
		s.keep = append(s.keep, f)
	}
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if reserved[k] {
			continue
		}
		f, err := s.parseFilter(k, v[k])
		if err != nil {
			return nil, err
		}
		s.filters = append(s.filters, f)
	}
	return s, nil
}

// reserved query parameters, which are not filters.
var reserved = map[string]bool{"limit": true, "offset": true, "order": true, "field": true, "property": true}

func (s *resultSpec) parseFilter(key string, raw []string) (*filter, error) {
	field, op, hasOp := strings.Cut(key, "__")
	if !hasOp {
		op = "eq"
	}
	if !slices.Contains(filterOps, op) {
		return nil, fmt.Errorf("%w: filter %q: no operator %q (use %s)", errBadRequest, key, op, strings.Join(filterOps, ", "))
	}
	kind, ok := s.fields[field]
	if !ok {
		return nil, fmt.Errorf("%w: cannot filter %s by %q: no such field", errBadRequest, s.kind, field)
	}
	if kind == kindObject {
		return nil, fmt.Errorf("%w: cannot filter %s by %q: not a number, string, boolean or list", errBadRequest, s.kind, field)
	}
	if op == "in" || op == "notin" {
		var split []string
		for _, r := range raw {
			split = append(split, strings.Split(r, ",")...)
		}
		raw = split
	}
	f := &filter{field: field, op: op}
	for _, r := range raw {
		fv := filterValue{s: r}
		if n, err := strconv.ParseFloat(r, 64); err == nil {
			fv.n, fv.isNum = n, true
		}
		if b, err := strconv.ParseBool(r); err == nil {
			fv.b, fv.isBool = b, true
		}
		switch {
		case kind == kindNumber && !fv.isNum:
			return nil, fmt.Errorf("%w: %s %q is not a number", errBadRequest, field, r)
		case kind == kindBool && !fv.isBool:
			return nil, fmt.Errorf("%w: %s %q is not true or false", errBadRequest, field, r)
		}
		f.values = append(f.values, fv)
	}
	return f, nil
}

// popEq removes and returns the value of an equality filter of one value
// on field, for a store to apply; ok is false if there is none.
func (s *resultSpec) popEq(field string) (v filterValue, ok bool) {
	for i, f := range s.filters {
		if f.field == field && f.op == "eq" && len(f.values) == 1 {
			s.filters = slices.Delete(s.filters, i, i+1)
			return f.values[0], true
		}
	}
	return filterValue{}, false
}

// popID pops an equality filter on an ID field: 0 if there is none.
func (s *resultSpec) popID(field string) (int64, error) {
	v, ok := s.popEq(field)
	if !ok {
		return 0, nil
	}
	if !v.isNum || v.n <= 0 || v.n != float64(int64(v.n)) {
		return 0, fmt.Errorf("%w: %s %q is not an ID", errBadRequest, field, v.s)
	}
	return int64(v.n), nil
}

// popFlag pops an equality filter on a boolean field: nil if there is
// none.
func (s *resultSpec) popFlag(field string) *bool {
	v, ok := s.popEq(field)
	if !ok {
		return nil
	}
	return &v.b
}

// idOrder tells whether the spec's order is that of the store (by one of
// idFields, which all order as the ID, or none), and if it is descending.
func (s *resultSpec) idOrder(idFields []string) (ok, desc bool) {
	if len(s.order) == 0 {
		return true, false
	}
	if len(s.order) > 1 {
		return false, false
	}
	field, desc := strings.CutPrefix(s.order[0], "-")
	return slices.Contains(idFields, field), desc
}

// fromStore answers a list the store selects and orders by ID. When the
// spec asks only for that (its other filters popped into the store's
// query), fetch gets the page from the store; otherwise the store's
// selection is read page by page and the spec applied in memory, keeping
// no more than the requested window.
//
// idFields are the fields in the order of the ID: the ID first, and any
// other that has the same order in the store's selection (a build's
// number among a builder's builds).
func fromStore[T, J any](s *resultSpec, name string, idFields []string, fetch func(ci.Query) ([]T, int, error), shape func(T) J) (collection, error) {
	if ok, desc := s.idOrder(idFields); ok && len(s.filters) == 0 {
		items, total, err := fetch(ci.Query{Limit: s.limit, Offset: s.offset, Desc: desc})
		if err != nil {
			return collection{}, err
		}
		c := list(name, toJSON(items, shape), total)
		c.done = true
		return c.selectFields(s.keep)
	}
	if s.offset+s.limit > maxSpecWindow {
		return collection{}, fmt.Errorf("%w: offset+limit over %d needs the order by %s and no other filters than the store's", errBadRequest, maxSpecWindow, idFields[0])
	}
	const scanPage = MaxListLimit
	var (
		kept  []map[string]any
		total int
	)
	for offset := 0; ; offset += scanPage {
		items, _, err := fetch(ci.Query{Limit: scanPage, Offset: offset, NoTotal: true})
		if err != nil {
			return collection{}, err
		}
		for _, x := range items {
			m, err := asMap(shape(x))
			if err != nil {
				return collection{}, err
			}
			if !s.match(m) {
				continue
			}
			total++
			kept = append(kept, m)
			if len(kept) >= 2*(s.offset+s.limit)+scanPage {
				s.sort(kept)
				kept = kept[:s.offset+s.limit]
			}
		}
		if len(items) < scanPage {
			break
		}
	}
	s.sort(kept)
	c := collection{name: name, items: window(kept, s.offset, s.limit), total: total, done: true}
	return c.selectFields(s.keep)
}

// apply applies the spec to a list held whole in memory.
func (s *resultSpec) apply(c collection) (collection, error) {
	if c.done {
		return c, nil
	}
	if c.single {
		return c.selectFields(s.keep)
	}
	rv := reflect.ValueOf(c.items)
	if len(s.filters) == 0 && len(s.order) == 0 {
		c.total = rv.Len()
		lo := min(s.offset, rv.Len())
		hi := min(lo+s.limit, rv.Len())
		c.items = rv.Slice(lo, hi).Interface()
		c.done = true
		return c.selectFields(s.keep)
	}
	var kept []map[string]any
	for i := range rv.Len() {
		m, err := asMap(rv.Index(i).Interface())
		if err != nil {
			return c, err
		}
		if s.match(m) {
			kept = append(kept, m)
		}
	}
	s.sort(kept)
	c.total = len(kept)
	c.items = window(kept, s.offset, s.limit)
	c.done = true
	return c.selectFields(s.keep)
}

func window[T any](items []T, offset, limit int) []T {
	lo := min(offset, len(items))
	hi := min(lo+limit, len(items))
	out := items[lo:hi]
	if out == nil {
		out = []T{}
	}
	return out
}

// asMap gives an item as its JSON object.
func asMap(x any) (map[string]any, error) {
	raw, err := json.Marshal(x)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(raw, &m)
}

// selectFields keeps only the named fields of each item (?field=).
func (c collection) selectFields(keep []string) (collection, error) {
	if len(keep) == 0 {
		return c, nil
	}
	rv := reflect.ValueOf(c.items)
	out := make([]map[string]any, 0, rv.Len())
	for i := range rv.Len() {
		m, err := asMap(rv.Index(i).Interface())
		if err != nil {
			return c, err
		}
		kept := make(map[string]any, len(keep))
		for _, f := range keep {
			if v, ok := m[f]; ok {
				kept[f] = v
			}
		}
		out = append(out, kept)
	}
	c.items = out
	return c, nil
}

// match tells whether an item passes every filter.
func (s *resultSpec) match(m map[string]any) bool {
	for _, f := range s.filters {
		if !f.match(m[f.field]) {
			return false
		}
	}
	return true
}

func (f *filter) match(v any) bool {
	switch f.op {
	case "ne", "notin":
		return !slices.ContainsFunc(f.values, func(fv filterValue) bool { return equal(v, fv) })
	case "eq", "in":
		return slices.ContainsFunc(f.values, func(fv filterValue) bool { return equal(v, fv) })
	case "contains":
		return slices.ContainsFunc(f.values, func(fv filterValue) bool { return contains(v, fv) })
	}
	// lt, le, gt, ge: against the first value, as Buildbot.
	c, ok := compareValue(v, f.values[0])
	if !ok {
		return false
	}
	switch f.op {
	case "lt":
		return c < 0
	case "le":
		return c <= 0
	case "gt":
		return c > 0
	default: // ge
		return c >= 0
	}
}

// equal tells whether a field's value equals a filter value; a list
// equals a value it holds (so that ?tags=x keeps the builders tagged x).
func equal(v any, fv filterValue) bool {
	if l, ok := v.([]any); ok {
		return slices.ContainsFunc(l, func(e any) bool { return equal(e, fv) })
	}
	c, ok := compareValue(v, fv)
	return ok && c == 0
}

func contains(v any, fv filterValue) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, fv.s)
	case []any:
		return slices.ContainsFunc(v, func(e any) bool { return equal(e, fv) })
	}
	return false
}

// compareValue compares a field's value with a filter value read as the
// same type; ok is false if they cannot be compared (null, or a value not
// of the field's type).
func compareValue(v any, fv filterValue) (c int, ok bool) {
	switch v := v.(type) {
	case float64:
		return cmp.Compare(v, fv.n), fv.isNum
	case string:
		return strings.Compare(v, fv.s), true
	case bool:
		return compareBool(v, fv.b), fv.isBool
	}
	return 0, false
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// sort orders items by the spec's orders, stably; with none, they keep
// their order.
func (s *resultSpec) sort(items []map[string]any) {
	if len(s.order) == 0 {
		return
	}
	slices.SortStableFunc(items, func(a, b map[string]any) int {
		for _, o := range s.order {
			field, desc := strings.CutPrefix(o, "-")
			c := compareJSON(a[field], b[field])
			if desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
}

// compareJSON orders JSON values: null first, then booleans, numbers and
// strings, each in their own order.
func compareJSON(a, b any) int {
	rank := func(v any) int {
		switch v.(type) {
		case nil:
			return 0
		case bool:
			return 1
		case float64:
			return 2
		case string:
			return 3
		}
		return 4
	}
	if c := cmp.Compare(rank(a), rank(b)); c != 0 {
		return c
	}
	switch a := a.(type) {
	case bool:
		return compareBool(a, b.(bool))
	case float64:
		return cmp.Compare(a, b.(float64))
	case string:
		return strings.Compare(a, b.(string))
	}
	return 0
}
