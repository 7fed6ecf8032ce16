// Package webui is Kiln's web application: one http.Handler for a master
// that serves server-rendered pages, a JSON API in the shapes of Buildbot's
// data API (so that scripts written against Buildbot keep working), live
// logs over Server-Sent Events, and the actions that force, stop and
// cancel builds, behind HTTP basic auth and per-action rules.
//
// NewHandler returns the handler for a master and Options; Handler is the
// read-only handler of the zero Options. Server is a ci.Service that
// listens on the master's HTTP address and serves it, with the change hooks
// at /change_hook/<dialect> beside it:
//
//	hash := "$2y$10$..." // htpasswd -nB admin
//	cfg.Services = append(cfg.Services, &webui.Server{Options: webui.Options{
//		Auth:  &webui.BasicAuth{Users: map[string]string{"admin": hash}},
//		Authz: webui.Authz{Force: webui.LoggedIn},
//	}})
//
// # Pages
//
//	/                                          builders and their last build, running builds, pending requests
//	/builders/{name}                           a builder's builds (?page=N), its force form
//	/builders/{name}/builds/{n}                a build: steps, logs (live), source, properties; Master.BuildURL links here
//	                                           (?patch=1: the same, its logs without their lines, for the page's script)
//	/builders/{name}/builds/{n}/steps/{step}/logs/{slug}   one log, whole (up to 20,000 lines; the rest is in the download)
//	/workers                                   workers: connected or not and since when, paused or stopping, admin and
//	                                           host, running builds; the buttons to pause, unpause, stop gracefully, kill
//	/workers/{name}                            a worker, its buttons, and the builds it ran (?page=N)
//	/changes                                   changes, newest first (?page=N)
//	/grid                                      the last changes (tags, for Ideascube) down, builders across (?changes=N);
//	                                           builds made for no change (forced) by revision or branch, as Buildbot's console
//	/login                                     asks the browser for credentials, then goes back (?next=)
//
// Lists of builds (the home page's running builds, a builder's and a
// worker's builds) say where each build comes from (its branch or tag and
// short revision), who asked for it (the owner) or else why (the reason),
// when it started (how long ago; the exact time on hover) and how long it
// took, to the tenth of a second under ten seconds ("4.2 s", "850 ms").
//
// Pages are plain HTML, readable without JavaScript; a small script
// (static/kiln.js) appends log lines as they are stored and updates a page
// in place when what it shows changes. It follows /live (below) and, on
// each "change", fetches the page again: a build's page with ?patch=1, to
// patch its regions (result, state, actions, facts, properties) and its
// steps by their ids, adding the steps and logs it does not show yet and
// following their live logs, but never replacing a log block it shows, so
// that a log a reader opened stays open, scrolled where it was, and goes on
// streaming; other pages put the new <main> in place of theirs, but for
// what the reader may be filling in (the force form). Running durations
// count on each second in the page, from the master's clock (the page's
// data-now).
//
// A log block shows the header lines that start a command's output (the
// command, its folder, argv and environment) folded above the output, so
// that the output is what one sees first. Its lines are numbered; a click
// on a number links to the line (#L12 on the log's page, #log-ID-L12 on a
// build's page), and a page loaded with such a link scrolls to the line and
// highlights it. A running log's block follows the end while the reader is
// there: scrolling up stops it, and the block's "follow the end" box says
// so and starts it again. Each log links to its page, to its raw text
// (raw_inline) and to a download (raw).
//
// # Live logs
//
// A running step's log is followed over Server-Sent Events from
// /logs/{id}/live?from=N&keep=K: "lines" events of rendered lines, each
// event's ID the line after its last, so that a browser that reconnects
// (sending that ID as Last-Event-ID) gets every line once; "skip" when the
// stream is more than K lines behind the log (it goes on with the last K);
// "done" once the log is complete. A page keeps as many lines as it showed
// when it was loaded (the last 1,000 on a build page, 20,000 on a log's
// page) and says how many earlier ones it leaves to the log's page and the
// download. Lines are added once per animation frame whatever the number
// of events, in chunks of 100 lines that the browser lays out and paints
// only when in view (but for the last two, where the end is), so that a page keeps up with a log written in bursts
// of thousands of lines a second (BenchmarkBrowser_LiveLog measures it).
//
// Pages follow /live for what changes what they show: with ?build=ID, a
// build's steps starting, ending and changing state, its state and end, a
// log added to a running step, and its worker going silent or answering
// again; with ?builder=ID, a builder's builds (starting, ending, changing
// state) and requests; otherwise builds, requests, changes and workers.
// Each is told as a "change" event, its data the type of the event (as
// ci.Event names it: "step.started", "build.changed"...) that started a
// burst: what a page shows the structure of is told within 200 ms, state
// strings (build.changed, step.changed, which a running step may change at
// every line it reads) at most about once a second, so that a page fetching
// itself on each event does so at most that often.
//
// Pages fit a narrow window (500 px, a phone's): lists become one block
// per row, other wide tables scroll in their own box, long words (tags,
// paths, property values) wrap; TestBrowser_Layout checks that no page
// scrolls sideways, and with WEBUI_SCREENSHOTS=folder saves screenshots of
// the pages, wide and narrow, light and dark. The colours follow the
// system's light or dark scheme (prefers-color-scheme).
//
// Results have Buildbot's colours: success
// green, warnings orange, failure red, skipped light blue, exception
// purple, retry and cancelled pink, running yellow. Everything from outside
// (branch names, commit messages, property values, log lines) is escaped;
// ANSI colour codes in logs become classes of spans after the text is
// escaped. A content security policy allows only the application's own
// scripts and styles. Pages never load every build: lists are read a page
// at a time, and totals are counted on indexes.
//
// # API
//
//	GET /api/v2/                                   the collections at the root (rootlinks)
//	GET /api/v2/application.spec                   every GET endpoint, in Buildbot's notation, and its type
//	GET /api/v2/builders[/{id or name}]            builders
//	GET /api/v2/builders/{b}/builds[/{number}[/changes|/properties|/data]]
//	GET /api/v2/builders/{b}/builds/{number}/steps[/{number or name}[/logs[/{slug}[/contents|/raw|/raw_inline]]]]
//	GET /api/v2/builders/{b}/buildrequests         a builder's requests
//	GET /api/v2/builders/{b}/forceschedulers       the force schedulers of a builder
//	GET /api/v2/builders/{b}/workers[/{id or name}]   the workers configured on a builder
//	GET /api/v2/builders/{b}/masters[/{id}]        the masters (every builder is on all)
//	GET /api/v2/builds[/{id}]                      builds (?property= names the properties each carries; "*" all)
//	GET /api/v2/builds/{id}/changes                the changes a build was made for (its buildset's)
//	GET /api/v2/builds/{id}/properties             its properties, one object of name: [value, source]
//	GET /api/v2/builds/{id}/steps[/{number or name}[/logs[/{slug}[/contents|/raw|/raw_inline]]]]
//	GET /api/v2/steps/{id}[/logs[/{slug}[/contents|/raw|/raw_inline]]]
//	GET /api/v2/logs/{id}[/contents|/raw|/raw_inline]   a log; its lines (?offset= &limit=); a download; its text
//	GET /api/v2/workers[/{id or name}[/builds]]    workers (never their environment); the builds one ran
//	GET /api/v2/buildrequests[/{id}[/builds]]      requests; the builds of one
//	GET /api/v2/buildsets[/{id}[/properties]]      buildsets with their source stamps; what one was submitted with
//	GET /api/v2/changes[/{id}[/builds]]            changes; the builds made for one
//	GET /api/v2/sourcestamps[/{id}[/changes]]      source stamps; the changes of one
//	GET /api/v2/forceschedulers[/{name}]           force schedulers and their fields (all_fields)
//	GET /api/v2/schedulers[/{id}]                  the configured schedulers, by place in the configuration
//	GET /api/v2/masters[/{id}[/builders[/{b}[/workers[/{w}]]]|/workers[/{w}]|/schedulers[/{id}]|/changesources]]
//	                                               the masters sharing the database, active or not, with
//	                                               their last heartbeat (a master alone: itself, ID 1); what
//	                                               runs in them (the configuration the masters share)
//	GET /api/v2/changesources[/{id}]               none: changes come from the change hooks
//	GET /api/v2/builds/{id}/data[/{name}[/value]]  none: Kiln's steps keep no build data
//	GET /api/v2/test_result_sets[/{id}[/results|/raw_results]], /builders/{b}/test_result_sets,
//	    /builds/{id}[/steps/{step}]/test_result_sets, /steps/{id}/test_result_sets
//	                                               the test results steps recorded (steps.JUnit); no raw results
//	GET /api/v2/builders/{b}/test_names, /builders/{b}/test_code_paths
//	                                               a builder's distinct test names and code paths (strings)
//
// Where Kiln keeps nothing of a kind, its lists answer an empty list in
// Buildbot's shape, under a parent that exists (a missing build is 404).
//
// Answers are {"<collection>": [...], "meta": {"total": N}}, as Buildbot's;
// one record is a list of one with "meta": {}.
// Lists answer DefaultListLimit items unless ?limit= says otherwise, and
// never more than MaxListLimit (meta.total counts them all, to page with
// ?offset=); a log's /contents at most MaxLogChunk lines (/raw streams the
// whole log). Every list, nested ones included, takes Buildbot's result
// spec, on any field of its items (see resultSpec):
//
//	?<field>__<op>=value     op one of eq ne lt le gt ge in notin contains; ?<field>=value is eq;
//	                         several values (repeated; comma-separated for in, notin) match any (ne, notin: none)
//	?order=-number&order=name   several orders, "-" first for descending; null first
//	?limit= &offset=         the page
//	?field=name&field=...    only those fields of each item
//
// Values are read as the field's JSON type (numbers, true/false, strings);
// contains keeps strings holding the value and lists holding it, and ?tags=x
// keeps the lists that hold x. A null field matches only ne and notin. The
// store applies the equality filters it indexes (builderid, workerid,
// complete, claimed, buildsetid) and the order by ID; any other filter or
// order reads the store's selection in pages and keeps only the requested
// window, which may not pass offset+limit = 20,000. Times are Unix seconds; fields of unfinished records
// are null. Errors answer {"error": "<one line>"}: 400 for a bad request,
// 404 for a missing record, 409 for a record in the wrong state.
//
// Beyond Buildbot's fields: while a connected worker is silent (it owes an
// answer; see ci.SilenceWatcher), the worker has silent_since and lost_at,
// and each build it runs worker_silent_since and retry_at: when the worker
// will be declared lost and the build end as RETRY, to be built again,
// unless it answers. The build's page and the workers page say the same.
//
// Writes are Buildbot's JSON-RPC 2.0 control calls, with Content-Type
// application/json:
//
//	POST /api/v2/forceschedulers/{name}   {"jsonrpc": "2.0", "method": "force", "id": 1,
//	                                       "params": {"builderid": 1, "reason": "...", "branch": "...", "<param>": ...}}
//	                                      result [bsid, {"<builderid>": brid}]
//	POST /api/v2/builds/{id}              method "stop", params {"reason": "..."}; result null
//	POST /api/v2/builders/{b}/builds/{n}  method "stop"
//	POST /api/v2/builds/{id}              method "rebuild", params {}; result [bsid, {"<builderid>": brid}]
//	POST /api/v2/builders/{b}/builds/{n}  method "rebuild"
//	POST /api/v2/buildrequests/{id}       method "cancel"; result null
//	POST /api/v2/workers/{id or name}     methods "pause" (params {"reason": "..."}), "unpause",
//	                                      "stop" (no new builds, then shut down once idle),
//	                                      "kill" (disconnected at once, its builds retried); result null
//
// Errors answer {"jsonrpc": "2.0", "id": 1, "error": {"code": C, "message": "..."}}
// with the HTTP status of the error: a bad parameter (named in the message)
// is 400 with code -32602. The owner of a forced build is the logged-in
// user (or "anonymous"), whatever the call says.
//
// The force schedulers are the configuration's schedulers that implement
// ci.ForceScheduler (scheduler.Force, or one of the user's own): each gets
// a form drawn from its ForceParams, and its Force receives what the form
// or the call sends; an error wrapping ci.ErrInvalidForce is a 400.
//
// A rebuild, as Buildbot's, submits the build's builder again with the
// source stamps of the build's buildset (the stored ones: the new build is
// one of the same changes) and that buildset's properties (what its
// scheduler or the force form gave, not what the steps set), its priority
// and its parent; its reason is "rebuild of build #N" and its owner who
// asked. It is allowed where forcing is (Authz.Force). Controlling workers
// is allowed by Authz.Workers (nobody by default); stopping or killing a
// worker that is not connected is a 409.
//
// The pages' forms post to /builders/{b}/force, /builders/{b}/builds/{n}/stop,
// /builders/{b}/builds/{n}/rebuild, /buildrequests/{id}/cancel and
// /workers/{w}/pause|unpause|stop|kill (shown only where Authz.Workers
// allows).
// Forcing and rebuilding from a page lead to the new build's page once it
// started, or, if it has not within a few seconds (no worker is free), to
// the builder's page, where the request waits.
//
// # Authentication, authorization, cross-site requests
//
// Users log in with HTTP basic auth (BasicAuth): their passwords are bcrypt
// hashes, in the configuration or in an htpasswd file of bcrypt entries
// (htpasswd -B); plain passwords are refused unless BasicAuth.AllowPlain is
// set, and are then compared in constant time. Verified credentials are
// remembered (by a hash of them) so that bcrypt runs once per login, not per
// request. Serve the UI over HTTPS (the proxy's job): basic auth sends the
// password with every request.
//
// Authz says who may force (and rebuild), stop and cancel: Nobody (the zero value: the
// action is off), LoggedIn or Anyone. Reading is open to all. A write is
// checked in this order: a cross-site request is refused (403), an action
// that is off is refused (403), and one that needs a login without valid
// credentials gets 401 with WWW-Authenticate (a browser then asks for them
// and sends the form again). Every write goes through net/http's
// CrossOriginProtection (Sec-Fetch-Site, or Origin against Host; the public
// URL's origin is trusted), and the JSON-RPC calls also need Content-Type
// application/json, which a cross-site form cannot send. The pages say what
// the rules decide: a builder's page shows its force form where forcing is
// allowed, says that forcing needs a login only where the rule asks for one
// and the browser has not sent it, and, where forcing is off, names the
// option that turns it on (Options.Authz.Force).
//
// # Behind a reverse proxy
//
// Set MasterConfig.PublicURL to the address users reach, with its path
// ("https://ci.example.org/kiln/"): links and assets are under that path,
// and the handler answers both at that path and at the root, so the proxy
// may pass the path on or strip it. Live logs are long-lived responses that
// must not be buffered. For nginx, in the server block:
//
//	location /kiln/ {
//		proxy_pass http://127.0.0.1:8010/;
//		proxy_http_version 1.1;
//		proxy_set_header Host $http_host;
//		proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
//		proxy_set_header X-Forwarded-Proto $scheme;
//		proxy_set_header Connection "";
//		proxy_buffering off;
//		proxy_cache off;
//		proxy_read_timeout 1h;
//		proxy_send_timeout 1h;
//	}
//
// (Event streams also send X-Accel-Buffering: no, and a comment every 15
// seconds so that idle streams stay open.) Ideascube's site proxies HTTPS
// (port 443) to the master's 8010 at the root: "location /" and a public
// URL of "https://buildbot.ideascube.org/". The test TestNginx runs Debian's nginx
// with these lines.
package webui
