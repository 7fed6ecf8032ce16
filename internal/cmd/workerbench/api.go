//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// An api is a client of the master's JSON API.
type api struct {
	base   string // http://host:port
	client *http.Client
}

func newAPI(addr string) *api {
	return &api{
		base: "http://" + addr,
		client: &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
			Timeout:   time.Minute,
		},
	}
}

// get decodes the answer to GET path into v.
func (a *api) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return err
	}
	return a.do(req, v)
}

func (a *api) do(req *http.Request, v any) error {
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// force forces a build of the builder through the force scheduler's
// JSON-RPC call and returns its build request's ID.
func (a *api) force(ctx context.Context, builder string) (int64, error) {
	call, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "method": "force", "id": 1,
		"params": map[string]any{"builderNames": []string{builder}, "reason": "benchmark"},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/api/v2/forceschedulers/force", bytes.NewReader(call))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	var reply struct {
		Result []json.RawMessage `json:"result"`
		Error  *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := a.do(req, &reply); err != nil {
		return 0, err
	}
	if reply.Error != nil {
		return 0, fmt.Errorf("force %s: %s", builder, reply.Error.Message)
	}
	var brids map[string]int64
	if len(reply.Result) != 2 || json.Unmarshal(reply.Result[1], &brids) != nil || len(brids) != 1 {
		return 0, fmt.Errorf("force %s: unexpected result %s", builder, reply.Result)
	}
	for _, id := range brids {
		return id, nil
	}
	panic("unreachable")
}

// A request is a build request as the API gives it.
type request struct {
	ID        int64 `json:"buildrequestid"`
	BuilderID int64 `json:"builderid"`
	Complete  bool  `json:"complete"`
	Results   *int  `json:"results"`
}

// request returns the build request brid.
func (a *api) request(ctx context.Context, brid int64) (*request, error) {
	var r struct {
		Requests []*request `json:"buildrequests"`
	}
	if err := a.get(ctx, "/api/v2/buildrequests/"+strconv.FormatInt(brid, 10), &r); err != nil {
		return nil, err
	}
	if len(r.Requests) != 1 {
		return nil, fmt.Errorf("build request %d: %d records", brid, len(r.Requests))
	}
	return r.Requests[0], nil
}

// requests returns the build requests of a builder, with complete as a
// filter unless it is "".
func (a *api) requests(ctx context.Context, builderID int64, complete string) ([]*request, error) {
	q := url.Values{"builderid": {strconv.FormatInt(builderID, 10)}}
	if complete != "" {
		q.Set("complete", complete)
	}
	return list[*request](ctx, a, "/api/v2/buildrequests", q, "buildrequests")
}

// list returns the whole list of a collection of the API (at path, with
// the query q, its items under key), reading it page by page: the API
// answers at most 1,000 items at a time, 200 unless asked.
func list[T any](ctx context.Context, a *api, path string, q url.Values, key string) ([]T, error) {
	var all []T
	q.Set("limit", "1000")
	for {
		q.Set("offset", strconv.Itoa(len(all)))
		var r map[string]json.RawMessage
		if err := a.get(ctx, path+"?"+q.Encode(), &r); err != nil {
			return nil, err
		}
		var page []T
		var meta struct {
			Total int `json:"total"`
		}
		if err := json.Unmarshal(r[key], &page); err != nil {
			return nil, fmt.Errorf("GET %s: %s: %w", path, key, err)
		}
		if err := json.Unmarshal(r["meta"], &meta); err != nil {
			return nil, fmt.Errorf("GET %s: meta: %w", path, err)
		}
		all = append(all, page...)
		if len(page) == 0 || len(all) >= meta.Total {
			return all, nil
		}
	}
}

// incomplete returns how many requests of the builder are not complete.
func (a *api) incomplete(ctx context.Context, builderID int64) (int, error) {
	var r struct {
		Meta struct {
			Total int `json:"total"`
		} `json:"meta"`
	}
	q := url.Values{"builderid": {strconv.FormatInt(builderID, 10)}, "complete": {"false"}, "limit": {"1"}, "field": {"buildrequestid"}}
	err := a.get(ctx, "/api/v2/buildrequests?"+q.Encode(), &r)
	return r.Meta.Total, err
}

// builderID returns the ID of the named builder.
func (a *api) builderID(ctx context.Context, name string) (int64, error) {
	var r struct {
		Builders []struct {
			ID int64 `json:"builderid"`
		} `json:"builders"`
	}
	if err := a.get(ctx, "/api/v2/builders/"+url.PathEscape(name), &r); err != nil {
		return 0, err
	}
	if len(r.Builders) != 1 {
		return 0, fmt.Errorf("builder %s: %d records", name, len(r.Builders))
	}
	return r.Builders[0].ID, nil
}

// A build is a build as the API gives it.
type build struct {
	ID             int64 `json:"buildid"`
	BuildRequestID int64 `json:"buildrequestid"`
	WorkerID       int64 `json:"workerid"`
	Complete       bool  `json:"complete"`
	Results        *int  `json:"results"`
}

// builds returns the builds of a builder.
func (a *api) builds(ctx context.Context, builderID int64) ([]*build, error) {
	return list[*build](ctx, a, "/api/v2/builds", url.Values{"builderid": {strconv.FormatInt(builderID, 10)}}, "builds")
}

// A logRecord is a log as the API gives it.
type logRecord struct {
	ID       int64 `json:"logid"`
	Complete bool  `json:"complete"`
	NumLines int   `json:"num_lines"`
}

// stepLog returns the log called slug of the step called step of a build.
func (a *api) stepLog(ctx context.Context, buildID int64, step, slug string) (*logRecord, error) {
	var r struct {
		Logs []*logRecord `json:"logs"`
	}
	path := fmt.Sprintf("/api/v2/builds/%d/steps/%s/logs/%s", buildID, url.PathEscape(step), url.PathEscape(slug))
	if err := a.get(ctx, path, &r); err != nil {
		return nil, err
	}
	if len(r.Logs) != 1 {
		return nil, fmt.Errorf("log %s of step %s: %d records", slug, step, len(r.Logs))
	}
	return r.Logs[0], nil
}

// checkOutput reads the text of the stored log logID (its raw download)
// and checks that the lines the log step wrote are in it, whole and in
// order: the lines made only of 'a' are lines-1 of 99 characters, then
// one of last characters (the step's last line, stored with a newline).
// The log's other lines are the headers around the output.
func (a *api) checkOutput(ctx context.Context, logID int64, lines, last int) error {
	path := fmt.Sprintf("/api/v2/logs/%d/raw", logID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	seen := 0
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(line) == 0 || len(bytes.TrimLeft(line, "a")) > 0 {
			continue
		}
		seen++
		want := 99
		if seen == lines {
			want = last
		}
		if seen > lines || len(line) != want {
			return fmt.Errorf("the stored log's line %d is %d characters of output, the step wrote %d (output line %d of %d)", n, len(line), want, seen, lines)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if seen != lines {
		return fmt.Errorf("the stored log has %d lines of output, the step wrote %d", seen, lines)
	}
	return nil
}

// connected returns how many workers are connected.
func (a *api) connected(ctx context.Context) (int, error) {
	type worker struct {
		ConnectedTo []json.RawMessage `json:"connected_to"`
	}
	workers, err := list[worker](ctx, a, "/api/v2/workers", url.Values{"field": {"connected_to"}}, "workers")
	n := 0
	for _, w := range workers {
		if len(w.ConnectedTo) > 0 {
			n++
		}
	}
	return n, err
}

// workerIDs returns the IDs of the workers by name.
func (a *api) workerIDs(ctx context.Context) (map[int64]string, error) {
	type worker struct {
		ID   int64  `json:"workerid"`
		Name string `json:"name"`
	}
	workers, err := list[worker](ctx, a, "/api/v2/workers", url.Values{"field": {"workerid", "name"}}, "workers")
	ids := map[int64]string{}
	for _, w := range workers {
		ids[w.ID] = w.Name
	}
	return ids, err
}
