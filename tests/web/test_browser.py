"""The reviewer UI in Debian's chromium against the real app under gunicorn.

Sign in, filter the queue, approve an entry, edit and retry a failed one, repush a failed push,
and see a form posted without its CSRF token refused. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.store import Store
from bridge.store.models import Push, SalesEntry
from tests import services
from tests.web.seed import PASSWORD, Seeded

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        if services.IN_CI:
            pytest.fail("chromium is required in CI (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


def _entry(store: Store, entry_id: int) -> SalesEntry:
    with store.session() as s:
        e = s.get(SalesEntry, entry_id)
        assert e is not None
        return e


def test_review_in_a_real_browser(
    chromium: str, web_server: tuple[str, Seeded], sqlite_store: Store
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, seeded = web_server
    ids = seeded.ids
    ARTIFACTS.mkdir(exist_ok=True)

    def shot(page: Any, name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
            page = context.new_page()
            page.set_default_timeout(10_000)

            # Sign in.
            page.goto(base + "/")
            expect(page).to_have_url(f"{base}/auth/login?next=/")
            page.fill("input[name=email]", "admin@example.com")
            page.fill("input[name=password]", PASSWORD)
            shot(page, "01-sign-in")
            page.click("button.primary")
            expect(page.locator("h1")).to_have_text("Dashboard")
            expect(page.locator("svg.chart")).to_be_visible()
            shot(page, "02-dashboard")
            cookie = next(c for c in context.cookies() if c["name"] == "sfbridge_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

            # Filter the review queue.
            page.click("#menu-review summary")
            page.click("#menu-review >> text=Queue")
            expect(page.locator("table.queue tbody tr")).to_have_count(3)
            page.select_option("select[name=program]", "partners")
            page.click("form.filters button")
            expect(page.locator("table.queue tbody tr")).to_have_count(1)
            expect(page.locator("table.queue tbody")).to_contain_text("carol@client.test")
            shot(page, "03-queue-filtered")

            # Approve an entry from its page.
            page.goto(f"{base}/entries/{ids['review_fuzzy']}")
            expect(page.locator(".why h2")).to_have_text("Why it waits")
            shot(page, "04-entry-review")
            expect(page.locator("#approve")).to_have_text("Apply: qualify")
            page.click("#approve")
            expect(page.locator(".flash.success")).to_contain_text(
                f"Entry {ids['review_fuzzy']} applied"
            )
            expect(page.locator("#referral-status")).to_have_text("qualified")
            assert _entry(sqlite_store, ids["review_fuzzy"]).outcome != "review"

            # Edit a failed entry's field and retry it.
            page.goto(f"{base}/entries/{ids['failed']}")
            expect(page.locator(".why h2")).to_have_text("Why it failed")
            page.fill("input[name='field:Lead:Referral_Code__c']", "ALICE")  # was "ALISE"
            shot(page, "05-entry-failed-edit")
            page.click("#save-retry")
            expect(page.locator(".flash.success")).to_contain_text(f"Entry {ids['failed']} retried")
            retried = _entry(sqlite_store, ids["failed"])
            assert retried.records["Lead"]["Referral_Code__c"] == "ALICE"
            assert retried.outcome == "processed"
            expect(page.locator("h1 .badge")).to_have_text("processed")

            # Repush a failed push.
            page.goto(f"{base}/reports/pushes?state=failed")
            expect(page.locator("tbody")).to_contain_text("STRING_TOO_LONG")
            shot(page, "06-pushes-failed")
            page.click("button.repush")
            expect(page.locator(".flash.success")).to_contain_text(
                f"Push {ids['push_failed']} will be sent again"
            )
            with sqlite_store.session() as s:
                push = s.get(Push, ids["push_failed"])
                assert push is not None and push.state == "pending"

            # A form posted without its CSRF token is refused and changes nothing.
            page.goto(f"{base}/entries/{ids['review_denied']}")
            page.evaluate(
                "document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())"
            )
            with page.expect_response(lambda r: r.request.method == "POST") as posted:
                page.click("#approve")
            assert posted.value.status == 400
            expect(page.locator("h1")).to_have_text("Form refused")
            shot(page, "07-csrf-refused")
            assert _entry(sqlite_store, ids["review_denied"]).outcome == "review"
        finally:
            browser.close()


LONG = "X" * 500  # one unbroken 500-character value: the worst case for wrapping


def test_triage_and_long_values_in_a_real_browser(
    chromium: str, web_server: tuple[str, Seeded], sqlite_store: Store
) -> None:
    """Triage from the queue with its columns, a bulk action through its confirmation, the
    next-entry flow; and no page wider than the window at 1,280 px and 390 px with a
    500-character error value."""
    from playwright.sync_api import expect, sync_playwright

    base, seeded = web_server
    ids = seeded.ids
    with sqlite_store.session() as s:
        failed = s.get(SalesEntry, ids["failed"])
        push = s.get(Push, ids["push_failed"])
        assert failed is not None and push is not None
        failed.error = "missing data: " + LONG
        failed.records = {**failed.records, "Lead": {**failed.records["Lead"], "Company": LONG}}
        push.error_message = "Company: data value too large: " + LONG
    ARTIFACTS.mkdir(exist_ok=True)

    def shot(page: Any, name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.goto(base + "/auth/login")
            page.fill("input[name=email]", "reviewer@example.com")
            page.fill("input[name=password]", PASSWORD)
            page.click("button.primary")
            expect(page.locator("h1")).to_have_text("Dashboard")

            # The queue: who, which referral and member, what applying does, how it matched.
            page.goto(base + "/queue/review")
            bob = page.locator(f"tr:has(input[value='{ids['review_fuzzy']}'])")
            for text in ("Bob Buyer", "bob@buyer.test", "ref_0000", "Alice Member", "ALICE"):
                expect(bob).to_contain_text(text)
            expect(bob.locator("td.change")).to_have_text("pending → qualified")
            expect(bob).to_contain_text("fuzzy 1.00")
            expect(bob.locator("details")).not_to_have_attribute("open", "")
            bob.locator("details summary").click()
            expect(bob.locator("details")).to_contain_text("auto_process_fuzzy is false")
            shot(page, "10-queue-triage")

            # Search, then a bulk action from the top bar through its confirmation.
            page.fill("input[name=q]", "bob")
            page.click("form.filters button")
            expect(page.locator("table.queue tbody tr")).to_have_count(1)
            expect(page.locator(".tabs a.active .n")).to_have_text("1")
            page.check(f"input[name=entry_id][value='{ids['review_fuzzy']}']")
            page.locator(".bulk[data-where=top] button[value=apply]").click()
            expect(page.locator("h1")).to_have_text("Confirm: apply the proposed changes")
            expect(page.locator(".effects")).to_have_text("This will do: 1 referral → qualified.")
            shot(page, "11-bulk-confirm")
            assert _entry(sqlite_store, ids["review_fuzzy"]).outcome == "review"  # not yet
            page.click("#confirm-bulk")
            expect(page.locator(".flash.success")).to_have_text("Done: 1 referral → qualified.")
            assert _entry(sqlite_store, ids["review_fuzzy"]).outcome == "processed"

            # Decide one from its page, then go on to the next.
            page.goto(f"{base}/queue/review")
            page.click(f"table.queue a[href^='/entries/{ids['review_denied']}?']")
            page.fill("input[name=note]", "duplicate")
            page.click("#reject")
            expect(page.locator(".flash.success")).to_contain_text("it is now skipped")
            expect(page.locator("#next-entry")).to_contain_text("Decided — next entry")
            shot(page, "12-entry-decided-next")
            page.click("#next-entry")
            expect(page.locator("h1")).to_contain_text(f"Entry {ids['review_partner']}")

            # Long values wrap: no page is wider than the window.
            pages = {
                "queue": "/queue/failed",
                "entry": f"/entries/{ids['failed']}",
                "pushes": "/reports/pushes",
                "entry-report": "/reports/entries",
                "audit": "/audit",
                "api": "/api",
            }
            for width in (1280, 390):
                page.set_viewport_size({"width": width, "height": 900})
                for name, path in pages.items():
                    page.goto(base + path)
                    wide = page.evaluate("document.documentElement.scrollWidth")
                    assert wide <= width, f"{path} is {wide} px wide at a {width} px window"
                    if name in ("entry", "pushes") or width == 390:
                        shot(page, f"13-{name}-{width}")
        finally:
            browser.close()
