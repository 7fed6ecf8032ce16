package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/kilnci/kiln/ci"
)

// GitMode says how a Git step treats an existing checkout.
type GitMode string

// Modes, as Buildbot's.
const (
	// Incremental updates the existing checkout in place (the default).
	Incremental GitMode = "incremental"
	// Full starts from a clean tree, as Method says.
	Full GitMode = "full"
)

// GitMethod says how a Full checkout gets a clean tree.
type GitMethod string

// Methods of Full mode, as Buildbot's.
const (
	// Fresh removes every file git does not track, ignored ones included
	// (git clean -f -f -d -x), then updates. The default.
	Fresh GitMethod = "fresh"
	// Clean removes untracked files but keeps ignored ones
	// (git clean -f -f -d), then updates.
	Clean GitMethod = "clean"
	// Clobber removes the whole folder and clones again.
	Clobber GitMethod = "clobber"
	// Copy updates a checkout kept in the "source" folder beside the
	// working folder, then copies it over a removed working folder.
	Copy GitMethod = "copy"
)

// Git checks out a git repository on the worker, as Buildbot's Git step:
// the branch and revision come from the build's source stamp unless set
// here, and the revision checked out is stored in the property
// "got_revision". Like Buildbot's source steps, a failing Git step halts
// the build unless its options say to warn or ignore the failure.
//
// Branch and revision names come from outside (webhooks); they are passed
// to git as single arguments, and names git could read as options (a
// leading "-") or that git itself refuses are rejected.
type Git struct {
	ci.StepOptions
	// RepoURL is the repository to clone; a string or a ci.Renderable.
	// Required.
	RepoURL any
	// Branch is the branch (or tag) to check out; when nil, the source
	// stamp's branch, else the remote's HEAD.
	Branch any
	// Mode is Incremental (the default) or Full; Method applies to Full
	// (Fresh if empty).
	Mode   GitMode
	Method GitMethod
	// Shallow fetches only the newest commit (depth 1), or Depth commits
	// when Depth is set.
	Shallow bool
	Depth   int
	// Submodules updates the repository's submodules after checkout.
	Submodules bool
	// AlwaysUseLatest checks out the branch's newest commit even when the
	// source stamp names a revision.
	AlwaysUseLatest bool
	// Codebase selects the source stamp the step uses ("" is the default
	// codebase); with a codebase, got_revision is a map by codebase.
	Codebase string
	// Workdir is as for ShellCommand (DefaultWorkdir if nil).
	Workdir any
	// Env and Timeout apply to each git command, as for ShellCommand.
	Env     map[string]any
	Timeout time.Duration
}

// Options implements ci.Step: named "git" by default, halting the build on
// failure unless WarnOnFailure or IgnoreFailure is set.
func (g *Git) Options() ci.StepOptions {
	o := g.StepOptions
	if o.Name == "" {
		o.Name = "git"
	}
	if !o.WarnOnFailure && !o.IgnoreFailure {
		o.HaltOnFailure = true
	}
	return o
}

// Validate checks the configuration.
func (g *Git) Validate() error {
	var errs []error
	if g.RepoURL == nil {
		errs = append(errs, errors.New("RepoURL is not set"))
	}
	errs = append(errs, checkField("RepoURL", g.RepoURL), checkField("Branch", g.Branch), checkField("Workdir", g.Workdir))
	switch g.Mode {
	case "", Incremental:
		if g.Method != "" {
			errs = append(errs, fmt.Errorf("Method %q applies only to Mode Full", g.Method))
		}
	case Full:
		switch g.Method {
		case "", Fresh, Clean, Clobber, Copy:
		default:
			errs = append(errs, fmt.Errorf("Method %q is not fresh, clean, clobber or copy", g.Method))
		}
	default:
		errs = append(errs, fmt.Errorf("Mode %q is not incremental or full", g.Mode))
	}
	if g.Depth < 0 {
		errs = append(errs, fmt.Errorf("Depth is negative (%d)", g.Depth))
	}
	return errors.Join(errs...)
}

// gitRun is one run of a Git step.
type gitRun struct {
	g        *Git
	s        *ci.StepRun
	stdio    *ci.LogWriter
	url      string
	branch   string
	revision string
	env      map[string]any
	timeout  any
}

// StartLogs names the log g adds as it runs, stdio (ci.StartLogger): the
// master stores it with the step's start.
func (g *Git) StartLogs() []ci.Log { return []ci.Log{{Name: "stdio", Type: ci.LogStream}} }

// Run implements ci.Step.
func (g *Git) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	url, err := s.RenderString(ctx, g.RepoURL)
	if err != nil {
		return ci.Exception, fmt.Errorf("repourl: %w", err)
	}
	if url == "" {
		return ci.Exception, errors.New("repourl is empty")
	}
	workdir, err := renderWorkdir(ctx, s, g.Workdir)
	if err != nil {
		return ci.Exception, err
	}
	ss, _ := s.SourceStamp(g.Codebase)
	branch := ss.Branch
	if g.Branch != nil {
		if branch, err = s.RenderString(ctx, g.Branch); err != nil {
			return ci.Exception, fmt.Errorf("branch: %w", err)
		}
	}
	if branch == "" {
		branch = "HEAD"
	}
	revision := ss.Revision
	if g.AlwaysUseLatest {
		revision = ""
	}
	stdio, err := s.AddLog(ctx, "stdio", ci.LogStream)
	if err != nil {
		return ci.Exception, err
	}
	for _, n := range []struct{ what, name string }{{"branch", branch}, {"revision", revision}} {
		if err := checkRefName(n.name); err != nil {
			stdio.AddHeader(fmt.Sprintf("refusing %s %q: %v\n", n.what, n.name, err))
			s.SetStateString("bad " + n.what)
			return ci.Failure, nil
		}
	}
	env, err := renderEnv(ctx, s, g.Env)
	if err != nil {
		return ci.Exception, err
	}
	timeout := secs(g.Timeout)
	if g.Timeout == 0 {
		timeout = secs(DefaultTimeout)
	}
	r := &gitRun{g: g, s: s, stdio: stdio, url: url, branch: branch, revision: revision, env: env, timeout: timeout}
	s.SetStateString("updating")

	var res ci.Result
	switch {
	case g.Mode == Full && g.Method == Clobber:
		res, err = r.clobber(ctx, workdir)
	case g.Mode == Full && g.Method == Copy:
		res, err = r.copy(ctx, workdir)
	case g.Mode == Full && g.Method == Clean:
		res, err = r.update(ctx, workdir, []string{"clean", "-f", "-f", "-d"})
	case g.Mode == Full:
		res, err = r.update(ctx, workdir, []string{"clean", "-f", "-f", "-d", "-x"})
	default:
		res, err = r.update(ctx, workdir, nil)
	}
	if err != nil || res != ci.Success {
		s.SetStateString("update failed")
		return res, err
	}
	if g.Submodules {
		if res, err := r.git(ctx, workdir, "submodule", "update", "--init", "--recursive"); err != nil || res != 0 {
			s.SetStateString("submodule update failed")
			return failed(res, err)
		}
	}
	got, rc, err := r.gitOutput(ctx, workdir, "rev-parse", "HEAD")
	if err != nil || rc != 0 {
		return failed(rc, err)
	}
	got = strings.TrimSpace(got)
	if g.Codebase == "" {
		s.SetProperty("got_revision", got, "Git")
	} else {
		m := map[string]any{}
		if prev, ok := s.Property("got_revision"); ok {
			if pm, ok := prev.(map[string]any); ok {
				for k, v := range pm {
					m[k] = v
				}
			}
		}
		m[g.Codebase] = got
		s.SetProperty("got_revision", m, "Git")
	}
	short := got
	if len(short) > 12 {
		short = short[:12]
	}
	s.SetStateString("update " + short)
	return ci.Success, nil
}

// failed turns a git command's outcome into the step's.
func failed(rc int, err error) (ci.Result, error) {
	if err != nil {
		return ci.Exception, err
	}
	return ci.Failure, nil
}

// checkRefName refuses branch and revision names that git could take for
// options, or that git's own ref rules refuse.
func checkRefName(name string) error {
	switch {
	case name == "":
		return nil
	case strings.HasPrefix(name, "-"):
		return errors.New("it starts with '-'")
	case strings.Contains(name, ".."), strings.Contains(name, "@{"), strings.HasSuffix(name, ".lock"), strings.HasSuffix(name, "/"), strings.HasSuffix(name, "."):
		return errors.New("git does not allow such a name")
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune("~^:?*[\\", r) {
			return fmt.Errorf("it contains %q", r)
		}
	}
	return nil
}

// update brings the checkout in dir to the wanted revision: cloning into an
// empty folder, clobbering one that is not a checkout, cleaning first with
// clean (a git clean command) if given.
func (r *gitRun) update(ctx context.Context, dir string, clean []string) (ci.Result, error) {
	state, err := r.dirState(ctx, dir)
	if err != nil {
		return ci.Exception, err
	}
	switch state {
	case "clobber":
		if res, err := r.rmdir(ctx, dir); err != nil || res != ci.Success {
			return res, err
		}
		fallthrough
	case "clone":
		if rc, err := r.git(ctx, dir, "init", "--quiet"); err != nil || rc != 0 {
			return failed(rc, err)
		}
	case "update":
		if clean != nil {
			if rc, err := r.git(ctx, dir, clean...); err != nil || rc != 0 {
				return failed(rc, err)
			}
		}
	}
	return r.fetchCheckout(ctx, dir)
}

// dirState says whether dir holds a checkout ("update"), other files
// ("clobber") or nothing ("clone"), as Buildbot decides.
func (r *gitRun) dirState(ctx context.Context, dir string) (string, error) {
	cmd := &ci.RemoteCommand{Name: "listdir", Args: map[string]any{"dir": dir}}
	err := r.s.RunCommand(ctx, cmd)
	var ce *ci.CommandError
	if err != nil && !errors.As(err, &ce) {
		return "", err
	}
	files, _ := cmd.Updates["files"].([]string)
	if raw, ok := cmd.Updates["files"].([]any); ok {
		for _, f := range raw {
			if s, ok := f.(string); ok {
				files = append(files, s)
			}
		}
	}
	switch {
	case len(files) == 0:
		return "clone", nil
	case contains(files, ".git"):
		return "update", nil
	}
	return "clobber", nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// fetchCheckout fetches the branch (unless the revision is already there)
// and checks out the revision or the fetched head, as Buildbot does.
func (r *gitRun) fetchCheckout(ctx context.Context, dir string) (ci.Result, error) {
	fetch := true
	if r.revision != "" {
		rc, err := r.git(ctx, dir, "cat-file", "-e", r.revision+"^{commit}")
		if err != nil {
			return ci.Exception, err
		}
		fetch = rc != 0
	}
	if fetch {
		args := []string{"fetch", "-f", "-t"}
		if depth := r.depth(); depth > 0 {
			args = append(args, fmt.Sprintf("--depth=%d", depth))
		}
		args = append(args, "--", r.url, r.branch)
		if rc, err := r.git(ctx, dir, args...); err != nil || rc != 0 {
			return failed(rc, err)
		}
	}
	rev := "FETCH_HEAD"
	if r.revision != "" {
		rev = r.revision
	}
	rc, err := r.git(ctx, dir, "checkout", "-f", rev, "--")
	if err != nil {
		return ci.Exception, err
	}
	if rc != 0 && r.revision != "" && r.depth() > 0 {
		// A shallow fetch of the branch may not reach the revision: fetch
		// the revision itself.
		args := []string{"fetch", "-f", "-t", fmt.Sprintf("--depth=%d", r.depth()), "--", r.url, r.revision}
		if rc, err := r.git(ctx, dir, args...); err != nil || rc != 0 {
			return failed(rc, err)
		}
		rc, err = r.git(ctx, dir, "checkout", "-f", "FETCH_HEAD", "--")
		if err != nil {
			return ci.Exception, err
		}
	}
	if rc != 0 {
		return ci.Failure, nil
	}
	if r.branch != "HEAD" {
		// Name the local branch as Buildbot does; a failure is not fatal.
		if _, err := r.git(ctx, dir, "checkout", "-B", r.branch); err != nil {
			return ci.Exception, err
		}
	}
	return ci.Success, nil
}

func (r *gitRun) depth() int {
	switch {
	case r.g.Depth > 0:
		return r.g.Depth
	case r.g.Shallow:
		return 1
	}
	return 0
}

// clobber removes the folder and clones again.
func (r *gitRun) clobber(ctx context.Context, dir string) (ci.Result, error) {
	if res, err := r.rmdir(ctx, dir); err != nil || res != ci.Success {
		return res, err
	}
	return r.update(ctx, dir, nil)
}

// copy updates the "source" folder and copies it over the working folder.
func (r *gitRun) copy(ctx context.Context, dir string) (ci.Result, error) {
	if res, err := r.update(ctx, "source", nil); err != nil || res != ci.Success {
		return res, err
	}
	if res, err := r.rmdir(ctx, dir); err != nil || res != ci.Success {
		return res, err
	}
	cmd := &ci.RemoteCommand{Name: "cpdir", Args: map[string]any{"fromdir": "source", "todir": dir, "logEnviron": false, "timeout": r.timeout}, Stdio: r.stdio}
	return commandResult(cmd, r.s.RunCommand(ctx, cmd))
}

func (r *gitRun) rmdir(ctx context.Context, dir string) (ci.Result, error) {
	cmd := &ci.RemoteCommand{Name: "rmdir", Args: map[string]any{"dir": dir, "logEnviron": false, "timeout": r.timeout}, Stdio: r.stdio}
	return commandResult(cmd, r.s.RunCommand(ctx, cmd))
}

// git runs one git command in dir and returns its exit code.
func (r *gitRun) git(ctx context.Context, dir string, args ...string) (int, error) {
	cmd := r.gitCommand(dir, args)
	cmd.Stdio = r.stdio
	err := r.s.RunCommand(ctx, cmd)
	var ce *ci.CommandError
	if errors.As(err, &ce) {
		r.stdio.AddHeader(ce.Error() + "\n")
		return 1, nil
	}
	return cmd.RC, err
}

// gitOutput runs one git command in dir and returns its standard output.
func (r *gitRun) gitOutput(ctx context.Context, dir string, args ...string) (string, int, error) {
	cmd := r.gitCommand(dir, args)
	cmd.Stdio = r.stdio
	var out strings.Builder
	cmd.OnUpdate = func(key string, value any) {
		if key == ci.UpdateStdout {
			s, _ := value.(string)
			out.WriteString(s)
		}
	}
	err := r.s.RunCommand(ctx, cmd)
	var ce *ci.CommandError
	if errors.As(err, &ce) {
		r.stdio.AddHeader(ce.Error() + "\n")
		return "", 1, nil
	}
	return out.String(), cmd.RC, err
}

func (r *gitRun) gitCommand(dir string, args []string) *ci.RemoteCommand {
	argv := append([]any{"git"}, toAnyList(args)...)
	return &ci.RemoteCommand{
		Name: "shell",
		Args: map[string]any{
			"workdir":         dir,
			"env":             r.env,
			"want_stdout":     true,
			"want_stderr":     true,
			"logfiles":        map[string]any{},
			"timeout":         r.timeout,
			"maxTime":         nil,
			"sigtermTime":     nil,
			"usePTY":          false,
			"logEnviron":      false,
			"initial_stdin":   nil,
			"interruptSignal": "KILL",
			"command":         argv,
		},
	}
}
