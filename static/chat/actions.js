/* Message actions: Copy a user message or an answer (as the Markdown the model wrote) and
   each code block; the "reading the prompt… N s" counter. Actions of other features are
   buttons in the same .msg-actions rows (templates/chat/_actions_*.html). */
(function () {
  "use strict";

  function copyText(text) {
    // navigator.clipboard needs a secure context (https or localhost); plain http on a LAN
    // address falls back to a selected textarea and execCommand.
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    try {
      document.execCommand("copy");
    } finally {
      area.remove();
    }
    return Promise.resolve();
  }

  function confirm(button) {
    button.dataset.copied = "";
    var label = button.textContent;
    if (label) button.textContent = "Copied";
    setTimeout(function () {
      delete button.dataset.copied;
      if (label) button.textContent = label;
    }, 1500);
  }

  function messageText(button) {
    var kind = button.dataset.copy;
    if (kind === "message") {
      var bubble = button.closest(".user-message").querySelector(".bubble.user");
      var copy = bubble.cloneNode(true);
      copy.querySelectorAll(".bubble-label").forEach(function (label) { label.remove(); });
      return copy.textContent;
    }
    if (kind === "answer") {
      var source = button.closest(".msg-actions").querySelector("template.md-source");
      return source ? source.content.textContent : "";
    }
    if (kind === "code") {
      var code = button.closest(".code-block").querySelector("pre");
      return code ? code.textContent : "";
    }
    return "";
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    copyText(messageText(button)).then(function () { confirm(button); });
  });

  // Each code block of an answer gets a copy button (its label is CSS, so the answer's text
  // stays the answer's).
  function addCodeButtons(root) {
    root.querySelectorAll(".md pre").forEach(function (pre) {
      if (pre.parentElement.classList.contains("code-block")) return;
      var wrap = document.createElement("div");
      wrap.className = "code-block";
      pre.replaceWith(wrap);
      wrap.appendChild(pre);
      var button = document.createElement("button");
      button.type = "button";
      button.className = "code-copy";
      button.dataset.copy = "code";
      button.setAttribute("aria-label", "Copy code");
      wrap.appendChild(button);
    });
  }

  // "Reading the prompt… N s": counts on from what the server measured when it rendered.
  function tickWaiting() {
    document.querySelectorAll(".waiting .elapsed").forEach(function (span) {
      if (!span.dataset.base) {
        span.dataset.base = String(Date.now() - Number(span.dataset.elapsedMs || 0));
      }
      var seconds = Math.floor((Date.now() - Number(span.dataset.base)) / 1000);
      var text = seconds + " s";
      if (span.textContent !== text) span.textContent = text;
    });
  }
  setInterval(tickWaiting, 1000);

  document.addEventListener("htmx:wsAfterMessage", function () {
    addCodeButtons(document);
    tickWaiting();
  });
  document.addEventListener("DOMContentLoaded", function () { addCodeButtons(document); });

  window.dispatchActions = { copyText: copyText };
})();
