// Kiln's live updates: the pages work without JavaScript; this only
// appends log lines as they are stored and reloads a page when what it
// shows changes (both over Server-Sent Events).
"use strict";
(function () {
	// Logs of running steps: append the rendered lines the server sends.
	document.querySelectorAll("pre[data-stream]").forEach(function (pre) {
		var url = pre.dataset.stream + "?from=" + encodeURIComponent(pre.dataset.next || "0");
		var es = new EventSource(url);
		es.addEventListener("lines", function (ev) {
			var follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
			pre.insertAdjacentHTML("beforeend", ev.data);
			pre.dataset.next = ev.lastEventId;
			if (follow) pre.scrollTop = pre.scrollHeight;
		});
		es.addEventListener("done", function () {
			es.close();
			pre.removeAttribute("data-stream");
			pre.dataset.done = "true";
		});
	});
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
