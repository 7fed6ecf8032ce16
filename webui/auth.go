package webui

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// BasicAuth checks the HTTP basic credentials of requests against a list
// of users. Passwords are bcrypt hashes, from Users or from an htpasswd
// file, so that the configuration holds no password in clear; plain
// passwords are accepted only when AllowPlain says so.
type BasicAuth struct {
	// Users maps logins to the bcrypt hashes of their passwords ("$2a$",
	// "$2b$" or "$2y$"; htpasswd -nB makes them), or to plain passwords
	// when AllowPlain is set.
	Users map[string]string
	// HtpasswdFile names an htpasswd file ("login:hash" lines, bcrypt
	// hashes only: htpasswd -B), read when the handler is made. Its users
	// are added to Users.
	HtpasswdFile string
	// AllowPlain lets Users hold plain passwords, compared in constant
	// time. Off by default: a password that is not a bcrypt hash is then a
	// configuration error, reported by NewHandler.
	AllowPlain bool
	// Realm names the protected space in the browser's login prompt; the
	// master's title (or "Kiln") if empty.
	Realm string
}

// Access says who may perform an action.
type Access int

const (
	// Nobody may: the action is turned off. The zero value.
	Nobody Access = iota
	// LoggedIn users may: anyone who gives valid credentials.
	LoggedIn
	// Anyone may, logged in or not.
	Anyone
)

func (a Access) String() string {
	switch a {
	case Nobody:
		return "nobody"
	case LoggedIn:
		return "logged-in users"
	case Anyone:
		return "anyone"
	}
	return "Access(" + strconv.Itoa(int(a)) + ")"
}

// Authz says who may perform each action of the web UI and the API, as
// Buildbot's Authz did. The zero value turns every action off: a read-only
// UI. Reading is always open. Ideascube's configuration is
//
//	webui.Authz{Force: webui.LoggedIn}
type Authz struct {
	// Force: forcing builds (the force form, the force API).
	Force Access
	// Stop: stopping running builds.
	Stop Access
	// Cancel: cancelling pending build requests.
	Cancel Access
}

// An action is a write the Authz rules govern.
type action struct {
	name   string // for messages: "forcing builds"
	option string // the option that turns it on, for pages
	get    func(Authz) Access
}

var (
	actForce  = action{"forcing builds", "webui.Options.Authz.Force", func(z Authz) Access { return z.Force }}
	actStop   = action{"stopping builds", "webui.Options.Authz.Stop", func(z Authz) Access { return z.Stop }}
	actCancel = action{"cancelling build requests", "webui.Options.Authz.Cancel", func(z Authz) Access { return z.Cancel }}
)

// authenticator checks credentials, remembering those it verified so that
// bcrypt runs once per login and password, not once per request.
type authenticator struct {
	users map[string]string // login -> bcrypt hash or plain password
	plain bool
	realm string

	mu   sync.Mutex
	good map[[32]byte]string // verified sha256(login, password, hash) -> login
}

// maxGood bounds the verified credentials kept; past it the cache starts
// again.
const maxGood = 1024

// dummyHash is compared against when the login is unknown, so that
// unknown logins take as long as wrong passwords.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)

func newAuthenticator(ba *BasicAuth, title string) (*authenticator, error) {
	a := &authenticator{users: map[string]string{}, good: map[[32]byte]string{}, realm: title}
	if a.realm == "" {
		a.realm = "Kiln"
	}
	if ba == nil {
		return a, nil
	}
	if ba.Realm != "" {
		a.realm = ba.Realm
	}
	a.plain = ba.AllowPlain
	var problems []error
	for login, pw := range ba.Users {
		if err := checkLogin(login); err != nil {
			problems = append(problems, err)
			continue
		}
		if !isBcrypt(pw) && !ba.AllowPlain {
			problems = append(problems, fmt.Errorf("auth: the password of user %q is not a bcrypt hash (set AllowPlain to allow plain passwords)", login))
			continue
		}
		a.users[login] = pw
	}
	if ba.HtpasswdFile != "" {
		users, err := readHtpasswd(ba.HtpasswdFile)
		if err != nil {
			problems = append(problems, err)
		}
		for login, hash := range users {
			a.users[login] = hash
		}
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return a, nil
}

func checkLogin(login string) error {
	if login == "" || strings.ContainsAny(login, ":\r\n") {
		return fmt.Errorf("auth: login %q is empty or holds ':' or a line break", login)
	}
	return nil
}

func isBcrypt(s string) bool {
	_, err := bcrypt.Cost([]byte(s))
	return err == nil
}

// readHtpasswd reads "login:hash" lines; blank lines and # comments are
// skipped. Only bcrypt hashes are accepted: the other htpasswd formats
// (MD5-crypt, SHA-1, crypt) are too weak to keep.
func readHtpasswd(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: htpasswd: %w", err)
	}
	defer f.Close()
	users := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		login, hash, ok := strings.Cut(line, ":")
		if !ok || checkLogin(login) != nil {
			return nil, fmt.Errorf("auth: htpasswd %s:%d: not a login:hash line", path, n)
		}
		if !isBcrypt(hash) {
			return nil, fmt.Errorf("auth: htpasswd %s:%d: the hash of %q is not bcrypt (use htpasswd -B)", path, n, login)
		}
		users[login] = hash
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: htpasswd %s: %w", path, err)
	}
	return users, nil
}

// user returns the login of the request's valid credentials. present says
// whether the request carried basic credentials at all.
func (a *authenticator) user(r *http.Request) (login string, present, ok bool) {
	login, pw, present := r.BasicAuth()
	if !present {
		return "", false, false
	}
	stored, known := a.users[login]
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s:%s:%s", len(login), login, pw, stored)
	var key [32]byte
	h.Sum(key[:0])
	a.mu.Lock()
	_, cached := a.good[key]
	a.mu.Unlock()
	if cached && known {
		return login, true, true
	}
	var good bool
	switch {
	case !known:
		bcrypt.CompareHashAndPassword(dummyHash, []byte(pw))
	case isBcrypt(stored):
		good = bcrypt.CompareHashAndPassword([]byte(stored), []byte(pw)) == nil
	case a.plain:
		ps, ss := sha256.Sum256([]byte(pw)), sha256.Sum256([]byte(stored))
		good = subtle.ConstantTimeCompare(ps[:], ss[:]) == 1
	}
	if !good {
		return "", true, false
	}
	a.mu.Lock()
	if len(a.good) >= maxGood {
		clear(a.good)
	}
	a.good[key] = login
	a.mu.Unlock()
	return login, true, true
}

// challenge is the WWW-Authenticate value of 401 answers.
func (a *authenticator) challenge() string {
	return `Basic realm=` + strconv.Quote(a.realm) + `, charset="UTF-8"`
}

// canLogIn reports whether anyone can log in at all.
func (a *authenticator) canLogIn() bool { return len(a.users) > 0 }

// authorize checks that the request may perform act, and returns who it
// comes from: the login, or "anonymous". Cross-site requests are refused
// first (403), then turned-off actions (403), then requests that need a
// login and have none or a wrong one (401).
func (a *app) authorize(r *http.Request, act action) (string, error) {
	if err := a.csrf.Check(r); err != nil {
		return "", fmt.Errorf("%w: cross-origin request refused (%v)", errForbidden, err)
	}
	access := act.get(a.opts.Authz)
	login, present, ok := a.auth.user(r)
	switch {
	case access == Nobody:
		return "", fmt.Errorf("%w: %s is turned off", errForbidden, act.name)
	case present && !ok:
		return "", fmt.Errorf("%w: wrong login or password", errUnauthorized)
	case ok:
		return login, nil
	case access == Anyone:
		return "anonymous", nil
	}
	return "", fmt.Errorf("%w: %s needs a login", errUnauthorized, act.name)
}

// An actionForm says whether a page shows the form of an action and what
// it says of it, so that what a page says is what authorize decides.
type actionForm struct {
	// Show: the form is shown (the action may be allowed).
	Show bool
	// NeedsLogin: the action needs a login the request does not carry
	// (the browser asks for it when the form is sent).
	NeedsLogin bool
	// Off: no rule allows the action; Option names the option that turns
	// it on.
	Off    bool
	Option string
	// NoUsers: the action needs a login, and no users are configured.
	NoUsers bool
}

// actionForm says how a page offers act to the request's user.
func (a *app) actionForm(r *http.Request, act action) actionForm {
	f := actionForm{Option: act.option}
	switch act.get(a.opts.Authz) {
	case Anyone:
		f.Show = true
	case LoggedIn:
		if !a.auth.canLogIn() {
			f.NoUsers = true
			break
		}
		f.Show = true
		_, _, ok := a.auth.user(r)
		f.NeedsLogin = !ok
	default:
		f.Off = true
	}
	return f
}

// can reports whether the request may perform act, for showing forms and
// buttons; authorize decides when it is tried.
func (a *app) can(r *http.Request, act action) bool {
	switch act.get(a.opts.Authz) {
	case Anyone:
		return true
	case LoggedIn:
		return a.auth.canLogIn()
	}
	return false
}
