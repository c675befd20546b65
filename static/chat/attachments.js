/* Attachments in the composer: paste, drop or pick files; each is uploaded at once
   (POST /attachments) and shown as a chip — a thumbnail for an image, name and size for a
   file — with a × to remove it. Sending the message sends the ids of the uploaded ones; the
   server empties the tray once they went with a message. A click on an image in the
   transcript opens it in a viewer. Thumbnails are the uploaded (re-encoded) images, served by
   this origin, so the page's Content-Security-Policy needs no blob: images. No build step. */
(function () {
  "use strict";

  function tray() { return document.getElementById("attachment-tray"); }
  function composer() { return document.getElementById("composer"); }
  function messageBox() { return document.getElementById("message"); }
  function chips() { return Array.prototype.slice.call(tray() ? tray().children : []); }
  function uploadedIds() {
    return chips().filter(function (chip) { return chip.dataset.id; })
      .map(function (chip) { return chip.dataset.id; });
  }
  function update() { if (window.dispatchUI) window.dispatchUI.update(); }

  function running() {
    var status = document.getElementById("conversation-status");
    return !!status && status.dataset.status === "active";
  }

  function csrfToken() { return window.dispatchUI.csrfToken(); }
  function notice(message) { window.dispatchUI.notice(message); }

  function formatBytes(size) {
    if (size < 1024) return size + " bytes";
    var units = ["KiB", "MiB", "GiB"], value = size, unit = "";
    for (var i = 0; i < units.length; i++) {
      value /= 1024; unit = units[i];
      if (value < 1024) break;
    }
    return (value < 10 ? value.toFixed(1).replace(/\.0$/, "") : Math.round(value)) + " " + unit;
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ------------------------------------------------------------------ the tray

  function addFiles(files) {
    var box = tray();
    if (!box || !files || !files.length) return;
    var maxCount = parseInt(box.dataset.maxCount, 10) || 10;
    var maxBytes = parseInt(box.dataset.maxBytes, 10) || Infinity;
    Array.prototype.forEach.call(files, function (file) {
      if (chips().length >= maxCount) {
        notice("At most " + maxCount + " attachments per message: " + file.name + " was not added.");
        return;
      }
      if (file.size > maxBytes) {
        notice("File too large: " + file.name + " is " + formatBytes(file.size) +
               "; at most " + formatBytes(maxBytes) + " per file.");
        return;
      }
      upload(file, newChip(file));
    });
    update();
  }

  function newChip(file) {
    var chip = element("div", "attachment-chip uploading");
    chip.setAttribute("role", "group");
    chip.setAttribute("aria-label", file.name || "attachment");
    chip.appendChild(element("span", "spinner"));
    chip.appendChild(element("span", "chip-name", file.name || "pasted image"));
    chip.appendChild(element("span", "chip-size", formatBytes(file.size)));
    var remove = element("button", "chip-remove", "×");
    remove.type = "button";
    remove.title = "Remove";
    remove.setAttribute("aria-label", "Remove " + (file.name || "attachment"));
    chip.appendChild(remove);
    tray().appendChild(chip);
    return chip;
  }

  function upload(file, chip) {
    var form = new FormData();
    form.append("file", file, file.name || "pasted.png");
    var controller = new AbortController();
    chip.abort = function () { controller.abort(); };
    fetch("/attachments", {
      method: "POST",
      body: form,
      headers: { "X-CSRFToken": csrfToken() },
      credentials: "same-origin",
      signal: controller.signal
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) throw new Error(body.error || ("upload failed (HTTP " + response.status + ")"));
        return body;
      });
    }).then(function (attachment) {
      if (!chip.isConnected) {  // removed while it uploaded: forget it on the server too
        forget(attachment.id);
        return;
      }
      uploaded(chip, attachment);
    }).catch(function (error) {
      if (controller.signal.aborted) return;
      chip.remove();
      notice(error.message);
    }).finally(update);
  }

  function uploaded(chip, attachment) {
    chip.classList.remove("uploading");
    chip.classList.add(attachment.kind);
    chip.dataset.id = attachment.id;
    chip.querySelector(".spinner").remove();
    chip.querySelector(".chip-name").textContent = attachment.name;
    chip.querySelector(".chip-size").textContent = formatBytes(attachment.size);
    if (attachment.kind === "image") {
      var image = element("img", "chip-thumb");
      image.src = "/attachments/" + encodeURIComponent(attachment.id) + "/content";
      image.alt = attachment.name;
      chip.insertBefore(image, chip.firstChild);
    }
  }

  function forget(id) {
    fetch("/attachments/" + encodeURIComponent(id), {
      method: "DELETE",
      headers: { "X-CSRFToken": csrfToken() },
      credentials: "same-origin"
    }).catch(function () { /* unsent uploads are forgotten by the server after a day */ });
  }

  document.addEventListener("click", function (event) {
    var remove = event.target.closest && event.target.closest("#attachment-tray .chip-remove");
    if (!remove) return;
    var chip = remove.closest(".attachment-chip");
    if (chip.dataset.id) forget(chip.dataset.id);
    else if (chip.abort) chip.abort();
    chip.remove();
    update();
    messageBox().focus();
  });

  // ------------------------------------------------------------------ adding files

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("#attach-button")) {
      document.getElementById("attach-input").click();
    }
  });

  document.addEventListener("change", function (event) {
    if (event.target.id !== "attach-input") return;
    addFiles(event.target.files);
    event.target.value = "";
  });

  document.addEventListener("paste", function (event) {
    if (!composer() || !composer().contains(event.target)) return;
    var files = event.clipboardData && event.clipboardData.files;
    if (files && files.length) {
      event.preventDefault();  // a pasted screenshot, not its file name as text
      addFiles(files);
    }
  });

  function dropZone() { return document.querySelector(".conversation"); }
  function carriesFiles(event) {
    return event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types, "Files") >= 0;
  }
  ["dragenter", "dragover"].forEach(function (type) {
    document.addEventListener(type, function (event) {
      var zone = dropZone();
      if (!zone || !zone.contains(event.target) || !carriesFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      composer().classList.add("dropping");
    });
  });
  document.addEventListener("dragleave", function (event) {
    var zone = dropZone();
    if (zone && (!event.relatedTarget || !zone.contains(event.relatedTarget))) {
      composer().classList.remove("dropping");
    }
  });
  document.addEventListener("drop", function (event) {
    var zone = dropZone();
    if (!zone || !zone.contains(event.target) || !carriesFiles(event)) return;
    event.preventDefault();
    composer().classList.remove("dropping");
    addFiles(event.dataTransfer.files);
  });

  // ------------------------------------------------------------------ sending

  // Before app.js's own check (this runs first: capture on window, before document).
  window.addEventListener("submit", function (event) {
    if (event.target !== composer() || !chips().length) return;
    var refusal = null;
    if (chips().some(function (chip) { return !chip.dataset.id; })) {
      refusal = "Wait for the attachments to finish uploading.";
    } else if (running() && messageBox().value.trim() !== "") {
      refusal = "A turn is running: attachments go with a new message. Send them when it ends.";
    }
    if (refusal) {
      event.preventDefault();
      event.stopImmediatePropagation();
      notice(refusal);
    }
  }, true);

  document.addEventListener("htmx:wsConfigSend", function (event) {
    if (event.target !== composer()) return;
    var ids = uploadedIds();
    // While a turn runs the composer stops it or queues text: attachments wait for a new turn.
    if (ids.length && !running()) event.detail.parameters.attachments = ids;
  });

  // ------------------------------------------------------------------ viewing an image

  function viewer() {
    var dialog = document.getElementById("attachment-viewer");
    if (dialog) return dialog;
    dialog = element("dialog", "attachment-viewer");
    dialog.id = "attachment-viewer";
    var close = element("button", "viewer-close", "×");
    close.type = "button";
    close.setAttribute("aria-label", "Close");
    var figure = element("figure");
    figure.appendChild(element("img"));
    figure.appendChild(element("figcaption"));
    dialog.appendChild(close);
    dialog.appendChild(figure);
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog || event.target === close) dialog.close();
    });
    document.body.appendChild(dialog);
    return dialog;
  }

  document.addEventListener("click", function (event) {
    var thumb = event.target.closest && event.target.closest("a.attachment-thumb");
    if (!thumb || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    var dialog = viewer();
    var image = dialog.querySelector("img");
    image.src = thumb.href;
    image.alt = thumb.querySelector("img").alt;
    dialog.querySelector("figcaption").textContent = thumb.title;
    dialog.showModal();
  });

  window.dispatchAttachments = { add: addFiles };
})();
