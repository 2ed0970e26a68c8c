// Small progressive enhancements; every page works without this file.
document.addEventListener("DOMContentLoaded", () => {
  for (const box of document.querySelectorAll("input.select-all")) {
    box.addEventListener("change", () => {
      for (const item of box.closest("form").querySelectorAll('input[name="entry_id"]')) {
        item.checked = box.checked;
      }
    });
  }
});

// Pages with data-poll refresh their figures from a JSON endpoint, without reloading.
document.addEventListener("DOMContentLoaded", () => {
  const root = document.querySelector("[data-poll]");
  if (!root) return;
  const lookup = (data, path) =>
    path.split(".").reduce((v, k) => (v === null || v === undefined ? v : v[k]), data);
  const refresh = async () => {
    let data;
    try {
      const resp = await fetch(root.dataset.poll, { headers: { Accept: "application/json" } });
      if (!resp.ok) return;
      data = await resp.json();
    } catch (err) {
      return;
    }
    for (const el of root.querySelectorAll("[data-field]")) {
      let value = lookup(data, el.dataset.field);
      if (el.dataset.kind === "time") {
        // as the server writes them: 2026-12-03 13:06 UTC
        if (value) value = new Date(value).toISOString().slice(0, 16).replace("T", " ") + " UTC";
      } else if (el.dataset.kind) {
        if (el.dataset.kind === "healthy") value = value ? "healthy" : "unhealthy";
        el.className = "badge " + value;
      }
      el.textContent = value === null || value === undefined ? "—" : String(value);
    }
    for (const list of root.querySelectorAll("[data-list]")) {
      list.replaceChildren(
        ...(lookup(data, list.dataset.list) || []).map((text) => {
          const li = document.createElement("li");
          li.textContent = text;
          return li;
        }),
      );
    }
  };
  setInterval(refresh, Number(root.dataset.every) || 10000);
});

// The navigation's menus: one open at a time, closed by a click elsewhere or Escape.
document.addEventListener("DOMContentLoaded", () => {
  const menus = [...document.querySelectorAll("details.menu")];
  for (const menu of menus) {
    menu.addEventListener("toggle", () => {
      if (menu.open) for (const other of menus) if (other !== menu) other.open = false;
    });
  }
  document.addEventListener("click", (event) => {
    for (const menu of menus) if (!menu.contains(event.target)) menu.open = false;
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") for (const menu of menus) menu.open = false;
  });
});
