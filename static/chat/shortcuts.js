/* Keyboard shortcuts (listed in the help dialog, #help-dialog): Alt+N new chat, / or Alt+M
   the message box, Esc stops the running turn, Alt+] / Alt+[ next / previous tab, ? help.
   Letters are matched by key position (event.code), so they work on every layout. */
(function () {
  "use strict";

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function openDialog(id) {
    var dialog = document.getElementById(id);
    if (dialog && !dialog.open) dialog.showModal();
  }

  function goToTab(step) {
    var tabs = Array.prototype.slice.call(document.querySelectorAll("#tabs .tab"));
    var index = tabs.findIndex(function (tab) { return tab.classList.contains("current"); });
    if (tabs.length < 2 && index >= 0) return;
    var next = tabs[(index + step + tabs.length) % tabs.length];
    var link = next && next.querySelector("a.tab-link");
    if (link) window.location.assign(link.href);
  }

  function focusComposer() {
    var box = document.getElementById("message");
    if (box) box.focus();
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing) return;
    if (document.querySelector("dialog[open]")) return; // the dialog handles its own keys
    var alt = event.altKey && !event.ctrlKey && !event.metaKey;
    if (alt && event.code === "KeyN") {
      event.preventDefault();
      window.location.assign("/new");
    } else if (alt && event.code === "KeyM") {
      event.preventDefault();
      focusComposer();
    } else if (alt && event.code === "BracketRight") {
      event.preventDefault();
      goToTab(1);
    } else if (alt && event.code === "BracketLeft") {
      event.preventDefault();
      goToTab(-1);
    } else if (event.key === "Escape" && !event.altKey && window.dispatchUI && window.dispatchUI.running()) {
      event.preventDefault();
      window.dispatchUI.stop();
    } else if (!typing(event.target) && !event.ctrlKey && !event.metaKey && !event.altKey) {
      if (event.key === "/") {
        event.preventDefault();
        focusComposer();
      } else if (event.key === "?") {
        event.preventDefault();
        openDialog("help-dialog");
      }
    }
  });

  document.addEventListener("click", function (event) {
    var opener = event.target.closest && event.target.closest("[data-open-dialog]");
    if (opener) openDialog(opener.dataset.openDialog);
  });
})();
