package hook

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/kilnci/kiln/ci"
)

// DefaultMaxBodyBytes is the largest request body a hook reads when its
// MaxBodyBytes is zero: 25 MiB, GitHub's own cap on webhook payloads, so
// that every delivery GitHub can send is accepted. Larger bodies are
// refused with 413 before they are read whole.
const DefaultMaxBodyBytes = 25 << 20

// Categories of the changes the hooks make. Branch pushes keep Buildbot's
// categories: none for GitHub, "push" for GitLab.
const (
	// CategoryNewTag marks the creation of a tag, whichever event told of
	// it (GitHub's create or push, GitLab's Tag Push Hook).
	CategoryNewTag = "new-tag"
	// CategoryTag marks a push that moved an existing tag.
	CategoryTag = "tag"
	// CategoryPull marks a GitHub pull request opened, reopened or pushed to.
	CategoryPull = "pull"
	// CategoryPush marks a GitLab branch push (Buildbot's category).
	CategoryPush = "push"
	// CategoryMergeRequest marks a GitLab merge request opened, reopened or
	// pushed to (Buildbot's category).
	CategoryMergeRequest = "merge_request"
)

// TagKey returns the DedupKey of the change for the creation of a tag:
// one tag of one repository gives one change, however many events tell of
// it and however often they are delivered. Git forbids spaces in tag names
// and URLs carry none, so the key is unambiguous.
func TagKey(repository, tag string) string { return "tag " + repository + " " + tag }

// maxDeliveryID is the longest delivery ID kept as it is in keys; longer
// ones are hashed.
const maxDeliveryID = 100

// errors the handlers answer with their own status codes.
var (
	errForbidden  = errors.New("forbidden")
	errBadRequest = errors.New("bad request")
)

// forbidden makes an error answered with 403. Its text must never contain
// a secret: it is logged and sent back.
func forbidden(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errForbidden}, args...)...)
}

// badRequest makes an error answered with 400.
func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadRequest}, args...)...)
}

// A delivery is one request of a forge, read and authenticated.
type delivery struct {
	// event names what happened, in the forge's words.
	event string
	// id identifies the delivery; redeliveries carry the same ("" if the
	// forge sent none).
	id      string
	changes []ci.Change
}

// An endpoint is what each dialect's handler shares: read the body within
// the limit, let the dialect authenticate and parse it, store the changes.
type endpoint struct {
	m       *ci.Master
	dialect string
	maxBody int64
	// read authenticates the request given its body, then parses it. An
	// error wrapping errForbidden gives 403, errBadRequest 400.
	read func(r *http.Request, body []byte) (*delivery, error)
}

func newEndpoint(m *ci.Master, dialect string, maxBody int64, read func(*http.Request, []byte) (*delivery, error)) *endpoint {
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	return &endpoint{m: m, dialect: dialect, maxBody: maxBody, read: read}
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	e.serve(sw, r)
	e.m.NoteHookDelivery(e.dialect, sw.status)
}

// statusWriter remembers the status of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (e *endpoint) serve(w http.ResponseWriter, r *http.Request) {
	log := e.m.Logger().With("hook", e.dialect, "remote", r.RemoteAddr)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		reply(w, http.StatusMethodNotAllowed, "only POST is accepted")
		return
	}
	if r.ContentLength > e.maxBody {
		log.Warn("webhook request refused: body too large", "length", r.ContentLength, "limit", e.maxBody)
		reply(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", e.maxBody))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, e.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			log.Warn("webhook request refused: body too large", "limit", e.maxBody)
			reply(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", e.maxBody))
			return
		}
		log.Warn("webhook request: could not read the body", "err", err)
		reply(w, http.StatusBadRequest, "could not read the body")
		return
	}
	d, err := e.read(r, body)
	switch {
	case errors.Is(err, errForbidden):
		log.Warn("webhook request refused", "reason", err)
		reply(w, http.StatusForbidden, oneLine(err.Error()))
		return
	case err != nil:
		log.Warn("webhook request rejected", "reason", err)
		reply(w, http.StatusBadRequest, oneLine(err.Error()))
		return
	}
	if len(d.id) > maxDeliveryID {
		// A key of bounded size, however long the header.
		sum := sha256.Sum256([]byte(d.id))
		d.id = "sha256-" + hex.EncodeToString(sum[:])
	}
	log = log.With("event", d.event, "delivery", d.id)
	if len(d.changes) == 0 {
		log.Info("webhook event gave no change")
		reply(w, http.StatusOK, "ok: no change from this event")
		return
	}
	added, known := 0, 0
	for i := range d.changes {
		c := &d.changes[i]
		if c.DedupKey == "" && d.id != "" {
			c.DedupKey = fmt.Sprintf("%s:%s:%d", e.dialect, d.id, i)
		}
		ok, err := e.m.AddChange(r.Context(), c)
		if err != nil {
			log.Error("webhook change could not be stored; the sender should retry", "err", err)
			w.Header().Set("Retry-After", "60")
			reply(w, http.StatusServiceUnavailable, "could not store the change; try again later")
			return
		}
		if ok {
			added++
		} else {
			known++
		}
	}
	log.Info("webhook changes received", "added", added, "already_received", known)
	reply(w, http.StatusOK, fmt.Sprintf("ok: %d changes added, %d already received", added, known))
}

// reply answers with a one-line text.
func reply(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// oneLine keeps the first line of s, at most 200 bytes of it.
func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// mediaType returns the media type of a Content-Type header, lower case,
// without its parameters.
func mediaType(header string) string {
	t, _, err := mime.ParseMediaType(header)
	if err != nil {
		return ""
	}
	return t
}
