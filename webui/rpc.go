package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/kilnci/kiln/ci"
)

// The API's writes are Buildbot's data API control methods: a JSON-RPC 2.0
// call POSTed to the resource,
//
//	POST /api/v2/forceschedulers/force
//	{"jsonrpc": "2.0", "method": "force", "id": 1,
//	 "params": {"builderid": 1, "reason": "release", "branch": "0.9.1", "dist": "stretch"}}
//
// answered {"jsonrpc": "2.0", "id": 1, "result": [bsid, {"<builderid>": brid}]}
// or, with the status of the error, {"jsonrpc": "2.0", "id": 1,
// "error": {"code": -32602, "message": "..."}}.

// JSON-RPC error codes.
const (
	rpcParseError     = -32700
	rpcInvalidRequest = -32600
	rpcMethodNotFound = -32601
	rpcInvalidParams  = -32602
	rpcInternalError  = -32603
)

// rpcError gives an error its JSON-RPC code; its HTTP status is still
// that of the error it wraps.
type rpcError struct {
	code int
	err  error
}

func (e *rpcError) Error() string { return e.err.Error() }
func (e *rpcError) Unwrap() error { return e.err }

// rpcFunc performs a control method on the resource of the request.
type rpcFunc func(r *http.Request, st ci.Store, method string, params map[string]any) (any, error)

type rpcCall struct {
	JSONRPC *string         `json:"jsonrpc"`
	Method  *string         `json:"method"`
	ID      json.RawMessage `json:"id"`
	Params  json.RawMessage `json:"params"`
}

func (a *app) rpc(fn rpcFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		id := json.RawMessage("null")
		reply := func(code int, result any, err error) {
			ans := map[string]any{"jsonrpc": "2.0", "id": id}
			if err != nil {
				var msg string
				code, msg = a.errorText(r, err)
				a.challenge(w, code, err)
				rc := rpcInternalError
				var re *rpcError
				switch {
				case errors.As(err, &re):
					rc = re.code
				case errors.Is(err, ci.ErrInvalidForce):
					rc = rpcInvalidParams
				case code < 500:
					rc = rpcInvalidRequest
				}
				ans["error"] = map[string]any{"code": rc, "message": msg}
			} else {
				ans["result"] = result
			}
			writeJSON(w, code, ans)
		}
		// Cross-site requests are refused before anything is read.
		if err := a.csrf.Check(r); err != nil {
			reply(0, nil, fmt.Errorf("%w: cross-origin request refused (%v)", errForbidden, err))
			return
		}
		// Browsers send forms cross-site without asking, but not JSON.
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			reply(0, nil, &rpcError{rpcInvalidRequest, fmt.Errorf("%w: invalid content-type (use application/json)", errBadRequest)})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			reply(0, nil, &rpcError{rpcParseError, fmt.Errorf("%w: reading the request: %v", errBadRequest, err)})
			return
		}
		var call rpcCall
		if err := json.Unmarshal(body, &call); err != nil {
			reply(0, nil, &rpcError{rpcParseError, fmt.Errorf("%w: JSON parse error: %v", errBadRequest, err)})
			return
		}
		if len(call.ID) > 0 {
			var v any
			json.Unmarshal(call.ID, &v)
			switch v.(type) {
			case string, float64, nil:
				id = call.ID
			default:
				reply(0, nil, &rpcError{rpcInvalidRequest, fmt.Errorf("%w: 'id' must be a string, number, or null", errBadRequest)})
				return
			}
		}
		var params map[string]any
		switch {
		case call.JSONRPC == nil || *call.JSONRPC != "2.0":
			err = fmt.Errorf("%w: only JSONRPC 2.0 is supported", errBadRequest)
		case call.Method == nil:
			err = fmt.Errorf("%w: missing key 'method'", errBadRequest)
		case len(call.Params) == 0:
			err = fmt.Errorf("%w: missing key 'params'", errBadRequest)
		case json.Unmarshal(call.Params, &params) != nil || params == nil:
			err = fmt.Errorf("%w: 'params' must be an object", errBadRequest)
		}
		if err != nil {
			reply(0, nil, &rpcError{rpcInvalidRequest, err})
			return
		}
		st, err := a.store(ctx)
		if err != nil {
			reply(0, nil, err)
			return
		}
		result, err := fn(r, st, *call.Method, params)
		reply(http.StatusOK, result, err)
	})
}

func unknownMethod(method string) error {
	return &rpcError{rpcMethodNotFound, fmt.Errorf("%w: unknown method %q", errBadRequest, method)}
}

// paramString formats a parameter's value as text: strings as they are,
// numbers and booleans as JSON writes them.
func paramString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// rpcForce forces builds, as Buildbot's ForceScheduler.force: params name
// the builder (builderid, or builderNames), the reason, the source stamp
// fields and the scheduler's own parameters. The owner is the logged-in
// user, whatever params say.
func (a *app) rpcForce(r *http.Request, st ci.Store, method string, params map[string]any) (any, error) {
	if method != "force" {
		return nil, unknownMethod(method)
	}
	f, err := a.forceScheduler(r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	owner, err := a.authorize(r, actForce)
	if err != nil {
		return nil, err
	}
	var builders []string
	if v, ok := params["builderid"]; ok && v != nil {
		id, err := strconv.ParseInt(paramString(v), 10, 64)
		if err != nil {
			return nil, &rpcError{rpcInvalidParams, fmt.Errorf("%w: builderid %q is not an ID", errBadRequest, paramString(v))}
		}
		b, err := st.GetBuilder(r.Context(), id)
		if errors.Is(err, ci.ErrNotFound) {
			return nil, &rpcError{rpcInvalidParams, fmt.Errorf("%w: no builder %d", errBadRequest, id)}
		}
		if err != nil {
			return nil, err
		}
		builders = []string{b.Name}
	}
	if v, ok := params["builderNames"]; ok && v != nil {
		list, ok := v.([]any)
		if !ok {
			return nil, &rpcError{rpcInvalidParams, fmt.Errorf("%w: builderNames must be a list of names", errBadRequest)}
		}
		for _, n := range list {
			builders = append(builders, paramString(n))
		}
	}
	values := map[string]any{}
	for k, v := range params {
		switch k {
		case "builderid", "builderNames", "owner", "username":
			continue
		}
		values[k] = v
	}
	bs, reqs, err := a.force(r.Context(), f, owner, builders, values)
	if err != nil {
		return nil, err
	}
	brids := map[string]int64{}
	for _, br := range reqs {
		brids[strconv.FormatInt(br.BuilderID, 10)] = br.ID
	}
	a.log.Info("build forced through the API", "scheduler", f.SchedulerName(), "owner", owner, "buildset", bs.ID)
	return []any{bs.ID, brids}, nil
}

// rpcBuild stops a build (method "stop", params {"reason": "..."}) or
// builds it again (method "rebuild", as forcing is allowed; result
// [bsid, {"<builderid>": brid}], as Buildbot's).
func (a *app) rpcBuild(r *http.Request, st ci.Store, method string, params map[string]any) (any, error) {
	if method != "stop" && method != "rebuild" {
		return nil, unknownMethod(method)
	}
	b, err := a.findBuild(r, st)
	if err != nil {
		return nil, err
	}
	if method == "rebuild" {
		who, err := a.authorize(r, actForce)
		if err != nil {
			return nil, err
		}
		bs, reqs, err := a.rebuild(r.Context(), st, b, who)
		if err != nil {
			return nil, err
		}
		brids := map[string]int64{}
		for _, br := range reqs {
			brids[strconv.FormatInt(br.BuilderID, 10)] = br.ID
		}
		return []any{bs.ID, brids}, nil
	}
	who, err := a.authorize(r, actStop)
	if err != nil {
		return nil, err
	}
	return nil, a.stop(r.Context(), st, b, who, paramString(params["reason"]))
}

// rpcRequest cancels a pending build request: method "cancel".
func (a *app) rpcRequest(r *http.Request, st ci.Store, method string, params map[string]any) (any, error) {
	if method != "cancel" {
		return nil, unknownMethod(method)
	}
	id, err := pathID(r, "id")
	if err != nil {
		return nil, err
	}
	if _, err := st.GetRequest(r.Context(), id); err != nil {
		return nil, notFound(err, "no build request %d", id)
	}
	who, err := a.authorize(r, actCancel)
	if err != nil {
		return nil, err
	}
	_, err = a.cancel(r.Context(), st, id, who)
	return nil, err
}

// rpcWorker controls a worker, as Buildbot's control methods on workers:
// "pause" and "unpause" (no new builds), "stop" (no new builds, then the
// worker is asked to shut down once idle) and "kill" (disconnected at
// once, its builds retried). The answer's result is null.
func (a *app) rpcWorker(r *http.Request, st ci.Store, method string, params map[string]any) (any, error) {
	switch method {
	case "pause", "unpause", "stop", "kill":
	default:
		return nil, unknownMethod(method)
	}
	key := r.PathValue("worker")
	name := ""
	ws, err := st.ListWorkers(r.Context())
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		if w.Name == key || strconv.FormatInt(w.ID, 10) == key {
			name = w.Name
		}
	}
	if _, ok := a.m.WorkerConfig(name); !ok {
		return nil, fmt.Errorf("%w: no worker %q", errNotFound, key)
	}
	who, err := a.authorize(r, actWorker)
	if err != nil {
		return nil, err
	}
	return nil, a.controlWorker(name, method, who, paramString(params["reason"]))
}
