package report

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnci/kiln/ci"
)

// Reconnection delays of IRC.
const (
	DefaultIRCMinBackoff = time.Second
	DefaultIRCMaxBackoff = 5 * time.Minute
)

// IRCNotifyEvents are the events IRC.Notify may name, Buildbot's:
// "started"; "finished" (every finished build); a result ("success",
// "warnings", "failure", "exception", "cancelled", "retry", "skipped");
// "problem" (a failure after a build that did not fail), "recovery" (a
// success after one that did not succeed), "worse" and "better" (a result
// more or less severe than the previous build's).
var IRCNotifyEvents = []string{
	"started", "finished",
	"success", "warnings", "failure", "exception", "cancelled", "retry", "skipped",
	"problem", "recovery", "worse", "better",
}

// errNotConnected is returned by Report while IRC has no channel to speak
// in: the master tries the report again later.
var errNotConnected = errors.New("not connected to IRC, or no channel joined")

// IRC announces builds on IRC channels and answers a few commands, as
// Buildbot's IRC reporter. It is both a ci.Reporter and a ci.Service: list
// it in MasterConfig.Reporters and the master also runs its connection:
//
//	bot := &report.IRC{Addr: "irc.libera.chat:6697", TLS: true, Nick: "ideascube-ci", Channels: []string{"#ideascube"}}
//	cfg.Reporters = append(cfg.Reporters, bot)
//
// Run connects, registers, joins the channels, and reconnects with growing
// delays (MinBackoff doubling up to MaxBackoff) whenever the connection is
// lost, until the master stops. Announcements use mIRC colours for
// results, as Buildbot's do. While it is not connected, Report returns an
// error, and the master tries again later.
//
// It answers, in a channel when addressed by its nick ("kiln: status pkg")
// or in a private message:
//
//	status [builder]   whether the builder (or each) is building, and its last result
//	last [builder]     the last finished build of the builder (or each), with its page
//	help               the commands
//
// Text from outside that it repeats (branch names, state strings) has its
// line breaks and control characters replaced with spaces, so that it
// cannot end an IRC line and send commands of its own.
type IRC struct {
	// Addr is the server, host:port. Required.
	Addr string
	// TLS connects with TLS, configured by TLSConfig (one for Addr's host
	// if nil).
	TLS       bool
	TLSConfig *tls.Config
	// Nick is the bot's nick. Required. When the server has it taken, "_"
	// is added.
	Nick string
	// Password is the server's password (PASS), if it has one.
	Password string
	// NickServPassword, when set, identifies the nick to NickServ once
	// connected.
	NickServPassword string
	// Channels are joined once connected ("#ideascube"). Required.
	Channels []string
	// Notify names the events announced (IRCNotifyEvents);
	// {"started", "finished"} if nil.
	Notify []string
	// NoColors leaves the mIRC colour codes out.
	NoColors bool
	// MinBackoff and MaxBackoff bound the delay before reconnecting;
	// DefaultIRCMinBackoff and DefaultIRCMaxBackoff if zero.
	MinBackoff, MaxBackoff time.Duration

	running atomic.Bool
	master  atomic.Pointer[ci.Master]
	mu      sync.Mutex
	sess    *ircSession // the registered connection, nil if none
}

var (
	_ ci.Reporter = (*IRC)(nil)
	_ ci.Service  = (*IRC)(nil)
)

// Validate reports configuration errors; the master calls it when it
// starts.
func (i *IRC) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(i.Addr); err != nil {
		errs = append(errs, fmt.Errorf("Addr %q is not host:port", i.Addr))
	}
	if i.Nick == "" || strings.ContainsAny(i.Nick, " ,*?!@:#&\x00\r\n") {
		errs = append(errs, fmt.Errorf("Nick %q is not a valid nick", i.Nick))
	}
	if len(i.Channels) == 0 {
		errs = append(errs, errors.New("Channels is empty"))
	}
	for _, c := range i.Channels {
		if c == "" || !strings.ContainsRune("#&+!", rune(c[0])) || strings.ContainsAny(c, " ,\a\x00\r\n") {
			errs = append(errs, fmt.Errorf("channel %q is not a valid channel name", c))
		}
	}
	for _, e := range i.Notify {
		if !slices.Contains(IRCNotifyEvents, e) {
			errs = append(errs, fmt.Errorf("Notify: unknown event %q", e))
		}
	}
	if strings.ContainsAny(i.Password+i.NickServPassword, "\x00\r\n") {
		errs = append(errs, errors.New("a password has a line break"))
	}
	if i.MinBackoff < 0 || i.MaxBackoff < 0 || (i.MaxBackoff != 0 && i.MinBackoff > i.MaxBackoff) {
		errs = append(errs, errors.New("MinBackoff and MaxBackoff must be positive, MinBackoff the smaller"))
	}
	return errors.Join(errs...)
}

// Run implements ci.Service: it keeps the bot connected until ctx ends.
func (i *IRC) Run(ctx context.Context, m *ci.Master) error {
	if err := i.Validate(); err != nil {
		return fmt.Errorf("irc: %w", err)
	}
	if !i.running.CompareAndSwap(false, true) {
		return errors.New("irc: already running (listed twice in Services?)")
	}
	defer i.running.Store(false)
	i.master.Store(m)
	log := m.Logger().With("reporter", "irc", "server", i.Addr)
	minB, maxB := i.MinBackoff, i.MaxBackoff
	if minB == 0 {
		minB = DefaultIRCMinBackoff
	}
	if maxB == 0 {
		maxB = max(DefaultIRCMaxBackoff, minB)
	}
	backoff := minB
	for {
		registered, err := i.connect(ctx, m, log)
		if ctx.Err() != nil {
			return nil
		}
		if registered {
			backoff = minB
		}
		log.Warn("IRC connection lost; reconnecting", "in", backoff, "err", err)
		if ci.Sleep(ctx, m.Clock(), backoff) != nil {
			return nil
		}
		backoff = min(backoff*2, maxB)
	}
}

// Report implements ci.Reporter: it announces the build on every joined
// channel, if Notify asks for it.
func (i *IRC) Report(ctx context.Context, r *ci.Report) error {
	if !i.wants(ctx, r) {
		return nil
	}
	s := i.session()
	if s == nil {
		return fmt.Errorf("irc %s: %w", i.Addr, errNotConnected)
	}
	channels := s.channels()
	if len(channels) == 0 {
		return fmt.Errorf("irc %s: %w", i.Addr, errNotConnected)
	}
	line := i.announcement(r)
	for _, c := range channels {
		if err := s.privmsg(ctx, c, line); err != nil {
			return fmt.Errorf("irc %s: %w", i.Addr, err)
		}
	}
	return nil
}

func (i *IRC) session() *ircSession {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.sess
}

func (i *IRC) setSession(s *ircSession) {
	i.mu.Lock()
	i.sess = s
	i.mu.Unlock()
}

func (i *IRC) notify(event string) bool {
	if i.Notify == nil {
		return event == "started" || event == "finished"
	}
	return slices.Contains(i.Notify, event)
}

// severity orders results as Buildbot's IRC bot does for worse and better.
var severity = []ci.Result{ci.Skipped, ci.Success, ci.Warnings, ci.Failure, ci.Cancelled, ci.Exception}

// wants says whether r is to be announced.
func (i *IRC) wants(ctx context.Context, r *ci.Report) bool {
	if r.Event != ci.BuildFinished {
		return i.notify("started")
	}
	res := r.Build.Results
	if i.notify("finished") || i.notify(res.String()) {
		return true
	}
	if !i.notify("problem") && !i.notify("recovery") && !i.notify("worse") && !i.notify("better") {
		return false
	}
	prev, ok := i.previous(ctx, r.Build)
	if !ok {
		return false
	}
	cur, was := slices.Index(severity, res), slices.Index(severity, prev.Results)
	switch {
	case i.notify("problem") && res == ci.Failure && prev.Results != ci.Failure,
		i.notify("recovery") && res == ci.Success && prev.Results != ci.Success,
		i.notify("worse") && cur >= 0 && was >= 0 && cur > was,
		i.notify("better") && cur >= 0 && was >= 0 && cur < was:
		return true
	}
	return false
}

// previous returns the builder's last finished build before b.
func (i *IRC) previous(ctx context.Context, b *ci.Build) (*ci.Build, bool) {
	m := i.master.Load()
	if m == nil {
		return nil, false
	}
	st, err := m.Store(ctx)
	if err != nil {
		return nil, false
	}
	done := true
	builds, _, err := st.ListBuilds(ctx, ci.BuildQuery{BuilderID: b.BuilderID, Complete: &done, Query: ci.Query{Desc: true, Limit: 10}})
	if err != nil {
		return nil, false
	}
	for _, p := range builds {
		if p.ID != b.ID && p.Number < b.Number {
			return p, true
		}
	}
	return nil, false
}

// mIRC colour codes of results, Buildbot's.
var ircColors = map[ci.Result]int{
	ci.Success:   3,  // green
	ci.Warnings:  8,  // yellow
	ci.Failure:   4,  // red
	ci.Skipped:   12, // royal blue
	ci.Exception: 6,  // purple
	ci.Retry:     11, // light aqua
	ci.Cancelled: 13, // pink
}

// colored wraps text in the colour of a result (two digits, so that text
// starting with a digit is not taken for part of the code).
func (i *IRC) colored(r ci.Result, text string) string {
	c, ok := ircColors[r]
	if i.NoColors || !ok {
		return text
	}
	return fmt.Sprintf("\x03%02d%s\x0f", c, text)
}

// announcement is the line announcing a report: "Build #3 of pkg (v1.0)
// started. <url>", "Build #3 of pkg (v1.0) failed: failed compile. <url>".
func (i *IRC) announcement(r *ci.Report) string {
	s := fmt.Sprintf("Build #%d of %s", r.Build.Number, builderName(r))
	if src := oneLine(sourceSummary(r)); src != "" {
		s += " (" + src + ")"
	}
	if r.Event != ci.BuildFinished {
		s += " started."
	} else {
		s += " " + i.colored(r.Build.Results, describeResult(r.Build.Results))
		if r.Build.Results != ci.Success && r.Build.StateString != "" {
			s += ": " + oneLine(r.Build.StateString)
		}
		s += "."
	}
	if r.URL != "" {
		s += " " + r.URL
	}
	return s
}

// connect runs one connection: it registers, joins, and serves until the
// connection ends. registered says whether the server accepted the bot.
func (i *IRC) connect(ctx context.Context, m *ci.Master, log *slog.Logger) (registered bool, err error) {
	var tlsConfig *tls.Config
	if i.TLS {
		tlsConfig = i.TLSConfig
		if tlsConfig == nil {
			host, _, _ := net.SplitHostPort(i.Addr)
			tlsConfig = &tls.Config{ServerName: host}
		}
	}
	s, err := dialIRC(ctx, i.Addr, tlsConfig, i.Nick, m.Clock())
	if err != nil {
		return false, err
	}
	defer func() {
		i.setSession(nil)
		s.close()
	}()
	stop := context.AfterFunc(ctx, func() { s.quit("master stopping") })
	defer stop()

	if i.Password != "" {
		s.sendRaw("PASS " + i.Password)
	}
	s.sendRaw("NICK " + i.Nick)
	s.sendRaw("USER " + i.Nick + " 0 * :Kiln build announcer")
	go s.keepalive()

	for {
		msg, err := s.read()
		if err != nil {
			return registered, err
		}
		switch msg.command {
		case "PING":
			s.sendRaw("PONG :" + msg.param(0))
		case "001": // RPL_WELCOME
			registered = true
			s.setNick(msg.param(0))
			log.Info("connected to IRC", "nick", s.getNick())
			if i.NickServPassword != "" {
				s.sendRaw("PRIVMSG NickServ :IDENTIFY " + i.NickServPassword)
			}
			for _, c := range i.Channels {
				s.sendRaw("JOIN " + c)
			}
			i.setSession(s)
		case "433", "436": // nick in use, nick collision
			if !registered {
				s.setNick(s.getNick() + "_")
				s.sendRaw("NICK " + s.getNick())
			}
		case "464": // password mismatch
			return registered, errors.New("the server refused the password")
		case "JOIN":
			if strings.EqualFold(prefixNick(msg.prefix), s.getNick()) {
				s.join(msg.param(0))
				log.Info("joined IRC channel", "channel", msg.param(0))
			}
		case "PART":
			if strings.EqualFold(prefixNick(msg.prefix), s.getNick()) {
				s.part(msg.param(0))
			}
		case "KICK":
			if strings.EqualFold(msg.param(1), s.getNick()) {
				s.part(msg.param(0))
				log.Warn("kicked from IRC channel; joining again", "channel", msg.param(0), "by", prefixNick(msg.prefix))
				s.sendRaw("JOIN " + msg.param(0))
			}
		case "NICK":
			if strings.EqualFold(prefixNick(msg.prefix), s.getNick()) {
				s.setNick(msg.param(0))
			}
		case "PRIVMSG":
			i.onPrivmsg(ctx, m, s, msg)
		case "ERROR":
			return registered, fmt.Errorf("server closed the connection: %s", oneLine(msg.param(0)))
		}
	}
}

// ircAnswerTimeout bounds the answer to one command, flood control
// included: an answer that cannot be sent by then is dropped.
const ircAnswerTimeout = 10 * time.Second

var errAnswerTimeout = errors.New("answer not sent within the time allowed")

// onPrivmsg answers a command sent to the bot.
func (i *IRC) onPrivmsg(ctx context.Context, m *ci.Master, s *ircSession, msg ircMessage) {
	target, text := msg.param(0), msg.param(1)
	from := prefixNick(msg.prefix)
	if from == "" || strings.HasPrefix(text, "\x01") { // CTCP
		return
	}
	replyTo := from
	if isChannel(target) {
		rest, ok := addressedTo(text, s.getNick())
		if !ok {
			return
		}
		replyTo, text = target, rest
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t := m.Clock().AfterFunc(ircAnswerTimeout, func() { cancel(errAnswerTimeout) })
	defer t.Stop()
	for _, line := range i.command(cctx, m, text) {
		if err := s.privmsg(cctx, replyTo, line); err != nil {
			return
		}
	}
}

// addressedTo returns the rest of a channel message that starts with the
// bot's nick followed by ':' or ','.
func addressedTo(text, nick string) (string, bool) {
	if len(text) <= len(nick) || !strings.EqualFold(text[:len(nick)], nick) {
		return "", false
	}
	if c := text[len(nick)]; c != ':' && c != ',' {
		return "", false
	}
	return strings.TrimSpace(text[len(nick)+1:]), true
}

const ircHelp = "Commands: status [builder] (is it building, and how did it last end), last [builder] (its last finished build), help."

// command returns the answer to a command, a line or more.
func (i *IRC) command(ctx context.Context, m *ci.Master, text string) []string {
	args := strings.Fields(text)
	if len(args) == 0 {
		return []string{ircHelp}
	}
	var names []string
	if len(args) > 1 {
		names = args[1:]
	} else {
		for _, b := range m.Config().Builders {
			names = append(names, b.Name)
		}
	}
	if len(names) > 10 {
		names = names[:10]
	}
	var out []string
	switch strings.ToLower(args[0]) {
	case "help", "commands":
		return []string{ircHelp}
	case "status":
		for _, n := range names {
			out = append(out, i.status(ctx, m, n))
		}
	case "last":
		for _, n := range names {
			out = append(out, i.last(ctx, m, n))
		}
	default:
		return []string{"Unknown command " + truncate(oneLine(args[0]), 40) + ". " + ircHelp}
	}
	return out
}

func (i *IRC) status(ctx context.Context, m *ci.Master, name string) string {
	id, ok := m.BuilderID(name)
	if !ok {
		return "No such builder: " + truncate(oneLine(name), 60) + "."
	}
	st, err := m.Store(ctx)
	if err != nil {
		return name + ": unknown (the master is not running)."
	}
	running := false
	builds, _, err := st.ListBuilds(ctx, ci.BuildQuery{BuilderID: id, Complete: &running})
	if err != nil {
		return name + ": unknown (could not read the builds)."
	}
	if len(builds) > 0 {
		var parts []string
		for _, b := range builds {
			p := fmt.Sprintf("#%d", b.Number)
			if b.StateString != "" {
				p += " (" + oneLine(b.StateString) + ")"
			}
			parts = append(parts, p)
		}
		return name + ": building " + strings.Join(parts, ", ") + "."
	}
	b, ok := lastBuild(ctx, st, id)
	if !ok {
		return name + ": idle, no build yet."
	}
	return fmt.Sprintf("%s: idle, last build #%d %s %s ago.", name, b.Number,
		i.colored(b.Results, describeResult(b.Results)), ago(m.Now().Sub(b.CompleteAt)))
}

func (i *IRC) last(ctx context.Context, m *ci.Master, name string) string {
	id, ok := m.BuilderID(name)
	if !ok {
		return "No such builder: " + truncate(oneLine(name), 60) + "."
	}
	st, err := m.Store(ctx)
	if err != nil {
		return name + ": unknown (the master is not running)."
	}
	b, ok := lastBuild(ctx, st, id)
	if !ok {
		return name + ": no build yet."
	}
	s := fmt.Sprintf("%s: last build #%d %s (%s ago)", name, b.Number,
		i.colored(b.Results, describeResult(b.Results)), ago(m.Now().Sub(b.CompleteAt)))
	if b.Results != ci.Success && b.StateString != "" {
		s += ": " + oneLine(b.StateString)
	}
	s += "."
	if u := m.BuildURL(name, b.Number); u != "" {
		s += " " + u
	}
	return s
}

func lastBuild(ctx context.Context, st ci.Store, builderID int64) (*ci.Build, bool) {
	done := true
	builds, _, err := st.ListBuilds(ctx, ci.BuildQuery{BuilderID: builderID, Complete: &done, Query: ci.Query{Desc: true, Limit: 1}})
	if err != nil || len(builds) == 0 {
		return nil, false
	}
	return builds[0], true
}
