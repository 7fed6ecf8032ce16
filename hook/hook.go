package hook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kilnci/kiln/ci"
)

// DefaultMaxBodyBytes is the largest request body a hook reads when its
// MaxBodyBytes is zero: 25 MiB, GitHub's own cap on webhook payloads, so
// that every delivery GitHub can send is accepted. Larger bodies are
// refused with 413 before they are read whole.
const DefaultMaxBodyBytes = 25 << 20

// Limits on the bodies of requests not yet authenticated: whoever can
// reach the hooks can send them, so they must not cost the master much.
const (
	// MaxConcurrentBodies is how many request bodies a hook reads at
	// once; beyond that it answers 503 with Retry-After at once.
	MaxConcurrentBodies = 4
	// BodyTimeout bounds the reading of a body: one that trickles in is
	// cut then, with 408.
	BodyTimeout = 30 * time.Second
	// memoryBody is how much of a body is kept in memory; the rest goes
	// to a temporary file until the request is authenticated. With
	// MaxConcurrentBodies, unauthenticated requests cost at most 4 MiB.
	memoryBody = 1 << 20
)

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
	// CategoryNote marks a comment on a GitLab merge request (Buildbot's
	// category): the change is the merge request's last commit.
	CategoryNote = "note"
)

// TagKey returns the DedupKey of the change for the creation of a tag:
// one tag of one repository gives one change, however many events tell of
// it and however often they are delivered. Git forbids spaces in tag names
// and URLs carry none, so the key is unambiguous.
func TagKey(repository, tag string) string { return tagKeyPrefix + repository + " " + tag }

const tagKeyPrefix = "tag "

// The master's state where the hooks count each tag's deletions: object
// tagState, key the tag's TagKey, value the count in decimal.
const tagState = "hook/tag-deletions"

// tagGeneration returns how often a tag was deleted.
func (e *endpoint) tagGeneration(ctx context.Context, key string) (int, error) {
	st, err := e.m.Store(ctx)
	if err != nil {
		return 0, err
	}
	b, err := st.GetState(ctx, tagState, key)
	if errors.Is(err, ci.ErrNotFound) || err == nil && len(b) == 0 {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(b))
}

// tagDeleted counts a deletion of a tag: the next creation of a tag of
// that name is a new change.
func (e *endpoint) tagDeleted(ctx context.Context, key string) error {
	tagMu.Lock()
	defer tagMu.Unlock()
	g, err := e.tagGeneration(ctx, key)
	if err != nil {
		return err
	}
	st, err := e.m.Store(ctx)
	if err != nil {
		return err
	}
	return st.SetState(ctx, tagState, key, []byte(strconv.Itoa(g+1)))
}

// tagMu serializes the counting of deletions.
var tagMu sync.Mutex

// maxDeliveryID is the longest delivery ID kept as it is in keys; longer
// ones are hashed.
const maxDeliveryID = 100

// errors the handlers answer with their own status codes.
var (
	errForbidden  = errors.New("forbidden")
	errBadRequest = errors.New("bad request")
	errBusy       = errors.New("too many bodies being read")
)

// bodyTimeout is BodyTimeout; tests shorten it.
var bodyTimeout = BodyTimeout

// forbidden makes an error answered with 403. Its text must never contain
// a secret: it is logged and sent back.
func forbidden(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errForbidden}, args...)...)
}

// badRequest makes an error answered with 400.
func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadRequest}, args...)...)
}

// An Event is what a forge's event says: its changes, or why it gives
// none, and the tags it deleted.
type Event struct {
	Changes []ci.Change
	// Ignored says why the event gives no change ("ping: the hook is set
	// up", "branch \"x\" created: ..."), for the answer and the log.
	Ignored string
	// DeletedTags are the TagKey of the tags the event deleted: a tag
	// created again after its deletion is a new change, built again.
	DeletedTags []string
}

// A delivery is one request of a forge, read and authenticated.
type delivery struct {
	// event names what happened, in the forge's words.
	event string
	// id identifies the delivery; redeliveries carry the same ("" if the
	// forge sent none).
	id string
	Event
}

// An endpoint is what each dialect's handler shares: read the body within
// the limits while the dialect authenticates the request, then let the
// dialect parse it, and store the changes.
type endpoint struct {
	m       *ci.Master
	dialect string
	maxBody int64
	// authenticate checks the request's credentials: from its headers
	// alone (a token), reading nothing of body, or from body (a
	// signature), which it reads to the end. An error wrapping
	// errForbidden gives 403.
	authenticate func(r *http.Request, body io.Reader) error
	// parse reads the delivery of an authenticated request. An error
	// wrapping errBadRequest gives 400.
	parse func(r *http.Request, body []byte) (*delivery, error)
	// bodies holds a token for each body being read.
	bodies chan struct{}
}

func newEndpoint(m *ci.Master, dialect string, maxBody int64, authenticate func(*http.Request, io.Reader) error,
	parse func(*http.Request, []byte) (*delivery, error)) *endpoint {
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	return &endpoint{m: m, dialect: dialect, maxBody: maxBody, authenticate: authenticate, parse: parse,
		bodies: make(chan struct{}, MaxConcurrentBodies)}
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
	body, err := e.readBody(w, r)
	switch {
	case errors.Is(err, errBusy):
		log.Warn("webhook request refused: too many bodies being read at once", "limit", MaxConcurrentBodies)
		w.Header().Set("Retry-After", "10")
		reply(w, http.StatusServiceUnavailable, "too many webhook requests at once; try again later")
		return
	case errors.Is(err, errForbidden):
		log.Warn("webhook request refused", "reason", err)
		reply(w, http.StatusForbidden, oneLine(err.Error()))
		return
	case errors.As(err, new(*http.MaxBytesError)):
		log.Warn("webhook request refused: body too large", "limit", e.maxBody)
		reply(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", e.maxBody))
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		log.Warn("webhook request refused: the body did not arrive in time", "timeout", bodyTimeout)
		reply(w, http.StatusRequestTimeout, fmt.Sprintf("the body did not arrive within %s", bodyTimeout))
		return
	case err != nil:
		log.Warn("webhook request: could not read the body", "err", err)
		reply(w, http.StatusBadRequest, "could not read the body")
		return
	}
	d, err := e.parse(r, body)
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
	for _, tag := range d.DeletedTags {
		if err := e.tagDeleted(r.Context(), tag); err != nil {
			log.Error("webhook: the deletion of a tag could not be recorded; the sender should retry", "err", err)
			w.Header().Set("Retry-After", "60")
			reply(w, http.StatusServiceUnavailable, "could not record the deletion; try again later")
			return
		}
	}
	if len(d.Changes) == 0 {
		why := d.Ignored
		if why == "" {
			why = "this event gives no change"
		}
		log.Info("webhook event gave no change", "why", why)
		reply(w, http.StatusOK, "ok: ignored: "+oneLine(why))
		return
	}
	added, known := 0, 0
	for i := range d.Changes {
		c := &d.Changes[i]
		if c.DedupKey == "" && d.id != "" {
			c.DedupKey = fmt.Sprintf("%s:%s:%d", e.dialect, d.id, i)
		}
		if strings.HasPrefix(c.DedupKey, tagKeyPrefix) {
			// The tag's name since its last deletion.
			g, err := e.tagGeneration(r.Context(), c.DedupKey)
			if err != nil {
				log.Error("webhook change could not be stored; the sender should retry", "err", err)
				w.Header().Set("Retry-After", "60")
				reply(w, http.StatusServiceUnavailable, "could not store the change; try again later")
				return
			}
			if g > 0 {
				c.DedupKey += fmt.Sprintf(" #%d", g)
			}
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

// readBody reads the body of a request within maxBody and BodyTimeout,
// while the dialect authenticates the request: what it holds in memory
// before the request is authenticated is at most memoryBody, the rest
// waiting in a temporary file.
// When MaxConcurrentBodies are being read, it returns errBusy at once.
func (e *endpoint) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	select {
	case e.bodies <- struct{}{}:
		defer func() { <-e.bodies }()
	default:
		return nil, errBusy
	}
	// The deadline cuts a body that trickles in; the stream of an
	// answer is not concerned (the hooks answer at once).
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyTimeout))
	limited := http.MaxBytesReader(w, r.Body, e.maxBody)
	sp := &spool{}
	defer sp.close()
	if err := e.authenticate(r, io.TeeReader(limited, sp)); err != nil {
		return nil, err
	}
	if _, err := io.Copy(sp, limited); err != nil {
		return nil, err
	}
	return sp.bytes()
}

// A spool holds a body: its first memoryBody bytes in memory, the rest in
// a temporary file, removed by close.
type spool struct {
	mem  bytes.Buffer
	file *os.File
	n    int64
}

func (s *spool) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	if s.file == nil && s.mem.Len()+len(p) <= memoryBody {
		return s.mem.Write(p)
	}
	if s.file == nil {
		f, err := os.CreateTemp("", "kiln-hook-body-")
		if err != nil {
			return 0, err
		}
		os.Remove(f.Name()) // gone with the last descriptor
		s.file = f
	}
	return s.file.Write(p)
}

// bytes returns the whole body.
func (s *spool) bytes() ([]byte, error) {
	if s.file == nil {
		return s.mem.Bytes(), nil
	}
	b := make([]byte, 0, s.n)
	b = append(b, s.mem.Bytes()...)
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	rest, err := io.ReadAll(s.file)
	if err != nil {
		return nil, err
	}
	return append(b, rest...), nil
}

func (s *spool) close() {
	if s.file != nil {
		s.file.Close()
	}
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
