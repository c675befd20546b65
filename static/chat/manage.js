/* Managing conversations in the web app: the delete confirmation, import, presets, and the
   composer text an Edit carries into its fork. Loaded after app.js; no build step. */
(function () {
  "use strict";
  var COMPOSE_KEY = "dispatch.compose:";

  function csrfToken() { return window.dispatchUI.csrfToken(); }
  function notice(message) { window.dispatchUI.notice(message); }

  // Edit: the server navigates to the fork with the message's text for its composer.
  document.addEventListener("htmx:wsAfterMessage", function () {
    var nav = document.getElementById("nav");
    if (nav && nav.dataset.href && nav.dataset.compose !== undefined) {
      sessionStorage.setItem(COMPOSE_KEY + nav.dataset.href, nav.dataset.compose);
    }
  }, true);

  document.addEventListener("DOMContentLoaded", function () {
    var key = COMPOSE_KEY + window.location.pathname;
    var text = sessionStorage.getItem(key);
    var box = document.getElementById("message");
    if (text !== null && box) {
      sessionStorage.removeItem(key);
      box.value = text;
      box.dispatchEvent(new Event("input", { bubbles: true }));
      box.focus();
    }
  });

  // Delete asks first, in a dialog of the page.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("#delete-button");
    if (!button) return;
    var dialog = document.getElementById("delete-dialog");
    var title = document.querySelector(".tab.current .tab-title");
    document.getElementById("delete-dialog-name").textContent =
      title ? title.textContent.trim() : button.dataset.conversation;
    dialog.dataset.conversation = button.dataset.conversation;
    dialog.returnValue = "";
    dialog.showModal();
  });
  document.addEventListener("close", function (event) {
    var dialog = event.target;
    if (dialog.id !== "delete-dialog" || dialog.returnValue !== "delete") return;
    var form = document.getElementById("delete-form");
    form.elements.conversation.value = dialog.dataset.conversation;
    form.requestSubmit();
  }, true);

  // A preset fills the template box and the preset name (save or delete it from there).
  document.addEventListener("change", function (event) {
    if (event.target.id !== "preset-select") return;
    var option = event.target.selectedOptions[0];
    document.getElementById("prompt-template").value = option.dataset.template || "";
    document.getElementById("preset-name").value = option.value;
  });
  document.addEventListener("click", function (event) {
    var id = event.target.id;
    if (id !== "preset-save" && id !== "preset-delete") return;
    var form = event.target.closest("form");
    var action = form.querySelector("input[name=action]");
    action.value = id === "preset-save" ? "preset_save" : "preset_delete";
    form.requestSubmit();
    action.value = "system_prompt";
  });

  // Import: the file goes to POST /conversations as it is; the new conversation opens.
  document.addEventListener("change", function (event) {
    if (event.target.id !== "import-file" || !event.target.files.length) return;
    var file = event.target.files[0];
    event.target.value = "";
    file.text().then(function (body) {
      return fetch("/conversations", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        credentials: "same-origin",
        body: body,
      });
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) throw new Error(data.error || "import failed");
        window.location.assign("/c/" + encodeURIComponent(data.id));
      });
    }).catch(function (error) {
      notice("Import refused: " + error.message);
    });
  });
})();
