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
