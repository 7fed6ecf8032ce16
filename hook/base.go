package hook

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// baseIdempotencyHeader lets a script retry a request safely: changes of
// requests with the same key are stored once.
const baseIdempotencyHeader = "Idempotency-Key"

// Base is the generic change hook (dialect "base"), Buildbot's base hook:
// a script posts the fields of a change, as a form or as JSON (see
// ParseBase), to <public URL>/change_hook/base. The zero value accepts
// requests from anyone who can reach the web server, as Buildbot's does.
type Base struct {
	// Secret, when set, must be sent as "Authorization: Bearer <Secret>";
	// requests without it, or with another, are refused with 403. It is
	// compared in constant time.
	Secret string
	// MaxBodyBytes bounds the request body; DefaultMaxBodyBytes if zero.
	MaxBodyBytes int64
}

var _ ci.ChangeHook = (*Base)(nil)

// Dialect implements ci.ChangeHook.
func (h *Base) Dialect() string { return "base" }

// Validate reports configuration errors; the master calls it when it
// starts.
func (h *Base) Validate() error {
	if h.MaxBodyBytes < 0 {
		return fmt.Errorf("MaxBodyBytes is negative (%d)", h.MaxBodyBytes)
	}
	return nil
}

// Handler implements ci.ChangeHook, answering as GitHub's handler does. A
// request with an Idempotency-Key header that was already received does
// not add its changes again.
func (h *Base) Handler(m *ci.Master) http.Handler {
	want := sha256.Sum256([]byte(h.Secret))
	open := h.Secret == ""
	// The token is a header: a request without the right one is refused
	// before its body is read.
	authenticate := func(r *http.Request, _ io.Reader) error {
		if open {
			return nil
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			return forbidden("no bearer token (Authorization)")
		}
		got := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return forbidden("wrong bearer token")
		}
		return nil
	}
	return newEndpoint(m, h.Dialect(), h.MaxBodyBytes, authenticate, func(r *http.Request, body []byte) (*delivery, error) {
		changes, err := ParseBase(r.Header.Get("Content-Type"), body)
		if err != nil {
			return nil, badRequest("%v", err)
		}
		return &delivery{event: "change", id: r.Header.Get(baseIdempotencyHeader), Event: Event{Changes: changes}}, nil
	})
}

// ParseBase reads the changes a script posts, given the request's
// Content-Type and body. A form (application/x-www-form-urlencoded or
// multipart/form-data) gives one change from Buildbot's fields:
//
//	author (or who), committer, comments, revision, branch, category,
//	revlink, repository, project, codebase   strings
//	when_timestamp (or when)                 seconds since 1970, may be fractional
//	files                                    a JSON list of strings
//	properties                               a JSON object
//
// A JSON body (application/json) is one object with the same fields, or a
// list of them for several changes; there files may be a list and
// properties an object, and when a number.
func ParseBase(contentType string, body []byte) ([]ci.Change, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, fmt.Errorf("unsupported content type %q", contentType)
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("invalid form: %w", err)
		}
		c, err := baseChange(formFields(form))
		if err != nil {
			return nil, err
		}
		return []ci.Change{c}, nil
	case "multipart/form-data":
		form, err := readMultipart(body, params["boundary"])
		if err != nil {
			return nil, err
		}
		c, err := baseChange(formFields(form))
		if err != nil {
			return nil, err
		}
		return []ci.Change{c}, nil
	case "application/json":
		body = bytes.TrimSpace(body)
		var objs []map[string]json.RawMessage
		if len(body) > 0 && body[0] == '[' {
			if err := json.Unmarshal(body, &objs); err != nil {
				return nil, fmt.Errorf("invalid JSON: %w", err)
			}
		} else {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(body, &obj); err != nil {
				return nil, fmt.Errorf("invalid JSON: %w", err)
			}
			objs = append(objs, obj)
		}
		var changes []ci.Change
		for i, obj := range objs {
			c, err := baseChange(jsonFields(obj))
			if err != nil {
				if len(objs) > 1 {
					return nil, fmt.Errorf("change %d: %w", i, err)
				}
				return nil, err
			}
			changes = append(changes, c)
		}
		return changes, nil
	}
	return nil, fmt.Errorf("unsupported content type %q (want a form or application/json)", mt)
}

// readMultipart reads the values of a multipart form held in memory.
func readMultipart(body []byte, boundary string) (url.Values, error) {
	if boundary == "" {
		return nil, errors.New("multipart form without boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	form := url.Values{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return form, nil
		}
		if err != nil {
			return nil, fmt.Errorf("invalid multipart form: %w", err)
		}
		v, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("invalid multipart form: %w", err)
		}
		form.Add(p.FormName(), string(v))
	}
}

// fields gives the values of a posted change by name: a string (ok false
// when absent), or the raw JSON of a value.
type fields interface {
	str(name string) (string, bool, error)
	// raw returns a JSON value: for a form, the field's text (itself
	// JSON); for a JSON body, the value.
	raw(name string) (json.RawMessage, bool)
}

type formFields url.Values

func (f formFields) str(name string) (string, bool, error) {
	v, ok := f[name]
	if !ok || len(v) == 0 {
		return "", false, nil
	}
	return v[0], true, nil
}

func (f formFields) raw(name string) (json.RawMessage, bool) {
	s, ok, _ := f.str(name)
	if !ok || s == "" {
		return nil, false
	}
	return json.RawMessage(s), true
}

type jsonFields map[string]json.RawMessage

func (f jsonFields) str(name string) (string, bool, error) {
	v, ok := f[name]
	if !ok || string(v) == "null" {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false, fmt.Errorf("%s must be a string", name)
	}
	return s, true, nil
}

func (f jsonFields) raw(name string) (json.RawMessage, bool) {
	v, ok := f[name]
	if !ok || string(v) == "null" {
		return nil, false
	}
	// A string holding JSON, as a form would send it.
	var s string
	if json.Unmarshal(v, &s) == nil {
		if s == "" {
			return nil, false
		}
		return json.RawMessage(s), true
	}
	return v, true
}

// baseChange makes a change from Buildbot's base hook fields.
func baseChange(f fields) (ci.Change, error) {
	var c ci.Change
	var errs []error
	get := func(dst *string, names ...string) {
		for _, n := range names {
			s, ok, err := f.str(n)
			if err != nil {
				errs = append(errs, err)
				return
			}
			if ok && s != "" {
				*dst = s
				return
			}
		}
	}
	get(&c.Author, "author", "who")
	get(&c.Committer, "committer")
	get(&c.Comments, "comments")
	get(&c.Revision, "revision")
	get(&c.Branch, "branch")
	get(&c.Category, "category")
	get(&c.RevLink, "revlink")
	get(&c.Repository, "repository")
	get(&c.Project, "project")
	get(&c.Codebase, "codebase")
	for _, n := range []string{"when_timestamp", "when"} {
		raw, ok := f.raw(n)
		if !ok {
			continue
		}
		when, err := unixTime(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
		c.When = when
		break
	}
	if raw, ok := f.raw("files"); ok {
		if err := json.Unmarshal(raw, &c.Files); err != nil {
			errs = append(errs, errors.New("files must be a JSON list of strings"))
		}
	}
	if raw, ok := f.raw("properties"); ok {
		if err := json.Unmarshal(raw, &c.Properties); err != nil || c.Properties == nil {
			errs = append(errs, errors.New("properties must be a JSON object"))
		}
		for k, v := range c.Properties {
			if err := ci.CheckValue(v); err != nil {
				errs = append(errs, fmt.Errorf("properties[%q]: %w", k, err))
			}
		}
	}
	return c, errors.Join(errs...)
}

// unixTime reads seconds since 1970 from a JSON number or a string.
func unixTime(raw json.RawMessage) (time.Time, error) {
	s := strings.Trim(string(raw), `"`)
	sec, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(sec) || math.IsInf(sec, 0) || sec < 0 || sec > 1<<40 {
		return time.Time{}, errors.New("not a number of seconds since 1970")
	}
	whole, frac := math.Modf(sec)
	return time.Unix(int64(whole), int64(frac*1e9)).UTC(), nil
}
