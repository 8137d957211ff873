// Progressive enhancement: a #live block marked data-live="poll" is refreshed from the same page every 2 s,
// until the server marks it "idle" (e.g. the subscriber's change is final or failed). Forms are never replaced.
// Each refresh handled counts in <html data-live-checks> (what a browser test waits for instead of a time).
(function () {
  "use strict";
  function refresh() {
    var live = document.getElementById("live");
    if (!live || live.getAttribute("data-live") !== "poll" || document.hidden) { return; }
    fetch(window.location.pathname + window.location.search, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        var root = document.documentElement;
        root.dataset.liveChecks = String((Number(root.dataset.liveChecks) || 0) + 1);
        if (fresh) {
          live.innerHTML = fresh.innerHTML;
          live.setAttribute("data-live", fresh.getAttribute("data-live") || "idle");
        }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  setInterval(refresh, 2000);
})();
