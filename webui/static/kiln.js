// Kiln's live updates: the pages work without JavaScript; this only
// appends log lines as they are stored and reloads a page when what it
// shows changes (both over Server-Sent Events).
"use strict";
(function () {
	document.querySelectorAll("pre[data-stream]").forEach(follow);

	// follow appends to a log's block the lines of the running step as the
	// server sends them: rendered and escaped, each ending in "\n". Lines
	// are added once per frame, in one piece, however many events brought
	// them, and the block keeps its last data-keep lines (the earlier ones
	// are on the log's page and in the download): a log written faster than
	// a page can lay it out costs the page the lines it shows, not the lines
	// written. Lines that would be dropped before they are shown are never
	// parsed. While the page is hidden, frames stop and the lines wait,
	// at most twice data-keep of them.
	function follow(pre) {
		var keep = +pre.dataset.keep || Infinity;
		var next = +pre.dataset.next || 0;
		var lines = pre.getElementsByClassName("ln");
		var held = lines.length;
		var box = pre.closest("details") || document;
		var earlier = box.querySelector(".log-earlier");
		var count = box.querySelector(".log-count");
		// The block scrolls, or the page does (on the log's own page).
		var scroller = getComputedStyle(pre).maxHeight === "none" ? document.scrollingElement : pre;
		var queue = [], queued = 0, reset = false, done = false, frame = 0;
		var url = pre.dataset.stream + "?from=" + next + (keep < Infinity ? "&keep=" + keep : "");
		// On a reconnection the browser sends the last event's ID, the line
		// after the last one received, and the server goes on from there.
		var es = new EventSource(url);
		es.addEventListener("lines", function (ev) {
			queue.push(ev.data);
			queued += newlines(ev.data);
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
			var atEnd = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 4;
			if (queued > keep) trimQueue();
			if (reset) {
				pre.textContent = "";
				held = 0;
				reset = false;
			}
			if (queued > 0) {
				append(pre, queue.join(""));
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
			}
			pre.dataset.next = next;
			if (count) count.textContent = next;
			if (earlier) {
				earlier.dataset.lines = next - held;
				earlier.querySelector(".n").textContent = next - held;
				earlier.hidden = next === held;
			}
			if (atEnd) scroller.scrollTop = scroller.scrollHeight;
			if (done) {
				pre.removeAttribute("data-stream");
				pre.dataset.done = "true";
			}
		}
	}

	// append adds lines to a block in chunks of chunkLines lines, as the
	// server renders them (logChunk in ansi.go), filling the last chunk
	// first: the browser lays out and paints only the chunks in view, and
	// lays out again only those that change.
	var chunkLines = 100;
	function append(pre, s) {
		var i = 0, n, last = pre.lastElementChild;
		if (last && last.className === "chunk") {
			for (n = last.childElementCount; n < chunkLines && i < s.length; n++) i = lineEnd(s, i);
			if (i > 0) last.insertAdjacentHTML("beforeend", s.slice(0, i));
		}
		var out = "";
		while (i < s.length) {
			var start = i;
			for (n = 0; n < chunkLines && i < s.length; n++) i = lineEnd(s, i);
			out += '<span class="chunk">' + s.slice(start, i) + "</span>";
		}
		if (out) pre.insertAdjacentHTML("beforeend", out);
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

	// The page itself: reload when the server says it changed, unless the
	// user is typing in a form.
	var live = document.body.dataset.live;
	if (!live) return;
	var es = new EventSource(live);
	es.addEventListener("change", function () {
		var el = document.activeElement;
		if (el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA")) return;
		es.close();
		location.reload();
	});
})();
