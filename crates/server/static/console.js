// The console's one script. Pages work without it. With it:
// - the connection log can follow new connections live ("Live" box on the log page): the table
//   is fetched again every few seconds with the page's filters and replaced, until the box is
//   cleared;
// - in the policy editor, a validation finding takes the cursor to its line in the document;
// - the dashboard's figures follow the server's live stream (Server-Sent Events).
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

(function () {
  const source = document.querySelector("textarea#source");
  if (!source) {
    return;
  }
  document.querySelectorAll("li[data-line] a").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      const line = Number(link.parentElement.dataset.line);
      const lines = source.value.split("\n");
      const start = lines.slice(0, line - 1).reduce((n, text) => n + text.length + 1, 0);
      const end = start + (lines[line - 1] || "").length;
      source.focus();
      source.setSelectionRange(start, end);
      const height = source.scrollHeight / Math.max(lines.length, 1);
      source.scrollTop = Math.max(0, (line - 5) * height);
    });
  });
})();

(function () {
  const online = document.getElementById("agents-online");
  if (!online || !window.EventSource) {
    return;
  }
  const figures = {
    online: online,
    offline: document.getElementById("agents-offline"),
    connections: document.getElementById("connections"),
    blocks: document.getElementById("blocks"),
  };
  const stream = new EventSource("/console/dashboard/stream");
  stream.addEventListener("figures", function (event) {
    const values = JSON.parse(event.data);
    Object.keys(figures).forEach(function (name) {
      if (figures[name] && values[name] !== undefined) {
        figures[name].textContent = String(values[name]);
      }
    });
  });
})();
