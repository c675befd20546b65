/* The theme: System (the browser's prefers-color-scheme), Light or Dark, kept per user on the
   server so every device shows the same. The choice applies at once; it is saved over the
   page's socket when it has one, else with PUT /preferences. A choice made on another page
   or device arrives as #theme-state (chat.sockets.webapp). */
(function () {
  "use strict";
  var root = document.documentElement;

  function apply(theme) {
    if (!/^(system|light|dark)$/.test(theme || "")) return;
    root.dataset.theme = theme;
    document.querySelectorAll("[data-theme-select]").forEach(function (select) {
      if (select.value !== theme) select.value = theme;
    });
  }

  function csrfToken() {
    var field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function save(theme) {
    if (window.dispatchUI && window.dispatchUI.send({ action: "theme", theme: theme })) return;
    fetch("/preferences", {
      method: "PUT",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({ theme: theme })
    });
  }

  document.addEventListener("change", function (event) {
    if (!event.target.matches || !event.target.matches("[data-theme-select]")) return;
    apply(event.target.value);
    save(event.target.value);
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    var state = document.getElementById("theme-state");
    if (state && state.dataset.theme !== root.dataset.theme) apply(state.dataset.theme);
  });

  window.dispatchTheme = { apply: apply };
})();
