// Alarm queue: fetch the rows every 2 s and swap them in, so new alarms appear without a reload.
(function () {
  "use strict";
  var body = document.getElementById("queue-rows");
  var live = document.getElementById("live");
  if (!body) { return; }
  var known = {};
  body.querySelectorAll("tr[data-alarm]").forEach(function (tr) { known[tr.dataset.alarm] = true; });
  function refresh() {
    fetch(body.dataset.src, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
      if (r.status === 401 || r.redirected) { window.location = "/login?next=/alarms"; return null; }
      if (!r.ok) { throw new Error(r.status); }
      return r.text();
    }).then(function (html) {
      if (html === null) { return; }
      body.innerHTML = html;
      body.querySelectorAll("tr[data-alarm]").forEach(function (tr) {
        if (!known[tr.dataset.alarm]) { tr.classList.add("fresh"); known[tr.dataset.alarm] = true; }
      });
      live.textContent = "live · updated " + new Date().toLocaleTimeString();
      live.classList.remove("stale");
    }).catch(function () {
      live.textContent = "connection lost · retrying";
      live.classList.add("stale");
    });
  }
  setInterval(refresh, 2000);
}());
