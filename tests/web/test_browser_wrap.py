"""How a push's external id wraps in a narrow column, in Debian's chromium with the console's
own stylesheet and macro (no server: the pushes table's cell is rendered on its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jinja2 import Environment, FileSystemLoader

from tests.web.test_browser import CHROMIUM_ARGS, chromium

pytestmark = pytest.mark.browser
__all__ = ["chromium"]  # a fixture

WEB = Path(__file__).resolve().parents[2] / "bridge" / "web"

# The text of each line the code element is laid out in.
LINES = """() => {
  const code = document.querySelector('code.extid');
  const lines = new Map();
  const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const top = Math.round(range.getBoundingClientRect().top);
      lines.set(top, (lines.get(top) || '') + node.data[i]);
    }
  }
  return [...lines.entries()].sort((a, b) => a[0] - b[0]).map(e => e[1]);
}"""


def _cell(field: str, value: str) -> str:
    env = Environment(loader=FileSystemLoader(WEB / "templates"), autoescape=True)
    extid = env.get_template("macros.html").module.extid  # type: ignore[attr-defined]
    css = (WEB / "static" / "style.css").read_text(encoding="utf-8")
    return (
        f"<style>{css}</style><main><table class='list' style='width: 150px'>"
        f"<tr><td style='width: 150px'>{extid(field, value)}</td></tr></table></main>"
    )


def _lines(chromium: str, html: str) -> list[str]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser: Any = pw.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 400})
            page.set_content(html)
            lines: list[str] = page.evaluate(LINES)
            return lines
        finally:
            browser.close()


def test_an_external_id_breaks_after_the_equals_sign_not_mid_word(chromium: str) -> None:
    # 150 px hold about 16 characters of the 13 px monospace: the whole id (30) does not fit,
    # each side does.
    assert _lines(chromium, _cell("Referral_ID__c", "ref_7Hq2kX9mPa3")) == [
        "Referral_ID__c=",
        "ref_7Hq2kX9mPa3",
    ]


def test_a_side_wider_than_the_column_still_breaks_so_the_page_keeps_its_width(
    chromium: str,
) -> None:
    lines = _lines(chromium, _cell("Referral_ID__c", "ref_" + "x" * 60))
    assert lines[0] == "Referral_ID__c=" and len(lines) > 2
    assert "".join(lines) == "Referral_ID__c=ref_" + "x" * 60
