"""The reviewer UI in Debian's chromium against the real app under gunicorn.

Sign in, filter the queue, approve an entry, edit and retry a failed one, repush a failed push,
and see a form posted without its CSRF token refused. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.store import Store
from bridge.store.models import Push, SalesEntry
from tests import services
from tests.web.seed import PASSWORD, Seeded, seed
from tests.web.webproc import running_web

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


@pytest.fixture
def web_server(sqlite_store: Store, tmp_path: Path, redis_url: str) -> Iterator[tuple[str, Seeded]]:
    seeded = seed(sqlite_store)
    with running_web(sqlite_store.url, tmp_path, SFBRIDGE_REDIS_URL=redis_url) as base:
        yield base, seeded


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
            page.click("text=Queue")
            expect(page.locator("tbody tr")).to_have_count(3)
            page.select_option("select[name=program]", "partners")
            page.click("form.filters button")
            expect(page.locator("tbody tr")).to_have_count(1)
            expect(page.locator("tbody")).to_contain_text("carol@client.test")
            shot(page, "03-queue-filtered")

            # Approve an entry from its page.
            page.goto(f"{base}/entries/{ids['review_fuzzy']}")
            expect(page.locator(".why h2")).to_have_text("Why it waits")
            shot(page, "04-entry-review")
            page.click("#approve")
            expect(page.locator(".flash.success")).to_contain_text(
                f"Entry {ids['review_fuzzy']} approved"
            )
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
