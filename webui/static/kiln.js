// Kiln's live updates. The pages work without JavaScript; this follows
// running logs (appending their lines as they are stored), numbers log
// lines and links to them, counts running durations on, and updates a
// page in place when what it shows changes, over Server-Sent Events.
"use strict";
(function () {
	// The bounds the server uses too: chunkLines is logChunk in ansi.go,
	// maxHead is maxHead in logview.go.
	var chunkLines = 100, maxHead = 200;

	// The master's clock, which running durations count from: the page
	// says what time it was made at.
	var skew = 0;
	function setClock(doc) {
		var now = +doc.body.dataset.now;
		if (now) skew = now - Date.now();
	}
	setClock(document);

	document.querySelectorAll("pre.log-lines").forEach(setup);
	showLine(true);
	window.addEventListener("hashchange", function () { showLine(true); });
	startTicking();

	// Logs.

	// setup numbers a log block's lines, makes their numbers links, and
	// follows the log if it runs.
	function setup(pre) {
		var head = pre.parentNode.querySelector("pre.log-head");
		var lines = pre.getElementsByClassName("ln");
		numberChunks(pre.firstElementChild, +pre.dataset.next - lines.length);
		pre.classList.add("numbered");
		pre.addEventListener("click", linkLine);
		if (head) {
			head.classList.add("numbered");
			head.addEventListener("click", linkLine);
		}
		if (pre.dataset.stream) follow(pre, head);
	}

	// numberChunks gives the lines of chunk and the chunks after it their
	// numbers, n being the index of chunk's first line in the log: each
	// chunk starts its own count (the stylesheet's counter), since the
	// browser counts within a chunk it does not lay out.
	function numberChunks(chunk, n) {
		for (; chunk; chunk = chunk.nextElementSibling) {
			var first = chunk.firstElementChild;
			if (first) first.style.counterReset = "ln " + n;
			n += chunk.childElementCount;
		}
	}

	// follow appends to a log's block the lines of the running step as the
	// server sends them: rendered and escaped, each ending in "\n". Lines
	// are added once per frame, in one piece, however many events brought
	// them, and the block keeps its last data-keep lines (the earlier ones
	// are on the log's page and in the download): a log written faster than
	// a page can lay it out costs the page the lines it shows, not the lines
	// written. Lines that would be dropped before they are shown are never
	// parsed. While the page is hidden, frames stop and the lines wait,
	// at most twice data-keep of them. The header lines that start a log go
	// to its folded header block (head) until another line comes.
	// The block follows the log's end while its reader is there: scrolling
	// up stops it, and the block's follow box says so and starts it again.
	function follow(pre, head) {
		var keep = +pre.dataset.keep || Infinity;
		var next = +pre.dataset.next || 0;
		var lines = pre.getElementsByClassName("ln");
		var held = lines.length;
		var box = pre.parentNode;
		var earlier = box.querySelector(".log-earlier");
		var count = (pre.closest("details.log") || document).querySelector(".log-count");
		var headOpen = !!head && pre.dataset.headOpen === "true";
		var headLines = +pre.dataset.head || 0;
		// The block scrolls, or the page does (on the log's own page).
		var page = getComputedStyle(pre).maxHeight === "none";
		var scroller = page ? document.scrollingElement : pre;
		var queue = [], queued = 0, reset = false, done = false, frame = 0;

		var following = true;
		var bar = box.querySelector(".log-bar");
		var toggle = bar && bar.querySelector("input");
		if (bar) bar.hidden = false;
		function setFollowing(f) {
			following = f;
			if (toggle) toggle.checked = f;
		}
		function atEnd() {
			return scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 4;
		}
		function toEnd() {
			scroller.scrollTop = scroller.scrollHeight;
		}
		(page ? window : pre).addEventListener("scroll", function () {
			if (!done) setFollowing(atEnd());
		}, {passive: true});
		if (toggle) toggle.addEventListener("change", function () {
			following = toggle.checked;
			if (following) toEnd();
		});
		var details = pre.closest("details.log");
		if (details) details.addEventListener("toggle", function () {
			if (details.open && following) toEnd();
		});
		// A link to a line stops the following of its block.
		pre.kilnUnfollow = function () { setFollowing(false); };

		var url = pre.dataset.stream + "?from=" + next + (keep < Infinity ? "&keep=" + keep : "");
		// On a reconnection the browser sends the last event's ID, the line
		// after the last one received, and the server goes on from there.
		var es = new EventSource(url);
		es.addEventListener("lines", function (ev) {
			var data = ev.data;
			if (headOpen) data = takeHead(data);
			if (data) {
				queue.push(data);
				queued += newlines(data);
			}
			next = +ev.lastEventId;
			if (queued > 2 * keep) trimQueue();
			schedule();
		});
		// The server skipped to a line (the page fell more than data-keep
		// lines behind): the lines that come next do not follow those held.
		es.addEventListener("skip", function (ev) {
			queue = [];
			queued = 0;
			reset = true;
			headOpen = false;
			next = +ev.lastEventId;
			schedule();
		});
		es.addEventListener("done", function () {
			es.close();
			done = true;
			schedule();
		});

		function schedule() {
			if (!frame) frame = requestAnimationFrame(show);
		}

		// takeHead moves the header lines that start s to the head block,
		// and returns the lines after them.
		function takeHead(s) {
			var i = 0;
			while (i < s.length) {
				if (headLines >= maxHead || !s.startsWith('<span class="ln h">', i) ||
					s.startsWith('<span class="ln h"></span>', i) || s.startsWith('<span class="ln h">program finished', i)) {
					headOpen = false;
					break;
				}
				i = lineEnd(s, i);
				headLines++;
			}
			if (i > 0) {
				head.insertAdjacentHTML("beforeend", s.slice(0, i));
				var fold = head.closest("details");
				fold.hidden = false;
				var cmd = fold.querySelector(".cmd");
				if (cmd && !cmd.textContent) cmd.textContent = head.firstElementChild.textContent;
			}
			return s.slice(i);
		}

		// trimQueue drops the queued lines beyond the last keep.
		function trimQueue() {
			var s = queue.join(""), i = 0;
			for (var n = queued - keep; n > 0; n--) i = lineEnd(s, i);
			queue = [s.slice(i)];
			queued = keep;
			reset = true; // the block's lines are older than the queue's first
		}

		function show() {
			frame = 0;
			// After a skip, the block keeps its lines until the next ones come.
			if (reset && queued === 0 && !done) return;
			if (queued > keep) trimQueue();
			if (reset) {
				pre.textContent = "";
				held = 0;
				reset = false;
			}
			if (queued > 0) {
				append(pre, queue.join(""), next - queued);
				held += queued;
				queue = [];
				queued = 0;
			}
			if (held > keep) {
				// Drop the first lines, with the newline after each.
				var r = document.createRange();
				r.setStart(pre, 0);
				r.setEndBefore(lines[held - keep]);
				r.deleteContents();
				held = keep;
				lines[0].style.counterReset = "ln " + (next - held);
			}
			pre.dataset.next = next;
			if (count) count.textContent = next;
			if (earlier) {
				var n = next - held - headLines;
				earlier.dataset.lines = n;
				earlier.querySelector(".n").textContent = n;
				earlier.hidden = n === 0;
			}
			if (following) toEnd();
			if (done) {
				pre.removeAttribute("data-stream");
				pre.dataset.done = "true";
				if (bar) bar.hidden = true;
			}
		}
	}

	// append adds lines to a block in chunks of chunkLines lines, as the
	// server renders them (logChunk in ansi.go), filling the last chunk
	// first: the browser lays out and paints only the chunks in view, and
	// lays out again only those that change. start is the index of the
	// first line in the log.
	function append(pre, s, start) {
		var i = 0, n, filled = 0, last = pre.lastElementChild;
		if (last) {
			for (n = last.childElementCount; n < chunkLines && i < s.length; n++) {
				i = lineEnd(s, i);
				filled++;
			}
			if (i > 0) last.insertAdjacentHTML("beforeend", s.slice(0, i));
		}
		var out = "";
		while (i < s.length) {
			var from = i;
			for (n = 0; n < chunkLines && i < s.length; n++) i = lineEnd(s, i);
			out += '<span class="chunk">' + s.slice(from, i) + "</span>";
		}
		if (out) {
			pre.insertAdjacentHTML("beforeend", out);
			numberChunks(last ? last.nextElementSibling : pre.firstElementChild, start + filled);
		}
	}

	// lineEnd returns where the line of s that starts at i ends, after its
	// "\n".
	function lineEnd(s, i) {
		var j = s.indexOf("\n", i);
		return j < 0 ? s.length : j + 1;
	}

	// newlines counts the "\n" in s.
	function newlines(s) {
		var n = 0;
		for (var i = s.indexOf("\n"); i >= 0; i = s.indexOf("\n", i + 1)) n++;
		return n;
	}

	// Links to lines: #L12 on a log's page, #log-7-L12 on a build's page
	// (log 7's line 12). A click on a line's number links to it.

	// The numbers are in the block's padding, beside the lines' boxes: a
	// click there is the block's, and names the line beside it.
	function linkLine(e) {
		var pre = e.currentTarget, r = pre.getBoundingClientRect();
		var pad = parseFloat(getComputedStyle(pre).paddingLeft);
		if (e.clientX - r.left >= pad) return; // not on a number
		var at = document.elementFromPoint(r.left + pad + 1, e.clientY);
		var ln = at && at.closest(".ln");
		if (!ln || !pre.contains(ln)) return;
		var main = pre.closest("details.log, .log-page").querySelector("pre.log-lines");
		var n = Array.prototype.indexOf.call(pre.getElementsByClassName("ln"), ln);
		if (pre === main) n += +main.dataset.next - main.getElementsByClassName("ln").length;
		history.replaceState(null, "", "#" + main.dataset.anchor + (n + 1));
		showLine(false);
	}

	// showLine highlights the line the address names, and scrolls to it.
	function showLine(scroll) {
		document.querySelectorAll(".ln.hl").forEach(function (el) { el.classList.remove("hl"); });
		var m = /^#(?:log-(\d+)-)?L(\d+)$/.exec(location.hash);
		if (!m) return;
		var box = m[1] ? document.getElementById("log-" + m[1]) : document.querySelector(".log-page");
		if (!box) return;
		var pre = box.querySelector("pre.log-lines"), head = box.querySelector("pre.log-head");
		var i = +m[2] - 1, line = null;
		var headLines = head ? head.getElementsByClassName("ln") : [];
		var lines = pre.getElementsByClassName("ln");
		var first = +pre.dataset.next - lines.length;
		if (i < headLines.length) {
			line = headLines[i];
			head.closest("details").open = true;
		} else if (i >= first && i < first + lines.length) {
			line = lines[i - first];
		}
		if (!line) return;
		if (box.tagName === "DETAILS") box.open = true;
		line.classList.add("hl");
		if (pre.kilnUnfollow) pre.kilnUnfollow();
		if (!scroll) return;
		// Chunks out of view are laid out as they come into it: scroll
		// again once they are.
		line.scrollIntoView({block: "center"});
		requestAnimationFrame(function () {
			requestAnimationFrame(function () { line.scrollIntoView({block: "center"}); });
		});
	}

	// Durations of what runs, counted on each second.

	var ticking = 0;
	function startTicking() {
		if (!ticking && document.querySelector(".dur[data-start]")) ticking = setInterval(tick, 1000);
	}
	function tick() {
		var els = document.querySelectorAll(".dur[data-start]");
		if (!els.length) {
			clearInterval(ticking);
			ticking = 0;
			return;
		}
		var now = Date.now() + skew;
		els.forEach(function (el) { el.textContent = formatDuration(now - +el.dataset.start); });
	}
	// formatDuration formats a running duration as the server does
	// (duration in pages.go).
	function formatDuration(ms) {
		var d = Math.max(0, Math.round(ms / 1000));
		var h = Math.floor(d / 3600), m = Math.floor(d / 60) % 60, s = d % 60;
		var pad = function (n) { return (n < 10 ? "0" : "") + n; };
		if (h > 0) return h + "h " + pad(m) + "m " + pad(s) + "s";
		if (m > 0) return m + "m " + pad(s) + "s";
		return s + "s";
	}

	// The page itself: when the server says what it shows changed, the
	// page is fetched again and put in place of the one shown. A build's
	// page is patched: its logs are never replaced, so that a log a reader
	// opened stays open, scrolled where it was, and goes on following its
	// log; the logs it does not show yet are added and followed. Other
	// pages replace their <main>, but for what the reader may be filling
	// in (data-keep). One fetch at a time: changes told meanwhile make one
	// more.

	var live = document.body.dataset.live;
	if (!live) return;
	var build = document.getElementById("build-steps");
	var es = new EventSource(live);
	var busy = false, again = false;
	es.addEventListener("change", refresh);

	function refresh() {
		if (busy) {
			again = true;
			return;
		}
		busy = true;
		again = false;
		var url = build ? location.pathname + "?patch=1" : location.pathname + location.search;
		var wait = 0;
		fetch(url, {headers: {Accept: "text/html"}}).then(function (res) {
			if (!res.ok) throw new Error("HTTP " + res.status);
			return res.text();
		}).then(function (html) {
			var doc = new DOMParser().parseFromString(html, "text/html");
			if (build ? !patchBuild(doc) : !swapMain(doc)) {
				again = true;
				wait = 1000;
				return;
			}
			setClock(doc);
			startTicking();
		}).catch(function () {
			again = true;
			wait = 5000;
		}).then(function () {
			busy = false;
			if (again) setTimeout(refresh, wait);
		});
	}

	// typing reports whether the reader is filling in a field within el.
	function typing(el) {
		var a = document.activeElement;
		return !!a && el.contains(a) && (a.tagName === "INPUT" || a.tagName === "SELECT" || a.tagName === "TEXTAREA");
	}

	// swapMain puts the new page's <main> in place, keeping the elements
	// of the old one marked data-keep (its direct children, by id). It
	// returns false, changing nothing, while the reader types elsewhere.
	function swapMain(doc) {
		var main = document.querySelector("main"), fresh = doc.querySelector("main");
		if (!main || !fresh) return true;
		var kept = {};
		Array.prototype.forEach.call(main.children, function (el) {
			if (el.id && el.hasAttribute("data-keep")) kept[el.id] = el;
			else if (typing(el)) kept = null;
		});
		if (!kept) return false;
		fresh = document.adoptNode(fresh);
		var nodes = Array.prototype.map.call(fresh.childNodes, function (n) {
			return n.nodeType === 1 && n.id && kept[n.id] ? kept[n.id] : n;
		});
		Array.prototype.slice.call(main.childNodes).forEach(function (n) {
			if (nodes.indexOf(n) < 0) main.removeChild(n);
		});
		var ref = main.firstChild;
		nodes.forEach(function (n) {
			if (n === ref) ref = ref.nextSibling;
			else main.insertBefore(n, ref);
		});
		return true;
	}

	// replaceChildren gives el the children of the element of the same id
	// in doc, unless they are the same already: a form the reader is about
	// to use stays the one under the pointer.
	function replaceChildren(el, doc) {
		var fresh = el && doc.getElementById(el.id);
		if (fresh && fresh.innerHTML !== el.innerHTML) el.replaceChildren.apply(el, Array.prototype.slice.call(document.adoptNode(fresh).childNodes));
	}

	// patchBuild updates a build's page from doc, the page as it is now
	// (with ?patch=1: logs come without their lines).
	function patchBuild(doc) {
		var result = document.getElementById("build-result"), fresh = doc.getElementById("build-result");
		if (!fresh) return true;
		result.className = fresh.className;
		result.textContent = fresh.textContent;
		["build-crumbs", "build-state", "build-facts", "build-props"].forEach(function (id) {
			replaceChildren(document.getElementById(id), doc);
		});
		// The stop form stays while the reader types a reason, unless
		// the build is over.
		var actions = document.getElementById("build-actions");
		if (!typing(actions) || !doc.querySelector("#build-actions .stop-form")) replaceChildren(actions, doc);
		Array.prototype.slice.call(doc.getElementById("build-steps").children).forEach(function (fli) {
			var li = document.getElementById(fli.id);
			if (!li) {
				li = document.adoptNode(fli);
				build.appendChild(li);
				li.querySelectorAll("pre.log-lines").forEach(setup);
				return;
			}
			var head = li.querySelector(".step-head");
			var fresh = document.adoptNode(fli.querySelector(".step-head"));
			head.replaceWith(fresh);
			var prev = fresh;
			Array.prototype.slice.call(fli.querySelectorAll("details.log")).forEach(function (fd) {
				var d = document.getElementById(fd.id);
				if (!d) {
					d = document.adoptNode(fd);
					prev.after(d);
					d.querySelectorAll("pre.log-lines").forEach(setup);
				}
				prev = d;
			});
		});
		if (!result.classList.contains("r-running")) es.close();
		return true;
	}
})();
