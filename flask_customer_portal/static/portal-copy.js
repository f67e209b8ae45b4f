/* flask-customer-portal: "Copy" buttons for licence keys.
   Progressive enhancement only: without this file the key is still shown in
   a read-only field to select and copy by hand. A button names the field it
   copies (data-copy-target) and the live region that announces the result
   (data-copy-status, shown next to the button); the messages come
   translated from the page. */
(function () {
  "use strict";

  function announce(region, message) {
    if (!region) { return; }
    // Empty first, so that pressing Copy twice is announced twice.
    region.textContent = "";
    window.setTimeout(function () { region.textContent = message; }, 50);
  }

  function copyWithSelection(input) {
    input.focus();
    input.select();
    try {
      return document.execCommand("copy");
    } catch (error) {
      return false;
    }
  }

  function copy(input) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(input.value).then(
        function () { return true; },
        function () { return copyWithSelection(input); }
      );
    }
    return Promise.resolve(copyWithSelection(input));
  }

  function enhance(button) {
    var input = document.getElementById(button.getAttribute("data-copy-target"));
    var region = document.getElementById(button.getAttribute("data-copy-status"));
    if (!input) { return; }
    input.addEventListener("focus", function () { input.select(); });
    var label = button.innerHTML;
    var restore = null;
    button.addEventListener("click", function () {
      copy(input).then(function (copied) {
        announce(region, button.getAttribute(copied ? "data-copied-message" : "data-failed-message"));
        // Seen as well as heard: the button says "Copied" for a moment.
        if (copied && button.getAttribute("data-copied-label")) {
          button.textContent = button.getAttribute("data-copied-label");
          window.clearTimeout(restore);
          restore = window.setTimeout(function () { button.innerHTML = label; }, 2500);
        }
      });
    });
    button.hidden = false;
  }

  function start() {
    var buttons = document.querySelectorAll("button[data-copy-target]");
    for (var i = 0; i < buttons.length; i += 1) { enhance(buttons[i]); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
