// The console's one script. Pages work without it; with it the connection log can follow new
// connections live ("Live" box on the log page): the table is fetched again every few seconds
// with the page's filters and replaced, until the box is cleared.
"use strict";

(function () {
  const live = document.getElementById("live");
  const table = document.getElementById("events");
  if (!live || !table) {
    return;
  }
  const every = 2000;
  let timer = null;

  async function refresh() {
    const url = new URL(window.location.href);
    url.searchParams.delete("cursor");
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) {
      return;
    }
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.querySelector("#events tbody");
    if (fresh) {
      table.querySelector("tbody").replaceWith(fresh);
    }
  }

  live.addEventListener("change", function () {
    if (live.checked) {
      refresh();
      timer = window.setInterval(refresh, every);
    } else {
      window.clearInterval(timer);
      timer = null;
    }
  });
})();
