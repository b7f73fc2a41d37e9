// The console's one script, built into the binary: live regions refresh
// themselves, and a checkbox selects a whole group of messages.
(function () {
  "use strict";
  function refresh(region) {
    var every = Number(region.dataset.refresh) * 1000;
    setInterval(function () {
      if (document.hidden) { return; }
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (text) {
          if (!text) { return; }
          var fresh = new DOMParser().parseFromString(text, "text/html").getElementById(region.id);
          if (fresh) { region.innerHTML = fresh.innerHTML; }
        })
        .catch(function () { /* the next tick tries again */ });
    }, every);
  }
  document.querySelectorAll("[data-refresh]").forEach(refresh);
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name='" + all.dataset.selectAll + "']").forEach(function (box) {
        box.checked = all.checked;
      });
    });
  });
})();
