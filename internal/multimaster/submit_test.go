//go:build unix

package multimaster

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
)

// A request is one of the load's build requests, as the test sent it.
type request struct {
	n    int
	kind string // "force" or "push"
	// via is the master that acknowledged it ("" if none did).
	via string
	// bsid is the buildset a force answered with.
	bsid int64
	// revision and delivery are a push's.
	revision, delivery string
	// twice names the second master a push's delivery was also sent to.
	twice string
	// err is the last failure to send it.
	err error
}

func (r *request) String() string {
	if r.kind == "force" {
		return fmt.Sprintf("request %d (force via master %s, buildset %d)", r.n, r.via, r.bsid)
	}
	s := fmt.Sprintf("request %d (push %s, delivery %s via master %s", r.n, r.revision[:12], r.delivery, r.via)
	if r.twice != "" {
		s += " and again via master " + r.twice
	}
	return s + ")"
}

// forceCall is the force scheduler's JSON-RPC call.
func forceCall(builderID int64, reason string) []byte {
	b, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "method": "force", "id": 1,
		"params": map[string]any{"builderid": builderID, "reason": reason},
	})
	return b
}

// force asks m's force scheduler for a build of builderID; it returns the
// buildset, or an error and whether the call may have been acted on.
func force(m *master, builderID int64, reason string) (int64, bool, error) {
	h := http.Header{"Content-Type": {"application/json"}}
	code, body, err := post(m.http+"api/v2/forceschedulers/force", h, forceCall(builderID, reason))
	if err != nil {
		return 0, !notReached(err), fmt.Errorf("force via master %s: %w", m.name, err)
	}
	var ans struct {
		Result []json.RawMessage `json:"result"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &ans) != nil || len(ans.Result) == 0 {
		return 0, code/100 == 5, fmt.Errorf("force via master %s: %d %s", m.name, code, body)
	}
	var bsid int64
	if err := json.Unmarshal(ans.Result[0], &bsid); err != nil {
		return 0, true, fmt.Errorf("force via master %s: result %s: %w", m.name, ans.Result[0], err)
	}
	return bsid, true, nil
}

// revision is request n's commit.
func revision(n int) string {
	sum := sha1.Sum(fmt.Appendf(nil, "request %d", n))
	return hex.EncodeToString(sum[:])
}

// pushPayload is GitHub's push event of one commit to main.
func pushPayload(rev string, n int) []byte {
	commit := map[string]any{
		"id": rev, "distinct": true, "message": fmt.Sprintf("request %d", n),
		"timestamp": "2026-11-21T10:05:40+01:00",
		"url":       "https://github.com/kilnci/load/commit/" + rev,
		"author":    map[string]any{"name": "Load Test", "email": "load@kiln.invalid", "username": "load"},
		"committer": map[string]any{"name": "Load Test", "email": "load@kiln.invalid", "username": "load"},
		"added":     []string{}, "removed": []string{}, "modified": []string{fmt.Sprintf("f%d.txt", n)},
	}
	b, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": revision(n - 1), "after": rev,
		"created": false, "deleted": false, "forced": false,
		"compare": "https://github.com/kilnci/load/compare/x...y",
		"repository": map[string]any{
			"id": 1, "name": "load", "full_name": "kilnci/load",
			"html_url": "https://github.com/kilnci/load", "clone_url": "https://github.com/kilnci/load.git",
			"default_branch": "main", "owner": map[string]any{"login": "kilnci", "name": "kilnci"},
		},
		"pusher":      map[string]any{"name": "load", "email": "load@kiln.invalid"},
		"sender":      map[string]any{"login": "load"},
		"commits":     []any{commit},
		"head_commit": commit,
	})
	return b
}

// push delivers a push event to m's GitHub hook, signed.
func push(m *master, delivery string, payload []byte) (bool, error) {
	mac := hmac.New(sha256.New, []byte(githubSecret))
	mac.Write(payload)
	h := http.Header{
		"Content-Type":        {"application/json"},
		"X-Github-Event":      {"push"},
		"X-Github-Delivery":   {delivery},
		"X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(mac.Sum(nil))},
	}
	code, body, err := post(m.http+"change_hook/github", h, payload)
	if err != nil {
		return !notReached(err), fmt.Errorf("push via master %s: %w", m.name, err)
	}
	if code/100 != 2 {
		return code/100 == 5, fmt.Errorf("push via master %s: %d %s", m.name, code, body)
	}
	return true, nil
}

// A sender sends the load's requests, each to the next living master,
// and to another one when a master fails to take it.
type sender struct {
	masters   []*master
	builderID int64

	mu       sync.Mutex
	maybe    int // forces that may have been stored though not acknowledged
	failures []string
}

// send sends r until a master acknowledges it, trying each living master
// in turn, at most three rounds.
func (s *sender) send(r *request) {
	for try := range 3 * len(s.masters) {
		m := s.masters[(r.n+try)%len(s.masters)]
		if m.dead.Load() {
			continue
		}
		switch r.kind {
		case "force":
			bsid, maybe, err := force(m, s.builderID, fmt.Sprintf("request %d", r.n))
			if err == nil {
				r.bsid, r.via = bsid, m.name
				return
			}
			r.err = err
			if maybe {
				s.mu.Lock()
				s.maybe++
				s.mu.Unlock()
			}
		case "push":
			payload := pushPayload(r.revision, r.n)
			if _, err := push(m, r.delivery, payload); err != nil {
				r.err = err
				continue
			}
			r.via = m.name
			// One delivery in ten is received twice, by two masters
			// (a sender retrying behind a load balancer). Pushes are
			// the even requests.
			if r.n%10 == 2 {
				for k := 1; k < len(s.masters); k++ {
					other := s.masters[(r.n+try+k)%len(s.masters)]
					if other.dead.Load() {
						continue
					}
					if _, err := push(other, r.delivery, payload); err == nil {
						r.twice = other.name
					}
					break
				}
			}
			return
		}
	}
	s.mu.Lock()
	s.failures = append(s.failures, fmt.Sprintf("request %d: no master took it: %v", r.n, r.err))
	s.mu.Unlock()
}
