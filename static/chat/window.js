/* The transcript's window (docs/protocol.md#8-web-app-socket): older and newer turns load
   when their sentinel scrolls into view (htmx, `intersect once`), the reading position stays
   put when turns are added above it, the DOM keeps at most MAX_TURNS turns (far ones are
   dropped and come back through a new sentinel), a link to `?at=<seq>` opens at that seq,
   and only the newest answer offers Continue. No build step. */
(function () {
  "use strict";
  var MAX_TURNS = 90;          // turn sections kept in #history (three windows)
  var FOLLOW_SLACK = 80;       // px from the bottom that still counts as "at the bottom"

  function box() { return document.getElementById("transcript"); }
  function history() { return document.getElementById("history"); }
  function sections() { return Array.prototype.slice.call(history().querySelectorAll(":scope > section.turn")); }
  function atBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < FOLLOW_SLACK; }

  // Turns loaded above keep what the reader sees in place: restore the distance from the bottom.
  var fromBottom = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.classList && target.classList.contains("older")) {
      var el = box();
      fromBottom = el.scrollHeight - el.scrollTop;
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var el = box();
    if (fromBottom !== null && el) {
      el.scrollTop = el.scrollHeight - fromBottom;
      fromBottom = null;
    }
    tidy();
  });
  document.addEventListener("htmx:wsAfterMessage", tidy);

  function sentinel(kind, seq) {
    var url = history().dataset.turnsUrl + (kind === "older" ? "?beforeSeq=" : "?sinceSeq=") + seq;
    var el = document.createElement("div");
    el.className = "history-sentinel " + kind;
    el.setAttribute("role", "status");
    el.setAttribute("hx-get", url);
    el.setAttribute("hx-trigger", "intersect once");
    el.setAttribute("hx-swap", "outerHTML");
    el.dataset[kind === "older" ? "before" : "after"] = seq;
    el.textContent = kind === "older" ? "Loading earlier messages…" : "Loading later messages…";
    return el;
  }

  // After every change: no turn twice (a sealed turn can arrive live and again in a loaded
  // window: the first, in order, stays), at most MAX_TURNS turns, Continue on the newest only.
  function tidy() {
    var root = history();
    if (!root) return;
    var seen = {};
    sections().forEach(function (section) {
      if (seen[section.id]) section.remove(); else seen[section.id] = true;
    });
    var turns = sections();
    var extra = turns.length - MAX_TURNS;
    if (extra > 0) {
      var el = box();
      if (atBottom(el) || !root.querySelector(".history-sentinel.newer") && el.scrollTop > el.scrollHeight / 2) {
        dropTop(turns.slice(0, extra), turns[extra]);
      } else {
        dropBottom(turns.slice(turns.length - extra), turns[turns.length - extra - 1]);
      }
    }
    var buttons = document.querySelectorAll(".continue-action");
    var all = document.querySelectorAll("section.turn");
    var newest = all.length ? all[all.length - 1] : null;
    Array.prototype.forEach.call(buttons, function (button) {
      button.hidden = !newest || !newest.contains(button);
    });
  }

  function dropTop(dropped, first) {
    var el = box();
    var before = el.scrollHeight;
    var old = history().querySelector(".history-sentinel.older");
    if (old) old.remove();
    dropped.forEach(function (section) { section.remove(); });
    first.before(sentinel("older", first.dataset.firstSeq));
    htmx.process(first.previousElementSibling);
    el.scrollTop -= before - el.scrollHeight;  // what was above the view is gone
  }

  function dropBottom(dropped, last) {
    var old = history().querySelector(".history-sentinel.newer");
    if (old) old.remove();
    dropped.forEach(function (section) { section.remove(); });
    last.after(sentinel("newer", last.dataset.lastSeq));
    htmx.process(last.nextElementSibling);
  }

  // `/c/<id>?at=<seq>`: open at the block holding that seq (the last one starting at or before it).
  document.addEventListener("DOMContentLoaded", function () {
    var root = history();
    if (!root || !root.dataset.at) return;
    var at = Number(root.dataset.at), target = null;
    Array.prototype.forEach.call(root.querySelectorAll("[data-seq]"), function (el) {
      if (Number(el.dataset.seq) <= at) target = el;
    });
    if (target) {
      target.classList.add("target");
      target.scrollIntoView({ block: "center" });
    }
  });
})();
