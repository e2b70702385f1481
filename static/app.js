// MicroBadger's only script. Every page works without it; it adds:
// - copy buttons next to snippets (rendered `hidden`, shown here);
// - "3 days ago" after dates in <time data-ago> (cached pages carry absolute dates only);
// - on the "inspecting" page: polls the page's `?poll=1` URL (202 while inspecting) and
//   reloads as soon as the image is ready, instead of the 3 s meta refresh it cancels.
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      try {
        document.execCommand("copy") ? resolve() : reject(new Error("copy refused"));
      } catch (e) {
        reject(e);
      } finally {
        document.body.removeChild(area);
      }
    });
  }

  function setUpCopyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target) return;
      button.hidden = false;
      button.setAttribute("aria-label", "Copy to the clipboard");
      button.addEventListener("click", function () {
        copyText(target.textContent).then(function () {
          button.textContent = "Copied";
          button.classList.add("done");
        }, function () {
          button.textContent = "Press Ctrl+C";
          var range = document.createRange();
          range.selectNodeContents(target);
          var selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
        });
        setTimeout(function () {
          button.textContent = "Copy";
          button.classList.remove("done");
        }, 1600);
      });
    });
  }

  var UNITS = [
    ["year", 31536000], ["month", 2592000], ["day", 86400],
    ["hour", 3600], ["minute", 60]
  ];

  function ago(date) {
    var seconds = Math.round((Date.now() - date.getTime()) / 1000);
    if (seconds < -60) return null;
    if (seconds < 60) return "just now";
    for (var i = 0; i < UNITS.length; i++) {
      var n = Math.floor(seconds / UNITS[i][1]);
      if (n >= 1) return n + " " + UNITS[i][0] + (n === 1 ? "" : "s") + " ago";
    }
    return null;
  }

  function addRelativeTimes() {
    document.querySelectorAll("time[data-ago]").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      var text = ago(date);
      if (!text) return;
      var span = document.createElement("span");
      span.className = "muted";
      span.textContent = " (" + text + ")";
      el.title = el.textContent;
      el.after(span);
    });
  }

  function pollUntilReady() {
    var box = document.querySelector("[data-poll]");
    if (!box) return;
    var url = box.getAttribute("data-poll");
    var status = document.getElementById("poll-status");
    var started = Date.now();
    var checks = 0;

    // The page's <meta http-equiv="refresh"> is for browsers without JavaScript; with it,
    // polling reloads sooner and only once. window.stop() cancels the pending refresh.
    window.addEventListener("load", function () {
      window.stop();
      setTimeout(check, 700);
    });

    function check() {
      checks += 1;
      fetch(url, { cache: "no-store", credentials: "same-origin" }).then(function (resp) {
        // 202: still inspecting; 429 and 5xx: a hiccup, ask again. Anything else (200, or
        // an error page such as 404) is what the page now shows.
        if (resp.status === 202 || resp.status === 429 || resp.status >= 500) {
          return next();
        }
        if (status) status.textContent = "Ready. Loading the image page…";
        window.location.reload();
      }, next);
    }

    function next() {
      var waited = Math.round((Date.now() - started) / 1000);
      if (status) {
        status.textContent = "Still inspecting… " + waited + " s so far.";
      }
      // After a minute, reload anyway: that queues the image again if its job was lost.
      if (Date.now() - started > 60000) {
        window.location.reload();
        return;
      }
      setTimeout(check, checks < 10 ? 1000 : 2500);
    }
  }

  function start() {
    setUpCopyButtons();
    addRelativeTimes();
  }

  pollUntilReady();
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
