package webui

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
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
	// Workers: pausing, unpausing, stopping and killing workers (the
	// API's control methods on /workers/{worker}).
	Workers Access
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
	actWorker = action{"controlling workers", "webui.Options.Authz.Workers", func(z Authz) Access { return z.Workers }}
)

// authenticator checks credentials, remembering those it verified so that
// bcrypt runs once per login and password, not once per request.
//
// Checking costs the same whatever is wrong: an unknown login, a wrong
// password, a plain password (AllowPlain) each cost one bcrypt comparison
// at the users' cost, so that timing tells no login apart. What an
// address may make it do is bounded: its failed checks are rate-limited
// (loginFailureBurst, then one per loginFailureEvery), bcrypt runs at most
// maxBcrypt at a time, and read-only pages never run it (cachedUser).
type authenticator struct {
	users map[string]string // login -> bcrypt hash or plain password
	plain bool
	realm string
	dummy []byte // a hash at the users' cost, for unknown logins and plain passwords

	mu   sync.Mutex
	good map[[32]byte]string // verified sha256(login, password, hash) -> login

	failures *failThrottle
	bcrypt   chan struct{} // a token for each bcrypt comparison running
}

// maxGood bounds the verified credentials kept; past it the cache starts
// again.
const maxGood = 1024

// Limits on checking credentials, for each client address (an IPv4
// address or an IPv6 /64) and in all.
const (
	// loginFailureBurst failed logins are allowed at once, then one
	// every loginFailureEvery; beyond, 429 without checking anything.
	loginFailureBurst = 10
	loginFailureEvery = 6 * time.Second
	// maxBcrypt bcrypt comparisons run at once (each costs tens of
	// milliseconds of a core).
	maxBcrypt = 2
	// maxThrottled addresses are remembered; past it the oldest are
	// forgotten, all at once.
	maxThrottled = 10000
)

// compareHash is bcrypt's comparison; tests count its calls.
var compareHash = bcrypt.CompareHashAndPassword

func newAuthenticator(ba *BasicAuth, title string) (*authenticator, error) {
	a := &authenticator{users: map[string]string{}, good: map[[32]byte]string{}, realm: title,
		failures: &failThrottle{m: map[string]*rate.Limiter{}}, bcrypt: make(chan struct{}, maxBcrypt)}
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
	// The dummy hash costs what the users' hashes cost (the highest).
	cost := 0
	for _, h := range a.users {
		if c, err := bcrypt.Cost([]byte(h)); err == nil && c > cost {
			cost = c
		}
	}
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a password"), cost)
	if err != nil {
		return nil, err
	}
	a.dummy = dummy
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

// credentialKey is the cache key of a login, a password and the stored
// hash: changing the user's hash (a new password) invalidates it.
func credentialKey(login, pw, stored string) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s:%s:%s", len(login), login, pw, stored)
	var key [32]byte
	h.Sum(key[:0])
	return key
}

// pageUser returns the login of the request's credentials for a
// read-only page, which shows who is logged in: credentials already
// verified are taken at once; others are verified only if the address
// has no failures to wait out and a bcrypt slot is free at once, so that
// pages cannot be used to make the master run bcrypt without bound. An
// address's failed checks count here too.
func (a *authenticator) pageUser(r *http.Request) (string, bool) {
	login, pw, present := r.BasicAuth()
	if !present {
		return "", false
	}
	stored, known := a.users[login]
	key := credentialKey(login, pw, stored)
	a.mu.Lock()
	_, ok := a.good[key]
	a.mu.Unlock()
	if ok && known {
		return login, true
	}
	login, _, err := a.check(r, false)
	return login, err == nil
}

// user returns the login of the request's valid credentials. present says
// whether the request carried basic credentials at all. err wraps
// errUnauthorized for wrong credentials, errTooMany for an address that
// failed too often (nothing is checked then).
func (a *authenticator) user(r *http.Request) (login string, present bool, err error) {
	return a.check(r, true)
}

// errBusy: every bcrypt slot is taken, and the check would not wait.
var errBusy = errors.New("busy checking other logins")

// check verifies the request's credentials; wait says whether to wait
// for a bcrypt slot, or to give up at once (errBusy).
func (a *authenticator) check(r *http.Request, wait bool) (login string, present bool, err error) {
	login, pw, present := r.BasicAuth()
	if !present {
		return "", false, nil
	}
	stored, known := a.users[login]
	key := credentialKey(login, pw, stored)
	a.mu.Lock()
	_, cached := a.good[key]
	a.mu.Unlock()
	if cached && known {
		return login, true, nil
	}
	addr := clientKey(r)
	if wait := a.failures.wait(addr); wait > 0 {
		return "", true, &retryError{fmt.Errorf("%w from your address: try again in %s", errTooMany, wait.Round(time.Second)), wait}
	}
	if wait {
		select {
		case a.bcrypt <- struct{}{}:
		case <-r.Context().Done():
			return "", true, r.Context().Err()
		}
	} else {
		select {
		case a.bcrypt <- struct{}{}:
		default:
			return "", true, errBusy
		}
	}
	var good bool
	switch {
	case !known:
		compareHash(a.dummy, []byte(pw))
	case isBcrypt(stored):
		good = compareHash([]byte(stored), []byte(pw)) == nil
	case a.plain:
		ps, ss := sha256.Sum256([]byte(pw)), sha256.Sum256([]byte(stored))
		good = subtle.ConstantTimeCompare(ps[:], ss[:]) == 1
		compareHash(a.dummy, []byte(pw)) // as long as a hash
	}
	<-a.bcrypt
	if !good {
		a.failures.failed(addr)
		return "", true, fmt.Errorf("%w: wrong login or password", errUnauthorized)
	}
	a.mu.Lock()
	if len(a.good) >= maxGood {
		clear(a.good)
	}
	a.good[key] = login
	a.mu.Unlock()
	return login, true, nil
}

// clientKey is the address a request comes from, for the throttle: the
// client nginx saw (the last X-Forwarded-For address) when the request
// comes through a proxy on this machine, else the peer's address; an
// IPv6 address counts for its /64.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			host = strings.TrimSpace(parts[len(parts)-1])
		}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if ip = ip.Unmap(); ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// failThrottle rate-limits the failed logins of each address.
type failThrottle struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func (t *failThrottle) limiter(key string) *rate.Limiter {
	l, ok := t.m[key]
	if !ok {
		if len(t.m) >= maxThrottled {
			clear(t.m)
		}
		l = rate.NewLimiter(rate.Every(loginFailureEvery), loginFailureBurst)
		t.m[key] = l
	}
	return l
}

// wait returns how long the address must wait before its next check, or
// 0 if it may be checked now.
func (t *failThrottle) wait(key string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.limiter(key)
	r := l.Reserve()
	d := r.Delay()
	r.Cancel() // only a failure spends a token
	return d
}

// failed spends a token of the address.
func (t *failThrottle) failed(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.limiter(key).Allow()
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
	if access == Nobody {
		return "", fmt.Errorf("%w: %s is turned off", errForbidden, act.name)
	}
	login, present, err := a.auth.user(r)
	switch {
	case err != nil:
		return "", err
	case present:
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
		// Showing a page runs bcrypt only within bounds (pageUser).
		_, ok := a.auth.pageUser(r)
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
