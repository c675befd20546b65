/* Dispatch web app: the few things htmx cannot do by itself. No build step. */
(function () {
  "use strict";
  var socket = null;       // the htmx ws wrapper's public interface (send, reconnect)
  var connections = 0;
  var openState = {};      // <details> id -> the user's open/closed choice
  var FOLLOW_SLACK = 80;   // px from the bottom that still counts as "following"

  // Reconnects resync: tell the server which history we have (the seq of its last chunk).
  htmx.createWebSocket = function (url) {
    var seq = document.getElementById("history-seq");
    var extra = "&seq=" + (seq ? seq.dataset.seq : "0");
    connections += 1;
    if (connections > 1) extra += "&resync=1";
    return new WebSocket(url + extra);
  };

  function composer() { return document.getElementById("composer"); }
  function messageBox() { return document.getElementById("message"); }

  function running() {
    var status = document.getElementById("conversation-status");
    return !!status && status.dataset.status === "active";
  }

  // Attachments in the composer (attachments.js) make a message too.
  function hasAttachments() { return !!document.querySelector("#attachment-tray > *"); }

  // Send when idle, Queue when a turn runs and there is text, Stop when it runs and is empty.
  function updateButton() {
    var button = document.getElementById("send-button");
    var box = messageBox();
    if (!button || !box) return;
    var hasText = box.value.trim() !== "";
    var label = running() ? (hasText ? "Queue" : "Stop") : "Send";
    button.textContent = label;
    button.dataset.mode = label.toLowerCase();
    button.disabled = label === "Send" && !hasText && !hasAttachments();
  }

  function transcript() { return document.getElementById("transcript"); }
  var following = true;

  function restoreDetails() {
    Object.keys(openState).forEach(function (id) {
      var el = document.getElementById(id);
      if (el && el.open !== openState[id]) el.open = openState[id];
    });
  }

  document.addEventListener("toggle", function (event) {
    var el = event.target;
    if (el.tagName === "DETAILS" && el.id) openState[el.id] = el.open;
  }, true);

  document.addEventListener("keydown", function (event) {
    if (event.target !== messageBox()) return;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer().requestSubmit();
    }
  });

  document.addEventListener("input", function (event) {
    if (event.target === messageBox()) updateButton();
  });

  document.addEventListener("submit", function (event) {
    // An empty box only means something (Stop) while a turn runs.
    if (event.target === composer() && !running() && messageBox().value.trim() === "" &&
        !hasAttachments()) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  document.addEventListener("htmx:wsOpen", function (event) {
    socket = event.detail.socketWrapper;
    document.body.classList.remove("offline");
    document.body.dataset.socket = "open";
  });
  document.addEventListener("htmx:wsClose", function () {
    document.body.classList.add("offline");
    document.body.dataset.socket = "closed";
  });

  document.addEventListener("htmx:wsBeforeMessage", function () {
    var box = transcript();
    following = !!box && box.scrollHeight - box.scrollTop - box.clientHeight < FOLLOW_SLACK;
  });

  // Scrolled up while new content arrives: offer a way back down instead of jumping there.
  function jumpButton() { return document.getElementById("jump-latest"); }
  function atBottom(box) { return box.scrollHeight - box.scrollTop - box.clientHeight < FOLLOW_SLACK; }

  document.addEventListener("scroll", function (event) {
    var box = transcript();
    var jump = jumpButton();
    if (event.target === box && jump && atBottom(box)) jump.hidden = true;
  }, true);

  document.addEventListener("click", function (event) {
    var jump = jumpButton();
    if (!jump || event.target !== jump) return;
    var box = transcript();
    box.scrollTop = box.scrollHeight;
    following = true;
    jump.hidden = true;
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    restoreDetails();
    updateButton();
    var box = transcript();
    if (box && following) box.scrollTop = box.scrollHeight;
    var jump = jumpButton();
    if (box && jump && !following && !atBottom(box)) jump.hidden = false;
    var nav = document.getElementById("nav");
    if (nav && nav.dataset.href) window.location.assign(nav.dataset.href);
  });

  document.addEventListener("htmx:wsAfterSend", function (event) {
    if (event.target === composer()) {
      messageBox().value = "";
      updateButton();
      following = true;
    }
  });

  // Rename a tab's conversation: its pencil button, or a double-click on its title.
  function startRename(tab) {
    var title = tab && tab.querySelector(".tab-title");
    if (!title || !socket) return;
    clearTimeout(pendingNavigation);
    var input = document.createElement("input");
    input.className = "tab-rename";
    input.value = title.textContent.trim();
    input.setAttribute("aria-label", "Tab title");
    title.replaceWith(input);
    input.focus();
    input.select();
    var done = false;
    function finish(save) {
      if (done) return;
      done = true;
      var value = input.value.trim();
      if (save && value) {
        title.textContent = value;
        socket.send(JSON.stringify({
          action: "rename", conversation: tab.dataset.conversation, title: value
        }));
      }
      input.replaceWith(title);
      var pencil = tab.querySelector(".tab-rename-button");
      if (pencil && !save) pencil.focus();
    }
    input.addEventListener("keydown", function (e) {
      if (e.key === "Enter") { e.preventDefault(); finish(true); }
      if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); finish(false); }
    });
    input.addEventListener("blur", function () { finish(true); });
  }

  document.addEventListener("dblclick", function (event) {
    var title = event.target.closest && event.target.closest(".tab .tab-title");
    var tab = title && title.closest(".tab[data-conversation]");
    if (!tab) return;
    event.preventDefault();
    startRename(tab);
  });
  // A click on a tab's title navigates a moment later, so that a double-click can rename.
  var pendingNavigation = null;
  document.addEventListener("click", function (event) {
    var pencil = event.target.closest && event.target.closest(".tab .tab-rename-button");
    if (pencil) {
      startRename(pencil.closest(".tab[data-conversation]"));
      return;
    }
    var title = event.target.closest && event.target.closest(".tab .tab-title");
    var link = title && title.closest("a");
    if (!link) return;
    event.preventDefault();
    clearTimeout(pendingNavigation);
    if (event.detail === 1) {
      pendingNavigation = setTimeout(function () { window.location.assign(link.href); }, 300);
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    updateButton();
    var box = transcript();
    if (box) box.scrollTop = box.scrollHeight;
  });

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // A message in the page's notice area, replacing the one before.
  function notice(message) {
    var box = document.getElementById("notice");
    if (!box) return;
    var alert = document.createElement("div");
    alert.className = "alert";
    alert.textContent = message;
    box.replaceChildren(alert);
  }

  window.dispatchUI = {
    reconnect: function () { if (socket) socket.reconnect(); },
    csrfToken: csrfToken,
    notice: notice,
    update: updateButton,
    // Send a frame over the page's socket; false when it is not open.
    send: function (frame) {
      if (!socket || document.body.dataset.socket !== "open") return false;
      socket.send(JSON.stringify(frame));
      return true;
    },
    running: running,
    stop: function () { return running() && window.dispatchUI.send({ action: "stop" }); }
  };
})();
