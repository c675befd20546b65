/* Dispatch web app: reconnect when the server asks (docs/protocol.md#65-reconnecting).
 *
 * A worker that shuts down closes its sockets with 4503, and refuses new ones with 4503 while
 * it drains. htmx's ws extension reconnects by itself only on 1006/1011/1012/1013, which the
 * server cannot send, so this does it: after a short random pause (growing while the worker
 * keeps refusing), through the same URL — the proxy sends the socket to another worker, and
 * the page resyncs (history, then the running turn's replay). */
(function () {
  "use strict";
  var GOING_AWAY = 4503;
  var attempts = 0;

  document.addEventListener("htmx:wsOpen", function () { attempts = 0; });

  document.addEventListener("htmx:wsClose", function (event) {
    var detail = event.detail || {};
    if (!detail.event || detail.event.code !== GOING_AWAY || !detail.socketWrapper) return;
    var delay = Math.random() * Math.min(250 * Math.pow(2, attempts), 5000);
    attempts += 1;
    setTimeout(function () { detail.socketWrapper.reconnect(); }, delay);
  });
})();
