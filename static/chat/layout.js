/* The page's layout: the sidebar as a drawer on phones, the tab strip's scroll buttons (the
   current tab stays in view), and the conversation list following every change of the user's
   conversations (#conversations-stamp) while keeping the search the box holds. */
(function () {
  "use strict";
  var PHONE = window.matchMedia("(max-width: 640px)");

  // ------------------------------------------------------------------ the drawer

  function drawerButton() { return document.getElementById("drawer-button"); }

  function setDrawer(open) {
    var button = drawerButton();
    var backdrop = document.querySelector(".drawer-backdrop");
    document.body.classList.toggle("drawer-open", open);
    if (button) button.setAttribute("aria-expanded", open ? "true" : "false");
    if (backdrop) backdrop.hidden = !open;
    if (open) {
      var search = document.getElementById("conversation-search");
      if (search) search.focus();
    }
  }

  document.addEventListener("click", function (event) {
    if (event.target === drawerButton()) {
      setDrawer(!document.body.classList.contains("drawer-open"));
    } else if (event.target.classList && event.target.classList.contains("drawer-backdrop")) {
      setDrawer(false);
      if (drawerButton()) drawerButton().focus();
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && document.body.classList.contains("drawer-open")) {
      event.preventDefault();
      event.stopImmediatePropagation();
      setDrawer(false);
      if (drawerButton()) drawerButton().focus();
    }
  }, true);

  PHONE.addEventListener("change", function () { setDrawer(false); });

  // ------------------------------------------------------------------ tabs

  function strip() { return document.getElementById("tabs"); }

  function updateButtons(tabs) {
    document.querySelectorAll(".tabs-scroll").forEach(function (button) {
      var back = button.dataset.scroll === "-1";
      button.disabled = back ? tabs.scrollLeft <= 0
        : tabs.scrollLeft + tabs.clientWidth >= tabs.scrollWidth - 1;
    });
  }

  function updateTabs() {
    var tabs = strip();
    if (!tabs) return;
    // The buttons first: showing them narrows the strip the current tab must fit in.
    var overflow = tabs.scrollWidth > tabs.clientWidth + 1;
    document.querySelectorAll(".tabs-scroll").forEach(function (button) {
      button.hidden = !overflow;
    });
    var current = tabs.querySelector(".tab.current");
    if (current) {
      var left = current.offsetLeft - tabs.offsetLeft;
      var right = left + current.offsetWidth;
      var target = null;
      if (left < tabs.scrollLeft) target = left - 8;
      else if (right > tabs.scrollLeft + tabs.clientWidth) target = right - tabs.clientWidth + 8;
      if (target !== null) tabs.scrollTo({ left: target, behavior: "instant" });
    }
    updateButtons(tabs);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".tabs-scroll");
    var tabs = strip();
    if (!button || !tabs) return;
    tabs.scrollBy({ left: Number(button.dataset.scroll) * tabs.clientWidth * 0.8 });
  });
  document.addEventListener("scroll", function (event) {
    if (event.target === strip()) updateButtons(event.target);
  }, true);
  window.addEventListener("resize", updateTabs);

  // ------------------------------------------------------------------ the live list

  var stamp = null;

  document.addEventListener("htmx:wsAfterMessage", function () {
    updateTabs();
    var marker = document.getElementById("conversations-stamp");
    if (!marker) return;
    if (stamp !== null && marker.dataset.stamp !== stamp) {
      var search = document.getElementById("conversation-search");
      if (search) htmx.trigger(search, "refresh");
    }
    stamp = marker.dataset.stamp;
  });

  document.addEventListener("DOMContentLoaded", function () {
    var marker = document.getElementById("conversations-stamp");
    stamp = marker ? marker.dataset.stamp : null;
    updateTabs();
  });

  window.dispatchLayout = { setDrawer: setDrawer, updateTabs: updateTabs };
})();
