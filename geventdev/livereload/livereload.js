/* geventdev live reload (served and injected by geventdev/livereload/middleware.py).
 *
 * The page knows which app process rendered it (data-generation). An EventSource to the app
 * says which process serves now ("hello"), and what changed without a restart ("reload",
 * "css"). On a restart the old process cuts the stream; we reconnect with backoff (the monitor's
 * 503 while no app runs ends an EventSource for good, so errors are handled here) and reload once
 * a *different* process answers: only when the new code serves, never on an error in between.
 * One connection per browser, not per tab (browsers allow ~6 per host): the tab holding a Web
 * Lock keeps it and relays the events to the other tabs over a BroadcastChannel.
 */
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me || window.__geventdevLiveReload) return;
  var root = me.getAttribute("data-root") || "";
  var events = me.getAttribute("data-events");
  var mine = me.getAttribute("data-generation");
  var state = (window.__geventdevLiveReload = {
    generation: mine,
    serving: null,
    leader: false,
    connected: false,
  });
  var channel =
    typeof BroadcastChannel === "function" ? new BroadcastChannel("geventdev-livereload") : null;
  var STALE = 25000; // the server pings every 10 s: quiet for longer means a dead connection
  var FIRST_DELAY = 100;
  var MAX_DELAY = 3000;
  var source = null;
  var timer = 0;
  var delay = 0;
  var seen = 0;

  function info(text) {
    console.info("[geventdev] " + text);
  }

  function reloadFor(generation) {
    var mark = mine + ">" + generation;
    try {
      // A page still older than the server right after reloading for it (an HTTP cache, an
      // extension) would loop: reload at most once per pair.
      if (sessionStorage.getItem("geventdev-livereload") === mark) {
        info("this page is still from the old code after a reload; not reloading again");
        return;
      }
      sessionStorage.setItem("geventdev-livereload", mark);
    } catch (e) {
      /* storage disabled: no loop guard */
    }
    info("new code is serving: reloading");
    location.reload();
  }

  function swap(link) {
    var url = new URL(link.href, location.href);
    url.searchParams.set("livereload", Date.now().toString(36));
    var fresh = link.cloneNode(false); // keeps a nonce, media, crossorigin...
    var done = function () {
      if (link.parentNode) link.parentNode.removeChild(link);
    };
    fresh.addEventListener("load", done);
    fresh.addEventListener("error", done);
    fresh.href = url.href;
    link.parentNode.insertBefore(fresh, link.nextSibling);
  }

  function applyCss(paths) {
    var wanted = paths.map(function (path) {
      return root + path;
    });
    var links = Array.prototype.filter.call(document.querySelectorAll("link[href]"), function (l) {
      return /(^|\s)stylesheet(\s|$)/i.test(l.rel) && new URL(l.href).origin === location.origin;
    });
    if (!links.length) return location.reload();
    var hits = links.filter(function (l) {
      return wanted.indexOf(decodeURIComponent(new URL(l.href).pathname)) >= 0;
    });
    (hits.length ? hits : links).forEach(swap); // not linked here: maybe @imported, bust all
    info("CSS updated in place: " + paths.join(", "));
  }

  function handle(type, data) {
    if (type === "hello") {
      state.serving = data.generation;
      state.connected = true;
      if (data.generation !== mine) reloadFor(data.generation);
    } else if (type === "reload") {
      info("changed: " + data.paths.join(", ") + "; reloading");
      location.reload();
    } else if (type === "css") {
      applyCss(data.paths);
    }
  }

  function dispatch(type, data) {
    if (channel && state.leader) channel.postMessage({ type: type, data: data });
    handle(type, data);
  }

  function retry() {
    clearTimeout(timer);
    delay = Math.min(delay ? delay * 2 : FIRST_DELAY, MAX_DELAY);
    timer = setTimeout(connect, delay);
  }

  function connect() {
    clearTimeout(timer);
    if (source) source.close();
    var es = (source = new EventSource(events));
    seen = Date.now();
    ["hello", "reload", "css", "ping"].forEach(function (type) {
      es.addEventListener(type, function (event) {
        seen = Date.now();
        if (type === "hello") delay = 0;
        if (type !== "ping") dispatch(type, JSON.parse(event.data));
      });
    });
    es.onerror = function () {
      // A restart cut it, or the monitor answered 503: EventSource may give up, so we retry.
      es.close();
      if (source !== es) return;
      source = null;
      state.serving = null; // new tabs asking meanwhile must not get the dead process's hello
      if (state.connected && channel) channel.postMessage({ type: "down" });
      state.connected = false;
      retry();
    };
  }

  function wake(force) {
    // Back from sleep, offline or a hidden tab: the connection may be dead without an error.
    if (!state.leader && channel && navigator.locks) {
      channel.postMessage({ type: "wake", force: force });
    } else if (force || !source || Date.now() - seen > STALE) {
      delay = 0;
      connect();
    }
  }

  setInterval(function () {
    if (source && Date.now() - seen > STALE) connect();
  }, 5000);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) wake(false);
  });
  window.addEventListener("online", function () {
    wake(true);
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) wake(true);
  });

  if (channel && navigator.locks && navigator.locks.request) {
    channel.onmessage = function (event) {
      var m = event.data || {};
      if (state.leader) {
        if (m.type === "query" && state.serving) {
          channel.postMessage({ type: "hello", data: { generation: state.serving } });
        } else if (m.type === "wake") {
          wake(m.force);
        }
      } else if (m.type === "down") {
        state.connected = false;
      } else if (m.type === "hello" || m.type === "reload" || m.type === "css") {
        handle(m.type, m.data);
      }
    };
    navigator.locks
      .request("geventdev-livereload", function () {
        state.leader = true;
        connect();
        return new Promise(function () {}); // held for the life of this page
      })
      .catch(function () {
        state.leader = true;
        connect();
      });
    channel.postMessage({ type: "query" }); // which process serves, if another tab knows
  } else {
    state.leader = true; // no Web Locks (not a secure context): a connection per tab
    connect();
  }
})();
