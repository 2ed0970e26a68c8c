"""The admin console in Debian's chromium against real processes: token creation and a reload
that creates nothing; a referral's status edited on its page; and, against the local org over
HTTPS with a real `sfbridge stream`, the health page turning unhealthy by itself when the
stream stops, and the mapping page running `org check` with an Issue. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from bridge.store import Store
from bridge.store.models import ApiToken, Referral
from bridge.users import create_user
from tests import services
from tests.harness import Bridge, wait_until
from tests.web.seed import PASSWORD, Seeded
from tests.web.test_browser import ARTIFACTS, CHROMIUM_ARGS, chromium

pytestmark = pytest.mark.browser
__all__ = ["chromium"]  # a fixture


def _browser(pw: Any, chromium: str) -> Any:
    return pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)


def _page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _sign_in(page: Any, base: str, email: str) -> None:
    page.goto(base + "/auth/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button.primary")
    page.wait_for_selector("h1")


def _fits(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"{page.url} is {width}px wide"


def test_token_creation_reload_and_a_referral_edit(
    chromium: str, web_server: tuple[str, Seeded], sqlite_store: Store
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, seeded = web_server
    with sync_playwright() as pw:
        browser = _browser(pw, chromium)
        try:
            page = _page(browser)
            _sign_in(page, base, "admin@example.com")
            page.goto(base + "/admin/tokens")
            page.fill("input[name=name]", "ci-pipeline")
            page.check("input[value='entries:read']")
            page.fill("input[name=expires_days]", "30")
            page.click("text=Create token")
            expect(page.locator("#new-token")).to_contain_text("sfb_")
            assert page.url == base + "/admin/tokens"  # redirected after the POST
            _shot(page, "c01-token-created")
            page.reload()
            expect(page.locator("#new-token")).to_have_count(0)  # shown once
            expect(page.locator("table.list tbody")).to_contain_text("ci-pipeline")
            _shot(page, "c02-token-reloaded")
            with sqlite_store.session() as s:
                assert s.scalar(select(func.count()).select_from(ApiToken)) == 1
            page.click("text=Revoke…")
            expect(page.locator("h1")).to_contain_text("Revoke token ci-pipeline?")
            _shot(page, "c03-token-revoke-confirm")
            page.click("#confirm-revoke")
            expect(page.locator(".flash.success")).to_contain_text("Revoked token 'ci-pipeline'")

            page.goto(base + "/referrals")
            page.fill("input[name=q]", "bob")
            page.click("form.filters button")
            expect(page.locator("table.referrals tbody tr")).to_have_count(1)
            _shot(page, "c04-referrals-search")
            _fits(page)
            page.click("table.referrals tbody a >> nth=0")
            page.select_option("#status-form select[name=status]", "qualified")
            page.click("#set-status")
            expect(page.locator(".flash.success")).to_contain_text("pending → qualified")
            expect(page.locator("#referral-status")).to_have_text("qualified")
            expect(page.locator("#status-history")).to_contain_text("admin@example.com")
            _shot(page, "c05-referral-status-edited")
            _fits(page)
            with sqlite_store.session() as s:
                bob = s.get(Referral, seeded.ids["ref_bob"])
                assert bob is not None and bob.status == "qualified"

            # Every new page fits the window at 1,280 px and at phone width.
            ids = seeded.ids
            pages = [
                "/referrals", "/members", f"/members/{ids['member']}", "/integration",
                f"/referrals/{ids['ref_bob']}", "/admin/orgs", "/admin/orgs/acme",
                "/admin/tokens", f"/entries/{ids['failed']}",
            ]  # fmt: skip
            for width in (1280, 390):
                page.set_viewport_size({"width": width, "height": 900})
                for path in pages:
                    page.goto(base + path)
                    wide = page.evaluate("document.documentElement.scrollWidth")
                    assert wide <= width, f"{path} is {wide}px wide at {width}px"
            _shot(page, "c10-entry-phone")
        finally:
            browser.close()


# Rows of the navigation: items whose tops differ by less than half an item's height share one.
NAV_ROWS = """() => {
    const items = document.querySelectorAll("nav.main-nav > *");
    const boxes = [...items].map(e => e.getBoundingClientRect());
    const tops = boxes.map(b => b.top).sort((a, b) => a - b);
    const half = Math.min(...boxes.map(b => b.height)) / 2;
    return 1 + tops.filter((t, i) => i > 0 && t - tops[i - 1] >= half).length;
}"""


def test_the_navigation_fits_one_line_and_works_without_javascript(
    chromium: str, web_server: tuple[str, Seeded]
) -> None:
    """At 1,280 px the grouped navigation is one row (every item at the same height, clear of
    the account links), each menu opens inside the window, and without JavaScript the menus
    still open and lead to their pages."""
    from playwright.sync_api import expect, sync_playwright

    base, seeded = web_server
    with sync_playwright() as pw:
        browser = _browser(pw, chromium)
        try:
            page = _page(browser)
            _sign_in(page, base, "admin@example.com")
            for path in ("/", "/queue/review", "/reports/pushes", "/admin/orgs", "/admin/tokens"):
                page.goto(base + path)
                assert page.evaluate(NAV_ROWS) == 1, f"the navigation wraps on {path}"
                nav_right = page.evaluate(
                    "document.querySelector('nav.main-nav > :last-child')"
                    ".getBoundingClientRect().right"
                )
                account_left = page.evaluate(
                    "document.querySelector('form.signout').getBoundingClientRect().left"
                )
                assert nav_right < account_left, (path, nav_right, account_left)
                _fits(page)
            for menu in ("review", "integration", "admin"):
                page.click(f"#menu-{menu} summary")
                expect(page.locator(f"#menu-{menu} ul")).to_be_visible()
                right = page.evaluate(
                    f"document.querySelector('#menu-{menu} ul').getBoundingClientRect().right"
                )
                assert right <= 1280, (menu, right)
                _fits(page)
                if menu == "integration":
                    _shot(page, "c11-nav-integration-open")
            # One open at a time; Escape closes it.
            expect(page.locator("details.menu[open]")).to_have_count(1)
            page.keyboard.press("Escape")
            expect(page.locator("details.menu[open]")).to_have_count(0)
            page.click("#menu-integration summary")
            page.click("#menu-integration >> text=Pushes")
            expect(page.locator("h1")).to_have_text("Pushes to Salesforce")
            expect(page.locator("#menu-integration")).to_have_class("menu current")
            _shot(page, "c12-nav-pushes-current")

            # Without JavaScript: the same menus open and lead to their pages.
            plain = browser.new_context(viewport={"width": 1280, "height": 900},
                                        java_script_enabled=False).new_page()  # fmt: skip
            plain.set_default_timeout(10_000)
            _sign_in(plain, base, "reviewer@example.com")
            expect(plain.locator("#menu-admin")).to_have_count(0)  # a reviewer's nav
            expect(plain.locator("nav.main-nav")).not_to_contain_text("Orgs and mappings")
            plain.click("#menu-review summary")
            plain.click("#menu-review >> text=Audit")
            expect(plain.locator("h1")).to_contain_text("Audit")
            assert plain.evaluate(NAV_ROWS) == 1
        finally:
            browser.close()


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_health_and_mapping_against_the_local_org(
    chromium: str, clean_devorg: Any, redis_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    bridge = Bridge(tmp_path / "bridge", clean_devorg, redis_url)
    data = yaml.safe_load(bridge.config_path.read_text())
    data["orgs"]["acme"]["receiver"]["status_rules"] = [
        {"status": "qualified", "object": "Lead", "field": "Status", "op": "equals",
         "value": "Qualifed"},  # a typo: not a value of the org's picklist
    ]  # fmt: skip
    bridge.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    bridge.install()
    with bridge.store.session() as s:
        create_user(s, "admin@example.com", PASSWORD, "admin", actor="test")
    port = services.free_port()
    bridge.extra_env["SFBRIDGE_HEALTH_REFRESH_SECONDS"] = "1"
    bridge.start("web", "web", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: "Listening at" in bridge.log("web"), 60, "the web", lambda: bridge.log("web")
        )
        bridge.start("stream", "stream", "--org", "acme")
        wait_until(
            lambda: "subscribed to /topic/SFB_Contact" in bridge.log("stream"),
            30,
            "the stream to subscribe",
            lambda: bridge.log("stream"),
        )
        with sync_playwright() as pw:
            browser = _browser(pw, chromium)
            try:
                page = _page(browser)
                _sign_in(page, base, "admin@example.com")
                page.goto(base + "/integration")
                badge = page.locator("#org-acme h2 .badge")
                expect(badge).to_have_text("healthy")
                expect(page.locator("#org-acme")).to_contain_text("held by")
                _shot(page, "c06-health-streaming")
                _fits(page)
                page.goto(base + "/")
                expect(page.locator("#glance .badge").first).to_have_text("healthy")
                page.goto(base + "/integration")
                marker = page.evaluate("window.__loaded = Date.now()")
                bridge.kill("stream")  # kill -9: the lease is no longer renewed
                stopped = time.monotonic()
                expect(badge).to_have_text("unhealthy", timeout=60_000)
                took = time.monotonic() - stopped
                assert took < 60, took
                assert page.evaluate("window.__loaded") == marker  # no reload: polled
                expect(page.locator("#org-acme ul.problems")).to_contain_text(
                    "sfbridge stream --org acme"
                )
                _shot(page, "c07-health-stream-stopped")

                page.goto(base + "/admin/orgs/acme")
                expect(page.locator("#org-check")).to_contain_text("Not run yet")
                page.click("#run-check")
                expect(page.locator(".flash")).to_contain_text("org check:")
                expect(page.locator("#issue-count")).to_contain_text("Issue(s)")
                row = page.locator("table.mapping tr", has_text="receiver.status_rules[0]")
                expect(row).to_contain_text("Issue")
                expect(row).to_contain_text("'Qualifed' is not an active value")
                row.locator("details.inspect summary").click()
                expect(row.locator("details.inspect")).to_contain_text("not an active value")
                expect(row.locator("details.inspect")).to_contain_text("Working - Contacted")
                _shot(page, "c08-mapping-with-an-issue")
                _fits(page)
                page.reload()  # a reload runs nothing: the kept result is shown
                expect(page.locator("#issue-count")).to_contain_text("Issue(s)")
                page.goto(base + "/admin/orgs")
                expect(page.locator("#config-check")).to_contain_text("finds no problem")
                _shot(page, "c09-orgs")
            finally:
                browser.close()
    finally:
        bridge.close()
