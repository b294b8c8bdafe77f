/* The console's live updates, over the server-sent events of GET /events.
 *
 * Every page works without this script; with it:
 * - the overview swaps each target's figures for those of every new sample (the server
 *   renders that part with the page's own template) and extends the target's chart;
 * - the alert list and an alert's page reload their content when an alert changes
 *   (fetched again from the server, same filters), without reloading the page;
 * - every page shows a short note when an alert fires.
 * Text from the server is only ever inserted as text or as markup the server escaped. */
(function () {
  "use strict";

  var body = document.body;
  var state = document.getElementById("live-state");
  var HISTORY = 120;

  function setState(name, text) {
    if (!state) { return; }
    state.setAttribute("data-state", name);
    state.textContent = text;
  }

  function parse(html) {
    return new DOMParser().parseFromString(html, "text/html");
  }

  function replaceChildren(target, source) {
    while (target.firstChild) { target.removeChild(target.firstChild); }
    Array.prototype.forEach.call(source.childNodes, function (node) {
      target.appendChild(document.importNode(node, true));
    });
  }

  /* The overview: one event per sample of a target. */
  function onSample(data) {
    var sections = document.querySelectorAll("section[data-target]");
    Array.prototype.forEach.call(sections, function (section) {
      if (section.getAttribute("data-target") !== data.target) { return; }
      var live = section.querySelector("[data-live]");
      if (live && data.html) {
        var fresh = parse(data.html).querySelector("[data-live]");
        if (fresh) {
          replaceChildren(live, fresh);
          live.setAttribute("data-seq", String(data.seq));
        }
      }
      var canvas = section.querySelector("canvas[data-live-chart]");
      if (canvas && data.point && window.pgperfCharts) {
        window.pgperfCharts.append(canvas.id, data.point.t * 1000, [data.point.tps, data.point.connections], HISTORY);
      }
    });
  }

  /* Alert pages: fetch this page again and swap the part that lists alerts. */
  var refreshing = false, again = false;
  function refreshAlerts() {
    var region = document.querySelector("[data-refresh]");
    if (!region) { return; }
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(window.location.href, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var fresh = parse(html).querySelector("[data-refresh]");
        if (fresh) { replaceChildren(region, fresh); }
      })
      .catch(function () { setState("lost", "live updates paused"); })
      .then(function () {
        refreshing = false;
        if (again) { again = false; refreshAlerts(); }
      });
  }

  function toast(data) {
    var box = document.getElementById("toasts");
    if (!box || data.change !== "fired") { return; }
    var note = document.createElement("div");
    note.className = "toast";
    note.setAttribute("role", "status");
    note.textContent = "Alert " + data.metric + " (" + data.severity + ") fired" +
      (data.target ? " on " + data.target : "") + ": " + data.message;
    box.appendChild(note);
    setTimeout(function () { if (note.parentNode) { note.parentNode.removeChild(note); } }, 10000);
  }

  function connect() {
    if (!window.EventSource || !body.hasAttribute("data-live")) { return; }
    var source = new EventSource("/events");
    source.onopen = function () { setState("live", "live"); };
    source.onmessage = function (event) {
      try { onSample(JSON.parse(event.data)); } catch (e) { /* a malformed event is skipped */ }
    };
    source.addEventListener("alert", function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      toast(data);
      refreshAlerts();
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        /* Refused (signed out, or every stream taken): try again later, or sign in again. */
        setState("lost", "live updates stopped");
        setTimeout(connect, 30000);
      } else {
        setState("lost", "reconnecting");
      }
    };
  }

  connect();
}());
